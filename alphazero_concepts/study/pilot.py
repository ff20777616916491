"""Pilot a study on simulated participants (Maia levels) before spending players' time (issue 25).

`run_pilot` takes a puzzle set and a list of students (Maia networks, `study/simulated.py`) and runs each
simulated participant through the same protocol as a person, with the same code: the assignment
(`protocol.choose_assignment`, balanced: every second participant mirrors the one before), the plan
(`protocol.plan_session`), and the session state machine (`session.ensure_started`, `submit_answer`,
`submit_review`), so answers land in the same SQLite schema as human answers and `azc study stats` and the
results page read them unchanged. Simulated answers are marked: their ``method`` is ``simulated``, the
participant's name ends in "(simulated)", and the table ``simulated_participants`` (owned by this module) says
which network, seed and repetition each one is. A pilot's studies are separate studies in the database (never
the human study itself), so simulated answers never enter a human study's statistics.

What one pilot runs, each as its own study:

* **main**: the puzzle set as it is. Per repetition r and student, a balanced pair: participant a gets a seeded
  random split of the eligible concepts (the seed depends on r only, so all levels meet the same splits), b its
  mirror image. Phase 1: the student's answers to the learning puzzles of its taught concepts; phase 2: a copy is
  trained on the machine lines of those puzzles (`TeachBudget`, with a replay of its own play); phase 3: the copy
  answers the unseen puzzles of its taught and control concepts (beside them, ``phase3_untaught``: the untaught
  student on the same puzzles).
* **shuffled** (negative control): the same puzzles with the concept labels shuffled across concepts within
  each split (a fresh shuffle per repetition, so that no labelling's accidental structure is repeated): teaching a
  "concept" then teaches nothing specific to it, and transfer must vanish.
* **sts** (positive control, when the Strategic Test Suite is found): themes as concepts, some positions of a
  theme as learning puzzles (taught with the suite's scored moves as the target), others as unseen ones. If the
  students cannot learn a theme from its positions, the pilot cannot say anything about a puzzle set either.

Intervals: transfer = phase-3 taught − phase-3 control per participant; the 95% percentile bootstrap over
participants (`stats.analyse`) resamples over repetitions, i.e. over assignment seeds and student seeds.

Power: from the pilot's transfer (mean, and its variance split into a between-participant part and the binomial
noise of a finite number of puzzles), the number of participants a paired t-test needs for 80% power at
α = 0.05, for the set's own number of puzzles per condition and for more puzzles. Simulated players are less
noisy than people: read it as a lower bound.

Resumable: the pilot is keyed by a hash of its puzzle sets, students' weights and configuration; running it
again continues where it stopped (finished participants are kept, a participant interrupted after phase 1 is
re-taught from its seed, which gives the same network). Deterministic per seed on one machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from alphazero_concepts.core.config import DictConfig, Range, check_fields
from alphazero_concepts.core.puzzleset import Puzzle, PuzzleSet, PuzzleSetError, load_puzzle_set
from alphazero_concepts.study.protocol import Assignment, choose_assignment, eligible_concepts, plan_session
from alphazero_concepts.study.session import ensure_started, submit_answer, submit_review
from alphazero_concepts.study.simulated import (
    TeachBudget,
    answer_moves,
    fit_rate,
    load_student,
    resolve_students,
    teach,
    teaching_examples,
)
from alphazero_concepts.study.stats import StudyResults, analyse, sign_test
from alphazero_concepts.study.store import Store

__all__ = ["DEFAULT_STUDENTS", "KINDS", "PILOT_SCHEMA", "PilotConfig", "PilotError", "PilotSet",
           "cluster_bootstrap_ci", "latest_pilot", "load_pilot_set", "locate_sts", "pilot_by_id", "pilot_figures",
           "pilot_of_study", "power_estimate", "quick_config", "run_pilot", "shuffle_labels", "start_pilot_thread",
           "sts_pilot_set", "summarise"]

PILOT_SCHEMA = "alphazero-concepts/study-pilot/1"
DEFAULT_STUDENTS: tuple[str, ...] = ("maia-1100", "maia-1500", "maia-1900")
KINDS: tuple[str, ...] = ("main", "shuffled", "sts")
SIMULATED = "simulated"  # the `method` of every simulated answer

ProgressFn = Callable[[str, int, int], None]
log = logging.getLogger("alphazero_concepts.study.pilot")

_TABLES = """
CREATE TABLE IF NOT EXISTS pilots (
    id INTEGER PRIMARY KEY,
    parent_study_id INTEGER,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    progress TEXT,
    result TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pilot_studies (
    pilot_id INTEGER NOT NULL REFERENCES pilots(id),
    kind TEXT NOT NULL,
    repetition INTEGER NOT NULL,
    study_id INTEGER NOT NULL REFERENCES studies(id),
    PRIMARY KEY (pilot_id, kind, repetition)
);
CREATE TABLE IF NOT EXISTS simulated_participants (
    participant_id INTEGER PRIMARY KEY REFERENCES participants(id),
    pilot_id INTEGER NOT NULL REFERENCES pilots(id),
    kind TEXT NOT NULL,
    student TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    repetition INTEGER NOT NULL,
    member INTEGER NOT NULL,
    student_seed INTEGER NOT NULL,
    phase2_examples INTEGER,
    phase2_fit REAL
);
"""


class PilotError(ValueError):
    """A pilot that cannot run: a bad puzzle set or suite, too few concepts, a bad configuration."""


@dataclass(frozen=True)
class PilotConfig(DictConfig):
    """What a pilot runs. `repetitions` balanced pairs per student and condition; `nodes` = 0 answers from the
    raw policy (Maia's intended use). STS: `sts_train` learning and `sts_test` unseen positions per theme."""

    students: tuple[str, ...] = DEFAULT_STUDENTS
    repetitions: Annotated[int, Range(1)] = 3
    nodes: Annotated[int, Range(0)] = 0
    seed: Annotated[int, Range(0)] = 0
    budget: TeachBudget = field(default_factory=TeachBudget)
    shuffled_control: bool = True
    sts_train: Annotated[int, Range(1)] = 20
    sts_test: Annotated[int, Range(1)] = 20
    n_boot: Annotated[int, Range(100)] = 10_000

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def from_dict(cls, data: dict) -> PilotConfig:
        data = dict(data)
        if isinstance(data.get("budget"), dict):
            data["budget"] = TeachBudget.from_dict(data["budget"])
        if isinstance(data.get("students"), list):
            data["students"] = tuple(data["students"])
        return super().from_dict(data)


def quick_config(config: PilotConfig) -> PilotConfig:
    """The `--quick` pilot: 2 repetitions, 30 teaching steps (≤ 10 min on 2 cores); the same STS control."""
    return replace(config, repetitions=2, budget=replace(config.budget, steps=30), n_boot=2_000)


@dataclass(frozen=True)
class PilotSet:
    """A puzzle set as the pilot uses it: the puzzles, optional teaching targets at the puzzle positions
    (puzzle id → {UCI move: weight}; the STS's scored moves) and how many plies of each line are taught."""

    puzzle_set: PuzzleSet
    root_targets: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    line_plies: int | None = None
    kind: str = "puzzles"

    def digest(self) -> str:
        blob = json.dumps({"set": self.puzzle_set.to_dict(), "targets": self.root_targets,
                           "line_plies": self.line_plies}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


# -- inputs -------------------------------------------------------------------------------------------------------
def locate_sts(path: str | Path | None = None) -> Path | None:
    """The STS suite: `path`, or ../shared/data/suites/STS1-STS15_LAN_v5.epd beside this checkout; None if absent."""
    if path is not None:
        return Path(path) if Path(path).is_file() else None
    from alphazero_concepts.arena.sts import default_sts_path

    default = default_sts_path()
    return default if default.is_file() else None


def load_pilot_set(path: str | Path, *, sts_train: int = 20, sts_test: int = 20, seed: int = 0) -> PilotSet:
    """A puzzle-set JSON file, a directory holding ``puzzles.json`` (as `azc puzzles export` writes), or an STS
    ``.epd`` suite (themes as concepts). `PilotError` naming the file on any problem."""
    path = Path(path)
    if path.suffix.lower() == ".epd":
        return sts_pilot_set(path, n_train=sts_train, n_test=sts_test, seed=seed)
    if path.is_dir():
        if not (path / "puzzles.json").is_file():
            raise PilotError(f"--set {path}: a directory without puzzles.json (give a puzzle-set JSON file, a "
                             "directory written by `azc puzzles export`, or an STS .epd suite)")
        path = path / "puzzles.json"
    try:
        ps = load_puzzle_set(path)
    except PuzzleSetError as exc:
        raise PilotError(str(exc)) from exc
    if len(eligible_concepts(ps)) < 2:
        raise PilotError(f"{path}: the pilot needs at least 2 concepts with both train and test puzzles (one taught, "
                         f"one control); the set has {len(eligible_concepts(ps))}")
    return PilotSet(puzzle_set=ps)


def _pad_line(board, first: str) -> list[str] | None:
    """`first` and two placeholder plies (the first legal move in UCI order), or None when the game ends first.

    A puzzle set needs a line of 3 plies to load; the STS gives only the scored moves, so the control's learning
    puzzles are taught at the puzzle position only (`line_plies = 1`) and the placeholders are never taught."""
    import chess

    b = board.copy(stack=False)
    line = [first]
    b.push(chess.Move.from_uci(first))
    for _ in range(2):
        moves = sorted(m.uci() for m in b.legal_moves)
        if not moves:
            return None
        line.append(moves[0])
        b.push(chess.Move.from_uci(moves[0]))
    return line


def sts_pilot_set(path: str | Path, *, n_train: int = 8, n_test: int = 8, seed: int = 0) -> PilotSet:
    """The positive control: STS themes as concepts; per theme `n_train` learning and `n_test` unseen positions
    (a seeded draw). The answer is the best-scoring move; the teaching target is the scored moves' points."""
    from alphazero_concepts.arena.sts import read_sts
    from alphazero_concepts.chess.positions import InputError, ReadReport

    path = Path(path)
    if not path.is_file():
        raise PilotError(f"{path}: no such STS suite" if not path.exists() else f"{path}: is not a file")
    report = ReadReport(str(path))
    try:
        positions = read_sts(path, report)
    except (InputError, OSError, UnicodeDecodeError) as exc:
        raise PilotError(f"{path}: cannot read the STS suite: {exc}") from exc
    themes: dict[str, list] = {}
    for pos in positions:
        key = f"STS{pos.number}" if pos.number else pos.theme
        themes.setdefault(key, []).append(pos)
    rng = random.Random(seed)
    puzzles: list[Puzzle] = []
    targets: dict[str, dict[str, float]] = {}
    for key in sorted(themes, key=lambda k: (len(k), k)):
        group = sorted(themes[key], key=lambda p: p.id)
        rng.shuffle(group)
        label = group[0].theme or key
        taken = {"train": 0, "test": 0}
        for pos in group:
            split = "train" if taken["train"] < n_train else "test" if taken["test"] < n_test else None
            if split is None:
                break
            board = pos.board()
            best = max(pos.points.items(), key=lambda kv: kv[1])[0]  # ties: the first listed
            line = _pad_line(board, best)
            if line is None or board.is_game_over():
                continue
            pid = f"{key.lower()}-{pos.id.rsplit('.', 1)[-1]}"
            puzzles.append(Puzzle(id=pid, fen=board.fen(), solution=(best,), line=tuple(line), concept=key,
                                  concept_label=label, split=split, themes=("sts", "line: plies 2-3 placeholders")))
            targets[pid] = dict(pos.points)
            taken[split] += 1
    if len({p.concept for p in puzzles}) < 2:
        raise PilotError(f"{path}: fewer than 2 STS themes with positions (read {len(positions)} positions)")
    ps = PuzzleSet(name=f"STS positive control ({path.name}, {n_train}+{n_test} a theme, seed {seed})",
                   puzzles=tuple(puzzles), model={"source": str(path)}, source=str(path))
    return PilotSet(puzzle_set=ps, root_targets=targets, line_plies=1, kind="sts")


def shuffle_labels(ps: PuzzleSet, seed: int) -> PuzzleSet:
    """The same puzzles with concept labels permuted across puzzles within each split (each concept keeps its
    numbers of train and test puzzles, but which positions it holds is random)."""
    rng = random.Random(seed)
    puzzles = list(ps.puzzles)
    for split in ("train", "test"):
        idx = [i for i, p in enumerate(puzzles) if p.split == split]
        labels = [(puzzles[i].concept, puzzles[i].concept_label) for i in idx]
        rng.shuffle(labels)
        for i, (concept, label) in zip(idx, labels, strict=True):
            puzzles[i] = replace(puzzles[i], concept=concept, concept_label=label)
    return replace(ps, name=f"{ps.name} (labels shuffled, seed {seed})", puzzles=tuple(puzzles))


# -- the database -------------------------------------------------------------------------------------------------
def _ensure_tables(store: Store) -> None:
    """Create the pilot's own tables (idempotent; the study tables are untouched). Statement by statement:
    `executescript` would commit the open transaction."""
    with store.write() as conn:
        for statement in _TABLES.split(";"):
            if statement.strip():
                conn.execute(statement)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pilot_row(store: Store, key: str, name: str, config: PilotConfig, parent: int | None) -> int:
    now = store.clock()
    with store.write() as conn:
        row = conn.execute("SELECT id FROM pilots WHERE key = ? ORDER BY id DESC LIMIT 1", (key,)).fetchone()
        if row is not None:
            conn.execute("UPDATE pilots SET status = 'running', error = NULL, updated_at = ? WHERE id = ?",
                         (now, row[0]))
            return int(row[0])
        cur = conn.execute("INSERT INTO pilots (parent_study_id, key, name, config, status, created_at, updated_at)"
                           " VALUES (?,?,?,?,'running',?,?)",
                           (parent, key, name, json.dumps(config.to_dict()), now, now))
        return int(cur.lastrowid)


def _pilot_study(store: Store, pilot_id: int, kind: str, rep: int, ps: PuzzleSet) -> int:
    with store.read() as conn:
        row = conn.execute("SELECT study_id FROM pilot_studies WHERE pilot_id = ? AND kind = ? AND repetition = ?",
                           (pilot_id, kind, rep)).fetchone()
    if row is not None:
        return int(row[0])
    title = {"main": "Pilot (simulated)", "shuffled": f"Pilot, shuffled labels r{rep} (simulated)",
             "sts": "Pilot, STS positive control (simulated)"}[kind]
    study_id = store.create_study(f"{title}: {ps.name}"[:200], ps, {1: None, 2: None, 3: None})
    with store.write() as conn:
        conn.execute("INSERT INTO pilot_studies (pilot_id, kind, repetition, study_id) VALUES (?,?,?,?)",
                     (pilot_id, kind, rep, study_id))
    return study_id


def _set_progress(store: Store, pilot_id: int, stage: str, done: int, total: int) -> None:
    with store.write() as conn:
        conn.execute("UPDATE pilots SET progress = ?, updated_at = ? WHERE id = ?",
                     (json.dumps({"stage": stage, "done": done, "total": total}), store.clock(), pilot_id))


# -- one simulated participant ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Slot:
    kind: str
    repetition: int
    student: str
    student_index: int
    member: int  # 0: a fresh split, 1: its mirror image

    @property
    def name(self) -> str:
        return f"{self.student} {self.repetition}{'ab'[self.member]} (simulated)"


def _participant_for(store: Store, pilot_id: int, study_id: int, slot: _Slot, pilot_set: PilotSet,
                     config: PilotConfig, sha: str) -> tuple[int, int]:
    """(participant id, student seed) of `slot`, added with the same assignment code as people when new."""
    student_seed = _seed(config.seed, KINDS.index(slot.kind), slot.repetition, slot.member, slot.student_index)
    existing = {p.name: p for p in store.participants(study_id)}
    p = existing.get(slot.name)
    if p is None:
        ps = pilot_set.puzzle_set
        previous: list[Assignment] = []
        if slot.member == 1:
            first = existing.get(replace(slot, member=0).name)
            if first is None:
                raise PilotError(f"internal: {slot.name} has no first member")  # slots run in order
            previous = [first.assignment]
        assignment = choose_assignment(ps, "balanced", previous=previous,
                                       seed=_seed(config.seed, KINDS.index(slot.kind), slot.repetition))
        p = store.add_participant(study_id, slot.name, assignment, plan_session(ps, assignment, student_seed))
    with store.write() as conn:
        conn.execute("INSERT OR IGNORE INTO simulated_participants (participant_id, pilot_id, kind, student,"
                     " weights_sha256, repetition, member, student_seed) VALUES (?,?,?,?,?,?,?,?)",
                     (p.id, pilot_id, slot.kind, slot.student, sha, slot.repetition, slot.member, student_seed))
    return p.id, student_seed


def _pending(store: Store, participant_id: int, phase: int) -> list[str]:
    with store.read() as conn:
        done = Store.done_ids(conn, participant_id, phase)
        return [pid for pid in Store.plan(conn, participant_id, phase) if pid not in done]


def _answer_phase(store: Store, token: str, participant_id: int, phase: int, by_id: Mapping[str, Puzzle],
                  net: Any, nodes: int) -> None:
    ensure_started(store, token, phase)
    todo = _pending(store, participant_id, phase)
    moves = answer_moves(net, [by_id[pid].board() for pid in todo], nodes)
    for pid, move in zip(todo, moves, strict=True):
        submit_answer(store, token, puzzle_id=pid, move=move, method=SIMULATED, phase=phase)


def _run_participant(store: Store, participant_id: int, student_seed: int, pilot_set: PilotSet, net: Any,
                     config: PilotConfig) -> None:
    """Phases 1–3 of one simulated participant, from wherever it stands (resumes a half-run participant)."""
    p = store.participant(participant_id)
    assert p is not None
    if p.phase >= 4:
        return
    by_id = pilot_set.puzzle_set.by_id()
    if p.phase == 1:
        _answer_phase(store, p.token, p.id, 1, by_id, net, config.nodes)
    with store.read() as conn:
        learning = [by_id[pid] for pid in Store.plan(conn, p.id, 2)]
    examples = teaching_examples(learning, root_targets=pilot_set.root_targets, line_plies=pilot_set.line_plies)
    taught = teach(net, examples, config.budget, student_seed)
    if store.participant(p.id).phase == 2:  # type: ignore[union-attr]
        ensure_started(store, p.token, 2)
        for puzzle in learning:
            if puzzle.id in _pending(store, p.id, 2):
                n = len(puzzle.line) if pilot_set.line_plies is None else min(len(puzzle.line), pilot_set.line_plies)
                submit_review(store, p.token, puzzle_id=puzzle.id, plies_viewed=n)
        with store.write() as conn:
            conn.execute("UPDATE simulated_participants SET phase2_examples = ?, phase2_fit = ? "
                         "WHERE participant_id = ?", (len(examples), fit_rate(taught, examples), p.id))
    if store.participant(p.id).phase == 3:  # type: ignore[union-attr]
        _answer_phase(store, p.token, p.id, 3, by_id, taught, config.nodes)


# -- the pilot ----------------------------------------------------------------------------------------------------
def run_pilot(store: Store, pilot_set: PilotSet, config: PilotConfig, *, sts: PilotSet | None = None,
              parent_study_id: int | None = None, maia_dir: str | Path | None = None,
              progress: ProgressFn | None = None) -> dict[str, Any]:
    """Run (or resume) a pilot and return its summary (`summarise`); the summary is also stored with the pilot.

    `sts`: the positive control's set (`sts_pilot_set`), None to skip it. `progress(stage, done, total)` is
    called after every simulated participant."""
    students = resolve_students(config.students, maia_dir)
    shas = {name: _file_sha256(path) for name, path in students.items()}
    _ensure_tables(store)
    key = hashlib.sha256(json.dumps({"set": pilot_set.digest(), "sts": sts.digest() if sts else None,
                                     "config": config.to_dict(), "students": shas},
                                    sort_keys=True).encode()).hexdigest()
    pilot_id = _pilot_row(store, key, pilot_set.puzzle_set.name, config, parent_study_id)
    plan: list[tuple[str, int, PilotSet]] = [("main", 0, pilot_set)]
    if config.shuffled_control:
        plan += [("shuffled", r, replace(pilot_set, puzzle_set=shuffle_labels(pilot_set.puzzle_set,
                                                                               _seed(config.seed, 99, r))))
                 for r in range(config.repetitions)]
    if sts is not None:
        plan.append(("sts", 0, sts))
    slots: list[tuple[_Slot, PilotSet]] = []
    for kind, rep, pset in plan:
        reps = [rep] if kind == "shuffled" else list(range(config.repetitions))
        for r in reps:
            for si, student in enumerate(students):
                for member in (0, 1):
                    slots.append((_Slot(kind, r, student, si, member), pset))
    nets: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        for i, (slot, pset) in enumerate(slots):
            study_rep = slot.repetition if slot.kind == "shuffled" else 0
            study_id = _pilot_study(store, pilot_id, slot.kind, study_rep, pset.puzzle_set)
            pid, seed = _participant_for(store, pilot_id, study_id, slot, pset, config, shas[slot.student])
            if slot.student not in nets:
                nets[slot.student] = load_student(students[slot.student])
            _run_participant(store, pid, seed, pset, nets[slot.student], config)
            _set_progress(store, pilot_id, slot.kind, i + 1, len(slots))
            if progress is not None:
                progress(slot.kind, i + 1, len(slots))
        result = summarise(store, pilot_id)
        _add_untaught(result, plan, nets, config.nodes)
        result["wall_s"] = round(time.perf_counter() - started, 1)
    except BaseException as exc:
        with store.write() as conn:
            conn.execute("UPDATE pilots SET status = 'failed', error = ?, updated_at = ? WHERE id = ?",
                         (f"{type(exc).__name__}: {exc}", store.clock(), pilot_id))
        raise
    with store.write() as conn:
        conn.execute("UPDATE pilots SET status = 'done', result = ?, updated_at = ? WHERE id = ?",
                     (json.dumps(result), store.clock(), pilot_id))
    return result


def _untaught_rate(pilot_set: PilotSet, net: Any, nodes: int) -> float | None:
    """The untaught student's solve rate on all unseen puzzles of the eligible concepts (what every participant
    answers in phase 3): the level the phase-3 rates are read against."""
    ps = pilot_set.puzzle_set
    eligible = set(eligible_concepts(ps))
    test = [p for p in ps.puzzles if p.split == "test" and p.concept in eligible]
    if not test:
        return None
    moves = answer_moves(net, [p.board() for p in test], nodes)
    return _mean(float(m == p.answer) for m, p in zip(moves, test, strict=True))


def _add_untaught(result: dict[str, Any], plan: Sequence[tuple[str, int, PilotSet]], nets: Mapping[str, Any],
                  nodes: int) -> None:
    """``phase3_untaught`` beside each student's rates (main set and STS control): if phase 3 control falls
    below it, the teaching budget costs general play."""
    sets = {kind: pset for kind, _, pset in plan if kind != "shuffled"}
    for name, net in nets.items():
        if name in result["students"] and "main" in sets:
            result["students"][name]["phase3_untaught"] = _untaught_rate(sets["main"], net, nodes)
        pc = result.get("positive_control")
        if pc and name in pc.get("per_student", {}) and "sts" in sets:
            pc["per_student"][name]["phase3_untaught"] = _untaught_rate(sets["sts"], net, nodes)


def _pilot_dict(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "parent_study_id": row["parent_study_id"], "name": row["name"], "status": row["status"],
            "progress": json.loads(row["progress"]) if row["progress"] else None, "error": row["error"],
            "config": json.loads(row["config"]), "result": json.loads(row["result"]) if row["result"] else None,
            "updated_at": row["updated_at"]}


def latest_pilot(store: Store) -> dict[str, Any] | None:
    """The newest pilot of the database: id, status (running, done, failed), progress, error, config, result."""
    _ensure_tables(store)
    with store.read() as conn:
        row = conn.execute("SELECT * FROM pilots ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else _pilot_dict(row)


def pilot_by_id(store: Store, pilot_id: int) -> dict[str, Any] | None:
    """One pilot (as `latest_pilot`), or None."""
    _ensure_tables(store)
    with store.read() as conn:
        row = conn.execute("SELECT * FROM pilots WHERE id = ?", (pilot_id,)).fetchone()
    return None if row is None else _pilot_dict(row)


def pilot_of_study(store: Store, study_id: int) -> dict[str, Any] | None:
    """The newest pilot run on `study_id`'s puzzle set from the app (its parent), else the pilot that `study_id`
    is one of the simulated studies of; None when neither."""
    _ensure_tables(store)
    with store.read() as conn:
        row = conn.execute("SELECT * FROM pilots WHERE parent_study_id = ? ORDER BY id DESC LIMIT 1",
                           (study_id,)).fetchone()
        if row is None:
            row = conn.execute("SELECT p.* FROM pilots p JOIN pilot_studies s ON s.pilot_id = p.id "
                               "WHERE s.study_id = ? ORDER BY p.id DESC LIMIT 1", (study_id,)).fetchone()
    return None if row is None else _pilot_dict(row)


def start_pilot_thread(store: Store, study_id: int, puzzle_set: PuzzleSet, *, students: Sequence[str],
                       quick: bool = True, nodes: int = 0, repetitions: int | None = None, steps: int | None = None,
                       sts: bool = True, maia_dir: str | Path | None = None,
                       on_exit: Callable[[], None] | None = None) -> threading.Thread:
    """Run a pilot of a study's own puzzle set in a background thread (the organiser's page starts it).

    Inputs are checked here, before the thread starts (`PilotError`, `StudentError`); the thread records its
    progress, result or error in the ``pilots`` table, where `pilot_of_study` reads them. `on_exit` runs when
    the thread ends, however it ends."""
    config = PilotConfig(students=tuple(students), nodes=nodes)
    if quick:
        config = quick_config(config)
    config = replace(config, repetitions=repetitions or config.repetitions,
                     budget=replace(config.budget, steps=steps or config.budget.steps))
    pset = PilotSet(puzzle_set=puzzle_set)
    if len(eligible_concepts(puzzle_set)) < 2:
        raise PilotError("the pilot needs at least 2 concepts with both train and test puzzles")
    resolve_students(config.students, maia_dir)
    control = None
    if sts and (path := locate_sts()) is not None:
        control = sts_pilot_set(path, n_train=config.sts_train, n_test=config.sts_test, seed=config.seed)

    def work() -> None:
        try:
            run_pilot(store, pset, config, sts=control, parent_study_id=study_id, maia_dir=maia_dir)
        except Exception:  # recorded in the pilots table by run_pilot; the server goes on
            log.exception("pilot of study %s failed", study_id)
        finally:
            if on_exit is not None:
                on_exit()

    thread = threading.Thread(target=work, name=f"pilot-study-{study_id}", daemon=True)
    thread.start()
    return thread


# -- results ------------------------------------------------------------------------------------------------------
def cluster_bootstrap_ci(clusters: Sequence[Sequence[float]], *, seed: int = 0, n_boot: int = 10_000,
                         level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of all values and a two-level percentile bootstrap interval.

    Why two levels: the participants of one repetition share its assignment seed (and, in the shuffled control,
    its shuffle), and the two members of a balanced pair mirror each other, so they are not independent. Each
    resample draws the repetitions with replacement, then the participants within each drawn repetition (so
    both the assignment seeds and the students' seeds are in the interval). NaNs for no data."""
    groups = [np.asarray(c, dtype=float) for c in clusters if len(c)]
    if not groups:
        return (math.nan, math.nan, math.nan)
    mean = float(np.mean(np.concatenate(groups)))
    rng = np.random.default_rng(seed)
    sizes = np.array([g.size for g in groups])
    table = np.zeros((len(groups), sizes.max()))
    for i, g in enumerate(groups):
        table[i, : g.size] = g
    picked = rng.integers(0, len(groups), size=(n_boot, len(groups)))  # repetitions, with replacement
    n = sizes[picked]  # (B, R): size of each drawn repetition
    within = (rng.random((n_boot, len(groups), sizes.max())) * n[..., None]).astype(np.int64)  # members
    live = np.arange(sizes.max())[None, None, :] < n[..., None]
    values = table[picked[..., None], within]
    means = (values * live).sum(axis=(1, 2)) / live.sum(axis=(1, 2))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return (mean, float(lo), float(hi))


def _num(x: float | None) -> float | None:
    return None if x is None or x != x else round(float(x), 6)


def _interval(results: StudyResults, rep_of: Mapping[int, int], seed: int, n_boot: int,
              attr: str = "transfer") -> dict[str, Any]:
    """Estimate and 95% interval of `attr` (transfer or gain) over the finished participants of `results`,
    clustered by repetition (`cluster_bootstrap_ci`); the exact sign test over participants beside it."""
    values = [(p.participant_id, getattr(p, attr)) for p in results.participants if p.finished]
    values = [(pid, v) for pid, v in values if v is not None]
    if not values:
        return {"estimate": None, "ci": [None, None], "n": 0, "repetitions": 0}
    clusters: dict[int, list[float]] = {}
    for pid, v in values:
        clusters.setdefault(rep_of.get(pid, -1), []).append(v)
    mean, lo, hi = cluster_bootstrap_ci(list(clusters.values()), seed=seed, n_boot=n_boot)
    return {"estimate": _num(mean), "ci": [_num(lo), _num(hi)], "n": len(values), "repetitions": len(clusters),
            "sign_p": _num(sign_test([v for _, v in values]).p_value)}


def _mean(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return round(float(np.mean(xs)), 6) if xs else None


def _group(rows: Sequence[Mapping[str, Any]], ids: set[int], seed: int, n_boot: int) -> StudyResults:
    return analyse([r for r in rows if int(r["participant_id"]) in ids], seed=seed, n_boot=min(n_boot, 1000))


def summarise(store: Store, pilot_id: int) -> dict[str, Any]:
    """The pilot's results from the database (what `run_pilot` returns and ``--json`` writes).

    Keys: ``students`` (per student: participants, mean solve rates, phase-2 fit, gain), ``transfer`` (per student:
    ``estimate``, ``ci``), ``transfer_pooled``, ``positive_control`` and ``shuffled_control`` (``estimate``, ``ci``,
    per student), ``participants_needed_80pct_power`` and ``power`` (how it was computed), ``studies``."""
    with store.read() as conn:
        pilot = conn.execute("SELECT * FROM pilots WHERE id = ?", (pilot_id,)).fetchone()
        studies = [dict(r) for r in conn.execute("SELECT * FROM pilot_studies WHERE pilot_id = ? ORDER BY kind,"
                                                 " repetition", (pilot_id,))]
        sims = [dict(r) for r in conn.execute("SELECT * FROM simulated_participants WHERE pilot_id = ?",
                                              (pilot_id,))]
    config = PilotConfig.from_dict(json.loads(pilot["config"]))
    seed, n_boot = config.seed, config.n_boot
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for s in studies:
        rows[s["kind"]].extend(store.trial_rows(s["study_id"]))
    by_kind_student: dict[tuple[str, str], set[int]] = {}
    fits: dict[tuple[str, str], list[float | None]] = {}
    rep_of = {int(s["participant_id"]): int(s["repetition"]) for s in sims}
    for s in sims:
        by_kind_student.setdefault((s["kind"], s["student"]), set()).add(int(s["participant_id"]))
        fits.setdefault((s["kind"], s["student"]), []).append(s["phase2_fit"])
    students = list(config.students)
    names = [n for n in dict.fromkeys(s["student"] for s in sims)] or students

    out: dict[str, Any] = {"schema": PILOT_SCHEMA, "pilot_id": pilot_id, "puzzle_set": pilot["name"],
                           "config": config.to_dict(), "students": {}, "transfer": {}}
    main = analyse(rows["main"], seed=seed, n_boot=min(n_boot, 1000))
    for name in names:
        ids = by_kind_student.get(("main", name), set())
        res = _group(rows["main"], ids, seed, n_boot)
        done = [p for p in res.participants if p.finished]
        out["students"][name] = {
            "participants": len(res.participants), "finished": len(done),
            "phase1": _mean(p.phase1.rate for p in done),
            "phase3_taught": _mean(p.phase3_taught.rate for p in done),
            "phase3_control": _mean(p.phase3_control.rate for p in done),
            "phase2_fit": _mean(fits.get(("main", name), [])),
            "gain": _interval(res, rep_of, seed, n_boot, "gain")}
        out["transfer"][name] = _interval(res, rep_of, seed, n_boot)
    out["transfer_pooled"] = _interval(main, rep_of, seed, n_boot)
    for kind, key in (("sts", "positive_control"), ("shuffled", "shuffled_control")):
        if not rows[kind]:
            out[key] = None
            continue
        pooled = analyse(rows[kind], seed=seed, n_boot=min(n_boot, 1000))
        entry = _interval(pooled, rep_of, seed, n_boot)
        entry["per_student"] = {}
        for name in names:
            res = _group(rows[kind], by_kind_student.get((kind, name), set()), seed, n_boot)
            done = [p for p in res.participants if p.finished]
            entry["per_student"][name] = {**_interval(res, rep_of, seed, n_boot),
                                          "phase1": _mean(p.phase1.rate for p in done),
                                          "phase3_taught": _mean(p.phase3_taught.rate for p in done),
                                          "phase3_control": _mean(p.phase3_control.rate for p in done),
                                          "phase2_fit": _mean(fits.get((kind, name), []))}
        out[key] = entry
    done = [p for p in main.participants if p.finished and p.transfer is not None]
    power = power_estimate([p.transfer for p in done],  # type: ignore[misc]
                           taught_rate=_mean(p.phase3_taught.rate for p in done),
                           control_rate=_mean(p.phase3_control.rate for p in done),
                           m_taught=_mean(p.phase3_taught.total for p in done),
                           m_control=_mean(p.phase3_control.total for p in done))
    out["participants_needed_80pct_power"] = power["participants"]
    out["power"] = power
    out["studies"] = {f"{s['kind']}" + (f"-r{s['repetition']}" if s["kind"] == "shuffled" else ""): s["study_id"]
                      for s in studies}
    out["intervals"] = ("95% two-level percentile bootstrap: repetitions (assignment seed, shuffle) with "
                        "replacement, then participants within each (students, seeds, pair members)")
    out["marking"] = {"answers_method": SIMULATED, "participant_name_suffix": "(simulated)",
                      "table": "simulated_participants"}
    return out


def _t_test_n(effect: float, sd: float, alpha: float, power: float, cap: int = 100_000) -> int | None:
    """Smallest n ≥ 2 for which a two-sided one-sample t-test of mean 0 has `power` against `effect` (sd `sd`)."""
    from scipy import stats as st

    if effect <= 0:
        return None
    if sd <= 0:
        return 2

    def achieved(n: int) -> float:
        df = n - 1
        crit = st.t.ppf(1 - alpha / 2, df)
        nc = effect * math.sqrt(n) / sd
        p = float(st.nct.sf(crit, df, nc) + st.nct.cdf(-crit, df, nc))
        if not math.isfinite(p):  # scipy's noncentral t fails far in the tail: the normal limit is exact there
            p = float(st.norm.sf(crit - nc) + st.norm.cdf(-crit - nc))
        return p

    hi = 2
    while achieved(hi) < power:  # power rises with n: double, then bisect
        if hi >= cap:
            return None
        hi = min(2 * hi, cap)
    lo = max(2, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if achieved(mid) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo


def power_estimate(diffs: Sequence[float], *, taught_rate: float | None, control_rate: float | None,
                   m_taught: float | None, m_control: float | None, alpha: float = 0.05, power: float = 0.8,
                   puzzles: Sequence[int] = (10, 20, 40)) -> dict[str, Any]:
    """Participants needed for a paired test of transfer at `power` and `alpha`, from a pilot's per-participant
    transfers `diffs`.

    The pilot's variance of a participant's transfer is split into the binomial noise of its finite puzzles
    (p_t(1−p_t)/m_t + p_c(1−p_c)/m_c at the pooled rates) and the rest (between participants, kept ≥ 0); a study
    with m puzzles per condition then has variance rest + (p_t(1−p_t) + p_c(1−p_c))/m. The count is the smallest
    n for which a two-sided one-sample t-test reaches `power` (noncentral t). None when the pilot shows no
    positive transfer (nothing to detect) or when more than 100,000 participants would be needed."""
    d = np.asarray([x for x in diffs if x is not None], dtype=float)
    base: dict[str, Any] = {"alpha": alpha, "power": power, "test": "two-sided paired t-test of transfer",
                            "pilot_participants": int(d.size), "effect": None, "sd": None,
                            "puzzles_per_condition": None, "participants": None, "by_puzzles": []}
    if d.size < 2 or taught_rate is None or control_rate is None or not m_taught or not m_control:
        return {**base, "reason": "fewer than 2 finished simulated participants"}
    effect, sd = float(d.mean()), float(d.std(ddof=1))
    if abs(effect) < 1e-12:  # a mean of exactly cancelling transfers: no effect, not float noise
        effect = 0.0
    binom_unit = taught_rate * (1 - taught_rate) + control_rate * (1 - control_rate)
    binom_pilot = taught_rate * (1 - taught_rate) / m_taught + control_rate * (1 - control_rate) / m_control
    between = max(0.0, sd ** 2 - binom_pilot)
    m_pilot = max(1, round((m_taught + m_control) / 2))
    rows = []
    for m in sorted({m_pilot, *puzzles}):
        sd_m = math.sqrt(between + binom_unit / m)
        n = _t_test_n(effect, sd_m, alpha, power)
        rows.append({"puzzles_per_condition": m, "sd": round(sd_m, 6), "participants": n,
                     "answers": None if n is None else 2 * m * n})
    n_pilot = next(r["participants"] for r in rows if r["puzzles_per_condition"] == m_pilot)
    reason = None
    if effect <= 0:
        reason = "the pilot shows no positive transfer: no number of participants detects an effect that is not there"
    elif n_pilot is None:
        reason = "more than 100,000 participants would be needed"
    return {**base, "effect": round(effect, 6), "sd": round(sd, 6), "sd_between": round(math.sqrt(between), 6),
            "puzzles_per_condition": m_pilot, "participants": n_pilot, "by_puzzles": rows, "reason": reason,
            "caveat": "simulated players are less noisy than people: read the counts as lower bounds"}


# -- figures ------------------------------------------------------------------------------------------------------
def _png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def pilot_figures(result: Mapping[str, Any]) -> dict[str, bytes]:
    """PNG figures of a pilot summary: ``pilot_rates`` (solve rate by phase and Maia level, taught vs control;
    the STS control beside when run) and ``pilot_transfer`` (transfer with 95% intervals per student, pooled, and
    both controls). matplotlib's object API, no pyplot."""
    from matplotlib.figure import Figure

    out: dict[str, bytes] = {}
    panels = [("puzzle set", result.get("students") or {})]
    pc = result.get("positive_control")
    if pc:
        panels.append(("STS positive control", pc.get("per_student") or {}))
    fig = Figure(figsize=(4.6 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    width = 0.26
    series = (("phase1", "phase 1 (taught, before)"), ("phase3_taught", "phase 3 taught"),
              ("phase3_control", "phase 3 control"))
    for ax, (title, per) in zip(axes, panels, strict=True):
        names = list(per)
        for k, (attr, label) in enumerate(series):
            vals = [per[n].get(attr) for n in names]
            ax.bar([i + (k - 1) * width for i in range(len(names))], [v or 0 for v in vals], width, label=label)
        ax.set_xticks(range(len(names)), names, rotation=15)
        ax.set_ylim(0, 1.02)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("solve rate")
    axes[0].legend(fontsize=7, loc="upper left")
    out["pilot_rates"] = _png(fig)

    rows: list[tuple[str, Mapping[str, Any] | None, str]] = [
        (n, r, "C0") for n, r in (result.get("transfer") or {}).items()]
    rows.append(("pooled", result.get("transfer_pooled"), "C0"))
    if result.get("shuffled_control"):
        rows.append(("shuffled labels", result["shuffled_control"], "C7"))
    if pc:
        rows.append(("STS control", pc, "C2"))
    fig = Figure(figsize=(6.4, 0.45 * len(rows) + 1.2))
    ax = fig.subplots()
    for i, (_label, r, color) in enumerate(rows):
        y = len(rows) - 1 - i
        if not r or r.get("estimate") is None:
            continue
        lo, hi = r["ci"]
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], "-", color=color, lw=2)
        ax.plot([r["estimate"]], [y], "o", color=color)
    ax.axvline(0, color="0.4", lw=1, ls="--")
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)])
    ax.set_xlabel("transfer = phase 3 taught − control (95% bootstrap CI)")
    ax.grid(axis="x", alpha=0.3)
    out["pilot_transfer"] = _png(fig)
    return out
