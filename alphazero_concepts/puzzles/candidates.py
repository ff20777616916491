"""Puzzle candidates: the prototype positions of kept concepts, solved by the teacher with a deep search.

Every kept concept brings its prototype positions (METHOD.md §4): the ``train`` split becomes learning puzzles
(study phases 1–2), the ``test`` split unseen puzzles (phase 3). Each position is searched by the teacher (batched
PUCT, `MCTS.search` over all positions of a chunk at once; 800 simulations by default) and becomes a `Candidate`:
the teacher's answer (most-visited move), its machine line (principal variation, starting with the answer), the
ranked alternatives with their own lines, and the numbers the checks need (visit share, Q gap, priors).
`checks.py` decides which candidates become puzzles.

Input: ``RUN/prototypes.jsonl``, written by the filters stage, one kept concept per line::

    {"concept": "block4/root00012",            # concept id (required, unique in the file)
     "label": "Knight outpost on d5",          # human-readable name (optional; default: the id)
     "layer": "block4",                        # layer the concept vector lives in (required)
     "novelty": 0.12,                          # novelty score (optional, null when unknown)
     "teachability": 0.31,                     # teachability lift (optional, null when unknown)
     "kept": true,                             # optional; false → the record is counted as filtered and skipped
     "positions": [                            # prototype positions (required, non-empty)
        {"fen": "r1bq1rk1/... w - - 0 12",     # the position the solver faces (required)
         "split": "train",                     # "train" (phases 1–2) or "test" (phase 3) (required)
         "start_fen": "...", "moves": [uci,...],  # optional history (as in activations/index.jsonl): replays to
                                                  # `fen`; its last move is the opponent's last move, used by
                                                  # the recapture check and the Lichess CSV
         "score": 3.2}, ...]}                  # optional (e.g. v·z); any other keys are kept in `meta`

Extra top-level keys are kept in `ConceptPrototypes.extra`. Bad records (bad JSON, a missing field, an invalid
FEN, history that does not replay to `fen`, an unknown split) are skipped with an `InputError` naming the file,
the line and the field (``prototypes.jsonl:7: positions[2].fen: invalid FEN ...``) and counted in a `ReadReport`;
a bad position skips only itself, the concept's other positions are kept.

Positions are de-duplicated by their FEN without move counters (`position_key`) across the whole set: a
position seen twice (in one concept or two) is kept once, the first time, and the repeat is recorded as a
`Rejection` ("duplicate of …") so the build report shows it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import chess
import numpy as np

from alphazero_concepts.chess.positions import InputError, Position, ReadReport
from alphazero_concepts.core.config import DictConfig
from alphazero_concepts.search.mcts import MCTS, Node, SearchResult

__all__ = [
    "SPLITS",
    "Candidate",
    "ConceptPrototypes",
    "MoveStat",
    "PlannedPosition",
    "PrototypePosition",
    "Rejection",
    "SolveConfig",
    "candidate_from_result",
    "concept_slug",
    "plan_positions",
    "position_key",
    "puzzle_id",
    "read_prototypes",
    "solve",
]

SPLITS = ("train", "test")


def position_key(board: chess.Board | str) -> str:
    """The position without move counters (pieces, side to move, castling, legal en passant): the dedupe key."""
    b = board if isinstance(board, chess.Board) else chess.Board(board)
    return b.epd()


def concept_slug(concept: str) -> str:
    """The concept id with every run of characters other than letters, digits, ``_`` and ``.`` turned into ``-``."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", concept).strip("-") or "concept"


def puzzle_id(concept: str, key: str) -> str:
    """A stable id from the concept and the position key: ``<concept slug>-<8 hex digits>``."""
    return f"{concept_slug(concept)}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------------------------------------------------------
# Input: concepts and their prototype positions


