"""Self-play reinforcement learning: play games with MCTS, train on the visit distributions and outcomes, repeat.

One iteration i:

1. **Play** `games` games with the current network, `concurrent` at a time. All live games step together: one
   batched `MCTS.search(boards)` per ply for every live game (network calls batched across the trees), Dirichlet
   noise on each root, no tree reuse between plies (the search's evaluation cache still makes revisited
   positions free). Games start from opening lines (the bundled ECO list, or the first plies of master games from
   a PGN) and sample moves from the visit counts with temperature `temperature` for the first
   `temperature_plies` plies, then play with `final_temperature` (0 = the most visited move).
2. **Resign**: a side whose searched value (the larger of the root value and the best move's Q, side to move's
   view) stays below `resign_threshold` for `resign_consecutive` of its own moves resigns. A share
   `no_resign_fraction` of the games never resign; in them the first would-be resignation is recorded, and the
   share of those whose would-be resigner did not lose is the false-resign rate (reported per iteration; if it is
   high, lower the threshold). Games longer than `max_plies` searched plies are adjudicated drawn.
3. **Store** every searched position: its network input (`PositionArrays`: bitboards, not planes), the visit
   distribution (sparse: policy indices in the network's format and shares summing to 1) and the outcome z from
   the side to move's view, as one replay shard per iteration (`training.replay`), plus a PGN of the games.
4. **Train** `steps` AdamW steps (default: `sample_reuse` × new positions / batch size) on batches drawn uniformly
   from the shards of the last `window` iterations: cross-entropy against the visit distribution + value MSE
   (the supervised `train_step`, with soft targets). A small learning rate fine-tunes a supervised checkpoint
   without wrecking it.
5. **Gate** (when `gate_games` > 0, `training.gate`): the trained network plays the one that played the games;
   it joins the series only if it does not lose (score ≥ `gate_threshold`, with its 95% interval in `gate.jsonl`
   and the checkpoint's `extra.gate`); a rejected one is recorded, not bundled, and the best network keeps playing.
6. **Checkpoint** `rl-{i:03d}` into the output series (float16, stage "selfplay", parent = the previous one, game
   and loss statistics in `extra`), then the full-precision training state (weights, optimiser) atomically.

Resuming (after a kill, even `kill -9`): the work directory's `state.pt` says which iteration finished last;
the run continues at the next one. A finished shard is reused (its games are never played again); the games of
an unfinished iteration finished so far are kept in `partial-XXX.npz` (saved every `save_every_games` games),
and only the rest (including the games that were in progress) are played. Games are seeded per
(seed, iteration, game index), so the openings, the no-resign games and move sampling do not depend on when the
run was interrupted; the Dirichlet noise comes from one generator per play session and does.
"""

from __future__ import annotations

import copy
import io
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import chess
import numpy as np
import torch

from alphazero_concepts.chess.encoding import PositionArrays, boards_to_arrays, legal_move_indices
from alphazero_concepts.chess.positions import ReadReport, read_pgn_games
from alphazero_concepts.nn.checkpoints import CheckpointError, CheckpointMeta, Series, atomic_write_bytes
from alphazero_concepts.nn.network import AZNet, DictConfig, NetConfig, resolve_device
from alphazero_concepts.search.games import play_batched
from alphazero_concepts.search.mcts import MCTS, Evaluator, MCTSConfig, NetEvaluator
from alphazero_concepts.search.roots import bundled_openings
from alphazero_concepts.training.gate import play_gate
from alphazero_concepts.training.replay import ReplayBuffer, ReplayError, ReplayShard
from alphazero_concepts.training.supervised import Batch, evaluate_batch, train_step

STATE_FILE = "state.pt"
CONFIG_FILE = "selfplay.json"
GATE_FILE = "gate.jsonl"
RESULT_WHITE = {"1-0": 1.0, "0-1": -1.0, "1/2-1/2": 0.0}
# Mean self-play game length (searched plies, after the opening) assumed by `bench_selfplay` to turn positions/s
# into games/hour: 125.6 in one iteration of 16 games of the bundled teacher (sup-002000, 32 simulations, resign
# at −0.9, 20% no-resign games), see docs/selfplay.md.
BENCH_GAME_PLIES = 125


