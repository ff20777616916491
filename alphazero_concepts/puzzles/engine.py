"""Stockfish cross-check of puzzle answers, through `chess.engine` (optional: a clear message when absent).

`StockfishAnalyser.verdict(board, answer)` searches the position to a fixed depth with two principal variations
(MultiPV 2) and, when the answer is neither of Stockfish's two best moves, searches the answer alone
(``root_moves``) to the same depth. The result is an `EngineVerdict`: Stockfish's best and second-best moves and
the answer, each in centipawns from the solver's (side to move's) view. Mate scores count as ±`MATE_CP` minus the
distance to mate, so a missed forced mate is a large loss and a slower mate a small one.

Each position starts a new game in the engine (``ucinewgame``) and the engine runs one thread, so a verdict at a
fixed depth does not depend on the positions analysed before it.

The checks (`checks.py`) take `EngineVerdict` objects, never the engine, so they are tested with hand-made
verdicts; only this module talks to the binary.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import chess
import chess.engine

from alphazero_concepts.engines import STOCKFISH_DIRS, locate_stockfish

__all__ = ["MATE_CP", "EngineUnavailable", "EngineVerdict", "StockfishAnalyser", "engine_verdict", "find_stockfish",
           "win_chances"]

MATE_CP = 10_000
_HINT = ("install it (Debian/Ubuntu: apt-get install stockfish), pass its path (--stockfish PATH), or build "
         "without the engine cross-check (--no-engine)")


class EngineUnavailable(RuntimeError):
    """No usable Stockfish binary; the message says how to install one or how to build without it."""


def find_stockfish(path: str | os.PathLike[str] | None = None) -> str:
    """The Stockfish binary: `path`, else ``stockfish`` on PATH, else /usr/games/stockfish (Debian's place)."""
    found = locate_stockfish(path)
    if found is not None:
        return found
    if path is not None:
        raise EngineUnavailable(f"Stockfish binary {str(path)!r} not found or not executable: {_HINT}")
    looked = ", ".join(STOCKFISH_DIRS)
    raise EngineUnavailable(f"Stockfish not found (looked for 'stockfish' on PATH and in {looked}): {_HINT}")


def win_chances(cp: float) -> float:
    """Lichess's win chances in [-1, 1] for a centipawn score: 2 / (1 + exp(−0.004·cp)) − 1."""
    return 2.0 / (1.0 + math.exp(-0.004 * max(-MATE_CP, min(MATE_CP, cp)))) - 1.0


@dataclass(frozen=True)
class EngineVerdict:
    """Stockfish on one position at a fixed depth; centipawns from the solver's (side to move's) view."""

    depth: int
    best: str
    best_cp: int
    answer: str
    answer_cp: int
    second: str | None = None
    second_cp: int | None = None
    engine: str = "stockfish"

    @property
    def cp_loss(self) -> int:
        """How much worse the answer is than Stockfish's best (0 when it is the best)."""
        return 0 if self.answer == self.best else max(0, self.best_cp - self.answer_cp)

    @property
    def disagrees(self) -> bool:
        """Stockfish prefers another move than the answer."""
        return self.answer != self.best

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cp_loss": self.cp_loss, "disagrees": self.disagrees}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EngineVerdict:
        return cls(int(d["depth"]), d["best"], int(d["best_cp"]), d["answer"], int(d["answer_cp"]),
                   d.get("second"), None if d.get("second_cp") is None else int(d["second_cp"]),
                   d.get("engine", "stockfish"))


def _cp(info: Mapping[str, Any], turn: chess.Color) -> int:
    score = info["score"].pov(turn)
    return int(score.score(mate_score=MATE_CP))


class StockfishAnalyser:
    """A running Stockfish (context manager) that gives `EngineVerdict`s at a fixed depth (or node budget)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, depth: int = 16, *, threads: int = 1,
                 hash_mb: int = 64, nodes: int | None = None) -> None:
        if depth < 1:
            raise ValueError(f"depth must be ≥ 1, got {depth}")
        if nodes is not None and nodes < 1:
            raise ValueError(f"nodes must be ≥ 1, got {nodes}")
        self.path = find_stockfish(path)
        self.depth = depth
        self.nodes = nodes
        try:
            self._engine = chess.engine.SimpleEngine.popen_uci(self.path)
        except (OSError, chess.engine.EngineError) as exc:
            raise EngineUnavailable(f"cannot start Stockfish at {self.path}: {exc}") from exc
        self._engine.configure({"Threads": threads, "Hash": hash_mb})
        self.name = str(self._engine.id.get("name", "stockfish"))

    def __enter__(self) -> StockfishAnalyser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.quit()

    @property
    def limit(self) -> chess.engine.Limit:
        """The search of every verdict: `nodes` when set, else `depth`."""
        return chess.engine.Limit(nodes=self.nodes) if self.nodes else chess.engine.Limit(depth=self.depth)

    def verdict(self, board: chess.Board, answer: chess.Move) -> EngineVerdict:
        """Stockfish's two best moves and the answer's score under `limit` (see the module docstring)."""
        return engine_verdict(self._engine, board, answer, self.limit, self.name)


def engine_verdict(engine: Any, board: chess.Board, answer: chess.Move, limit: chess.engine.Limit,
                   name: str = "stockfish") -> EngineVerdict:
    """Stockfish's two best moves (MultiPV 2) and the answer's score under `limit` (a depth or a node budget),
    with the depth actually reached; when the answer is neither of the two best moves it is searched alone
    (``root_moves``) under the same limit. `engine` is anything with python-chess's ``analyse`` (a
    `chess.engine.SimpleEngine`, or a fake in tests)."""
    if not board.is_legal(answer):
        raise ValueError(f"answer {answer.uci()} is illegal in {board.fen()!r}")
    game = object()  # a new game key per position: python-chess sends ucinewgame
    infos = engine.analyse(board, limit, multipv=2, game=game)
    if not infos or not infos[0].get("pv") or "score" not in infos[0]:
        raise chess.engine.EngineError(f"no principal variation for {board.fen()!r}")
    turn = board.turn
    best = infos[0]["pv"][0]
    best_cp = _cp(infos[0], turn)
    second = infos[1]["pv"][0] if len(infos) > 1 and infos[1].get("pv") else None
    second_cp = _cp(infos[1], turn) if second is not None else None
    if answer == best:
        answer_cp = best_cp
    elif answer == second and second_cp is not None:
        answer_cp = second_cp
    else:
        answer_cp = _cp(engine.analyse(board, limit, root_moves=[answer], game=game), turn)
    depth = int(infos[0].get("depth") or limit.depth or 0)
    return EngineVerdict(depth, best.uci(), best_cp, answer.uci(), answer_cp,
                         second.uci() if second is not None else None, second_cp, name)
