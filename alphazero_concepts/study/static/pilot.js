// Organiser's pilot page: start a pilot on simulated players, then follow its progress until it is done.
// Text is inserted with textContent only, never as HTML.
(function () {
  "use strict";
  var msg = document.getElementById("message");
  var dataEl = document.getElementById("study-data");
  var data = dataEl ? JSON.parse(dataEl.textContent) : {};
  var url = "/api/admin/studies/" + data.study_id + "/pilot";

  function say(text, kind) { if (msg) { msg.textContent = text; msg.className = "message " + (kind || ""); } }
  function poll() {
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (b) {
      if (b.status === "running") {
        var p = b.progress || {};
        say("Running: " + (p.done || 0) + "/" + (p.total || "?") + " simulated participants (" + (p.stage || "") + ")…");
        setTimeout(poll, 3000);
      } else if (b.status === "done") {
        location.reload();
      } else if (b.status === "failed") {
        say("The pilot failed: " + (b.error || "unknown error"), "error");
      }
    });
  }
  var form = document.getElementById("run-pilot");
  if (form) {
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var students = Array.prototype.slice.call(form.querySelectorAll("input[name=student]:checked"))
        .map(function (el) { return el.value; });
      if (!students.length) { say("Choose at least one student.", "error"); return; }
      var body = { students: students, quick: document.getElementById("pilot-quick").checked,
                   sts: document.getElementById("pilot-sts").checked,
                   nodes: Number(document.getElementById("pilot-nodes").value || 0) };
      fetch(url, { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
                   body: JSON.stringify(body) })
        .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, status: r.status, body: b }; }); })
        .then(function (r) {
          if (r.ok) { say("Started."); setTimeout(poll, 1000); } else { say(r.body.detail || "error " + r.status, "error"); }
        });
    });
  }
  if (msg && msg.textContent.indexOf("Running") === 0) { setTimeout(poll, 3000); }
})();