@dataclass(frozen=True)
class SelfPlayConfig(DictConfig):
    """Parameters of a self-play RL run (saved as `selfplay.json` in the work directory)."""

    # playing
    games: int = 32  # games per iteration
    simulations: int = 64  # MCTS simulations per move
    concurrent: int = 32  # games played at once (one batched search per ply over all of them)
    leaves_per_tree: int = 1  # >1: several leaves per tree and step (virtual loss), bigger network batches
    c_init: float = 1.25
    fpu_reduction: float = 0.2
    dirichlet_alpha: float = 0.3
    dirichlet_epsilon: float = 0.25
    temperature: float = 1.0  # move sampling temperature for the first `temperature_plies` plies
    temperature_plies: int = 20  # counted from the end of the opening line
    final_temperature: float = 0.0  # afterwards (0: the most visited move)
    resign_threshold: float = -0.9  # side to move's searched value below this …
    resign_consecutive: int = 2  # … for this many of its own moves in a row: it resigns
    resign_min_plies: int = 0  # no resignation before this many searched plies
    no_resign_fraction: float = 0.2  # games that never resign (they measure the false-resign rate)
    max_plies: int = 300  # searched plies (after the opening); then the game is adjudicated a draw
    openings_pgn: str | None = None  # openings = the first `opening_plies` plies of this PGN's games
    opening_plies: int = 8
    max_openings: int = 5000  # games read from `openings_pgn`
    cache_size: int = 50_000  # MCTS evaluation cache (entries)
    save_every_games: int = 8  # partial progress of an iteration saved this often
    # training
    steps: int = 0  # optimiser steps per iteration; 0 = sample_reuse × new positions / batch_size
    sample_reuse: float = 2.0
    batch_size: int = 256
    lr: float = 2e-4
    weight_decay: float = 1e-4
    value_weight: float = 1.0
    window: int = 4  # train on the shards of the last `window` iterations
    eval_positions: int = 512  # positions of the new shard on which the loss is measured before/after training
    # arena gate (training.gate): 0 games = every iteration joins the series
    gate_games: int = 0
    gate_simulations: int = 64
    gate_threshold: float = 0.5
    # run
    seed: int = 0
    device: str = "cpu"
    # torch CPU threads. 1 by default: on a machine shared with other jobs, 2 threads made self-play about 5×
    # slower than 1 (OpenMP threads wait for each other when one is descheduled); see docs/selfplay.md
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("games", "simulations", "concurrent", "leaves_per_tree", "resign_consecutive", "max_plies",
                     "batch_size", "window", "save_every_games", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"SelfPlayConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("steps", "temperature_plies", "opening_plies", "resign_min_plies", "eval_positions",
                     "gate_games"):
            if getattr(self, name) < 0:
                raise ValueError(f"SelfPlayConfig.{name} must be ≥ 0, got {getattr(self, name)}")
        if not 0.0 <= self.no_resign_fraction <= 1.0:
            raise ValueError(f"SelfPlayConfig.no_resign_fraction must be in [0, 1], got {self.no_resign_fraction}")
        if self.temperature < 0 or self.final_temperature < 0:
            raise ValueError("SelfPlayConfig temperatures must be ≥ 0")
        if self.lr <= 0:
            raise ValueError(f"SelfPlayConfig.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.gate_threshold <= 1.0 or self.gate_simulations < 1:
            raise ValueError("SelfPlayConfig.gate_threshold must be in [0, 1] and gate_simulations ≥ 1")

    def mcts_config(self) -> MCTSConfig:
        return MCTSConfig(simulations=self.simulations, c_init=self.c_init, fpu_reduction=self.fpu_reduction,
                          dirichlet_alpha=self.dirichlet_alpha, dirichlet_epsilon=self.dirichlet_epsilon,
                          add_noise=True, leaves_per_tree=self.leaves_per_tree, cache_size=self.cache_size)

    def steps_for(self, new_positions: int) -> int:
        """Optimiser steps of an iteration that added `new_positions` positions."""
        if self.steps:
            return self.steps
        return max(1, math.ceil(self.sample_reuse * new_positions / self.batch_size))


@dataclass
class SelfPlayProgress:
    """What a progress callback is told: the phase ("play" or "train") of an iteration and how far it is.

    play: `done`/`total` games (finished games of a resumed iteration count as done), `positions` searched so far
    in this session and their rate; train: `done`/`total` optimiser steps and the last step's losses in `stats`.
    """

    iteration: int
    phase: str
    done: int
    total: int
    positions: int = 0
    positions_per_s: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)


ProgressFn = Callable[[SelfPlayProgress], None]
LogFn = Callable[[str], None]


# --------------------------------------------------------------------------------------------------------------
# Openings


