// Keyboard shortcuts for the rating page. Loaded as a static file (the CSP forbids inline scripts).
// 1/0: reasoning correct/wrong; y/n: answer correct/wrong; c: comment; Enter: save & next;
// ArrowLeft/ArrowRight: previous/next item without saving; Esc: leave the comment box.
(function () {
  "use strict";
  var form = document.getElementById("rating-form");
  if (!form) return;
  var comment = document.getElementById("comment");
  var errorBox = document.getElementById("error");
  var saveButton = document.getElementById("save");
  var submitting = false;

  function choose(name, value) {
    var input = form.querySelector('input[name="' + name + '"][value="' + value + '"]');
    if (input) {
      input.checked = true;
      if (errorBox) errorBox.hidden = true;
    }
  }

  function go(id) {
    var link = document.getElementById(id);
    if (link) window.location.href = link.href;
  }

  function missing() {
    var names = [];
    if (!form.querySelector('input[name="reasoning_score"]:checked')) names.push("reasoning (1/0)");
    if (!form.querySelector('input[name="prediction_score"]:checked')) names.push("answer (y/n)");
    return names;
  }

  form.addEventListener("submit", function (event) {
    var absent = missing();
    if (absent.length) {
      event.preventDefault();
      if (errorBox) {
        errorBox.textContent = "Please rate the " + absent.join(" and ") + " before saving.";
        errorBox.hidden = false;
      }
      return;
    }
    if (submitting) {  // a second Enter/click while the first save is in flight
      event.preventDefault();
      return;
    }
    submitting = true;
    saveButton.disabled = true;
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    var target = event.target;
    var typing = target && (target.tagName === "TEXTAREA" ||
      (target.tagName === "INPUT" && target.type === "text"));
    if (typing) {
      if (event.key === "Escape") target.blur();
      if (event.key === "Enter") {
        event.preventDefault();
        form.requestSubmit();
      }
      return;
    }
    switch (event.key) {
      case "1": choose("reasoning_score", "1"); break;
      case "0": choose("reasoning_score", "0"); break;
      case "y": case "Y": choose("prediction_score", "1"); break;
      case "n": case "N": choose("prediction_score", "0"); break;
      case "c": case "C": comment.focus(); break;
      case "Enter": form.requestSubmit(); break;
      case "ArrowLeft": go("prev"); break;
      case "ArrowRight": go("next"); break;
      default: return;
    }
    event.preventDefault();
  });
})();
