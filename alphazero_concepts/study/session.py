"""A participant's session: where they are, and what they may do there. Each call is one SQLite transaction.

State lives only in the database, so a closed browser (or a restarted server) resumes exactly where the
participant was: the current phase is ``participants.phase``; a phase has started when it has a row in
``phase_runs``; the current puzzle is the first one of the phase's stored order without an answer (phases 1 and
3) or a review (phase 2). A phase ends when every puzzle is done or its time limit has passed; the next phase
waits on an intro page until the participant presses Start, which starts its clock.

Rules enforced here (the HTTP layer only maps `StudyError.status` to the response):

* an answer is accepted only for a puzzle of the participant's current, started phase (403 for a puzzle that is
  not in it, 409 for a phase that is closed, not started or over time);
* moves are parsed with python-chess against the puzzle position, as UCI or SAN; anything else is a 422 that
  says why, and nothing is stored;
* retries are idempotent: the same answer again returns the stored one (``duplicate: true``); a different move
  for an answered puzzle is a 409 (answers are final);
* thinking time is measured twice: by the page (from display to answer, restarting on reload) and by the server
  (from the first time the puzzle was served to the answer, across reloads).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import chess

from alphazero_concepts.core.puzzleset import Puzzle
from alphazero_concepts.study.store import Participant, Store

__all__ = ["PhaseState", "StudyError", "ensure_started", "parse_move", "participant_view", "refresh_study",
           "submit_answer", "submit_review"]

SOLVE_PHASES = (1, 3)
DONE = 4


class StudyError(Exception):
    """A refused request: `status` is the HTTP status, `message` a sentence for the person who sent it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PhaseState:
    """Where a participant is. ``phase`` is 1–3, or 4 when the session is over."""

    phase: int
    started_at: float | None
    limit: float | None
    items: tuple[str, ...]
    done: frozenset[str]

    @property
    def finished(self) -> bool:
        return self.phase == DONE

    @property
    def started(self) -> bool:
        return self.started_at is not None

    @property
    def current(self) -> str | None:
        return next((i for i in self.items if i not in self.done), None)

    def seconds_left(self, now: float) -> float | None:
        if self.started_at is None or self.limit is None:
            return None
        return max(0.0, self.started_at + self.limit - now)

    def summary(self, now: float) -> dict[str, Any]:
        return {"phase": "done" if self.finished else self.phase, "started": self.started,
                "done": len(self.done & set(self.items)), "total": len(self.items), "current": self.current,
                "seconds_left": self.seconds_left(now), "limit_s": self.limit}


def _end_phase(conn: sqlite3.Connection, participant_id: int, phase: int, now: float, reason: str) -> None:
    conn.execute("UPDATE phase_runs SET ended_at = ?, end_reason = ? "
                 "WHERE participant_id = ? AND phase = ? AND ended_at IS NULL", (now, reason, participant_id, phase))
    conn.execute("UPDATE participants SET phase = ? WHERE id = ? AND phase = ?", (phase + 1, participant_id, phase))


def current_state(conn: sqlite3.Connection, participant_id: int, study_id: int, now: float) -> PhaseState:
    """The participant's state, closing phases whose time is up or whose puzzles are all done (writes)."""
    limits = Store.limits(conn, study_id)
    while True:
        phase = conn.execute("SELECT phase FROM participants WHERE id = ?", (participant_id,)).fetchone()[0]
        if phase >= DONE:
            return PhaseState(phase=DONE, started_at=None, limit=None, items=(), done=frozenset())
        items = tuple(Store.plan(conn, participant_id, phase))
        done = frozenset(Store.done_ids(conn, participant_id, phase))
        run = Store.phase_run(conn, participant_id, phase)
        limit = limits[phase]
        if run is None:
            return PhaseState(phase=phase, started_at=None, limit=limit, items=items, done=done)
        if run["ended_at"] is None and limit is not None and now >= run["started_at"] + limit:
            _end_phase(conn, participant_id, phase, now, "time")
            continue
        if run["ended_at"] is not None or all(i in done for i in items):
            _end_phase(conn, participant_id, phase, now, "complete")
            continue
        return PhaseState(phase=phase, started_at=run["started_at"], limit=limit, items=items, done=done)


def refresh_study(store: Store, study_id: int) -> None:
    """Close every phase of the study whose time is up, also for participants who have gone away.

    Phases otherwise close lazily, on the participant's next request; the organiser's views (progress, results,
    exports) call this first so that a player who ran out of time and closed the browser counts as finished."""
    now = store.clock()
    with store.write() as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM participants WHERE study_id = ? AND phase < ?",
                                          (study_id, DONE))]
        for pid in ids:
            current_state(conn, pid, study_id, now)


