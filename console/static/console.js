// Chaperone console: small conveniences only; every page works without
// this script.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Print buttons.
  document.querySelectorAll("[data-print]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () { window.print(); });
  });
  // Move focus to an error or notice so screen readers announce it.
  var msg = document.querySelector(".error, .notice");
  if (msg) { msg.setAttribute("tabindex", "-1"); }
});
