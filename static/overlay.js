// ChatPulse overlay client: listens on a WebSocket for {"value", "status"}
// frames and moves the tug-of-war marker. Never sends anything.
(function () {
  "use strict";

  var BACKOFF_START_MS = 500;
  var BACKOFF_MAX_MS = 30000;
  var JITTER = 0.2; // ±20 %

  var body = document.body;
  var bar = document.getElementById("bar");
  var track = document.getElementById("track");
  var marker = document.getElementById("marker");
  var fillFor = document.getElementById("fill-for");
  var fillAgainst = document.getElementById("fill-against");
  var leftLabel = document.getElementById("left-label");
  var rightLabel = document.getElementById("right-label");
  var indicator = document.getElementById("status-indicator");
  // Shown while the streamer's Twitch authorization is gone (status "disconnected").
  var authNotice = document.getElementById("auth-notice");
  // Shown for good once the server says this overlay URL no longer exists.
  var goneNotice = document.getElementById("gone-notice");

  var overlayId = body.dataset.overlayId || "";
  var url = (location.protocol === "https:" ? "wss://" : "ws://") +
    location.host + "/ws/overlay/" + encodeURIComponent(overlayId);

  var value = 0;
  var status = "";
  var open = false;       // socket is open
  var fresh = false;      // ...and has delivered a valid frame since opening
  var everClosed = false; // don't flash the indicator during the very first connect
  var attempt = 0;        // consecutive attempts without a healthy connection

  function render() {
    // Translate percentages refer to the marker's own box, so convert to px;
    // snap to device pixels so the resting marker is never blurry.
    var dpr = window.devicePixelRatio || 1;
    var px = Math.round((value / 200) * track.clientWidth * dpr) / dpr;
    marker.style.transform = "translateX(" + px + "px)";
    fillFor.style.transform = "scaleX(" + Math.max(value, 0) / 100 + ")";
    fillAgainst.style.transform = "scaleX(" + Math.max(-value, 0) / 100 + ")";
    bar.dataset.side = value > 0 ? "for" : value < 0 ? "against" : "neutral";
    bar.dataset.value = String(value);
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
    value = Math.max(-100, Math.min(100, msg.value));
    if (typeof msg.status === "string") {
      status = msg.status;
      bar.dataset.status = status;
    }
    if (typeof msg.left_label === "string") leftLabel.textContent = msg.left_label;
    if (typeof msg.right_label === "string") rightLabel.textContent = msg.right_label;
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

    ws.onopen = function () {
      open = true;
      renderConnection();
    };

    ws.onmessage = function (ev) {
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
      open = fresh = false;
      everClosed = true;
      // 4404 = this overlay URL was replaced or removed: retrying cannot help.
      if (ev.code === 4404) {
        indicator.hidden = authNotice.hidden = true;
        goneNotice.hidden = false;
        body.dataset.connection = "gone";
        return;
      }
      // 1001 = server going away (restart/deploy): retry promptly.
      if (ev.code === 1001) attempt = 0;
      renderConnection();
      scheduleReconnect();
    };
  }

  // Keep the marker's px offset in step with the track width (source resized).
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(render).observe(track);
  } else {
    window.addEventListener("resize", render);
  }

  render();
  renderConnection();
  connect();
})();
