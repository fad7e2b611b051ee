// ChatPulse overlay client: listens on a WebSocket for {"value", "status"}
// frames and moves the tug-of-war marker (draw). It sends only "ping" now
// and then: a bar at rest gets no frames and a browser cannot see the
// server's WebSocket pings, so the answer (the last frame again) is how the
// page tells a live socket from a stale one. The look — layout, colours,
// labels, hint — is overlay-look.js's (window.ChatPulseLook).
(function () {
  "use strict";

  var BACKOFF_START_MS = 500;
  var BACKOFF_MAX_MS = 30000;
  var JITTER = 0.2; // ±20 %
  var look = window.ChatPulseLook || {
    apply: function () {}, labels: function () {}, voters: function () {}, drew: function () {},
    onLayout: function () {}, vertical: function () { return false; },
  };

  var body = document.body;
  var bar = document.getElementById("bar");
  var track = document.getElementById("track");
  var marker = document.getElementById("marker");
  var fillFor = document.getElementById("fill-for");
  var fillAgainst = document.getElementById("fill-against");
  var indicator = document.getElementById("status-indicator");
  // Shown while the streamer's Twitch authorization is gone (status "disconnected").
  var authNotice = document.getElementById("auth-notice");
  // Shown for good once the server says this overlay URL was replaced, or
  // that it no longer exists at all (its streamer was removed).
  var goneNotice = document.getElementById("gone-notice");
  var removedNotice = document.getElementById("removed-notice");

  var overlayId = body.dataset.overlayId || "";
  // The dashboard's preview says so: the server counts it apart from OBS.
  var url = (location.protocol === "https:" ? "wss://" : "ws://") +
    location.host + "/ws/overlay/" + encodeURIComponent(overlayId) + (body.dataset.preview ? "?preview=1" : "");
  // "Are you there?" this often; no message for STALE_FACTOR times as long
  // means the socket went stale.
  var keepaliveMs = Math.max(1000, parseInt(body.dataset.keepaliveMs, 10) || 15000);
  var STALE_FACTOR = 2.5;

  var value = 0;
  var status = "";
  var open = false;       // socket is open
  var fresh = false;      // ...and has delivered a valid frame since opening
  var everClosed = false; // don't flash the indicator during the very first connect
  var attempt = 0;        // consecutive attempts without a healthy connection
  var lastHeard = 0;      // when the open socket last delivered anything

  // Draws one value: the marker's offset along the track (right or up for
  // "for") and each side's fill.
  function draw(v) {
    // Translate percentages refer to the marker's own box, so convert to px;
    // snap to device pixels so the resting marker is never blurry.
    var dpr = window.devicePixelRatio || 1;
    var vertical = look.vertical();
    var length = vertical ? track.clientHeight : track.clientWidth;
    var px = Math.round((v / 200) * length * dpr) / dpr;
    var axis = vertical ? "Y" : "X";
    marker.style.transform = "translate" + axis + "(" + (vertical ? -px : px) + "px)";
    fillFor.style.transform = "scale" + axis + "(" + Math.max(v, 0) / 100 + ")";
    fillAgainst.style.transform = "scale" + axis + "(" + Math.max(-v, 0) / 100 + ")";
    bar.dataset.side = v > 0 ? "for" : v < 0 ? "against" : "neutral";
    bar.dataset.value = String(v);
    look.drew(v);
  }

  function render() {
    draw(value);
  }

  function renderConnection() {
    body.dataset.connection = open ? "open" : "closed";
    // After a drop, keep the indicator up until the new socket sends state.
    indicator.hidden = fresh ? status !== "reconnecting" : !everClosed;
    authNotice.hidden = !(fresh && status === "disconnected");
  }

  // Returns the parsed frame, or null if it is not a usable frame.
  function parse(data) {
    if (typeof data !== "string") return null;
    try {
      var msg = JSON.parse(data);
    } catch (e) {
      return null;
    }
    if (!msg || typeof msg !== "object") return null;
    if (typeof msg.value !== "number" || !isFinite(msg.value)) return null;
    return msg;
  }

  function apply(msg) {
    // "Refresh overlays" on the dashboard: load the page afresh.
    if (msg.reload === true) {
      location.reload();
      return;
    }
    value = Math.max(-100, Math.min(100, msg.value));
    if (typeof msg.status === "string") {
      status = msg.status;
      bar.dataset.status = status;
    }
    if (msg.look) look.apply(msg.look);
    look.labels(msg.left_label, msg.right_label);
    look.voters(msg.voters);
    render();
    renderConnection();
  }

  function scheduleReconnect() {
    var base = Math.min(BACKOFF_START_MS * Math.pow(2, attempt), BACKOFF_MAX_MS);
    // Jitter spreads reconnecting overlays out; the cap holds after it.
    var delay = Math.min(base * (1 - JITTER + Math.random() * 2 * JITTER), BACKOFF_MAX_MS);
    attempt = Math.min(attempt + 1, 16); // keep 2^attempt bounded
    setTimeout(connect, delay);
  }

  function connect() {
    var ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      everClosed = true;
      renderConnection();
      scheduleReconnect();
      return;
    }

    var keepalive = null;

    ws.onopen = function () {
      open = true;
      lastHeard = Date.now();
      renderConnection();
      keepalive = setInterval(function () {
        if (Date.now() - lastHeard > keepaliveMs * STALE_FACTOR) {
          // Open, but silent for too long: show it, and connect afresh at
          // once (a dead path may never complete the closing handshake).
          clearInterval(keepalive);
          ws.onopen = ws.onmessage = ws.onclose = null;
          ws.close();
          open = fresh = false;
          everClosed = true;
          renderConnection();
          scheduleReconnect();
          return;
        }
        try {
          ws.send("ping");
        } catch (e) {
          // A socket that cannot send is closing: onclose follows.
        }
      }, keepaliveMs);
    };

    ws.onmessage = function (ev) {
      lastHeard = Date.now();
      var msg = parse(ev.data);
      if (!msg) return;
      attempt = 0; // open and delivering frames: the connection is healthy
      fresh = true;
      apply(msg);
    };

    // An error is always followed by a close event; reconnect from there only.
    ws.onerror = function () {};

    ws.onclose = function (ev) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      clearInterval(keepalive);
      open = fresh = false;
      everClosed = true;
      // 4404 = this overlay URL was replaced or removed: retrying cannot help.
      if (ev.code === 4404) {
        indicator.hidden = authNotice.hidden = true;
        var removed = ev.reason === "overlay no longer exists";
        (removed ? removedNotice : goneNotice).hidden = false;
        body.dataset.connection = removed ? "removed" : "gone";
        return;
      }
      // 1001 = server going away (restart/deploy): retry promptly.
      if (ev.code === 1001) attempt = 0;
      renderConnection();
      scheduleReconnect();
    };
  }

  // Keep the marker's px offset in step with the track size (source resized,
  // layout changed).
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(render).observe(track);
  } else {
    window.addEventListener("resize", render);
  }
  look.onLayout(render);

  render();
  renderConnection();
  connect();
})();