def pgn_openings(path: str | Path, plies: int, max_games: int = 5000) -> list[tuple[str, chess.Board]]:
    """(name, board after the first `plies` plies) of the games of a PGN that are at least that long.

    Unreadable games are skipped and counted (python-chess's warning names the file and line).
    """
    report = ReadReport(source=str(path))
    out = []
    for game in read_pgn_games(path, report=report, max_games=max_games):
        if len(game.moves) < plies:
            continue
        board = chess.Board(game.start_fen)
        for move in game.moves[:plies]:
            board.push(move)
        if _game_end(board) is None:
            out.append((f"{Path(path).name}#{game.game + 1}", board))
    if not out:
        raise ValueError(f"{path}: no game with at least {plies} plies to take an opening from")
    return out


def load_openings(config: SelfPlayConfig) -> list[tuple[str, chess.Board]]:
    """The opening lines games start from: the PGN's first plies when `openings_pgn` is set, else the bundled list."""
    if config.openings_pgn:
        return pgn_openings(config.openings_pgn, config.opening_plies, config.max_openings)
    return bundled_openings()


# --------------------------------------------------------------------------------------------------------------
# Playing


def _game_end(board: chess.Board) -> tuple[str, str] | None:
    """(result, termination) when the game is over by rule (as the search scores it), else None."""
    if not any(board.generate_legal_moves()):
        if board.is_check():
            return ("0-1" if board.turn == chess.WHITE else "1-0"), "checkmate"
        return "1/2-1/2", "stalemate"
    if board.is_insufficient_material():
        return "1/2-1/2", "insufficient material"
    if board.halfmove_clock >= 100:
        return "1/2-1/2", "fifty-move rule"
    if board.is_repetition(3):
        return "1/2-1/2", "threefold repetition"
    return None


def _colour(side: chess.Color) -> str:
    return "white" if side == chess.WHITE else "black"


class _Game:
    """A game being played: its board, its searched positions so far and its resign bookkeeping."""

    def __init__(self, index: int, opening: tuple[str, chess.Board], resign_allowed: bool,
                 rng: np.random.Generator) -> None:
        self.index = index
        self.opening_name, start = opening
        self.board = start.copy()
        self.start_fen = self.board.root().fen()
        self.opening_plies = len(self.board.move_stack)
        self.resign_allowed = resign_allowed
        self.rng = rng
        self.low = {chess.WHITE: 0, chess.BLACK: 0}
        self.would_resign: chess.Color | None = None
        self.would_resign_ply: int | None = None
        self.rows: list[tuple] = []  # (bitboards, repetitions, turn, castling, ply, halfmove) per searched position
        self.policy_index: list[np.ndarray] = []
        self.policy_prob: list[np.ndarray] = []
        self.root_value: list[float] = []
        self.result: str | None = None
        self.termination = ""

    @property
    def searched(self) -> int:
        return len(self.rows)

    def finish(self, result: str, termination: str) -> None:
        self.result, self.termination = result, termination

    def to_shard(self, iteration: int, info: dict) -> ReplayShard:
        assert self.result is not None
        n = self.searched
        arrays = PositionArrays(*(np.stack([r[k] for r in self.rows]) for k in range(6)))
        sizes = np.array([len(ix) for ix in self.policy_index], dtype=np.int64)
        z_white = RESULT_WHITE[self.result]
        would = self.would_resign
        record = {
            "index": self.index, "opening": self.opening_name, "start_fen": self.start_fen,
            "moves": [m.uci() for m in self.board.move_stack], "opening_plies": self.opening_plies,
            "plies": n, "result": self.result, "termination": self.termination,
            "resign_allowed": self.resign_allowed,
            "would_resign": None if would is None else _colour(would), "would_resign_ply": self.would_resign_ply,
        }
        return ReplayShard(
            arrays=arrays,
            policy_offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            policy_index=np.concatenate(self.policy_index).astype(np.int32) if n else np.zeros(0, np.int32),
            policy_prob=np.concatenate(self.policy_prob).astype(np.float32) if n else np.zeros(0, np.float32),
            value=np.where(arrays.turn, z_white, -z_white).astype(np.float32),
            root_value=np.array(self.root_value, dtype=np.float32),
            game_offsets=np.array([0, n], dtype=np.int64),
            games=[record], iteration=iteration, info=info,
        )


def _game_rng(config: SelfPlayConfig, iteration: int, index: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, iteration, index])


def _new_game(config: SelfPlayConfig, iteration: int, index: int,
              openings: Sequence[tuple[str, chess.Board]]) -> _Game:
    order = np.random.default_rng([config.seed, iteration, 1 << 20]).permutation(len(openings))
    rng = _game_rng(config, iteration, index)
    resign_allowed = bool(rng.random() >= config.no_resign_fraction)
    return _Game(index, openings[int(order[index % len(openings)])], resign_allowed, rng)


