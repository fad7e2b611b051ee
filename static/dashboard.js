// ChatPulse dashboard enhancements. Everything here is optional: every form
// on the page works without JavaScript.
(function () {
  "use strict";

  // ---- Copy the overlay URL ------------------------------------------------
  function setUpCopy() {
    var button = document.getElementById("copy-overlay-url");
    var input = document.getElementById("overlay-url");
    var status = document.getElementById("copy-status");
    if (!button || !input) {
      return;
    }
    var idleText = button.textContent;
    var timer = null;

    function selectUrl() {
      input.focus();
      input.select();
      try {
        input.setSelectionRange(0, input.value.length);
      } catch (ignored) {
        // Some input types refuse selection ranges; select() already ran.
      }
    }

    function show(copied) {
      button.textContent = copied ? "Copied" : "Selected";
      button.classList.toggle("is-done", copied);
      if (status) {
        status.textContent = copied
          ? "Overlay URL copied to the clipboard."
          : "The URL is selected: press Ctrl+C (\u2318C on a Mac) to copy it.";
      }
      window.clearTimeout(timer);
      timer = window.setTimeout(function () {
        button.textContent = idleText;
        button.classList.remove("is-done");
        if (status) {
          status.textContent = "";
        }
      }, copied ? 2500 : 6000);
    }

    function fallback() {
      selectUrl();
      var copied = false;
      try {
        copied = document.execCommand("copy");
      } catch (ignored) {
        copied = false;
      }
      show(copied);
    }

    button.addEventListener("click", function () {
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(
          function () {
            show(true);
          },
          fallback
        );
      } else {
        fallback();
      }
    });

    // Clicking into the read-only field selects the whole URL.
    input.addEventListener("focus", function () {
      input.select();
    });

    button.hidden = false;
  }

  // ---- Confirm before rotating the overlay URL -------------------------------
  function setUpRotate() {
    var form = document.getElementById("rotate-form");
    if (!form) {
      return;
    }
    form.addEventListener("submit", function (event) {
      var ok = window.confirm(
        "Create a new overlay URL?\n\n" +
          "The current URL stops working immediately. You will need to paste " +
          "the new URL into your OBS Browser Source."
      );
      if (!ok) {
        event.preventDefault();
      }
    });
  }

  // ---- Live value of the decay slider ------------------------------------------
  function setUpDecay() {
    var range = document.getElementById("decay_speed");
    var output = document.getElementById("decay-value");
    if (!range || !output) {
      return;
    }
    function sync() {
      var value = parseFloat(range.value);
      output.value = isFinite(value) ? value.toFixed(1) : range.value;
      var min = parseFloat(range.min);
      var max = parseFloat(range.max);
      if (isFinite(value) && max > min) {
        // Filled part of the track (CSSOM is allowed by the CSP; inline styles are not).
        range.style.setProperty("--fill", ((value - min) / (max - min)) * 100 + "%");
      }
    }
    range.addEventListener("input", sync);
    range.addEventListener("change", sync);
    // Keep the server's text when it was rejected, so the error still makes sense.
    if (range.getAttribute("aria-invalid") !== "true") {
      sync();
    } else {
      var text = output.value;
      sync();
      output.value = text;
    }
  }

  // ---- After a failed save, take the streamer to the first problem -------------
  function focusFirstInvalid() {
    if (window.location.hash) {
      return;
    }
    var field = document.querySelector('.settings-form [aria-invalid="true"]');
    if (field) {
      field.focus();
    }
  }

  // ---- Text size slider: show the percentage ----------------------------------
  function setUpScale() {
    var range = document.getElementById("scale");
    var output = document.getElementById("scale-value");
    if (!range || !output) {
      return;
    }
    range.addEventListener("input", function () {
      output.value = range.value + " %";
    });
  }

  // ---- The colour-blind-safe preset fills both colour fields -----------------
  function setUpPreset() {
    var button = document.getElementById("colour-blind-preset");
    var forColour = document.getElementById("for_color");
    var againstColour = document.getElementById("against_color");
    if (!button || !forColour || !againstColour) {
      return;
    }
    button.addEventListener("click", function () {
      forColour.value = button.dataset.for;
      againstColour.value = button.dataset.against;
    });
    button.hidden = false;
  }

  // ---- "Is it working?": the status panel follows /dashboard/status ---------
  // The server words every fact (the same words it renders into the page);
  // this only puts the latest ones in place, every few seconds while the page
  // is visible.
  function setUpStatus() {
    var panel = document.getElementById("status");
    var facts = document.getElementById("status-facts");
    var diagnosis = document.getElementById("diagnosis");
    var message = document.getElementById("diagnosis-message");
    var fix = document.getElementById("diagnosis-fix");
    if (!panel || !facts || !diagnosis || !window.fetch) {
      return;
    }
    var url = panel.dataset.statusUrl;
    var EVERY_MS = 3000;

    function show(status) {
      if (!status || !status.diagnosis || !Array.isArray(status.lines)) {
        return;
      }
      message.textContent = status.diagnosis.message;
      fix.textContent = status.diagnosis.fix;
      fix.hidden = !status.diagnosis.fix;
      diagnosis.classList.toggle("diagnosis-problem", !!status.diagnosis.problem);
      diagnosis.classList.toggle("diagnosis-ok", !status.diagnosis.problem);
      diagnosis.dataset.code = status.diagnosis.code;
      var rows = status.lines.map(function (line) {
        var row = document.createElement("div");
        row.className = "status-fact";
        var dt = document.createElement("dt");
        dt.textContent = line.label;
        var dd = document.createElement("dd");
        dd.textContent = line.text;
        row.appendChild(dt);
        row.appendChild(dd);
        return row;
      });
      facts.replaceChildren.apply(facts, rows);
    }

    function poll() {
      if (document.hidden) {
        return;
      }
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          return r.ok ? r.json() : null;
        })
        .then(show, function () {});
    }

    window.setInterval(poll, EVERY_MS);
    document.addEventListener("visibilitychange", poll);
    poll();
  }

  setUpCopy();
  setUpRotate();
  setUpDecay();
  setUpScale();
  setUpPreset();
  setUpStatus();
  focusFirstInvalid();
})();
