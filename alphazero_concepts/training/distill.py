"""Distillation kick-start: learn an engine's search from engine-labelled machine games (no human game at all).

Targets, per position (see `docs/teacher.md`):
- policy: softmax over the engine's MultiPV scores with temperature `policy_temperature_cp` centipawns (0 = the
  engine's best move only); moves outside the MultiPV get 0;
- value: the engine's WDL estimate for the side to move (cross-entropy into a WDL head, or MSE of P(win) − P(loss)
  into a tanh head).

A share `history_dropout` of the training positions is shown without its history (history planes zero, as a
position given by FEN alone is encoded), drawn per (seed, step).

Data order is a pure function of (seed, step): epoch e visits the training rows in the permutation drawn from
`np.random.default_rng([seed, e])`, batch b of an epoch is the b-th slice. The training state (weights, optimiser,
step) is saved atomically every `state_every` steps into the series directory, so a run killed at any moment
(`kill -9` included) resumes at its last saved step with exactly the same next batch. Every `holdout_every`-th
game is held out whole: held-out policy loss, top-1 agreement with the engine's best move and value MSE are
measured at every checkpoint and kept in the checkpoint's metadata (`extra.holdout`, `extra.value_mse`).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from alphazero_concepts.chess.encoding import arrays_to_planes
from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series, atomic_write_bytes
from alphazero_concepts.nn.network import AZNet, NetConfig, check_precision, precision_context, resolve_device
from alphazero_concepts.training.engine_data import EngineData, load_engine_data
from alphazero_concepts.training.supervised import lr_at

STATE_FILE = "distill_state.pt"
CONFIG_FILE = "distill.json"
LOG_FILE = "distill_log.jsonl"


@dataclass(frozen=True)
class DistillConfig:
    """Parameters of a distillation run (saved as `distill.json` in the series directory)."""

    games: tuple[str, ...] = ()
    net: NetConfig = field(default_factory=lambda: NetConfig(se=True, wdl=True))
    seed: int = 0
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    total_steps: int = 30_000
    policy_temperature_cp: float = 40.0
    value_weight: float = 1.0
    # share of training positions shown without their history, as a position given by FEN alone is encoded
    # (history planes zero): without it the network reads "no history" as "the start of a game" and scores such
    # positions near 0 whatever the material
    history_dropout: float = 0.15
    # how many times each file's training positions enter an epoch, one number per file of `games` (() = once
    # each): oversamples a small file of rare positions (odds games) without copying it
    repeat: tuple[int, ...] = ()
    holdout_every: int = 50
    holdout_positions: int = 8192
    checkpoint_every: int = 2000
    checkpoint_steps: tuple[int, ...] = (100, 250, 500, 1000)
    state_every: int = 100
    log_every: int = 50
    threads: int = 2
    device: str = "cpu"
    # "bf16": forward and backward under bfloat16 autocast (weights, optimiser and held-out metrics stay float32);
    # about 1.1× the steps a second with two threads on this project's AVX-512 BF16 CPU (`azc bench`:
    # `train_bf16_speedup`); recorded in every log line and checkpoint, since a resume may change it
    precision: str = "fp32"
    prefix: str = "kd"

    def __post_init__(self) -> None:
        for name in ("batch_size", "total_steps", "state_every", "log_every", "holdout_positions"):
            if getattr(self, name) < 1:
                raise ValueError(f"distill {name} must be ≥ 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.policy_temperature_cp < 0 or self.value_weight < 0:
            raise ValueError("distill lr must be > 0, policy_temperature_cp and value_weight ≥ 0")
        check_precision(self.precision, "distill precision")
        if not 0 <= self.history_dropout <= 1:
            raise ValueError(f"distill history_dropout must be in [0, 1], got {self.history_dropout}")
        if self.repeat and (len(self.repeat) != len(self.games) or min(self.repeat) < 1):
            raise ValueError(f"distill repeat needs one count ≥ 1 per games file ({len(self.games)}), "
                             f"got {list(self.repeat)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["games"] = list(self.games)
        d["checkpoint_steps"] = list(self.checkpoint_steps)
        d["repeat"] = list(self.repeat)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DistillConfig:
        d = dict(d)
        d["net"] = NetConfig.from_dict(d.get("net", {}))
        d["games"] = tuple(d.get("games", ()))
        d["checkpoint_steps"] = tuple(d.get("checkpoint_steps", ()))
        d["repeat"] = tuple(d.get("repeat", ()))
        return cls(**d)


def batch_rows(train_rows: np.ndarray, step: int, batch_size: int, seed: int,
               _cache: dict | None = None) -> np.ndarray:
    """The rows of batch `step` (0-based): a pure function of (rows, step, batch size, seed)."""
    per_epoch = len(train_rows) // batch_size
    if per_epoch < 1:
        raise ValueError(f"{len(train_rows)} training positions: fewer than one batch of {batch_size}")
    epoch, b = divmod(step, per_epoch)
    if _cache is not None and _cache.get("epoch") == epoch:
        perm = _cache["perm"]
    else:
        perm = np.random.default_rng([seed, epoch]).permutation(train_rows)
        if _cache is not None:
            _cache.update(epoch=epoch, perm=perm)
    return perm[b * batch_size : (b + 1) * batch_size]


def bare_mask(seed: int, step: int, n: int, share: float) -> np.ndarray | None:
    """Which rows of batch `step` are shown without history (a pure function of seed and step)."""
    if share <= 0:
        return None
    return np.random.default_rng([seed, step, 17]).random(n) < share


def losses(net: AZNet, data: EngineData, rows: np.ndarray, temperature_cp: float,
           bare: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Policy cross-entropy, value loss, and the pieces needed for metrics, on `rows` (graph kept for backward);
    rows where `bare` is True are encoded without their history."""
    device = net.device
    x = torch.from_numpy(arrays_to_planes(data.arrays(rows, bare))).to(device)
    target_p = torch.from_numpy(data.policy_target(rows, temperature_cp)).to(device)
    heads = {k: v.float() for k, v in net.forward_heads(x).items()}  # float32 losses under bf16 autocast too
    logp = F.log_softmax(heads["policy"], dim=1)
    policy_loss = -(target_p * logp).sum(dim=1).mean()
    value_target = torch.from_numpy(data.value_target(rows)).to(device)
    if "wdl" in heads:
        wdl = torch.from_numpy(data.wdl[rows]).to(device)
        value_loss = -(wdl * F.log_softmax(heads["wdl"], dim=1)).sum(dim=1).mean()
    else:
        value_loss = F.mse_loss(heads["value"], value_target)
    best = torch.from_numpy(data.best_index(rows)).to(device)
    return {"policy_loss": policy_loss, "value_loss": value_loss, "value": heads["value"],
            "value_target": value_target, "agree": (heads["policy"].argmax(dim=1) == best).float()}