def play_games(evaluator: Evaluator, config: SelfPlayConfig, iteration: int, indices: Sequence[int],
               openings: Sequence[tuple[str, chess.Board]], *, info: dict | None = None,
               on_game: Callable[[ReplayShard], None] | None = None,
               progress: Callable[[int, int], None] | None = None, resign: bool = True) -> list[ReplayShard]:
    """Play the games `indices` of iteration `iteration`, `config.concurrent` at a time; one shard per game.

    `on_game(shard)` is called as each game finishes, `progress(games_finished, positions_searched)` after every
    ply. `resign=False` disables resignation (benchmarks). Positions are stored before the move is chosen; the
    opening line's plies are not searched and not stored.
    """
    mcts = MCTS(evaluator, config.mcts_config(), rng=np.random.default_rng([config.seed, iteration, 1 << 21,
                                                                            indices[0] if indices else 0]))
    info = dict(info or {})
    finished: list[ReplayShard] = []
    positions = 0

    def retire(game: _Game, end: tuple[str, str] | None) -> None:
        if end is not None:
            game.finish(*end)
        shard = game.to_shard(iteration, info)
        finished.append(shard)
        if on_game:
            on_game(shard)

    def choose(live: list[_Game]) -> list[chess.Move | None]:
        """One batched search for every live game: store each position, resign or pick the move."""
        nonlocal positions
        boards = [g.board for g in live]
        arrays = boards_to_arrays(boards)
        results = mcts.search(boards)
        moves: list[chess.Move | None] = []
        for j, (game, res) in enumerate(zip(live, results, strict=True)):
            visits = res.visits.astype(np.float64)
            if visits.sum() == 0:  # the search scored the root as over (its draw rules); nothing to learn here
                game.finish("1/2-1/2", "draw by the search's rules")
                moves.append(None)
                continue
            seen = visits > 0
            game.rows.append((arrays.bitboards[j], arrays.repetitions[j], arrays.turn[j], arrays.castling[j],
                              arrays.ply[j], arrays.halfmove[j]))
            game.policy_index.append(np.asarray(res.root.index)[seen])
            game.policy_prob.append(visits[seen] / visits.sum())
            game.root_value.append(float(res.root_value))
            positions += 1
            # resignation: the mover's searched value, the better of the root value and the best move's Q
            side = game.board.turn
            best = int(np.lexsort((-res.priors, -res.visits))[0])
            q_best = res.q[best]
            value = max(res.root_value, float(q_best) if not math.isnan(q_best) else -1.0)
            game.low[side] = game.low[side] + 1 if value < config.resign_threshold else 0
            if (resign and game.low[side] >= config.resign_consecutive
                    and game.searched >= config.resign_min_plies):
                if game.would_resign is None:
                    game.would_resign, game.would_resign_ply = side, game.searched - 1
                if game.resign_allowed:
                    game.finish("0-1" if side == chess.WHITE else "1-0", "resignation")
                    moves.append(None)
                    continue
            # move choice: sampled from the visit counts early, then (near-)greedy
            tau = config.temperature if game.searched <= config.temperature_plies else config.final_temperature
            p = res.policy(tau)
            moves.append(res.moves[int(game.rng.choice(len(p), p=p))])
        return moves

    def end(game: _Game) -> tuple[str, str] | None:
        over = _game_end(game.board)
        if over is None and game.searched >= config.max_plies:
            over = ("1/2-1/2", "adjudicated draw (max plies)")
        return over

    def after_step(_steps: int) -> bool:
        if progress:
            progress(len(finished), positions)
        return False

    play_batched((_new_game(config, iteration, i, openings) for i in indices), choose,
                 play=lambda game, move: game.board.push(move), end=end, on_end=retire,
                 end_at_start=lambda game: _game_end(game.board), concurrent=config.concurrent,
                 after_step=after_step)
    return finished


def game_stats(shard: ReplayShard) -> dict[str, float | int | dict]:
    """Games, positions, mean length, decisive share, results and terminations, and the resign statistics."""
    games = shard.games
    n = len(games)
    results = {r: sum(g["result"] == r for g in games) for r in ("1-0", "0-1", "1/2-1/2")}
    terminations: dict[str, int] = {}
    for g in games:
        terminations[g["termination"]] = terminations.get(g["termination"], 0) + 1
    no_resign = [g for g in games if not g["resign_allowed"]]
    would = [g for g in no_resign if g["would_resign"] is not None]

    def lost(g: dict) -> bool:
        return g["result"] == ("0-1" if g["would_resign"] == "white" else "1-0")

    false = sum(not lost(g) for g in would)
    return {
        "games": n,
        "positions": len(shard),
        "mean_plies": float(np.mean([g["plies"] for g in games])) if n else 0.0,
        "decisive_share": (results["1-0"] + results["0-1"]) / n if n else 0.0,
        "results": results,
        "terminations": terminations,
        "resigned": sum(g["termination"] == "resignation" for g in games),
        "no_resign_games": len(no_resign),
        "would_resign": len(would),
        "false_resigns": false,
        "false_resign_rate": false / len(would) if would else float("nan"),
    }


