"""SQLite storage for studies: puzzle sets, participants, their plans, answers and reviews.

Why SQLite: a study runs on the organiser's laptop, offline, and its data must survive a crash or a closed lid.
The database runs in WAL mode with ``synchronous=FULL``: a transaction is on disk when COMMIT returns, and the
server acknowledges an answer only after that, so an acknowledged answer survives a killed process (and a power
cut). Each server thread keeps one connection (a thread-local pool); write transactions start with
``BEGIN IMMEDIATE``, so concurrent requests queue on the write lock instead of failing on a lock upgrade.

Duplicates cannot happen: ``answers`` is unique on (participant, puzzle, phase) and ``reviews`` on
(participant, puzzle), so a retried request finds the first one's row instead of adding a second.

Secrets: the organiser's token lives in ``meta``; each participant's token in ``participants.token``. Neither is
ever part of an export.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alphazero_concepts.core.puzzleset import Puzzle, PuzzleSet, parse_puzzle_set
from alphazero_concepts.study.protocol import Assignment, SessionPlan, condition_of

__all__ = ["DEFAULT_LIMITS", "SCHEMA_VERSION", "Participant", "Store", "StoreError", "Study", "new_token"]

SCHEMA_VERSION = 1
#: Phase time limits in seconds, as in the paper: 2 h solving, 1 h review, 2 h solving.
DEFAULT_LIMITS: dict[int, float | None] = {1: 7200.0, 2: 3600.0, 3: 7200.0}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    puzzle_set TEXT NOT NULL,
    created_at REAL NOT NULL,
    limit_1 REAL, limit_2 REAL, limit_3 REAL
);
CREATE TABLE IF NOT EXISTS puzzles (
    study_id INTEGER NOT NULL REFERENCES studies(id),
    id TEXT NOT NULL,
    fen TEXT NOT NULL,
    solution TEXT NOT NULL,
    line TEXT NOT NULL,
    concept TEXT NOT NULL,
    concept_label TEXT NOT NULL,
    split TEXT NOT NULL CHECK (split IN ('train', 'test')),
    rating INTEGER,
    themes TEXT NOT NULL,
    PRIMARY KEY (study_id, id)
);
CREATE TABLE IF NOT EXISTS participants (
    id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies(id),
    name TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    seed INTEGER NOT NULL,
    assignment_seed INTEGER,
    taught TEXT NOT NULL,
    control TEXT NOT NULL,
    phase INTEGER NOT NULL DEFAULT 1 CHECK (phase BETWEEN 1 AND 4),
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS plan (
    participant_id INTEGER NOT NULL REFERENCES participants(id),
    phase INTEGER NOT NULL,
    position INTEGER NOT NULL,
    puzzle_id TEXT NOT NULL,
    condition TEXT NOT NULL,
    PRIMARY KEY (participant_id, phase, position),
    UNIQUE (participant_id, phase, puzzle_id)
);
CREATE TABLE IF NOT EXISTS phase_runs (
    participant_id INTEGER NOT NULL REFERENCES participants(id),
    phase INTEGER NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    end_reason TEXT,
    PRIMARY KEY (participant_id, phase)
);
CREATE TABLE IF NOT EXISTS shown (
    participant_id INTEGER NOT NULL REFERENCES participants(id),
    phase INTEGER NOT NULL,
    puzzle_id TEXT NOT NULL,
    first_shown_at REAL NOT NULL,
    PRIMARY KEY (participant_id, phase, puzzle_id)
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    participant_id INTEGER NOT NULL REFERENCES participants(id),
    phase INTEGER NOT NULL CHECK (phase IN (1, 3)),
    puzzle_id TEXT NOT NULL,
    move_uci TEXT,
    move_san TEXT,
    raw_input TEXT,
    method TEXT NOT NULL,
    correct INTEGER NOT NULL,
    think_ms_client INTEGER,
    think_ms_server INTEGER,
    answered_at REAL NOT NULL,
    comment TEXT,
    UNIQUE (participant_id, puzzle_id, phase)
);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY,
    participant_id INTEGER NOT NULL REFERENCES participants(id),
    puzzle_id TEXT NOT NULL,
    plies_viewed INTEGER NOT NULL,
    review_ms_server INTEGER,
    reviewed_at REAL NOT NULL,
    UNIQUE (participant_id, puzzle_id)
);
"""


class StoreError(ValueError):
    """A study database that cannot be used (missing, not SQLite, another program's, newer); names the file."""


