// Organiser pages: create a study from a puzzle-set file, add participants, set time limits, live progress.
// Names are inserted with textContent only, never as HTML.
(function () {
  "use strict";
  var msg = document.getElementById("message");
  var dataEl = document.getElementById("study-data");
  var data = dataEl ? JSON.parse(dataEl.textContent) : {};

  function say(text, kind) { if (msg) { msg.textContent = text; msg.className = "message " + (kind || ""); } }
  function call(method, url, body) {
    return fetch(url, {
      method: method, credentials: "same-origin",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) { return { ok: r.ok, status: r.status, body: b }; });
    });
  }
  function limit(id) {
    var el = document.getElementById(id);
    if (!el || el.value === "") return null;
    return Number(el.value) * 60;
  }
  function limits() { return { phase1: limit("limit-1"), phase2: limit("limit-2"), phase3: limit("limit-3") }; }
  function list(id) {
    var el = document.getElementById(id);
    return el.value.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
  }

  var create = document.getElementById("create-study");
  if (create) {
    create.addEventListener("submit", function (e) {
      e.preventDefault();
      var file = document.getElementById("study-file").files[0];
      if (!file) { say("Choose a puzzle-set file.", "error"); return; }
      var reader = new FileReader();
      reader.onload = function () {
        var set;
        try { set = JSON.parse(reader.result); } catch (err) { say("The file is not JSON: " + err.message, "error"); return; }
        call("POST", "/api/admin/studies", { name: document.getElementById("study-name").value, puzzle_set: set, limits: limits() })
          .then(function (r) {
            if (r.ok) { location.href = "/admin/studies/" + r.body.id; } else { say(r.body.detail || "error " + r.status, "error"); }
          });
      };
      reader.readAsText(file);
    });
  }

  var add = document.getElementById("add-participant");
  if (add) {
    add.addEventListener("submit", function (e) {
      e.preventDefault();
      var mode = add.querySelector("input[name=mode]:checked").value;
      var body = { name: document.getElementById("p-name").value, mode: mode };
      var seed = document.getElementById("p-seed").value;
      if (seed !== "") body.seed = Number(seed);
      if (mode === "explicit") { body.taught = list("p-taught"); body.control = list("p-control"); }
      call("POST", "/api/admin/studies/" + data.study_id + "/participants", body).then(function (r) {
        if (r.ok) {
          say("Added " + r.body.name + ": send them " + r.body.link, "ok");
          document.getElementById("p-name").value = "";
          refresh();
        } else { say(r.body.detail || "error " + r.status, "error"); }
      });
    });
  }

  var limitsForm = document.getElementById("limits");
  if (limitsForm) {
    limitsForm.addEventListener("submit", function (e) {
      e.preventDefault();
      call("PUT", "/api/admin/studies/" + data.study_id + "/limits", limits()).then(function (r) {
        say(r.ok ? "Time limits saved." : (r.body.detail || "error " + r.status), r.ok ? "ok" : "error");
      });
    });
  }

  function cell(tr, text) { var td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; }
  function ago(s) {
    if (s === null || s === undefined) return "—";
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    return (s / 3600).toFixed(1) + " h ago";
  }
  function refresh() {
    var body = document.getElementById("progress-body");
    if (!body || !data.study_id) return;
    call("GET", "/api/admin/studies/" + data.study_id + "/progress").then(function (r) {
      if (!r.ok) return;
      var rows = document.createDocumentFragment();
      r.body.forEach(function (p) {
        var tr = document.createElement("tr");
        var td = document.createElement("td");
        var a = document.createElement("a");
        a.href = "/admin/studies/" + data.study_id + "/participants/" + p.id;
        a.textContent = p.name;
        td.appendChild(a); tr.appendChild(td);
        cell(tr, String(p.phase) + (p.phase !== "done" && !p.started ? " (not started)" : ""));
        ["1", "2", "3"].forEach(function (k) { cell(tr, p.counts[k].done + "/" + p.counts[k].total); });
        cell(tr, p.seconds_left === null ? "—" : Math.floor(p.seconds_left / 60) + " min");
        cell(tr, ago(p.last_activity_s_ago));
        cell(tr, p.taught.join(", "));
        cell(tr, p.control.join(", "));
        var linkTd = document.createElement("td");
        var input = document.createElement("input");
        input.className = "link-box"; input.readOnly = true; input.value = p.link;
        input.setAttribute("aria-label", "Personal link of " + p.name);
        linkTd.appendChild(input); tr.appendChild(linkTd);
        rows.appendChild(tr);
      });
      body.replaceChildren(rows);
    });
  }
  if (document.getElementById("progress-body")) { refresh(); setInterval(refresh, 3000); }
})();
