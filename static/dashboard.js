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

  setUpCopy();
  setUpRotate();
  setUpDecay();
  focusFirstInvalid();
})();