def _participant(conn: sqlite3.Connection, token: str) -> Participant:
    participant = Store.participant_by_token(conn, token) if token else None
    if participant is None:
        raise StudyError(404, "unknown participant link: check the address you were given")
    return participant


def parse_move(board: chess.Board, text: str) -> chess.Move:
    """A legal move from UCI (``e2e4``, ``e7e8q``) or SAN (``Nf3``, ``O-O``, ``exd8=Q+``); `StudyError` 422 if not."""
    text = (text or "").strip()
    side = "White" if board.turn == chess.WHITE else "Black"
    if not text:
        raise StudyError(422, "no move given: enter a move such as Nf3 (SAN) or g1f3 (UCI)")
    if len(text) > 16:
        raise StudyError(422, f"{text[:16]!r}… is too long to be a move: enter e.g. Nf3 or g1f3")
    low = text.lower()
    looks_uci = len(low) in (4, 5) and low[0] in "abcdefgh" and low[1] in "12345678" \
        and low[2] in "abcdefgh" and low[3] in "12345678"
    move: chess.Move | None = None
    if looks_uci:
        try:
            move = board.parse_uci(low)
        except chess.InvalidMoveError as exc:
            raise StudyError(422, f"{text!r} is not a valid UCI move (e.g. g1f3, e7e8q)") from exc
        except chess.IllegalMoveError as exc:
            raise StudyError(422, f"{text} is not a legal move in this position ({side} to move)") from exc
    else:
        try:
            move = board.parse_san(text)
        except chess.AmbiguousMoveError as exc:
            raise StudyError(422, f"{text} is ambiguous here: add the file or rank (e.g. Nbd2), or use UCI") from exc
        except chess.IllegalMoveError as exc:
            raise StudyError(422, f"{text} is not a legal move in this position ({side} to move)") from exc
        except chess.InvalidMoveError as exc:
            raise StudyError(422, f"{text!r} is not a move: use SAN (e.g. Nf3, O-O, exd5) or UCI (e.g. g1f3)") \
                from exc
    if not move:
        raise StudyError(422, "a null move is not an answer")
    return move


@dataclass(frozen=True)
class ParticipantView:
    """What the participant's page shows now."""

    participant: Participant
    state: PhaseState
    puzzle: Puzzle | None
    own_answer: dict[str, Any] | None
    now: float


def participant_view(store: Store, token: str) -> ParticipantView:
    """The participant's current state and puzzle; records when the puzzle was first shown."""
    now = store.clock()
    with store.write() as conn:
        participant = _participant(conn, token)
        state = current_state(conn, participant.id, participant.study_id, now)
        puzzle = own = None
        if state.started and state.current is not None:
            puzzle = Store.puzzle(conn, participant.study_id, state.current)
            conn.execute("INSERT OR IGNORE INTO shown (participant_id, phase, puzzle_id, first_shown_at) "
                         "VALUES (?,?,?,?)", (participant.id, state.phase, state.current, now))
            if state.phase == 2:
                row = Store.answer(conn, participant.id, state.current, 1)
                own = None if row is None else {"move_uci": row["move_uci"], "move_san": row["move_san"],
                                                "correct": bool(row["correct"]), "method": row["method"]}
    return ParticipantView(participant=participant, state=state, puzzle=puzzle, own_answer=own, now=now)


def ensure_started(store: Store, token: str, phase: int) -> dict[str, Any]:
    """Start the clock of `phase` (the participant's current one). Idempotent."""
    now = store.clock()
    with store.write() as conn:
        participant = _participant(conn, token)
        state = current_state(conn, participant.id, participant.study_id, now)
        if state.finished:
            raise StudyError(409, "your session is complete: there is no phase left to start")
        if phase != state.phase:
            raise StudyError(409, f"you are in phase {state.phase}: phase {phase} cannot be started now")
        if not state.started:
            conn.execute("INSERT INTO phase_runs (participant_id, phase, started_at) VALUES (?,?,?)",
                         (participant.id, phase, now))
        state = current_state(conn, participant.id, participant.study_id, now)
        return {"ok": True, "state": state.summary(now)}


def _closed_message(conn: sqlite3.Connection, participant_id: int, wanted: int, state: PhaseState) -> str:
    run = Store.phase_run(conn, participant_id, wanted)
    if run is not None and run["end_reason"] == "time":
        return f"time is up for phase {wanted}: the answer was not recorded"
    if state.finished:
        return "your session is complete: no more answers are taken"
    if wanted < state.phase:
        return f"phase {wanted} is closed: you are in phase {state.phase}"
    return f"phase {wanted} has not begun: you are in phase {state.phase}"