def play_iteration(evaluator: Evaluator, config: SelfPlayConfig, iteration: int, buffer: ReplayBuffer,
                   openings: Sequence[tuple[str, chess.Board]], *, info: dict | None = None,
                   progress: ProgressFn | None = None) -> ReplayShard:
    """Play (or finish) iteration `iteration`'s games and write its shard; games in its partial file are kept."""
    info = dict(info or {})
    partial = buffer.read_partial(iteration)
    done: list[ReplayShard] = [partial] if partial is not None and len(partial.games) else []
    have = {g["index"] for s in done for g in s.games}
    todo = [i for i in range(config.games) if i not in have]
    since_save = 0
    t0 = time.time()

    def on_game(shard: ReplayShard) -> None:
        nonlocal since_save
        done.append(shard)
        since_save += 1
        if since_save >= config.save_every_games:
            earlier = float(partial.info.get("play_s", 0.0)) if partial is not None else 0.0
            buffer.write_partial(_ordered(done, iteration, {**info, "play_s": earlier + time.time() - t0}))
            since_save = 0

    def on_ply(finished: int, positions: int) -> None:
        if progress:
            progress(SelfPlayProgress(iteration, "play", len(have) + finished, config.games, positions,
                                      positions / max(1e-9, time.time() - t0)))

    if progress:
        progress(SelfPlayProgress(iteration, "play", len(have), config.games))
    if todo:
        play_games(evaluator, config, iteration, todo, openings, info=info, on_game=on_game, progress=on_ply)
    earlier = float(partial.info.get("play_s", 0.0)) if partial is not None else 0.0
    info["play_s"] = earlier + time.time() - t0  # seconds of play, sessions of a resumed iteration added up
    shard = _ordered(done, iteration, info)
    buffer.write(shard)
    return shard


def _ordered(shards: list[ReplayShard], iteration: int, info: dict) -> ReplayShard:
    """One shard of all games in `shards`, ordered by game index (so a resumed iteration's shard is the same)."""
    singles: list[ReplayShard] = []
    for s in shards:
        for g_i in range(len(s.games)):
            lo, hi = int(s.game_offsets[g_i]), int(s.game_offsets[g_i + 1])
            rows = np.arange(lo, hi)
            p_lo, p_hi = int(s.policy_offsets[lo]), int(s.policy_offsets[hi])
            singles.append(ReplayShard(s.rows(rows), s.policy_offsets[lo:hi + 1] - p_lo,
                                       s.policy_index[p_lo:p_hi], s.policy_prob[p_lo:p_hi], s.value[lo:hi],
                                       s.root_value[lo:hi], np.array([0, hi - lo]), [s.games[g_i]], iteration,
                                       info))
    singles.sort(key=lambda s: s.games[0]["index"])
    return ReplayShard.concat(singles, iteration=iteration, info=info)


# --------------------------------------------------------------------------------------------------------------
# Training


def shard_batch(shard: ReplayShard, rows: np.ndarray, policy_size: int) -> Batch:
    """A training batch of rows `rows`: inputs, dense visit-distribution targets and outcomes."""
    return Batch(shard.rows(rows), shard.policy_dense(rows, policy_size), shard.value[rows].astype(np.float32))


def train_on_window(net: AZNet, opt: torch.optim.Optimizer, window: ReplayShard, config: SelfPlayConfig,
                    steps: int, rng: np.random.Generator,
                    progress: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, float]:
    """`steps` optimiser steps on batches drawn uniformly (with replacement) from `window`; mean losses."""
    if len(window) == 0:
        raise ValueError("no positions to train on")
    size = net.format.policy_size
    totals: dict[str, float] = {}
    for group in opt.param_groups:
        group["lr"] = config.lr
    for step in range(steps):
        rows = rng.integers(0, len(window), size=config.batch_size)
        stats = train_step(net, opt, shard_batch(window, rows, size), config.value_weight)
        for k, v in stats.items():
            totals[k] = totals.get(k, 0.0) + v
        if progress:
            progress(step + 1, stats)
    return {k: v / max(1, steps) for k, v in totals.items()}