def train_step(net: AZNet, opt: torch.optim.Optimizer, data: EngineData, rows: np.ndarray,
               config: DistillConfig, step: int = 0) -> dict[str, float]:
    """One optimiser step on `rows` (batch `step`); returns the batch's losses and top-1 agreement with the
    engine."""
    net.train()
    with precision_context(net.device, config.precision):
        out = losses(net, data, rows, config.policy_temperature_cp,
                     bare_mask(config.seed, step, len(rows), config.history_dropout))
    loss = out["policy_loss"] + config.value_weight * out["value_loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"loss": loss.item(), "policy_loss": out["policy_loss"].item(), "value_loss": out["value_loss"].item(),
            "agree": float(out["agree"].mean()),
            "value_mse": float(F.mse_loss(out["value"].detach(), out["value_target"]))}


@torch.inference_mode()
def evaluate(net: AZNet, data: EngineData, rows: np.ndarray, temperature_cp: float,
             batch_size: int = 1024, bare: bool = False) -> dict[str, float]:
    """Held-out metrics: policy loss, top-1 agreement with the engine's best move, value MSE (of P(win) − P(loss)
    against the engine's) and, for scale, the MSE of the best constant predictor on the same rows. `bare`: every
    position without its history (as from a FEN)."""
    net.eval()
    tot = {"policy_loss": 0.0, "value_loss": 0.0, "agree": 0.0, "value_mse": 0.0}
    targets = []
    for s in range(0, len(rows), batch_size):
        r = rows[s : s + batch_size]
        out = losses(net, data, r, temperature_cp, np.ones(len(r), dtype=bool) if bare else None)
        n = len(r)
        tot["policy_loss"] += float(out["policy_loss"]) * n
        tot["value_loss"] += float(out["value_loss"]) * n
        tot["agree"] += float(out["agree"].sum())
        tot["value_mse"] += float(((out["value"] - out["value_target"]) ** 2).sum())
        targets.append(out["value_target"].cpu().numpy())
    n = max(1, len(rows))
    result = {k: v / n for k, v in tot.items()}
    result["value_mse_constant"] = float(np.var(np.concatenate(targets))) if targets else float("nan")
    result["positions"] = len(rows)
    return result


