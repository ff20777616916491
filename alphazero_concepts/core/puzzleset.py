"""Load and check a puzzle set (schema ``alphazero-concepts/puzzles/1``), the study app's only input.

The puzzle exporter writes this JSON; the study app reads it. The contract:

    {"schema": "alphazero-concepts/puzzles/1", "name": str, "model": {...optional provenance...},
     "puzzles": [{"id": str, "fen": str, "solution": [uci, ...], "line": [uci, ...], "concept": str,
                  "concept_label": str (optional), "split": "train" | "test", "rating": int | null,
                  "themes": [str] (optional), ...extra keys ignored}]}

* ``fen`` is the puzzle position; the side to move is the solver.
* ``solution[0]`` is the answer: a puzzle is solved when the player's first move equals it.
* ``line`` is the machine's principal variation from the puzzle position (at least 3 plies), shown in phase 2.
  It must start with the answer, since the answer is the machine's best move (METHOD.md §5).
* ``split``: ``train`` puzzles are solved in phase 1 and reviewed in phase 2; ``test`` puzzles are phase 3's.

Every move is replayed with python-chess, so a set that loads is a set the server can check answers against.
Errors name the file, the puzzle index and the field (``set.json: puzzles[3].line[2]: illegal move ...``) and
the first one raises `PuzzleSetError`: a study must not start on a half-valid set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chess

__all__ = ["MIN_LINE_PLIES", "SCHEMA", "Puzzle", "PuzzleSet", "PuzzleSetError", "load_puzzle_set",
           "parse_puzzle_set"]

SCHEMA = "alphazero-concepts/puzzles/1"
MIN_LINE_PLIES = 3
SPLITS = ("train", "test")


class PuzzleSetError(ValueError):
    """A puzzle set that breaks the schema; the message names the file, the puzzle index and the field."""


@dataclass(frozen=True)
class Puzzle:
    """One puzzle. Moves are UCI strings; `answer` is the move that solves it (``solution[0]``)."""

    id: str
    fen: str
    solution: tuple[str, ...]
    line: tuple[str, ...]
    concept: str
    concept_label: str
    split: str
    rating: int | None = None
    themes: tuple[str, ...] = ()

    @property
    def answer(self) -> str:
        return self.solution[0]

    def board(self) -> chess.Board:
        """A fresh board at the puzzle position (no history: the FEN is all the player sees)."""
        return chess.Board(self.fen)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "fen": self.fen, "solution": list(self.solution), "line": list(self.line),
                "concept": self.concept, "concept_label": self.concept_label, "split": self.split,
                "rating": self.rating, "themes": list(self.themes)}


@dataclass(frozen=True)
class PuzzleSet:
    """A named, validated list of puzzles, with the provenance (``model``) the exporter recorded."""

    name: str
    puzzles: tuple[Puzzle, ...]
    model: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<puzzle set>"

    def by_id(self) -> dict[str, Puzzle]:
        return {p.id: p for p in self.puzzles}

    def concepts(self) -> dict[str, str]:
        """Concept id → label, in order of first appearance."""
        out: dict[str, str] = {}
        for p in self.puzzles:
            out.setdefault(p.concept, p.concept_label)
        return out

    def select(self, concepts: set[str] | frozenset[str], split: str) -> list[Puzzle]:
        """Puzzles of the given concepts and split, in file order."""
        return [p for p in self.puzzles if p.concept in concepts and p.split == split]

    def counts(self) -> dict[str, dict[str, int]]:
        """Concept id → {"train": n, "test": n}."""
        out: dict[str, dict[str, int]] = {}
        for p in self.puzzles:
            out.setdefault(p.concept, {s: 0 for s in SPLITS})[p.split] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "name": self.name, "model": dict(self.model),
                "puzzles": [p.to_dict() for p in self.puzzles]}


def load_puzzle_set(path: str | os.PathLike[str]) -> PuzzleSet:
    """Read and validate a puzzle-set JSON file; raises `PuzzleSetError` naming the file on any problem."""
    path = Path(path)
    if path.is_dir():
        raise PuzzleSetError(f"{path}: is a directory, not a puzzle set")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PuzzleSetError(f"{path}: cannot read: {(exc.strerror or str(exc)).lower()}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PuzzleSetError(f"{path}:{line}: not UTF-8 text (a puzzle set is JSON in UTF-8)") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PuzzleSetError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from exc
    except RecursionError as exc:
        raise PuzzleSetError(f"{path}: not valid JSON (nested too deeply)") from exc
    return parse_puzzle_set(data, source=str(path))


def parse_puzzle_set(data: object, source: str = "<puzzle set>") -> PuzzleSet:
    """Validate an already-decoded puzzle set; `source` names it in error messages."""

    def fail(where: str, message: str) -> PuzzleSetError:
        return PuzzleSetError(f"{source}: {where}: {message}")

    if not isinstance(data, dict):
        raise fail("top level", f"expected a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if schema != SCHEMA:
        raise fail("schema", f"expected {SCHEMA!r}, got {schema!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail("name", "expected a non-empty string")
    model = data.get("model", {})
    if model is None:
        model = {}
    if not isinstance(model, dict):
        raise fail("model", f"expected an object, got {type(model).__name__}")
    raw = data.get("puzzles")
    if not isinstance(raw, list) or not raw:
        raise fail("puzzles", "expected a non-empty list")
    puzzles: list[Puzzle] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        puzzle = _parse_puzzle(item, f"puzzles[{i}]", fail)
        if puzzle.id in seen:
            raise fail(f"puzzles[{i}].id", f"duplicate id {puzzle.id!r} (first used by puzzles[{seen[puzzle.id]}])")
        seen[puzzle.id] = i
        puzzles.append(puzzle)
    return PuzzleSet(name=name.strip(), puzzles=tuple(puzzles), model=model, source=source)


def _parse_puzzle(item: object, where: str, fail) -> Puzzle:
    if not isinstance(item, dict):
        raise fail(where, f"expected an object, got {type(item).__name__}")

    def text(key: str, *, required: bool = True, default: str = "") -> str:
        value = item.get(key)
        if value is None and not required:
            return default
        if not isinstance(value, str) or not value.strip():
            raise fail(f"{where}.{key}", "expected a non-empty string" if value is not None else "missing")
        return value.strip()

    pid = text("id")
    if len(pid) > 200:
        raise fail(f"{where}.id", "longer than 200 characters")
    fen = text("fen")
    try:
        board = chess.Board(fen)
    except ValueError as exc:
        raise fail(f"{where}.fen", f"invalid FEN {fen!r}: {exc}") from exc
    if not board.is_valid():
        raise fail(f"{where}.fen", f"impossible position {fen!r} ({board.status()!r})")
    if board.is_game_over(claim_draw=False):
        raise fail(f"{where}.fen", f"the game is already over in {fen!r}: nothing to solve")
    solution = _moves(item.get("solution"), board, f"{where}.solution", fail, min_len=1)
    line = _moves(item.get("line"), board, f"{where}.line", fail, min_len=MIN_LINE_PLIES)
    if line[0] != solution[0]:
        raise fail(f"{where}.line[0]", f"the machine's line starts with {line[0]} but the answer (solution[0]) is "
                                       f"{solution[0]}: the line must start with the answer")
    concept = text("concept")
    label = text("concept_label", required=False, default=concept)
    split = item.get("split")
    if split not in SPLITS:
        raise fail(f"{where}.split", f"expected 'train' or 'test', got {split!r}")
    rating = item.get("rating")
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int)):
        raise fail(f"{where}.rating", f"expected an integer or null, got {rating!r}")
    themes = item.get("themes", [])
    if themes is None:
        themes = []
    if not isinstance(themes, list) or not all(isinstance(t, str) for t in themes):
        raise fail(f"{where}.themes", "expected a list of strings")
    return Puzzle(id=pid, fen=board.fen(), solution=solution, line=line, concept=concept, concept_label=label,
                  split=split, rating=rating, themes=tuple(themes))


def _moves(value: object, board: chess.Board, where: str, fail, *, min_len: int) -> tuple[str, ...]:
    """Replay a list of UCI moves from `board` (not mutated); every one must be legal."""
    if not isinstance(value, list):
        got = "nothing" if value is None else type(value).__name__
        raise fail(where, f"expected a list of UCI moves, got {got}")
    if len(value) < min_len:
        raise fail(where, f"expected at least {min_len} move(s), got {len(value)}")
    b = board.copy(stack=False)
    out: list[str] = []
    for j, uci in enumerate(value):
        if not isinstance(uci, str):
            raise fail(f"{where}[{j}]", f"expected a UCI string, got {uci!r}")
        try:
            move = chess.Move.from_uci(uci.strip())
        except chess.InvalidMoveError as exc:
            raise fail(f"{where}[{j}]", f"not a UCI move: {uci!r}") from exc
        if not move or not b.is_legal(move):
            raise fail(f"{where}[{j}]", f"illegal move {uci!r} in {b.fen()!r}")
        out.append(move.uci())
        b.push(move)
    return tuple(out)