def _eval_rows(shard: ReplayShard, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(shard), size=min(n, len(shard)), replace=False))


# --------------------------------------------------------------------------------------------------------------
# The loop


def _clean_meta(meta: CheckpointMeta) -> CheckpointMeta:
    extra = {k: v for k, v in meta.extra.items() if k not in ("sha256", "path")}
    return replace(meta, extra=extra)


def _save_state(path: Path, net: AZNet, opt: torch.optim.Optimizer, state: dict) -> None:
    buf = io.BytesIO()
    torch.save({**state, "model": net.state_dict(), "optimizer": opt.state_dict()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_safe(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    return obj


@dataclass
class _Start:
    """Where a run starts: the network, its checkpoint name, the last finished iteration and running totals."""

    net: AZNet
    parent: str
    done: int
    totals: dict
    optimizer: dict | None = None
    best: dict | None = None  # weights of the gate's best network when it is not `net`


def _start_or_resume(start: str | Path, out: Path, work: Path, buffer: ReplayBuffer, device: torch.device,
                     say: LogFn) -> tuple[_Start, Series]:
    """The work directory's saved state if any, else the `start` checkpoint (added first to a new series)."""
    from alphazero_concepts.nn.loading import load_network

    state_path = work / STATE_FILE
    meta: CheckpointMeta | None = None
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        net = AZNet(NetConfig.from_dict(state["config"]))
        net.load_state_dict(state["model"])
        net.to(device)
        begin = _Start(net, state["parent"], int(state["iteration"]), dict(state["totals"]), state["optimizer"],
                       state.get("best_model"))
        say(f"resuming from {state_path}: iteration {begin.done} finished ({begin.parent}); --from is not used")
    else:
        loaded, meta = load_network(str(start), device)
        if not isinstance(loaded, AZNet):
            raise CheckpointError(f"{start}: self-play trains native AZNet checkpoints, not {type(loaded).__name__}")
        begin = _Start(loaded, meta.name, 0, {"train_steps": 0, "positions_seen": meta.positions_seen,
                                              "games_seen": meta.games_seen, "wall_time_s": meta.wall_time_s,
                                              "start": str(start)})
    series = Series(out, name=out.name, config=begin.net.config)
    if series.config != begin.net.config:
        raise CheckpointError(f"{out}: series architecture {series.config} differs from {start}'s "
                              f"{begin.net.config}")
    if meta is not None and not series.entries:
        series.add(begin.net, _clean_meta(meta), half=True)
        say(f"created series {out} starting with {begin.parent}")
    # rl-k made by this work directory: k ≤ done, or k = done + 1 with its shard (killed before the state was saved)
    foreign = [n for n in series.names if n.startswith("rl-") and n[3:].isdigit() and int(n[3:]) > begin.done
               and (int(n[3:]) > begin.done + 1 or not buffer.has(int(n[3:])))]
    if foreign:
        raise CheckpointError(f"{out}: already holds self-play checkpoints {', '.join(foreign)} that the work "
                              f"directory {work} did not make; pass the --work directory that made them or another "
                              f"--out")
    return begin, series


def _finished_shard(buffer: ReplayBuffer, it: int, say: LogFn) -> ReplayShard | None:
    """Iteration `it`'s shard when it was written before (a damaged one is moved aside and played again)."""
    if not buffer.has(it):
        return None
    try:
        shard = buffer.read(it)
    except ReplayError as exc:
        bad = buffer.shard_path(it)
        bad.replace(bad.with_suffix(".corrupt"))
        say(f"iteration {it}: {exc}; moved aside to {bad.with_suffix('.corrupt').name}, playing it again")
        return None
    say(f"iteration {it}: reusing the finished shard {buffer.shard_path(it)} ({len(shard.games)} games)")
    return shard


def _train_iteration(net: AZNet, opt: torch.optim.Optimizer, shard: ReplayShard, buffer: ReplayBuffer,
                     config: SelfPlayConfig, it: int, progress: ProgressFn | None, say: LogFn) -> dict:
    """Train on the window ending at iteration `it`: mean losses, and the loss on the new games before training
    (fresh data for the network that played them) and after (they are in the window, so this shows fit only)."""
    t0 = time.time()
    window, problems = buffer.window(it, config.window)
    for problem in problems:
        say(f"left out of the training window: {problem}")
    steps = config.steps_for(len(shard))
    eval_batch = shard_batch(shard, _eval_rows(shard, config.eval_positions, config.seed + it),
                             net.format.policy_size)
    before = evaluate_batch(net, eval_batch)

    def on_step(step: int, stats: dict[str, float]) -> None:
        if progress:
            progress(SelfPlayProgress(it, "train", step, steps, stats=stats))

    train = train_on_window(net, opt, window, config, steps, np.random.default_rng([config.seed, it, 7]), on_step)
    after = evaluate_batch(net, eval_batch)
    net.eval()
    pooled = game_stats(window)  # resign calibration pooled over the window: one iteration has few no-resign games
    return {"window_positions": len(window), "window_iterations": config.window,
            "window_would_resign": pooled["would_resign"], "window_false_resigns": pooled["false_resigns"],
            "window_false_resign_rate": pooled["false_resign_rate"], "steps": steps,
            "batch_size": config.batch_size, "lr": config.lr, "train": train, "new_games_before": before,
            "new_games_after": after, "train_s": time.time() - t0}


def run_selfplay(config: SelfPlayConfig, start: str | Path, out: str | Path, *, iterations: int,
                 work: str | Path | None = None, openings: Sequence[tuple[str, chess.Board]] | None = None,
                 progress: ProgressFn | None = None, log: LogFn | None = None,
                 on_iteration: Callable[[dict], None] | None = None) -> Series:
    """Run (or resume) self-play RL from checkpoint `start` up to iteration `iterations`, into series `out`.

    `start` is any `load_network` spec (not used when the work directory holds a state to resume from).
    `out` is a series directory: an existing one (e.g. the one `start` belongs to) is appended to; a new one is
    created with `start`'s architecture and `start` as its first checkpoint. `work` (default `out/selfplay`) holds
    the replay shards, PGNs, `selfplay.json` and the training state. `on_iteration(summary)` is called after each
    iteration with the numbers stored in the new checkpoint's `extra`. Returns the series.
    """
    say = log or (lambda _s: None)
    out = Path(out)
    work = Path(work) if work is not None else out / "selfplay"
    work.mkdir(parents=True, exist_ok=True)
    buffer = ReplayBuffer(work)
    atomic_write_bytes(work / CONFIG_FILE, (json.dumps(config.to_dict(), indent=2) + "\n").encode())
    torch.set_num_threads(config.threads)
    openings = list(openings) if openings is not None else load_openings(config)
    begin, series = _start_or_resume(start, out, work, buffer, resolve_device(config.device), say)
    net, parent, totals = begin.net, begin.parent, begin.totals
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if begin.optimizer is not None:
        opt.load_state_dict(begin.optimizer)
    info = {"policy_format": net.format.name, "policy_size": net.format.policy_size, "config": config.to_dict()}
    best = net
    if config.gate_games > 0:  # the gate's best network plays; `net` trains
        best = copy.deepcopy(net)
        if begin.best is not None:
            best.load_state_dict(begin.best)
        best.eval()
    evaluator = NetEvaluator(best)
    t_run = time.time()

    for it in range(begin.done + 1, iterations + 1):
        t0 = time.time()
        shard = _finished_shard(buffer, it, say)
        if shard is None:
            net.eval()
            shard = play_iteration(evaluator, config, it, buffer, openings, info={**info, "network": parent},
                                   progress=progress)
        summary = {"iteration": it, "checkpoint": f"rl-{it:03d}", "parent": parent, **game_stats(shard),
                   "simulations": config.simulations, "play_s": shard.info.get("play_s", float("nan"))}
        play_s = summary["play_s"]  # NaN for a shard written without it
        summary["positions_per_s"] = summary["positions"] / play_s if play_s > 0 else float("nan")
        summary.update(_train_iteration(net, opt, shard, buffer, config, it, progress, say))
        totals["train_steps"] += summary["steps"]
        totals["positions_seen"] += summary["steps"] * config.batch_size
        totals["games_seen"] += summary["games"]
        totals["wall_time_s"] += time.time() - t0
        meta = CheckpointMeta(name=summary["checkpoint"], step=totals["train_steps"],
                              positions_seen=totals["positions_seen"], games_seen=totals["games_seen"],
                              parent=parent, stage="selfplay", seed=config.seed, wall_time_s=totals["wall_time_s"],
                              extra=_json_safe(summary))
        if config.gate_games > 0:
            net.eval()
            gate = play_gate(net, best, config.gate_games, config.gate_simulations, openings,
                             threshold=config.gate_threshold, max_plies=config.max_plies)
            summary["gate"] = gate.to_dict()
            meta.extra["gate"] = gate.to_dict()
            with open(work / GATE_FILE, "a") as fh:
                fh.write(json.dumps({"iteration": it, "candidate": summary["checkpoint"], "best": parent,
                                     **gate.to_dict()}) + "\n")
            lo, hi = gate.ci
            say(f"gate: {summary['checkpoint']} vs {parent} +{gate.wins} ={gate.draws} -{gate.losses}, score "
                f"{gate.score:.3f} [{lo:.3f}, {hi:.3f}] → {'accepted' if gate.accepted else 'rejected (not bundled)'}")
        if config.gate_games == 0 or summary["gate"]["accepted"]:
            series.add(net, meta, half=True)
            parent = summary["checkpoint"]
            if best is not net:
                best.load_state_dict(net.state_dict())
                best.eval()
                evaluator = NetEvaluator(best)
        extra_state = {"best_model": best.state_dict()} if best is not net else {}
        _save_state(work / STATE_FILE, net, opt, {"iteration": it, "parent": parent,
                                                  "config": net.config.to_dict(), "totals": totals, **extra_state})
        if on_iteration:
            on_iteration(summary)
    if begin.done >= iterations:
        say(f"nothing to do: iteration {begin.done} already finished (ask for more with --iterations)")
    say(f"self-play session: {time.time() - t_run:.0f} s")
    return series


# --------------------------------------------------------------------------------------------------------------
# Benchmarks


def bench_selfplay(net: AZNet, games: int = 16, sims: int = 32, plies: int = 8, seed: int = 0,
                   game_plies: int = BENCH_GAME_PLIES) -> dict[str, float]:
    """Self-play speed: `games` games played together for `plies` searched plies each (noise, temperature,
    no resignation), from the bundled openings. `selfplay_positions_per_cpu_s` divides by the process's CPU time
    instead of wall time: on a shared machine it says what the code does with the CPU it gets.

    Whole games take too long for a benchmark, so games/hour is extrapolated: searched positions/s × 3600 ÷
    `game_plies`, the mean self-play game length measured with the bundled teacher (`BENCH_GAME_PLIES`). The
    search re-evaluates nothing between benchmark runs (a fresh cache), as in a real iteration's first plies.
    """
    config = SelfPlayConfig(games=games, concurrent=games, simulations=sims, max_plies=plies, seed=seed)
    t0, c0 = time.time(), time.process_time()
    shards = play_games(NetEvaluator(net), config, 0, list(range(games)), bundled_openings(), resign=False)
    elapsed, cpu = time.time() - t0, time.process_time() - c0
    positions = sum(len(s) for s in shards)
    rate = positions / max(1e-9, elapsed)
    return {"selfplay_games_per_hour": rate * 3600.0 / game_plies, "selfplay_positions_per_s": rate,
            "selfplay_positions_per_cpu_s": positions / max(1e-9, cpu)}


def _random_shard(n: int, seed: int) -> ReplayShard:
    """Positions from seeded random games with random visit distributions over their legal moves (benchmarks)."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    boards: list[chess.Board] = []
    while len(boards) < n:
        board = chess.Board()
        for _ in range(rng.randint(4, 80)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
            if board.legal_moves.count():
                boards.append(board.copy())
    boards = boards[:n]
    idx = [legal_move_indices(b)[1] for b in boards]
    probs = [nrng.dirichlet(np.ones(len(ix))) for ix in idx]
    sizes = np.array([len(ix) for ix in idx])
    return ReplayShard(boards_to_arrays(boards), np.concatenate([[0], np.cumsum(sizes)]),
                       np.concatenate(idx).astype(np.int32), np.concatenate(probs).astype(np.float32),
                       nrng.choice([-1.0, 0.0, 1.0], size=n).astype(np.float32), np.zeros(n, np.float32),
                       np.array([0, n]), [{}])


def bench_train(net: AZNet, batch_size: int = 256, steps: int = 6, seed: int = 0) -> dict[str, float]:
    """Training speed on self-play-style targets (dense visit distributions): positions/s of AdamW steps, batch
    building included, after one warm-up step. Works on a copy: `net` is not changed."""
    model = copy.deepcopy(net).float()
    config = SelfPlayConfig(batch_size=batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    shard = _random_shard(max(batch_size, 512), seed)
    rng = np.random.default_rng(seed)
    train_on_window(model, opt, shard, config, 1, rng)
    t0, c0 = time.time(), time.process_time()
    train_on_window(model, opt, shard, config, steps, rng)
    elapsed, cpu = time.time() - t0, time.process_time() - c0
    return {"train_positions_per_s": steps * batch_size / max(1e-9, elapsed),
            "train_positions_per_cpu_s": steps * batch_size / max(1e-9, cpu)}
