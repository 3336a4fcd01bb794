// The copy button of the one-time secret page: the only script in iblueprint.
// Without it the secret is still a readonly field that can be selected and copied.
(function () {
  "use strict";
  var buttons = document.querySelectorAll("[data-copy-target]");
  Array.prototype.forEach.call(buttons, function (button) {
    var field = document.getElementById(button.getAttribute("data-copy-target"));
    var status = document.getElementById("copy-status");
    if (!field) return;
    button.hidden = false;
    field.addEventListener("focus", function () { field.select(); });
    var done = function (ok) {
      button.textContent = ok ? "Copied" : "Copy";
      if (status) status.textContent = ok ? "Copied to the clipboard." : "Could not copy: select the secret and copy it by hand.";
      if (ok) window.setTimeout(function () { button.textContent = "Copy"; }, 2000);
    };
    button.addEventListener("click", function () {
      field.focus();
      field.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(function () { done(true); }, function () {
          done(document.execCommand && document.execCommand("copy"));
        });
      } else {
        done(document.execCommand && document.execCommand("copy"));
      }
    });
  });
})();