def _answer_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {"puzzle_id": row["puzzle_id"], "phase": row["phase"], "move_uci": row["move_uci"],
            "move_san": row["move_san"], "method": row["method"], "answered_at": row["answered_at"]}


def submit_answer(store: Store, token: str, *, puzzle_id: str, move: str | None, method: str = "text",
                  phase: int | None = None, think_ms: int | None = None, comment: str | None = None) -> dict[str, Any]:
    """Check and store one answer (phases 1 and 3); committed before this returns.

    ``method`` is how it was entered: ``board``, ``text`` or ``pass`` (no move: the player gives up the puzzle,
    which counts as not solved). Correctness is stored but not returned: players get no feedback until phase 2.
    """
    now = store.clock()
    with store.write() as conn:
        participant = _participant(conn, token)
        state = current_state(conn, participant.id, participant.study_id, now)
        wanted = state.phase if phase is None else phase
        if wanted == 2:
            raise StudyError(409, "phase 2 is the review: answers are taken in phases 1 and 3 only")
        if wanted not in SOLVE_PHASES:
            raise StudyError(409 if state.finished else 422,
                             "your session is complete: no more answers are taken" if state.finished
                             else f"phase must be 1 or 3, got {wanted}")
        in_plan = puzzle_id in Store.plan(conn, participant.id, wanted)
        puzzle = Store.puzzle(conn, participant.study_id, puzzle_id) if in_plan else None
        if puzzle is None:
            raise StudyError(403, f"puzzle {puzzle_id!r} is not one of your phase-{wanted} puzzles")
        board = puzzle.board()
        parsed = None if method == "pass" else parse_move(board, move or "")
        existing = Store.answer(conn, participant.id, puzzle_id, wanted)
        if existing is not None:
            same = existing["move_uci"] == (parsed.uci() if parsed else None)
            if not same:
                given = existing["move_san"] or "a pass"
                raise StudyError(409, f"puzzle {puzzle_id!r} was already answered ({given}): answers are final")
            return {"ok": True, "duplicate": True, "answer": _answer_dict(existing), "state": state.summary(now)}
        if wanted != state.phase or state.finished:
            raise StudyError(409, _closed_message(conn, participant.id, wanted, state))
        if not state.started:
            raise StudyError(409, f"phase {wanted} has not started yet: press Start first")
        shown = Store.first_shown(conn, participant.id, wanted, puzzle_id)
        correct = parsed is not None and parsed.uci() == puzzle.answer
        cur = conn.execute(
            "INSERT INTO answers (participant_id, phase, puzzle_id, move_uci, move_san, raw_input, method, correct,"
            " think_ms_client, think_ms_server, answered_at, comment) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (participant.id, wanted, puzzle_id, parsed.uci() if parsed else None,
             board.san(parsed) if parsed else None, move, method, int(correct), think_ms,
             None if shown is None else round((now - shown) * 1000), now, comment or None))
        row = conn.execute("SELECT * FROM answers WHERE id = ?", (cur.lastrowid,)).fetchone()
        state = current_state(conn, participant.id, participant.study_id, now)
        return {"ok": True, "duplicate": False, "answer": _answer_dict(row), "state": state.summary(now)}


def submit_review(store: Store, token: str, *, puzzle_id: str, plies_viewed: int,
                  phase: int | None = 2) -> dict[str, Any]:
    """Record that a phase-2 puzzle was reviewed (how many plies of the line were stepped through)."""
    now = store.clock()
    with store.write() as conn:
        participant = _participant(conn, token)
        state = current_state(conn, participant.id, participant.study_id, now)
        if phase not in (None, 2):
            raise StudyError(409, "reviews belong to phase 2")
        if puzzle_id not in Store.plan(conn, participant.id, 2):
            raise StudyError(403, f"puzzle {puzzle_id!r} is not one of your phase-2 puzzles")
        existing = Store.review(conn, participant.id, puzzle_id)
        if existing is not None:
            return {"ok": True, "duplicate": True, "state": state.summary(now)}
        if state.phase != 2:
            raise StudyError(409, _closed_message(conn, participant.id, 2, state))
        if not state.started:
            raise StudyError(409, "phase 2 has not started yet: press Start first")
        shown = Store.first_shown(conn, participant.id, 2, puzzle_id)
        conn.execute("INSERT INTO reviews (participant_id, puzzle_id, plies_viewed, review_ms_server, reviewed_at)"
                     " VALUES (?,?,?,?,?)", (participant.id, puzzle_id, plies_viewed,
                                            None if shown is None else round((now - shown) * 1000), now))
        state = current_state(conn, participant.id, participant.study_id, now)
        return {"ok": True, "duplicate": False, "state": state.summary(now)}