@dataclass(frozen=True)
class PrototypePosition:
    """One prototype position of a concept; `moves` (from `start_fen`) is its history when known."""

    fen: str
    split: str
    start_fen: str | None = None
    moves: tuple[str, ...] = ()
    score: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def board(self) -> chess.Board:
        """The position, with its history on the move stack when known (the network reads history planes)."""
        if self.start_fen is not None and self.moves:
            return Position(self.start_fen, self.moves).board()
        return chess.Board(self.fen)

    @property
    def last_move(self) -> str | None:
        """The opponent's move that led to this position (UCI), when the history is known."""
        return self.moves[-1] if self.moves else None

    def prev_fen(self) -> str | None:
        """FEN of the position before `last_move` (None when unknown)."""
        if not self.moves:
            return None
        board = self.board()
        board.pop()
        return board.fen()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fen": self.fen, "split": self.split}
        if self.start_fen is not None:
            out["start_fen"] = self.start_fen
            out["moves"] = list(self.moves)
        if self.score is not None:
            out["score"] = self.score
        return {**out, **dict(self.meta)}


@dataclass(frozen=True)
class ConceptPrototypes:
    """A kept concept and its prototype positions (one line of ``prototypes.jsonl``)."""

    concept: str
    label: str
    layer: str
    novelty: float | None
    teachability: float | None
    positions: tuple[PrototypePosition, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"concept": self.concept, "label": self.label, "layer": self.layer, "novelty": self.novelty,
                "teachability": self.teachability, "positions": [p.to_dict() for p in self.positions],
                **dict(self.extra)}


_CONCEPT_KEYS = {"concept", "label", "layer", "novelty", "teachability", "kept", "positions"}
_POSITION_KEYS = {"fen", "split", "start_fen", "moves", "score"}


def _number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a number or null, got {value!r}")
    return float(value)


def parse_prototype_record(data: object) -> tuple[ConceptPrototypes | None, list[str]]:
    """One decoded record → (concept or None when the whole record is unusable, problems as "field: why").

    A bad position is a problem of its own and skips only itself; a bad concept-level field skips the record.
    """
    if not isinstance(data, dict):
        return None, [f"record: expected a JSON object, got {type(data).__name__}"]
    problems: list[str] = []
    concept = data.get("concept")
    if not isinstance(concept, str) or not concept.strip():
        return None, ["concept: expected a non-empty string"]
    layer = data.get("layer")
    if not isinstance(layer, str) or not layer.strip():
        return None, ["layer: expected a non-empty string"]
    label = data.get("label") or concept
    if not isinstance(label, str):
        return None, [f"label: expected a string, got {label!r}"]
    scores: dict[str, float | None] = {}
    for key in ("novelty", "teachability"):
        try:
            scores[key] = _number(data.get(key))
        except ValueError as exc:
            return None, [f"{key}: {exc}"]
    raw = data.get("positions")
    if not isinstance(raw, list) or not raw:
        return None, ["positions: expected a non-empty list"]
    positions: list[PrototypePosition] = []
    for i, item in enumerate(raw):
        pos, problem = _parse_position(item, f"positions[{i}]")
        if pos is None:
            problems.append(problem)
        else:
            positions.append(pos)
    extra = {k: v for k, v in data.items() if k not in _CONCEPT_KEYS}
    return ConceptPrototypes(concept.strip(), label.strip() or concept.strip(), layer.strip(), scores["novelty"],
                             scores["teachability"], tuple(positions), extra), problems


def _parse_position(item: object, where: str) -> tuple[PrototypePosition | None, str]:
    if not isinstance(item, dict):
        return None, f"{where}: expected an object, got {type(item).__name__}"
    fen = item.get("fen")
    if not isinstance(fen, str) or not fen.strip():
        return None, f"{where}.fen: expected a FEN string"
    try:
        board = chess.Board(fen)
    except ValueError as exc:
        return None, f"{where}.fen: invalid FEN {fen!r}: {exc}"
    if not board.is_valid():
        return None, f"{where}.fen: impossible position {fen!r}"
    split = item.get("split")
    if split not in SPLITS:
        return None, f"{where}.split: expected 'train' or 'test', got {split!r}"
    start_fen, moves = item.get("start_fen"), item.get("moves") or []
    if start_fen is not None or moves:
        if not isinstance(start_fen, str) or not isinstance(moves, list) \
                or not all(isinstance(m, str) for m in moves):
            return None, f"{where}: history needs 'start_fen' (string) and 'moves' (list of UCI strings)"
        try:
            replayed = Position(start_fen, tuple(moves)).board()
        except InputError as exc:
            return None, f"{where}.moves: {exc.reason}"
        if position_key(replayed) != position_key(board):
            return None, f"{where}.moves: the history replays to {replayed.fen()!r}, not to fen {fen!r}"
    try:
        score = _number(item.get("score"))
    except ValueError as exc:
        return None, f"{where}.score: {exc}"
    meta = {k: v for k, v in item.items() if k not in _POSITION_KEYS}
    return PrototypePosition(board.fen(), split, start_fen if moves else None, tuple(moves), score, meta), ""


