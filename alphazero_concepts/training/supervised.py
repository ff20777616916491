"""Supervised kick-start: learn the played move (policy) and the game result (value) from human games.

Data order is a pure function of the seed: games are streamed from the PGN files in order and grouped into
chunks of `chunk_games` games; the positions of chunk k are shuffled with a generator seeded by (seed, k) and cut
into batches. The training state (weights, optimiser, chunk and batch cursor) is saved atomically every
`state_every` steps, so a run killed at any moment (even `kill -9`) resumes at the saved step with exactly the same
next batch. Every `checkpoint_every` steps a float16 checkpoint is added to the series (students for later stages).
One game in `holdout_every` goes to a held-out slice for loss and top-1 accuracy.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import chess
import numpy as np
import torch
import torch.nn.functional as F

from alphazero_concepts.chess.encoding import PositionArrays, arrays_to_planes, game_to_arrays, move_to_index
from alphazero_concepts.chess.positions import GameRecord, InputError, ReadReport, read_pgn_games
from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series, atomic_write_bytes
from alphazero_concepts.nn.network import AZNet, NetConfig, resolve_device

RESULT_VALUE = {"1-0": 1.0, "0-1": -1.0, "1/2-1/2": 0.0}
STATE_FILE = "train_state.pt"


@dataclass(frozen=True)
class SupervisedConfig:
    """Parameters of a supervised run (saved as `supervised.json` in the series directory)."""

    pgn: tuple[str, ...] = ()
    net: NetConfig = field(default_factory=NetConfig)
    seed: int = 0
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    total_steps: int = 20_000
    value_weight: float = 1.0
    chunk_games: int = 1500
    holdout_every: int = 50
    holdout_positions: int = 4096
    min_elo: int | None = None
    min_ply: int = 0
    checkpoint_every: int = 1000
    state_every: int = 100
    threads: int = 2
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.total_steps < 1 or self.chunk_games < 1:
            raise ValueError("batch_size, total_steps and chunk_games must be ≥ 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pgn"] = list(self.pgn)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SupervisedConfig:
        d = dict(d)
        d["net"] = NetConfig.from_dict(d.get("net", {}))
        d["pgn"] = tuple(d.get("pgn", ()))
        return cls(**d)


@dataclass
class Batch:
    """Training positions and targets. The policy target is either the move played, (B,) int64 policy indices, or
    a distribution over moves, (B, P) float32 rows summing to 1 (self-play's MCTS visit shares)."""

    arrays: PositionArrays
    policy: np.ndarray  # (B,) int64 move index, or (B, P) float32 target distribution
    value: np.ndarray  # (B,) float32, side to move's view

    def planes(self) -> np.ndarray:
        return arrays_to_planes(self.arrays)


def game_training_arrays(game: GameRecord, min_ply: int = 0) -> tuple[PositionArrays, np.ndarray, np.ndarray] | None:
    """Arrays, move indices and side-to-move value targets of every position of a finished game."""
    result = RESULT_VALUE.get(game.result)
    if result is None or not game.moves:
        return None
    start = chess.Board(game.start_fen)
    arrays = game_to_arrays(start, game.moves)
    board = start.copy(stack=False)
    policy = np.empty(len(game.moves), dtype=np.int64)
    for i, move in enumerate(game.moves):
        policy[i] = move_to_index(move, board)
        board.push(move)
    value = np.where(arrays.turn, result, -result).astype(np.float32)
    keep = arrays.ply >= min_ply
    if not keep.all():
        arrays = take_arrays(arrays, np.nonzero(keep)[0])
        policy, value = policy[keep], value[keep]
    return arrays, policy, value


def take_arrays(a: PositionArrays, idx: np.ndarray) -> PositionArrays:
    """The rows `idx` of every field of `a`."""
    return PositionArrays(a.bitboards[idx], a.repetitions[idx], a.turn[idx], a.castling[idx], a.ply[idx],
                          a.halfmove[idx])


def concat_arrays(parts: Sequence[PositionArrays]) -> PositionArrays:
    """`parts` stacked row-wise, field by field."""
    return PositionArrays(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                            ("bitboards", "repetitions", "turn", "castling", "ply", "halfmove")))


_take = take_arrays  # earlier private names, kept for callers
_concat = concat_arrays


def _target_index(target_p: torch.Tensor) -> torch.Tensor:
    """The target move of each row: the index itself, or the most likely move of a target distribution."""
    return target_p if target_p.ndim == 1 else target_p.argmax(dim=1)


