"""Players of the arena: our network with the batched MCTS, and Stockfish through `chess.engine`.

A `Player` chooses one move for each of many boards at once (`choose_moves`), so a match can hand it every game
where it is to move in one call: our MCTS searches them all together (one batched network call per step), while
Stockfish answers one board after another in a single reused engine process. `budget` records what a player
was allowed to spend per move (simulations, or movetime/nodes with the strength setting), written next to every
result so that an Elo is never separated from the budget it was measured under.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import chess
import chess.engine
import numpy as np

from alphazero_concepts.chess.encoding import boards_to_arrays, legal_move_indices
from alphazero_concepts.engines import STOCKFISH_DIRS, locate_stockfish
from alphazero_concepts.nn.network import HookedNet, check_precision
from alphazero_concepts.search.mcts import MCTS, Evaluator, MCTSConfig, NetEvaluator

PLAYER_CACHE_SIZE = 50_000  # evaluations an MCTSPlayer keeps: a few moves of 40 games at 400 simulations
INSTALL_HINT = "install it with `apt-get install -y stockfish` (Debian/Ubuntu) or pass its path with --stockfish PATH"


class EngineNotFoundError(FileNotFoundError):
    """No usable Stockfish binary; the message says where we looked and how to install one."""


class Player(ABC):
    """Something that picks moves: `choose_moves(boards)` returns one legal move per board (boards keep history)."""

    name: str

    @abstractmethod
    def choose_moves(self, boards: Sequence[chess.Board]) -> list[chess.Move]:
        """One move for each board (each board is to move for this player and not game-over); boards unchanged."""

    @property
    @abstractmethod
    def budget(self) -> dict[str, object]:
        """What this player may spend per move, e.g. ``{"kind": "mcts", "simulations": 400}`` (JSON-serialisable)."""

    def budget_text(self) -> str:
        """The budget in one line for PGN headers, e.g. ``"mcts simulations=400"``."""
        items = [f"{k}={v}" for k, v in self.budget.items() if k != "kind" and v is not None]
        return " ".join([str(self.budget.get("kind", "player")), *items])

    def stats(self) -> dict[str, float]:
        """Counters of work done since the last `reset_stats` (moves, evaluations, nodes …); empty by default."""
        return {}

    def reset_stats(self) -> None:  # noqa: B027 - optional hook
        """Zero the counters of `stats`."""

    def close(self) -> None:  # noqa: B027 - optional hook: players holding a process override it
        """Release what the player holds (an engine process); a no-op by default."""

    def __enter__(self) -> Player:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def policy_best_moves(evaluator: Evaluator, boards: Sequence[chess.Board]) -> list[chess.Move]:
    """The evaluator's most probable legal move for each board (no search), all boards in one evaluator call.

    Boards must have at least one legal move. Ties go to the first move in the move generator's order.
    """
    if not boards:
        return []
    fmt = getattr(evaluator, "format", None)
    indexer = fmt.legal_move_indices if fmt is not None else legal_move_indices
    legal = [indexer(board) for board in boards]
    for board, (moves, _) in zip(boards, legal, strict=True):
        if not moves:
            raise ValueError(f"no legal move in {board.fen()}")
    priors, _ = evaluator.evaluate(boards_to_arrays(boards), [ix for _, ix in legal])
    return [moves[int(np.argmax(p))] for (moves, _), p in zip(legal, priors, strict=True)]


class MCTSPlayer(Player):
    """Our network with the project's batched MCTS: the most-visited move after `simulations`, no root noise.

    `simulations=0` plays the raw policy's most probable move. `precision` "bf16" runs the network under bfloat16
    autocast (faster on bf16 hardware, measurably weaker: docs/arena.md); it is part of `budget` when not fp32.
    `evaluator` replaces the network (tests and
    baselines use `UniformEvaluator`). The search keeps its evaluation cache (`PLAYER_CACHE_SIZE` entries unless
    `config` says otherwise) between calls, so positions met again (the next move's subtree, repeated openings)
    cost no new network calls; this changes speed, not moves.
    """

    def __init__(self, net: HookedNet | None, simulations: int = 100, name: str = "mcts", *,
                 evaluator: Evaluator | None = None, config: MCTSConfig | None = None,
                 precision: str = "fp32") -> None:
        if simulations < 0:
            raise ValueError(f"simulations must be ≥ 0, got {simulations}")
        if net is None and evaluator is None:
            raise ValueError("MCTSPlayer needs a network or an evaluator")
        if evaluator is not None and precision != "fp32":
            raise ValueError("precision applies to the player's own NetEvaluator: set it on the evaluator passed")
        self.name = name
        self.simulations = simulations
        self.precision = check_precision(precision)
        self.evaluator: Evaluator = evaluator if evaluator is not None else \
            NetEvaluator(net, precision=precision)  # type: ignore[arg-type]
        base = config or MCTSConfig(cache_size=PLAYER_CACHE_SIZE)
        self.config = MCTSConfig(**{**base.to_dict(), "simulations": max(1, simulations), "add_noise": False})
        self.mcts = MCTS(self.evaluator, self.config)
        self._moves = 0
        self._time = 0.0

    @property
    def budget(self) -> dict[str, object]:
        budget: dict[str, object] = {"kind": "mcts", "simulations": self.simulations}
        if self.precision != "fp32":
            budget["precision"] = self.precision
        return budget

    def stats(self) -> dict[str, float]:
        """Moves chosen, positions the network evaluated (cache misses) and network calls, seconds spent."""
        return {"moves": self._moves, "evaluations": self.mcts.evaluations, "network_calls": self.mcts.calls,
                "seconds": self._time}

    def reset_stats(self) -> None:
        self._moves, self._time = 0, 0.0
        self.mcts.evaluations = self.mcts.calls = 0

    def choose_moves(self, boards: Sequence[chess.Board]) -> list[chess.Move]:
        if not boards:
            return []
        start = time.perf_counter()
        try:
            return self._choose(boards)
        finally:
            self._moves += len(boards)
            self._time += time.perf_counter() - start

    def _choose(self, boards: Sequence[chess.Board]) -> list[chess.Move]:
        if self.simulations == 0:
            return policy_best_moves(self.evaluator, boards)
        results = self.mcts.search(list(boards), self.simulations)
        moves = []
        for board, result in zip(boards, results, strict=True):
            move = result.best_move()
            if move is None:
                raise ValueError(f"{self.name}: no move to choose in {board.fen()} (game over)")
            moves.append(move)
        return moves


def find_stockfish(path: str | Path | None = None) -> Path:
    """The Stockfish binary: `path` when given, else `stockfish` on PATH, else in `STOCKFISH_DIRS`.

    Raises EngineNotFoundError saying where it looked and how to install Stockfish.
    """
    found = locate_stockfish(path)
    if found is not None:
        return Path(found)
    if path is not None:
        why = "is not executable" if Path(path).is_file() else "does not exist"
        raise EngineNotFoundError(f"Stockfish binary {path} {why}; {INSTALL_HINT}")
    raise EngineNotFoundError(f"Stockfish not found on PATH or in {', '.join(STOCKFISH_DIRS)}; {INSTALL_HINT}")


class StockfishPlayer(Player):
    """Stockfish at a fixed strength (`uci_elo` via UCI_LimitStrength, or `skill_level`) and a fixed budget.

    Exactly one of `movetime` (seconds per move) and `nodes` sets the budget. One engine process is started here
    and reused for every move of every game (moves are asked one board at a time, history included); close it
    with `close()` or a `with` block. Raises EngineNotFoundError (with install instructions) when the binary is
    missing and ValueError for a strength outside the engine's range.
    """

    def __init__(self, uci_elo: int | None = None, skill_level: int | None = None, *, movetime: float | None = 0.1,
                 nodes: int | None = None, path: str | Path | None = None, threads: int = 1, hash_mb: int = 16,
                 name: str | None = None) -> None:
        if uci_elo is not None and skill_level is not None:
            raise ValueError("give uci_elo or skill_level, not both")
        if nodes is not None:
            movetime = None
        if movetime is None and nodes is None:
            raise ValueError("give a budget: movetime (seconds) or nodes")
        if (movetime is not None and movetime <= 0) or (nodes is not None and nodes < 1):
            raise ValueError(f"budget must be positive (movetime={movetime}, nodes={nodes})")
        self.uci_elo, self.skill_level, self.movetime, self.nodes = uci_elo, skill_level, movetime, nodes
        self.name = name or stockfish_name(uci_elo, skill_level)
        self.path = find_stockfish(path)
        try:
            self.engine = chess.engine.SimpleEngine.popen_uci(str(self.path))
        except (OSError, chess.engine.EngineError) as exc:
            raise EngineNotFoundError(f"could not start Stockfish at {self.path}: {exc}; {INSTALL_HINT}") from exc
        try:
            options: dict[str, chess.engine.ConfigValue] = {}
            if "Threads" in self.engine.options:
                options["Threads"] = threads
            if "Hash" in self.engine.options:
                options["Hash"] = hash_mb
            if uci_elo is not None:
                self._check_range("UCI_Elo", uci_elo)
                options.update({"UCI_LimitStrength": True, "UCI_Elo": uci_elo})
            elif skill_level is not None:
                self._check_range("Skill Level", skill_level)
                options["Skill Level"] = skill_level
            self.engine.configure(options)
        except BaseException:
            self.engine.quit()
            raise
        self.version = self.engine.id.get("name", "stockfish")
        self.limit = chess.engine.Limit(time=movetime) if movetime is not None else chess.engine.Limit(nodes=nodes)
        self.reset_stats()

    def _check_range(self, option: str, value: int) -> None:
        spec = self.engine.options.get(option)
        if spec is None:
            raise ValueError(f"{self.path} has no UCI option {option!r} (is it Stockfish?)")
        if spec.min is not None and spec.max is not None and not spec.min <= value <= spec.max:
            raise ValueError(f"{option} {value} is outside the engine's range {spec.min}–{spec.max}")

    @property
    def budget(self) -> dict[str, object]:
        return {"kind": "stockfish", "uci_elo": self.uci_elo, "skill_level": self.skill_level,
                "movetime": self.movetime, "nodes": self.nodes, "engine": self.version}

    def stats(self) -> dict[str, float]:
        """Moves played, mean nodes and depth per move (what the budget bought on this machine), seconds."""
        n = max(1, self._moves)
        return {"moves": self._moves, "mean_nodes": self._nodes / n, "mean_depth": self._depth / n,
                "seconds": self._time}

    def reset_stats(self) -> None:
        self._moves, self._nodes, self._depth, self._time = 0, 0, 0, 0.0

    def choose_moves(self, boards: Sequence[chess.Board]) -> list[chess.Move]:
        moves = []
        for board in boards:
            start = time.perf_counter()
            result = self.engine.play(board, self.limit, info=chess.engine.INFO_BASIC)
            self._time += time.perf_counter() - start
            if result.move is None:
                raise chess.engine.EngineError(f"{self.version} returned no move in {board.fen()}")
            self._moves += 1
            self._nodes += int(result.info.get("nodes", 0))
            self._depth += int(result.info.get("depth", 0))
            moves.append(result.move)
        return moves

    def close(self) -> None:
        try:
            self.engine.quit()
        except (chess.engine.EngineError, chess.engine.EngineTerminatedError, TimeoutError):
            self.engine.close()


def stockfish_name(uci_elo: int | None = None, skill_level: int | None = None) -> str:
    """Player name of a Stockfish level: ``stockfish-elo1350``, ``stockfish-skill5`` or ``stockfish-full``."""
    if uci_elo is not None:
        return f"stockfish-elo{uci_elo}"
    if skill_level is not None:
        return f"stockfish-skill{skill_level}"
    return "stockfish-full"
