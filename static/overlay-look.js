// ChatPulse overlay look: applies the streamer's look (layout, colours, text
// size and weight, labels, hint, participation, celebration) from the page's
// data-look and from frames' `look` objects, and fits long labels by drawing
// them smaller. overlay.js (the connection and the value) calls in through
// window.ChatPulseLook. The Content-Security-Policy allows no inline style:
// everything is set through the CSSOM.
(function () {
  "use strict";

  var HOLD_MS = 3000; // a side beyond 80 this long is celebrated...
  var CELEBRATE_MS = 2400; // ...for this long,
  var REARM_BELOW = 60; // and again only after the bar came back below this.
  var MIN_LABEL_SCALE = 0.3; // a long label shrinks to this, then is cut

  var root = document.documentElement;
  var body = document.body;
  var bar = document.getElementById("bar");
  var leftLabel = document.getElementById("left-label");
  var rightLabel = document.getElementById("right-label");
  var hintFor = document.getElementById("hint-for");
  var hintAgainst = document.getElementById("hint-against");
  var votersEl = document.getElementById("voters");
  var reducedMotion = window.matchMedia ? window.matchMedia("(prefers-reduced-motion: reduce)") : null;

  var look = null;
  var listeners = [];
  var held = { side: null, since: 0, done: false };
  var celebrationTimer = null;
  var holdTimer = null;

  function rgb(hex) {
    var m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex || "");
    return m ? [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)] : null;
  }

  function css(channels, alpha) {
    return "rgba(" + channels.join(", ") + ", " + alpha + ")";
  }

  function deeper(channels) {
    return channels.map(function (c) { return Math.round(c * 0.7); });
  }

  function setColour(name, hex) {
    var c = rgb(hex);
    if (!c) return;
    root.style.setProperty("--" + name, hex);
    root.style.setProperty("--" + name + "-deep", css(deeper(c), 1));
    root.style.setProperty("--" + name + "-soft", css(c, 0.28));
  }

  // Shrinks a label's text until it fits its box (down to MIN_LABEL_SCALE;
  // beyond that the stylesheet's ellipsis cuts it).
  function fit(label) {
    if (!label) return;
    label.style.fontSize = "";
    var style = window.getComputedStyle(label);
    var available = label.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    var text = textWidth(label);
    // A pixel of slack: sub-pixel rounding is not a label that overflows.
    if (!(available > 0) || text <= available + 1) return;
    var scale = Math.max(MIN_LABEL_SCALE, available / text);
    // A hair smaller than exact, so rounding never leaves the last letter cut.
    label.style.fontSize = (parseFloat(style.fontSize) * scale * 0.98).toFixed(2) + "px";
  }

  // The width of a label's text as laid out, however much of it shows.
  function textWidth(label) {
    var range = document.createRange();
    range.selectNodeContents(label);
    return range.getBoundingClientRect().width;
  }

  function fitLabels() {
    fit(leftLabel);
    fit(rightLabel);
  }

  function apply(next) {
    if (!next || typeof next !== "object") return;
    look = next;
    var layout = next.layout === "vertical" ? "vertical" : "horizontal";
    var changed = bar.dataset.layout !== layout;
    bar.dataset.layout = layout;
    body.dataset.layout = layout;
    setColour("for", next.for_color);
    setColour("against", next.against_color);
    if (typeof next.scale === "number") root.style.setProperty("--text-scale", String(next.scale / 100));
    if (typeof next.font_weight === "number") root.style.setProperty("--label-weight", String(next.font_weight));
    bar.classList.toggle("no-labels", next.show_labels === false);
    if (typeof next.hint_for === "string") hintFor.textContent = next.hint_for;
    if (typeof next.hint_against === "string") hintAgainst.textContent = next.hint_against;
    hintFor.hidden = hintAgainst.hidden = next.show_hint !== true;
    votersEl.hidden = next.show_voters !== true || votersEl.textContent === "";
    if (!next.celebrate) stopCelebrating();
    fitLabels();
    if (changed) listeners.forEach(function (f) { f(); });
  }

  function labels(left, right) {
    if (typeof left === "string") leftLabel.textContent = left;
    if (typeof right === "string") rightLabel.textContent = right;
    fitLabels();
  }

  function voters(n) {
    if (typeof n !== "number" || !isFinite(n)) return;
    votersEl.textContent = n === 1 ? "1 voter" : n + " voting";
    votersEl.hidden = !(look && look.show_voters === true);
  }

  function stopCelebrating() {
    window.clearTimeout(celebrationTimer);
    bar.classList.remove("celebrating", "celebrating-for", "celebrating-against");
  }

  function celebrate(side) {
    stopCelebrating();
    // Reduced motion: the stylesheet shows a still highlight instead.
    bar.classList.add("celebrating", "celebrating-" + side);
    celebrationTimer = window.setTimeout(stopCelebrating, CELEBRATE_MS);
  }

  // Called with every value drawn: a side held beyond 80 for HOLD_MS is
  // celebrated once, until the bar comes back below REARM_BELOW.
  function drew(value) {
    var side = value > 80 ? "for" : value < -80 ? "against" : null;
    var now = Date.now();
    if (Math.abs(value) < REARM_BELOW || (side && side !== held.side)) {
      held = { side: side, since: now, done: false };
      window.clearTimeout(holdTimer);
      if (side) holdTimer = window.setTimeout(function () { drew(value); }, HOLD_MS);
      return;
    }
    if (!side || held.done || !look || !look.celebrate) return;
    if (now - held.since >= HOLD_MS) {
      held.done = true;
      celebrate(side);
    }
  }

  function parseLook() {
    try {
      return JSON.parse(body.dataset.look || "null");
    } catch (e) {
      return null;
    }
  }

  window.ChatPulseLook = {
    apply: apply,
    labels: labels,
    voters: voters,
    drew: drew,
    // Tells `f` when the layout changes (the value must be drawn again).
    onLayout: function (f) { listeners.push(f); },
    vertical: function () { return bar.dataset.layout === "vertical"; },
    reducedMotion: function () { return !!(reducedMotion && reducedMotion.matches); },
  };

  apply(parseLook());
  window.addEventListener("resize", fitLabels);
  if (document.fonts && document.fonts.ready) document.fonts.ready.then(fitLabels);
})();