def iter_games(config: SupervisedConfig, report: ReadReport | None = None) -> Iterator[tuple[int, GameRecord]]:
    """(global game index, game) over all PGN files in order."""
    index = 0
    for path in config.pgn:
        for game in read_pgn_games(path, report=report, min_elo=config.min_elo):
            yield index, game
            index += 1


def build_chunk(games: Sequence[GameRecord], min_ply: int) -> tuple[PositionArrays, np.ndarray, np.ndarray] | None:
    parts = [p for g in games if (p := game_training_arrays(g, min_ply)) is not None]
    if not parts:
        return None
    return (concat_arrays([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


class ChunkStream:
    """Deterministic stream of (chunk index, shuffled training chunk) and a held-out slice."""

    def __init__(self, config: SupervisedConfig) -> None:
        self.config = config
        self.report = ReadReport(source=", ".join(config.pgn))
        self.holdout: Batch | None = None
        self._games = iter_games(config, self.report)
        self._holdout_games: list[GameRecord] = []
        self.games_read = 0

    def chunks(self, start_chunk: int = 0) -> Iterator[tuple[int, Batch]]:
        cfg = self.config
        k = 0
        buf: list[GameRecord] = []
        for gi, game in self._games:
            self.games_read = gi + 1
            if gi % cfg.holdout_every == 0:
                if self.holdout is None or len(self.holdout.policy) < cfg.holdout_positions:
                    self._holdout_games.append(game)
                    self._set_holdout()
                continue
            if k < start_chunk:  # skipping finished chunks: count games only
                buf.append(None)  # type: ignore[arg-type]
            else:
                buf.append(game)
            if len(buf) == cfg.chunk_games:
                if k >= start_chunk:
                    chunk = self._shuffled(k, buf)
                    if chunk is not None:
                        yield k, chunk
                k += 1
                buf = []
        if buf and k >= start_chunk:
            chunk = self._shuffled(k, buf)
            if chunk is not None:
                yield k, chunk

    def _set_holdout(self) -> None:
        built = build_chunk(self._holdout_games, self.config.min_ply)
        if built is not None:
            n = min(self.config.holdout_positions, len(built[1]))
            self.holdout = Batch(take_arrays(built[0], np.arange(n)), built[1][:n], built[2][:n])

    def _shuffled(self, k: int, games: list[GameRecord]) -> Batch | None:
        built = build_chunk(games, self.config.min_ply)
        if built is None:
            return None
        rng = np.random.default_rng([self.config.seed, k])
        order = rng.permutation(len(built[1]))
        return Batch(take_arrays(built[0], order), built[1][order], built[2][order])


def lr_at(step: int, config: SupervisedConfig) -> float:
    """Linear warm-up, then cosine decay to 1% of `lr` at `total_steps`."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = min(1.0, (step - config.warmup_steps) / max(1, config.total_steps - config.warmup_steps))
    return float(config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))))


def train_step(net: AZNet, opt: torch.optim.Optimizer, batch: Batch, value_weight: float) -> dict[str, float]:
    """One optimiser step on `batch`; returns losses and top-1 accuracy on the batch.

    The policy loss is the cross-entropy against the target move or target distribution (for a distribution it
    includes the target's own entropy, so it does not fall to 0); accuracy compares with the target's top move.
    """
    net.train()
    device = net.device
    x = torch.from_numpy(batch.planes()).to(device)
    target_p = torch.from_numpy(batch.policy).to(device)
    target_v = torch.from_numpy(batch.value).to(device)
    logits, value = net(x)
    policy_loss = F.cross_entropy(logits, target_p)
    value_loss = F.mse_loss(value, target_v)
    loss = policy_loss + value_weight * value_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    acc = (logits.argmax(dim=1) == _target_index(target_p)).float().mean()
    return {"loss": loss.item(), "policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
            "acc": acc.item()}


@torch.inference_mode()
def evaluate_batch(net: AZNet, batch: Batch, batch_size: int = 1024) -> dict[str, float]:
    """Policy loss, value loss and top-1 accuracy on a held-out batch (targets as in `Batch`)."""
    net.eval()
    n = len(batch.policy)
    tot = {"policy_loss": 0.0, "value_loss": 0.0, "acc": 0.0}
    for s in range(0, n, batch_size):
        idx = np.arange(s, min(n, s + batch_size))
        x = torch.from_numpy(arrays_to_planes(take_arrays(batch.arrays, idx))).to(net.device)
        tp = torch.from_numpy(batch.policy[idx]).to(net.device)
        tv = torch.from_numpy(batch.value[idx]).to(net.device)
        logits, value = net(x)
        tot["policy_loss"] += float(F.cross_entropy(logits, tp, reduction="sum"))
        tot["value_loss"] += float(F.mse_loss(value, tv, reduction="sum"))
        tot["acc"] += float((logits.argmax(1) == _target_index(tp)).float().sum())
    return {k: v / max(1, n) for k, v in tot.items()}


ProgressFn = Callable[[int, dict[str, float]], None]


def _first_trainable(chunks: Iterator[tuple[int, Batch]], stream: ChunkStream, config: SupervisedConfig
                     ) -> Iterator[tuple[int, Batch]]:
    """`chunks` again, once one holding a full batch has been found; InputError (naming the files) if none does."""
    seen: list[tuple[int, Batch]] = []
    for item in chunks:
        seen.append(item)
        if len(item[1].policy) >= config.batch_size:
            return itertools.chain(seen, chunks)
    report = stream.report
    positions = sum(len(batch.policy) for _, batch in seen)
    if report.read == 0:
        why = f"no usable game ({report.summary()})"
    else:
        why = (f"{positions} training positions in {report.read} games (held-out games excluded), fewer than one "
               f"batch of {config.batch_size} ({report.summary()})")
    raise InputError(f"nothing to train on: {why}; nothing written", source=", ".join(config.pgn), line=None)


def train_supervised(config: SupervisedConfig, out: str | Path, *, max_steps: int | None = None,
                     progress: ProgressFn | None = None) -> Series:
    """Run (or resume) supervised training into the series directory `out`.

    `max_steps` stops early (the run can be resumed later up to `total_steps`). Returns the series.

    A new run whose games give no training batch (an empty, garbage or wrong file: no game read, or fewer
    positions than `batch_size` outside the held-out games) raises `InputError` naming the files before anything
    is written: training on nothing must not leave an untrained checkpoint behind.
    """
    out = Path(out)
    torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    net = AZNet(config.net).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step, chunk0, batch0, positions, games, wall = 0, 0, 0, 0, 0, 0.0
    state_path = out / STATE_FILE
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, chunk0, batch0 = state["step"], state["chunk"], state["batch"]
        positions, games, wall = state["positions"], state["games"], state["wall_time_s"]
    stop_at = min(config.total_steps, max_steps if max_steps is not None else config.total_steps)
    stream = ChunkStream(config)
    chunks = stream.chunks(start_chunk=chunk0)
    if step == 0:
        chunks = _first_trainable(chunks, stream, config)  # raises InputError when there is nothing to train on
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "supervised.json", (json.dumps(config.to_dict(), indent=2) + "\n").encode(),
                       fsync=False)
    series = Series(out, name=out.name, config=config.net)
    t0 = time.time() - wall
    stats: dict[str, float] = {}

    def save_state(chunk: int, batch_index: int) -> None:
        buf = io.BytesIO()
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step, "chunk": chunk,
                    "batch": batch_index, "positions": positions, "games": stream.games_read,
                    "wall_time_s": time.time() - t0}, buf)
        atomic_write_bytes(state_path, buf.getvalue())

    def add_checkpoint() -> None:
        meta = CheckpointMeta(name=f"sup-{step:06d}", step=step, positions_seen=positions,
                              games_seen=stream.games_read or games, stage="supervised", seed=config.seed,
                              parent=series.entries[-1].name if series.entries else None,
                              wall_time_s=time.time() - t0,
                              extra={"holdout": evaluate_batch(net, stream.holdout) if stream.holdout else {}})
        series.add(net, meta, half=True)

    if step >= stop_at:
        return series
    for k, chunk in chunks:
        n_batches = len(chunk.policy) // config.batch_size
        first = batch0 if k == chunk0 else 0
        for b in range(first, n_batches):
            idx = np.arange(b * config.batch_size, (b + 1) * config.batch_size)
            batch = Batch(take_arrays(chunk.arrays, idx), chunk.policy[idx], chunk.value[idx])
            for group in opt.param_groups:
                group["lr"] = lr_at(step, config)
            stats = train_step(net, opt, batch, config.value_weight)
            step += 1
            positions += len(idx)
            stats["positions_per_s"] = positions / max(1e-9, time.time() - t0)
            stats["lr"] = lr_at(step, config)
            if progress:
                progress(step, stats)
            if step % config.state_every == 0 or step == stop_at:
                save_state(k, b + 1)
            if step % config.checkpoint_every == 0 or step == stop_at:
                add_checkpoint()
            if step >= stop_at:
                return series
    # data exhausted before total_steps: keep what we have
    save_state(1 << 30, 0)
    if not series.entries or series.entries[-1].step != step:
        add_checkpoint()
    return series
