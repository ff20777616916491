// Participant pages: start a phase, play a move (click, drag or text), pass, step through the machine's line.
// No framework, no network access beyond this server. The server checks everything again; this only helps.
(function () {
  "use strict";
  var dataEl = document.getElementById("study-data");
  if (!dataEl) return;
  var data = JSON.parse(dataEl.textContent);
  var msg = document.getElementById("message");
  var shownAt = Date.now();
  var busy = false;

  function say(text, kind) {
    if (!msg) return;
    msg.textContent = text;
    msg.className = "message " + (kind || "");
  }

  function post(path, body) {
    return fetch("/api/p/" + encodeURIComponent(data.token) + "/" + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) { return { ok: r.ok, status: r.status, body: b }; });
    }, function () { return { ok: false, status: 0, body: { detail: "the server cannot be reached; try again" } }; });
  }

  // -- phase clock -------------------------------------------------------------------------------------------
  var timer = document.getElementById("timer");
  if (timer && data.seconds_left !== null && data.seconds_left !== undefined && data.mode !== "intro") {
    var deadline = Date.now() + data.seconds_left * 1000;
    var tick = function () {
      var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      var m = Math.floor(left / 60), s = left % 60;
      timer.textContent = "Time left " + m + ":" + (s < 10 ? "0" : "") + s;
      if (left <= 0) { clearInterval(handle); setTimeout(function () { location.reload(); }, 1000); }
    };
    var handle = setInterval(tick, 1000);
    tick();
  }

  // -- intro: start the phase ------------------------------------------------------------------------------------
  var start = document.getElementById("start");
  if (start) {
    start.addEventListener("click", function () {
      start.disabled = true;
      post("start", { phase: data.phase }).then(function (r) {
        if (r.ok) { location.reload(); } else { say(r.body.detail || "could not start", "error"); start.disabled = false; }
      });
    });
  }

  // -- solving -------------------------------------------------------------------------------------------------
  function answer(body) {
    if (busy) return;
    busy = true;
    body.puzzle_id = data.puzzle_id;
    body.phase = data.phase;
    body.think_ms = Date.now() - shownAt;
    var comment = document.getElementById("comment");
    if (comment && comment.value.trim()) body.comment = comment.value;
    say("Saving…");
    post("answer", body).then(function (r) {
      if (r.ok) {
        say("Answer saved.", "ok");
        setTimeout(function () { location.reload(); }, 150);  // long enough to see the confirmation
      } else {
        busy = false;
        say(r.body.detail || ("error " + r.status), "error");
        if (r.status === 409) setTimeout(function () { location.reload(); }, 2500);
      }
    });
  }

  if (data.mode === "solve") {
    var board = document.getElementById("board");
    var legal = data.legal || [];
    var selected = null;
    var promo = document.getElementById("promotion");
    var pendingPromotion = null;

    var squareOf = function (el) {
      if (!el || !el.classList) return null;
      for (var i = 0; i < el.classList.length; i++) {
        if (/^[a-h][1-8]$/.test(el.classList[i])) return el.classList[i];
      }
      return null;
    };
    var rect = function (sq) { return board.querySelector("rect.square." + sq); };
    var clearMarks = function () {
      board.querySelectorAll("rect.selected, rect.target").forEach(function (r) { r.classList.remove("selected", "target"); });
    };
    var movesFrom = function (sq) { return legal.filter(function (m) { return m.slice(0, 2) === sq; }); };
    var select = function (sq) {
      clearMarks();
      selected = sq;
      if (!sq) return;
      var r = rect(sq);
      if (r) r.classList.add("selected");
      movesFrom(sq).forEach(function (m) { var t = rect(m.slice(2, 4)); if (t) t.classList.add("target"); });
    };
    var tryMove = function (from, to) {
      var candidates = legal.filter(function (m) { return m.slice(0, 4) === from + to; });
      if (candidates.length === 0) return false;
      if (candidates.length > 1) {  // a promotion: ask which piece
        pendingPromotion = from + to;
        promo.hidden = false;
        var first = promo.querySelector("button");
        if (first) first.focus();
        return true;
      }
      select(null);
      answer({ move: candidates[0], method: "board" });
      return true;
    };
    var at = function (e) { return squareOf(document.elementFromPoint(e.clientX, e.clientY)); };
    // A move is made on pointer *up*: click the piece then the target (two clicks), or drag it there.
    var isMove = function (from, to) { return legal.some(function (m) { return m.slice(0, 4) === from + to; }); };
    var downSquare = null, deselectOnUp = false;
    board.addEventListener("pointerdown", function (e) {
      var sq = squareOf(e.target) || at(e);
      if (!sq || busy) return;
      e.preventDefault();
      downSquare = sq;
      deselectOnUp = false;
      if (selected && sq !== selected && isMove(selected, sq)) return;  // the target: act on release
      if (sq === selected) { deselectOnUp = true; return; }             // a second click on the piece lets it go
      select(movesFrom(sq).length ? sq : null);
    });
    board.addEventListener("pointerup", function (e) {
      var sq = at(e);
      var from = downSquare;
      downSquare = null;
      if (!from || !sq || busy) return;
      if (sq !== from) {                                                 // a drag
        if (selected === from && isMove(from, sq)) tryMove(from, sq);
        return;
      }
      if (selected && selected !== sq && isMove(selected, sq)) { tryMove(selected, sq); return; }
      if (deselectOnUp) select(null);
    });
    if (promo) {
      promo.addEventListener("click", function (e) {
        var piece = e.target && e.target.getAttribute("data-piece");
        if (!piece || !pendingPromotion) return;
        promo.hidden = true;
        var uci = pendingPromotion + piece;
        pendingPromotion = null;
        select(null);
        answer({ move: uci, method: "board" });
      });
    }
    var form = document.getElementById("move-form");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var text = document.getElementById("move-text").value.trim();
      if (!text) { say("Type a move first, e.g. Nf3 or g1f3.", "error"); return; }
      answer({ move: text, method: "text" });
    });
    document.getElementById("pass").addEventListener("click", function () {
      answer({ move: null, method: "pass" });
    });
    var input = document.getElementById("move-text");
    if (input) input.focus();
  }

  // -- review --------------------------------------------------------------------------------------------------
  if (data.mode === "review") {
    var plyBoard = document.getElementById("board");
    var label = document.getElementById("ply-label");
    var buttons = document.querySelectorAll("#line button.ply");
    var ply = 0, maxSeen = 0, last = data.plies;
    var show = function (k) {
      ply = Math.max(0, Math.min(last, k));
      maxSeen = Math.max(maxSeen, ply);
      var tpl = document.getElementById("ply-" + ply);
      plyBoard.innerHTML = "";
      plyBoard.appendChild(tpl.content.cloneNode(true));
      buttons.forEach(function (b) { b.classList.toggle("current", Number(b.getAttribute("data-ply")) === ply); });
      label.textContent = ply === 0 ? "start" : "move " + ply + " of " + last;
      plyBoard.setAttribute("data-ply", String(ply));
    };
    document.getElementById("first").addEventListener("click", function () { show(0); });
    document.getElementById("prev").addEventListener("click", function () { show(ply - 1); });
    document.getElementById("next").addEventListener("click", function () { show(ply + 1); });
    document.getElementById("last").addEventListener("click", function () { show(last); });
    buttons.forEach(function (b) { b.addEventListener("click", function () { show(Number(b.getAttribute("data-ply"))); }); });
    document.addEventListener("keydown", function (e) {
      if (e.target && (e.target.tagName === "INPUT" || e.target.tagName === "TEXTAREA")) return;
      if (e.key === "ArrowRight") { show(ply + 1); e.preventDefault(); }
      if (e.key === "ArrowLeft") { show(ply - 1); e.preventDefault(); }
      if (e.key === "Home") { show(0); e.preventDefault(); }
      if (e.key === "End") { show(last); e.preventDefault(); }
    });
    var nextPuzzle = document.getElementById("next-puzzle");
    nextPuzzle.addEventListener("click", function () {
      if (busy) return;
      busy = true;
      nextPuzzle.disabled = true;
      post("review", { puzzle_id: data.puzzle_id, plies_viewed: maxSeen, phase: 2 }).then(function (r) {
        if (r.ok) { location.reload(); } else {
          busy = false; nextPuzzle.disabled = false; say(r.body.detail || ("error " + r.status), "error");
        }
      });
    });
    show(0);
  }
})();