def holdout_metrics(net: AZNet, data: EngineData, rows: np.ndarray, temperature_cp: float) -> dict:
    """A checkpoint's held-out record: `evaluate` on `rows`, with `bare_fen` = the same on every 4th row shown
    without its history (as a position given by FEN is encoded)."""
    held = evaluate(net, data, rows, temperature_cp)
    bare = evaluate(net, data, rows[::4], temperature_cp, bare=True)
    held["bare_fen"] = {k: bare[k] for k in ("agree", "value_mse", "value_mse_constant", "positions")}
    return held


def holdout_rows(data: EngineData, config: DistillConfig) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, evaluation rows): held-out games, evaluated on an evenly spaced sample of their positions."""
    train, held = data.split(config.holdout_every)
    if config.repeat and any(r != 1 for r in config.repeat):
        if len(config.repeat) != len(data.source_rows):
            raise ValueError(f"distill repeat has {len(config.repeat)} counts for {len(data.source_rows)} files")
        bounds = np.cumsum([0, *data.source_rows])
        source = np.searchsorted(bounds, train, side="right") - 1
        train = np.repeat(train, np.asarray(config.repeat, dtype=np.int64)[source])
    if len(held) > config.holdout_positions:
        held = held[np.linspace(0, len(held) - 1, config.holdout_positions).astype(np.int64)]
    return train, held


ProgressFn = Callable[[int, dict[str, float]], None]


def train_distill(config: DistillConfig, out: str | Path, *, max_steps: int | None = None,
                  progress: ProgressFn | None = None, log: Callable[[str], None] | None = None,
                  data: EngineData | None = None) -> Series:
    """Run (or resume) distillation into the series directory `out`; returns the series.

    `max_steps` stops early (resume later up to `total_steps`). `data` skips loading (tests, notebooks).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    say = log or (lambda _s: None)
    if data is None:
        say(f"reading {len(config.games)} engine-games file(s) (cached in {out / 'cache'}) …")
        data = load_engine_data(config.games, cache_dir=out / "cache", workers=config.threads)
    train_rows, eval_rows = holdout_rows(data, config)
    say(f"{len(data):,} positions from {data.games:,} games ({data.skipped} bad records skipped); "
        f"{len(train_rows):,} for training, {len(eval_rows):,} held-out positions evaluated")
    atomic_write_bytes(out / CONFIG_FILE, (json.dumps(config.to_dict(), indent=2) + "\n").encode(), fsync=False)
    series = Series(out, name=out.name, config=config.net)
    torch.manual_seed(config.seed)
    net = AZNet(config.net).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step, wall = 0, 0.0
    state_path = out / STATE_FILE
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, wall = int(state["step"]), float(state["wall_time_s"])
        say(f"resumed at step {step}")
        signature = _data_signature(data, config)
        if state.get("data") not in (None, signature):
            say(f"the training data changed since step {step} ({state['data']} → {signature}): the data order "
                "from here on is that of the new data")
    _trim_log(out / LOG_FILE, step)
    stop_at = min(config.total_steps, max_steps if max_steps is not None else config.total_steps)
    t0 = time.time() - wall
    t_run, step_run = time.time(), step
    cache: dict = {}
    window: list[dict[str, float]] = []

    def save_state() -> None:
        buf = io.BytesIO()
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "wall_time_s": time.time() - t0, "data": _data_signature(data, config)}, buf)
        atomic_write_bytes(state_path, buf.getvalue())

    def add_checkpoint() -> None:
        held = holdout_metrics(net, data, eval_rows, config.policy_temperature_cp)
        meta = CheckpointMeta(name=f"{config.prefix}-{step:06d}", step=step, positions_seen=step * config.batch_size,
                              games_seen=data.games, stage="distill", seed=config.seed,
                              parent=series.entries[-1].name if series.entries else None,
                              wall_time_s=time.time() - t0,
                              extra={"holdout": held, "value_mse": held["value_mse"],
                                     "data": {"files": [Path(s).name for s in data.sources],
                                              "positions": len(train_rows)}, "precision": config.precision})
        series.add(net, meta, half=True)
        _append_log(out / LOG_FILE, {"step": step, "checkpoint": meta.name, "holdout": held})
        say(f"{meta.name}: held-out agreement {held['agree']:.3f}, policy loss {held['policy_loss']:.3f}, "
            f"value MSE {held['value_mse']:.4f} (constant {held['value_mse_constant']:.4f}; from bare FENs "
            f"{held['bare_fen']['value_mse']:.4f})")

    while step < stop_at:
        rows = batch_rows(train_rows, step, config.batch_size, config.seed, cache)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)  # type: ignore[arg-type]
        stats = train_step(net, opt, data, rows, config, step)
        step += 1
        window.append(stats)
        stats = dict(stats, lr=lr_at(step - 1, config),  # type: ignore[arg-type]
                     positions_per_s=(step - step_run) * config.batch_size / max(1e-9, time.time() - t_run))
        if progress:
            progress(step, stats)
        if step % config.log_every == 0:
            mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            _append_log(out / LOG_FILE, {"step": step, "train": mean, "lr": stats["lr"], "precision": config.precision,
                                         "positions_per_s": stats["positions_per_s"],
                                         "wall_time_s": time.time() - t0})
            window = []
        if step % config.state_every == 0 or step == stop_at:
            save_state()
        if step % config.checkpoint_every == 0 or step in config.checkpoint_steps or step == config.total_steps:
            add_checkpoint()
    return series


def _data_signature(data: EngineData, config: DistillConfig) -> str:
    """The training data a state was saved with: files and sizes (a resume on other data changes the order)."""
    text = f"{len(data)} positions from {', '.join(Path(x).name for x in data.sources)}"
    return text if not config.repeat or set(config.repeat) == {1} else f"{text}, repeated {list(config.repeat)}"


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines past the resumed step (written after the last saved state before a kill)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode(), fsync=False)


def read_log(path: str | Path) -> list[dict]:
    """The records of a distillation log (`distill_log.jsonl`)."""
    p = Path(path)
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.is_file() else []


def config_of(out: str | Path, games: Sequence[str] | None = None, **overrides: object) -> DistillConfig:
    """The config saved in series `out` (for a resume), with `overrides`; a new one when none is saved."""
    path = Path(out) / CONFIG_FILE
    base = DistillConfig.from_dict(json.loads(path.read_text())) if path.is_file() else DistillConfig()
    d = base.to_dict()
    if games:
        d["games"] = list(games)
    d.update({k: v.to_dict() if isinstance(v, NetConfig) else v for k, v in overrides.items() if v is not None})
    return DistillConfig.from_dict(d)
