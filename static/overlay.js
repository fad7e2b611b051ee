// ChatPulse overlay client: listens on a WebSocket for {"value", "status"}
// frames and moves the tug-of-war marker (draw). A frame describes the bar's
// trajectory until the next one: its value at the server time `at` (ms) and
// the decay rate `decay` (per second; for the balance model its decaying
// counts `weights` and `prior`), so the page animates the decay itself at
// display rate (requestAnimationFrame) while the server sends frames only
// when the trajectory changes (and a keyframe now and then). With
// prefers-reduced-motion the bar does not glide: it steps at most once a
// second. It sends only "ping" now and then: a bar at rest gets no frames
// and a browser cannot see the server's WebSocket pings, so the answer (the
// last frame again) is how the page tells a live socket from a stale one.
// The look — layout, colours, labels, hint — is overlay-look.js's
// (window.ChatPulseLook).
(function () {
  "use strict";

  var BACKOFF_START_MS = 500;
  var BACKOFF_MAX_MS = 30000;
  var JITTER = 0.2; // ±20 %
  var look = window.ChatPulseLook || {
    apply: function () {}, labels: function () {}, voters: function () {}, drew: function () {},
    onLayout: function () {}, vertical: function () { return false; },
    reducedMotion: function () { return false; },
  };
  // After an hour without votes a bar is back at the centre (the server's rule).
  var RESET_AFTER_MS = 3600000;
  // A jump to a new trajectory (a vote) glides this long.
  var GLIDE_MS = 250;
  // Reduced motion: the decay is drawn in steps this far apart.
  var STEP_MS = 1000;

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

  var value = 0;          // the value drawn last
  var status = "";
  // The trajectory of the last frame: value at server time `at`, decay rate
  // `k`, and for the balance model the counts and prior.
  var path = { value: 0, at: 0, k: 0, weights: null, prior: 0 };
  // Local clock minus server clock: the smallest difference seen, first
  // the page's own time of rendering, then each frame's `at` (delays only
  // ever add to it, and a repeated old frame does not lower it).
  var served = parseInt(body.dataset.serverMs, 10);
  var skew = served > 0 ? Date.now() - served : null;
  // A glide from the value shown when a new trajectory arrived.
  var glide = null;
  var animating = false;
  var lastStep = 0;
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

  function clamp(v) {
    return Math.max(-100, Math.min(100, v));
  }

  // The trajectory's value at local time `now` (ms since the epoch).
  function pathValue(now) {
    if (!(path.k > 0) || !path.at) return path.value;
    var elapsed = Math.max(0, now - (skew || 0) - path.at);
    if (elapsed > RESET_AFTER_MS) return 0;
    var f = Math.exp(-path.k * elapsed / 1000);
    if (path.weights) {
      var w0 = path.weights[0] * f, w1 = path.weights[1] * f;
      return clamp(100 * (w0 - w1) / (w0 + w1 + path.prior));
    }
    return path.value * f;
  }

  // What to draw at `now`: the trajectory, eased in from where the bar was.
  function target(now, t) {
    var v = pathValue(now);
    if (glide) {
      var p = (t - glide.start) / GLIDE_MS;
      if (p >= 1) {
        glide = null;
      } else {
        var ease = 1 - Math.pow(1 - p, 3);
        v += glide.offset * (1 - ease);
      }
    }
    return v;
  }

  function render() {
    draw(value);
  }

  // Draws the bar for now and keeps animating while it moves.
  function frame(t) {
    animating = false;
    var now = Date.now();
    value = target(now, t);
    draw(value);
    // Still moving: the decay is not yet below what a pixel shows.
    var moving = glide || (path.k > 0 && Math.abs(value) >= 0.005);
    if (moving) schedule();
  }

  function schedule() {
    if (animating) return;
    animating = true;
    if (look.reducedMotion()) {
      // No gliding: one step a second.
      glide = null;
      var wait = Math.max(0, STEP_MS - (Date.now() - lastStep));
      setTimeout(function () {
        lastStep = Date.now();
        frame(performance.now());
      }, wait);
      return;
    }
    window.requestAnimationFrame(frame);
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
    var now = Date.now();
    var before = value;
    follow(msg, now);
    if (typeof msg.status === "string") {
      status = msg.status;
      bar.dataset.status = status;
    }
    if (msg.look) look.apply(msg.look);
    look.labels(msg.left_label, msg.right_label);
    look.voters(msg.voters);
    var next = pathValue(now);
    // A visible jump glides (a vote); a keyframe on the same path does not.
    glide = Math.abs(next - before) > 0.5 && !look.reducedMotion()
      ? { start: performance.now(), offset: before - next } : null;
    value = target(now, performance.now());
    draw(value);
    lastStep = now;
    schedule();
    renderConnection();
  }

  // Takes the frame's trajectory. A frame without `at`/`decay` (an older
  // server) is a still value.
  function follow(msg, now) {
    var at = typeof msg.at === "number" && isFinite(msg.at) ? msg.at : 0;
    var k = typeof msg.decay === "number" && isFinite(msg.decay) && msg.decay > 0 ? msg.decay : 0;
    if (at) skew = skew === null ? now - at : Math.min(skew, now - at);
    var weights = null;
    if (msg.model === "balance" && Array.isArray(msg.weights) && msg.weights.length === 2 &&
        isFinite(msg.weights[0]) && isFinite(msg.weights[1]) && typeof msg.prior === "number") {
      weights = [Math.max(0, msg.weights[0]), Math.max(0, msg.weights[1])];
    }
    path = { value: clamp(msg.value), at: at, k: at ? k : 0, weights: weights, prior: msg.prior || 0 };
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