def read_prototypes(path: str | os.PathLike[str], *, report: ReadReport | None = None,
                    strict: bool = False) -> list[ConceptPrototypes]:
    """Read ``prototypes.jsonl`` (schema in the module docstring); bad records are skipped into `report`.

    `report.read` counts concepts read, `report.filtered` records with ``"kept": false``; with `strict` the
    first problem raises `InputError`. A missing file raises `InputError` whatever `strict` says.
    """
    source = os.fspath(path)
    rep = report if report is not None else ReadReport(source)
    try:
        raw_lines = Path(source).read_bytes().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=source, line=None) from exc
    out: list[ConceptPrototypes] = []
    seen: dict[str, int] = {}

    def skip(message: str, lineno: int) -> None:
        error = InputError(message, source=source, line=lineno)
        rep.record_skip(error)
        if strict:
            raise error

    for lineno, raw in enumerate(raw_lines, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            skip("not UTF-8 text", lineno)
            continue
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            skip(f"not valid JSON (column {exc.colno}): {exc.msg}", lineno)
            continue
        if isinstance(data, dict) and data.get("kept", True) is False:
            rep.filtered += 1
            continue
        concept, problems = parse_prototype_record(data)
        for problem in problems:
            skip(problem, lineno)
        if concept is None:
            continue
        if concept.concept in seen:
            skip(f"concept: duplicate id {concept.concept!r} (first on line {seen[concept.concept]})", lineno)
            continue
        seen[concept.concept] = lineno
        rep.read += 1
        out.append(concept)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Planning: one entry per distinct position, duplicates recorded


@dataclass(frozen=True)
class PlannedPosition:
    """A position to search, with the concept it illustrates and its puzzle id."""

    id: str
    concept: ConceptPrototypes
    position: PrototypePosition


@dataclass(frozen=True)
class Rejection:
    """A candidate (or would-be candidate) that did not become a puzzle, and why."""

    id: str
    concept: str
    fen: str
    split: str
    reasons: tuple[str, ...]
    answer: str | None = None
    checks: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "concept": self.concept, "fen": self.fen, "split": self.split,
                "answer": self.answer, "reasons": list(self.reasons), "checks": dict(self.checks)}


def plan_positions(concepts: Iterable[ConceptPrototypes]) -> tuple[list[PlannedPosition], list[Rejection]]:
    """Every distinct position of every concept, in input order; repeats and finished games as rejections."""
    planned: list[PlannedPosition] = []
    rejected: list[Rejection] = []
    first: dict[str, str] = {}
    for concept in concepts:
        for pos in concept.positions:
            board = chess.Board(pos.fen)
            key = position_key(board)
            pid = puzzle_id(concept.concept, key)
            if key in first:
                rejected.append(Rejection(pid, concept.concept, pos.fen, pos.split,
                                          (f"dedupe: duplicate of {first[key]}",)))
                continue
            first[key] = pid
            if board.is_game_over(claim_draw=False):
                rejected.append(Rejection(pid, concept.concept, pos.fen, pos.split,
                                          (f"game over: {board.result()} (nothing to solve)",)))
                continue
            planned.append(PlannedPosition(pid, concept, pos))
    return planned, rejected


# ---------------------------------------------------------------------------------------------------------------
# Solving: the teacher's deep search, batched