def new_token() -> str:
    """An unguessable URL-safe token (192 bits)."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Study:
    id: int
    name: str
    puzzle_set: PuzzleSet
    created_at: float
    limits: dict[int, float | None]


@dataclass(frozen=True)
class Participant:
    id: int
    study_id: int
    name: str
    token: str
    seed: int
    assignment: Assignment
    phase: int
    created_at: float


def _participant(row: sqlite3.Row) -> Participant:
    return Participant(id=row["id"], study_id=row["study_id"], name=row["name"], token=row["token"], seed=row["seed"],
                       assignment=Assignment(taught=tuple(json.loads(row["taught"])),
                                             control=tuple(json.loads(row["control"])), seed=row["assignment_seed"]),
                       phase=row["phase"], created_at=row["created_at"])


def _puzzle(row: sqlite3.Row) -> Puzzle:
    return Puzzle(id=row["id"], fen=row["fen"], solution=tuple(json.loads(row["solution"])),
                  line=tuple(json.loads(row["line"])), concept=row["concept"], concept_label=row["concept_label"],
                  split=row["split"], rating=row["rating"], themes=tuple(json.loads(row["themes"])))


class Store:
    """One study database. Thread-safe: every call uses its own connection.

    `clock` gives the time (seconds since the epoch); tests pass a fake one to cross phase deadlines."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                 create: bool = True) -> None:
        """Open the database at `path`, created (with its directory's existence checked) unless `create` is False.

        `StoreError` naming the file when it is missing (``create=False``), a directory, not SQLite, another
        program's database, or written by a newer version."""
        self.path = Path(path)
        self.clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a study database")
        if not self.path.exists():
            if not create:
                raise StoreError(f"{self.path}: no such study database (create one with `azc study create`)")
            if not self.path.parent.is_dir():
                raise StoreError(f"{self.path}: cannot create the database: directory {self.path.parent} does not "
                                 "exist")
        elif not create and self.path.stat().st_size == 0:
            raise StoreError(f"{self.path}: empty file, not a study database")
        sidecars = [Path(f"{self.path}-wal"), Path(f"{self.path}-shm")]
        had = {p for p in sidecars if p.exists()}
        try:
            with self._connect() as conn:
                tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if tables and "studies" not in tables:
                    raise StoreError(f"{self.path}: an SQLite database, but not a study database (its tables: "
                                     f"{', '.join(sorted(tables)[:5])}); not touching it")
                if not tables and not create:
                    raise StoreError(f"{self.path}: not a study database (no studies in it)")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                elif version > SCHEMA_VERSION:
                    raise StoreError(f"{self.path}: written by a newer version (schema {version} > "
                                     f"{SCHEMA_VERSION})")
        except (sqlite3.DatabaseError, StoreError) as exc:
            self.close()
            for p in sidecars:  # SQLite's WAL files of a database we could not use: not ours to leave behind
                if p not in had:
                    p.unlink(missing_ok=True)
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{self.path}: not a usable study database ({exc})") from exc

    # -- connections -------------------------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection (one per thread, reused).

        Reuse matters: closing the last connection to a WAL database checkpoints and deletes the WAL, which costs
        several fsyncs — per request, that was most of an answer's latency. A connection is only ever used by the
        thread that made it, and every transaction ends (COMMIT or ROLLBACK) before it is handed out again."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        if conn.in_transaction:  # a transaction left open by an interrupted request
            conn.execute("ROLLBACK")
        yield conn

    def close(self) -> None:
        """Close every connection this store opened (from any thread)."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads (a consistent snapshot inside one ``BEGIN``)."""
        with self._connect() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("ROLLBACK")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed (durably) when the block ends, rolled back on any exception.

        Writers of this process queue on a Python lock first: SQLite's own busy handler polls with sleeps of up
        to 100 ms, which under 20 concurrent writers made the latency tail ten times longer than the queue."""
        with self._write_lock, self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- organiser ---------------------------------------------------------------------------------------------
    def admin_token(self) -> str:
        """The organiser's token, created on first use and kept in the database."""
        with self.write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'admin_token'").fetchone()
            if row:
                return row[0]
            token = new_token()
            conn.execute("INSERT INTO meta (key, value) VALUES ('admin_token', ?)", (token,))
            return token

    def create_study(self, name: str, puzzle_set: PuzzleSet,
                     limits: dict[int, float | None] | None = None) -> int:
        limits = {**DEFAULT_LIMITS, **(limits or {})}
        with self.write() as conn:
            cur = conn.execute(
                "INSERT INTO studies (name, puzzle_set, created_at, limit_1, limit_2, limit_3) VALUES (?,?,?,?,?,?)",
                (name, json.dumps(puzzle_set.to_dict()), self.clock(), limits[1], limits[2], limits[3]))
            study_id = int(cur.lastrowid)
            conn.executemany(
                "INSERT INTO puzzles (study_id, id, fen, solution, line, concept, concept_label, split, rating, themes)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(study_id, p.id, p.fen, json.dumps(p.solution), json.dumps(p.line), p.concept, p.concept_label,
                  p.split, p.rating, json.dumps(p.themes)) for p in puzzle_set.puzzles])
            return study_id

    def set_limits(self, study_id: int, limits: dict[int, float | None]) -> None:
        """Set phase time limits in seconds (None: no limit); applies to running phases too."""
        if not set(limits) <= {1, 2, 3}:
            raise ValueError(f"phases are 1, 2, 3; got {sorted(limits)}")
        with self.write() as conn:
            self._require_study(conn, study_id)
            for phase, seconds in limits.items():
                conn.execute(f"UPDATE studies SET limit_{int(phase)} = ? WHERE id = ?", (seconds, study_id))

    def _require_study(self, conn: sqlite3.Connection, study_id: int) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone()
        if row is None:
            raise KeyError(f"no study {study_id}")
        return row

    def has_study(self, study_id: int) -> bool:
        with self.read() as conn:
            return conn.execute("SELECT 1 FROM studies WHERE id = ?", (study_id,)).fetchone() is not None

    def study(self, study_id: int) -> Study:
        with self.read() as conn:
            return self.study_in(conn, study_id)

    def study_in(self, conn: sqlite3.Connection, study_id: int) -> Study:
        row = self._require_study(conn, study_id)
        return Study(id=row["id"], name=row["name"],
                     puzzle_set=parse_puzzle_set(json.loads(row["puzzle_set"]), source=f"study {row['id']}"),
                     created_at=row["created_at"], limits={i: row[f"limit_{i}"] for i in (1, 2, 3)})

    def studies(self) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                "SELECT s.id, s.name, s.created_at, (SELECT COUNT(*) FROM participants p WHERE p.study_id = s.id) AS n,"
                " (SELECT COUNT(*) FROM puzzles z WHERE z.study_id = s.id) AS n_puzzles FROM studies s ORDER BY s.id"
            ).fetchall()
        return [{"id": r["id"], "name": r["name"], "created_at": r["created_at"], "participants": r["n"],
                 "puzzles": r["n_puzzles"]} for r in rows]

    def add_participant(self, study_id: int, name: str, assignment: Assignment, plan: SessionPlan) -> Participant:
        with self.write() as conn:
            self._require_study(conn, study_id)
            token = new_token()
            cur = conn.execute(
                "INSERT INTO participants (study_id, name, token, seed, assignment_seed, taught, control, phase,"
                " created_at) VALUES (?,?,?,?,?,?,?,1,?)",
                (study_id, name, token, plan.seed, assignment.seed, json.dumps(list(assignment.taught)),
                 json.dumps(list(assignment.control)), self.clock()))
            pid = int(cur.lastrowid)
            concepts = dict(conn.execute("SELECT id, concept FROM puzzles WHERE study_id = ?", (study_id,)).fetchall())
            conn.executemany(
                "INSERT INTO plan (participant_id, phase, position, puzzle_id, condition) VALUES (?,?,?,?,?)",
                [(pid, phase, i, puzzle_id, condition_of(concepts[puzzle_id], assignment))
                 for phase, ids in plan.phases.items() for i, puzzle_id in enumerate(ids)])
            row = conn.execute("SELECT * FROM participants WHERE id = ?", (pid,)).fetchone()
            return _participant(row)

    def participants(self, study_id: int) -> list[Participant]:
        with self.read() as conn:
            rows = conn.execute("SELECT * FROM participants WHERE study_id = ? ORDER BY id", (study_id,)).fetchall()
        return [_participant(r) for r in rows]

    def participant(self, participant_id: int) -> Participant | None:
        with self.read() as conn:
            row = conn.execute("SELECT * FROM participants WHERE id = ?", (participant_id,)).fetchone()
        return _participant(row) if row else None

    # -- used inside transactions by the session logic -----------------------------------------------------------
    @staticmethod
    def limits(conn: sqlite3.Connection, study_id: int) -> dict[int, float | None]:
        row = conn.execute("SELECT limit_1, limit_2, limit_3 FROM studies WHERE id = ?", (study_id,)).fetchone()
        return {1: row[0], 2: row[1], 3: row[2]}

    @staticmethod
    def participant_by_token(conn: sqlite3.Connection, token: str) -> Participant | None:
        row = conn.execute("SELECT * FROM participants WHERE token = ?", (token,)).fetchone()
        return _participant(row) if row else None

    @staticmethod
    def puzzle(conn: sqlite3.Connection, study_id: int, puzzle_id: str) -> Puzzle | None:
        row = conn.execute("SELECT * FROM puzzles WHERE study_id = ? AND id = ?", (study_id, puzzle_id)).fetchone()
        return _puzzle(row) if row else None

    @staticmethod
    def plan(conn: sqlite3.Connection, participant_id: int, phase: int) -> list[str]:
        return [r[0] for r in conn.execute(
            "SELECT puzzle_id FROM plan WHERE participant_id = ? AND phase = ? ORDER BY position",
            (participant_id, phase))]

    @staticmethod
    def phase_run(conn: sqlite3.Connection, participant_id: int, phase: int) -> sqlite3.Row | None:
        return conn.execute("SELECT * FROM phase_runs WHERE participant_id = ? AND phase = ?",
                            (participant_id, phase)).fetchone()

    @staticmethod
    def done_ids(conn: sqlite3.Connection, participant_id: int, phase: int) -> set[str]:
        if phase == 2:
            sql = "SELECT puzzle_id FROM reviews WHERE participant_id = ?"
            return {r[0] for r in conn.execute(sql, (participant_id,))}
        sql = "SELECT puzzle_id FROM answers WHERE participant_id = ? AND phase = ?"
        return {r[0] for r in conn.execute(sql, (participant_id, phase))}

    @staticmethod
    def answer(conn: sqlite3.Connection, participant_id: int, puzzle_id: str, phase: int) -> sqlite3.Row | None:
        return conn.execute("SELECT * FROM answers WHERE participant_id = ? AND puzzle_id = ? AND phase = ?",
                            (participant_id, puzzle_id, phase)).fetchone()

    @staticmethod
    def review(conn: sqlite3.Connection, participant_id: int, puzzle_id: str) -> sqlite3.Row | None:
        return conn.execute("SELECT * FROM reviews WHERE participant_id = ? AND puzzle_id = ?",
                            (participant_id, puzzle_id)).fetchone()

    @staticmethod
    def first_shown(conn: sqlite3.Connection, participant_id: int, phase: int, puzzle_id: str) -> float | None:
        row = conn.execute("SELECT first_shown_at FROM shown WHERE participant_id = ? AND phase = ? AND puzzle_id = ?",
                           (participant_id, phase, puzzle_id)).fetchone()
        return row[0] if row else None

    # -- exports -----------------------------------------------------------------------------------------------
    def answer_rows(self, study_id: int) -> list[dict[str, Any]]:
        """Every answer of the study, joined with participant, puzzle and plan (no tokens)."""
        with self.read() as conn:
            rows = conn.execute(
                """SELECT a.participant_id, p.name AS participant_name, p.seed, a.phase, pl.position, a.puzzle_id,
                          z.concept, z.concept_label, pl.condition, z.split, z.solution, a.move_uci, a.move_san,
                          a.raw_input, a.method, a.correct, a.think_ms_client, a.think_ms_server, s.first_shown_at,
                          a.answered_at, a.comment
                   FROM answers a
                   JOIN participants p ON p.id = a.participant_id
                   JOIN puzzles z ON z.study_id = p.study_id AND z.id = a.puzzle_id
                   JOIN plan pl ON pl.participant_id = a.participant_id AND pl.phase = a.phase
                                AND pl.puzzle_id = a.puzzle_id
                   LEFT JOIN shown s ON s.participant_id = a.participant_id AND s.phase = a.phase
                                AND s.puzzle_id = a.puzzle_id
                   WHERE p.study_id = ? ORDER BY a.participant_id, a.phase, pl.position""", (study_id,)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["answer_uci"] = json.loads(d.pop("solution"))[0]
            d["correct"] = bool(d["correct"])
            out.append(d)
        return out

    def review_rows(self, study_id: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                """SELECT r.participant_id, r.puzzle_id, z.concept, r.plies_viewed, r.review_ms_server, r.reviewed_at
                   FROM reviews r JOIN participants p ON p.id = r.participant_id
                   JOIN puzzles z ON z.study_id = p.study_id AND z.id = r.puzzle_id
                   WHERE p.study_id = ? ORDER BY r.participant_id, r.id""", (study_id,)).fetchall()
        return [dict(r) for r in rows]

    def trial_rows(self, study_id: int) -> list[dict[str, Any]]:
        """One row per planned solving trial (phases 1 and 3), answered or not: the input of the statistics."""
        with self.read() as conn:
            rows = conn.execute(
                """SELECT pl.participant_id, p.name AS participant_name, p.phase AS participant_phase, pl.phase,
                          pl.puzzle_id, z.concept, z.concept_label, pl.condition,
                          a.id IS NOT NULL AS answered, COALESCE(a.correct, 0) AS correct
                   FROM plan pl JOIN participants p ON p.id = pl.participant_id
                   JOIN puzzles z ON z.study_id = p.study_id AND z.id = pl.puzzle_id
                   LEFT JOIN answers a ON a.participant_id = pl.participant_id AND a.phase = pl.phase
                                      AND a.puzzle_id = pl.puzzle_id
                   WHERE p.study_id = ? AND pl.phase IN (1, 3) ORDER BY pl.participant_id, pl.phase, pl.position""",
                (study_id,)).fetchall()
        return [dict(r) for r in rows]

    def progress(self, study_id: int) -> list[dict[str, Any]]:
        """Per participant: phase, counts done per phase, phase clock, last activity (for the live dashboard)."""
        now = self.clock()
        with self.read() as conn:
            study = self._require_study(conn, study_id)
            out = []
            for row in conn.execute("SELECT * FROM participants WHERE study_id = ? ORDER BY id", (study_id,)):
                p = _participant(row)
                counts = {}
                for phase in (1, 2, 3):
                    total = conn.execute("SELECT COUNT(*) FROM plan WHERE participant_id = ? AND phase = ?",
                                         (p.id, phase)).fetchone()[0]
                    counts[str(phase)] = {"done": len(self.done_ids(conn, p.id, phase)), "total": total}
                run = self.phase_run(conn, p.id, p.phase) if p.phase <= 3 else None
                limit = study[f"limit_{p.phase}"] if p.phase <= 3 else None
                last = conn.execute(
                    "SELECT MAX(t) FROM (SELECT MAX(answered_at) AS t FROM answers WHERE participant_id = :p"
                    " UNION ALL SELECT MAX(reviewed_at) FROM reviews WHERE participant_id = :p"
                    " UNION ALL SELECT MAX(started_at) FROM phase_runs WHERE participant_id = :p)", {"p": p.id}
                ).fetchone()[0]
                out.append({
                    "id": p.id, "name": p.name, "phase": p.phase if p.phase <= 3 else "done",
                    "started": run is not None, "counts": counts,
                    "seconds_left": (max(0.0, run["started_at"] + limit - now) if run is not None and limit else None),
                    "last_activity_s_ago": None if last is None else max(0.0, now - last),
                    "taught": list(p.assignment.taught), "control": list(p.assignment.control),
                })
        return out

    def export(self, study_id: int) -> dict[str, Any]:
        """The whole study as one JSON-able object: puzzle set, participants (no tokens), plans, answers."""
        study = self.study(study_id)
        with self.read() as conn:
            plans = [dict(r) for r in conn.execute(
                "SELECT pl.* FROM plan pl JOIN participants p ON p.id = pl.participant_id WHERE p.study_id = ?"
                " ORDER BY pl.participant_id, pl.phase, pl.position", (study_id,))]
            runs = [dict(r) for r in conn.execute(
                "SELECT r.* FROM phase_runs r JOIN participants p ON p.id = r.participant_id WHERE p.study_id = ?"
                " ORDER BY r.participant_id, r.phase", (study_id,))]
        participants = [{"id": p.id, "name": p.name, "seed": p.seed, "assignment_seed": p.assignment.seed,
                         "taught": list(p.assignment.taught), "control": list(p.assignment.control),
                         "phase": p.phase if p.phase <= 3 else "done", "created_at": p.created_at}
                        for p in self.participants(study_id)]
        return {"schema": "alphazero-concepts/study-export/1", "study": {
                    "id": study.id, "name": study.name, "created_at": study.created_at,
                    "time_limits_s": {str(k): v for k, v in study.limits.items()}},
                "puzzle_set": study.puzzle_set.to_dict(), "participants": participants, "plan": plans,
                "phase_runs": runs, "answers": self.answer_rows(study_id), "reviews": self.review_rows(study_id)}
