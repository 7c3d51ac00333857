// The list's filters apply as soon as a value is picked with the mouse or a finger. With the keyboard, arrow
// keys step through the values, so the list waits for Enter or the Show button.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("filters");
  if (!form) { return; }
  var byKeyboard = false;
  form.addEventListener("keydown", function () { byKeyboard = true; });
  form.addEventListener("pointerdown", function () { byKeyboard = false; });
  form.addEventListener("change", function (event) {
    if (!byKeyboard && event.target.tagName === "SELECT") { form.submit(); }
  });
});
