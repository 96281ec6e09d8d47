// The console's only script: the overview refreshes itself, and forms marked
// data-confirm ask first. Everything it inserts was rendered (and escaped) by the server.
(function () {
  "use strict";
  var dialog, pending = null;

  function refresh(region) {
    if (document.hidden || (dialog && dialog.open)) return;
    fetch(region.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) { if (html !== null) region.innerHTML = html; })
      .catch(function () { region.classList.add("stale"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    dialog = document.getElementById("confirm");
    document.querySelectorAll("[data-live]").forEach(function (region) {
      window.setInterval(function () { refresh(region); }, Number(region.dataset.every) || 5000);
    });
    if (dialog) {
      dialog.addEventListener("close", function () {
        var form = pending;
        pending = null;
        if (form && dialog.returnValue === "ok") form.submit();  // submit() skips the handler below
      });
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.dataset || !form.dataset.confirm || !dialog) return;
    event.preventDefault();
    pending = form;
    document.getElementById("confirm-message").textContent = form.dataset.confirm;
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
})();