@dataclass(frozen=True)
class SolveConfig(DictConfig):
    """How candidates are solved: simulations per position, alternatives kept, line length, batch size."""

    simulations: int = 800
    alternatives: int = 3  # other moves kept (by visits) with their lines: PGN variations, the report
    max_line_plies: int = 16  # the principal variation is cut here (deep PV moves rest on few visits)
    chunk_size: int = 128  # positions searched together (one tree each); also the resume granularity

    def __post_init__(self) -> None:
        if self.simulations < 1:
            raise ValueError(f"simulations must be ≥ 1, got {self.simulations}")
        if self.alternatives < 0 or self.max_line_plies < 1 or self.chunk_size < 1:
            raise ValueError("alternatives ≥ 0, max_line_plies ≥ 1 and chunk_size ≥ 1 are required")


@dataclass(frozen=True)
class MoveStat:
    """One root move of the search: visits, Q (side to move's view; None when unvisited), prior, its line."""

    uci: str
    visits: int
    q: float | None
    prior: float
    line: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"uci": self.uci, "visits": self.visits, "q": self.q, "prior": self.prior, "line": list(self.line)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MoveStat:
        return cls(d["uci"], int(d["visits"]), d.get("q"), float(d.get("prior", 0.0)), tuple(d.get("line", ())))


@dataclass(frozen=True)
class Candidate:
    """A prototype position solved by the teacher. Values and Q are from the solver's (side to move's) view.

    `moves[0]` is the answer; the rest are the alternatives by visits. `q_gap` is Q(answer) − Q(second most
    visited move), None when no other move was visited.
    """

    id: str
    concept: str
    label: str
    layer: str
    novelty: float | None
    teachability: float | None
    fen: str
    split: str
    answer: str
    line: tuple[str, ...]
    moves: tuple[MoveStat, ...]
    visit_share: float
    q_gap: float | None
    root_value: float
    nn_value: float
    legal_moves: int
    simulations: int
    prev_fen: str | None = None
    last_move: str | None = None
    score: float | None = None
    start_fen: str | None = None  # the game's start and its moves up to the puzzle position, when known
    history: tuple[str, ...] = ()

    def under(self, concept: ConceptPrototypes, position: PrototypePosition, id: str | None = None) -> Candidate:
        """This solved position as a puzzle of `concept`: its labels and scores, the position's split and score."""
        return replace(self, id=self.id if id is None else id, concept=concept.concept, label=concept.label,
                       layer=concept.layer, novelty=concept.novelty, teachability=concept.teachability,
                       split=position.split, score=position.score)

    def board(self) -> chess.Board:
        """The puzzle position (no history)."""
        return chess.Board(self.fen)

    def board_with_last_move(self) -> chess.Board:
        """The puzzle position with the opponent's last move on the move stack when known (what a player sees)."""
        if self.prev_fen and self.last_move:
            board = chess.Board(self.prev_fen)
            board.push(chess.Move.from_uci(self.last_move))
            return board
        return self.board()

    def board_with_history(self) -> chess.Board:
        """The puzzle position with its whole game on the move stack when known (what a network trained with
        history planes should read), else with the last move."""
        if self.start_fen is not None and self.history:
            return Position(self.start_fen, self.history).board()
        return self.board_with_last_move()

    @property
    def answer_prior(self) -> float:
        return self.moves[0].prior

    @property
    def second(self) -> MoveStat | None:
        return self.moves[1] if len(self.moves) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "concept": self.concept, "label": self.label, "layer": self.layer,
                "novelty": self.novelty, "teachability": self.teachability, "fen": self.fen, "split": self.split,
                "answer": self.answer, "line": list(self.line), "moves": [m.to_dict() for m in self.moves],
                "visit_share": self.visit_share, "q_gap": self.q_gap, "root_value": self.root_value,
                "nn_value": self.nn_value, "legal_moves": self.legal_moves, "simulations": self.simulations,
                "prev_fen": self.prev_fen, "last_move": self.last_move, "score": self.score,
                "start_fen": self.start_fen, "history": list(self.history)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        return cls(d["id"], d["concept"], d.get("label", d["concept"]), d.get("layer", ""), d.get("novelty"),
                   d.get("teachability"), d["fen"], d["split"], d["answer"], tuple(d["line"]),
                   tuple(MoveStat.from_dict(m) for m in d["moves"]), float(d["visit_share"]), d.get("q_gap"),
                   float(d["root_value"]), float(d["nn_value"]), int(d["legal_moves"]), int(d["simulations"]),
                   d.get("prev_fen"), d.get("last_move"), d.get("score"), d.get("start_fen"),
                   tuple(d.get("history") or ()))


def _line_from(node: Node | None, first: chess.Move, max_plies: int) -> list[chess.Move]:
    """`first` then the most-visited path below it (ties: higher prior), as the search's PV is built."""
    line = [first]
    while node is not None and node.expanded and node.n_total > 0 and len(line) < max_plies:
        a = int(np.lexsort((-node.P, -node.N))[0])
        line.append(node.moves[a])
        node = node.children[a]
    return line


def candidate_from_result(planned: PlannedPosition, result: SearchResult, config: SolveConfig) -> Candidate:
    """Turn one search result into a `Candidate` (the answer is the most-visited move)."""
    if not result.moves:
        raise ValueError(f"{planned.id}: no legal moves in {result.board.fen()!r}")
    visits = np.asarray(result.visits, dtype=np.float64)
    total = float(visits.sum())
    ranked = result.ranked()
    root = getattr(result, "root", None)
    children = getattr(root, "children", None) or [None] * len(result.moves)
    stats: list[MoveStat] = []
    for k, (move, n, q, prior) in enumerate(ranked[: config.alternatives + 1]):
        if k > 0 and n == 0:
            break  # unvisited moves are not alternatives the search considered
        child = children[result.moves.index(move)]
        line = _line_from(child, move, config.max_line_plies)
        stats.append(MoveStat(move.uci(), n, None if math.isnan(q) else q, prior, tuple(m.uci() for m in line)))
    answer = ranked[0][0]
    pv = list(result.pv[: config.max_line_plies])
    if not pv or pv[0] != answer:
        pv = [chess.Move.from_uci(u) for u in stats[0].line]
    q_answer = stats[0].q
    q_second = stats[1].q if len(stats) > 1 and stats[1].visits > 0 else None
    q_gap = None if q_answer is None or q_second is None else q_answer - q_second
    pos = planned.position
    return Candidate(
        id=planned.id, concept=planned.concept.concept, label=planned.concept.label, layer=planned.concept.layer,
        novelty=planned.concept.novelty, teachability=planned.concept.teachability, fen=pos.fen, split=pos.split,
        answer=answer.uci(), line=tuple(m.uci() for m in pv), moves=tuple(stats),
        visit_share=ranked[0][1] / total if total > 0 else 0.0, q_gap=q_gap, root_value=float(result.root_value),
        nn_value=float(result.nn_value), legal_moves=len(result.moves), simulations=int(total),
        prev_fen=pos.prev_fen(), last_move=pos.last_move, score=pos.score,
        start_fen=pos.start_fen if pos.moves else None, history=tuple(pos.moves))


def solve(planned: Sequence[PlannedPosition], mcts: MCTS, config: SolveConfig | None = None, *,
          on_chunk: Callable[[list[Candidate]], None] | None = None,
          progress: Callable[[int, int], None] | None = None) -> list[Candidate]:
    """Search every planned position with the teacher and return the candidates, in input order.

    Positions are searched `config.chunk_size` at a time, one tree each, all trees stepping together (one batched
    network call per step). `on_chunk` receives each finished chunk (the build command appends it to disk, so a
    killed build resumes after the last finished chunk); `progress(done, total)` is called after each chunk.
    """
    config = config or SolveConfig()
    out: list[Candidate] = []
    for lo in range(0, len(planned), config.chunk_size):
        chunk = planned[lo: lo + config.chunk_size]
        results = mcts.search([p.position.board() for p in chunk], config.simulations)
        done = [candidate_from_result(p, r, config) for p, r in zip(chunk, results, strict=True)]
        out.extend(done)
        if on_chunk is not None:
            on_chunk(done)
        if progress is not None:
            progress(min(lo + config.chunk_size, len(planned)), len(planned))
    return out
