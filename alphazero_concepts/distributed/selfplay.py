"""Self-play on Ray: worker actors play batches of games, a learner trains on them and publishes new weights.

    SelfPlayWorker ×N (actors, 1 CPU or a GPU share each)      SelfPlayHub (one actor, `hub.py`)
      poll the hub: newer weights? load them (between batches) ◀── publish(version, ref)   ◀─┐
      play `games_per_batch` games at once (batched MCTS,         take() ──▶ driver          │
      `training.selfplay.play_games`), push each finished game ──▶ add(version, bytes)        │
                                                                                              │
    RaySelfPlay (the driver: learner and the run directory's one writer) ─────────────────────┘
      takes finished games, drops those played with weights older than `max_staleness` versions, and once
      `positions_per_update` fresh positions are in: writes them as replay shard k (`training.replay`, atomic),
      trains on the last `window` shards (`training.selfplay.train_on_window`: visit-distribution targets),
      publishes weights version k, adds checkpoint `ray-k` to the series and saves its state (resumable).

    <out>/replay/shard-XXX.npz + games-XXX.pgn   the games each update trained on (shard k ↔ weights version k)
    <out>/series/                                checkpoints ray-0001 … (float16) with the update's statistics
    <out>/learner_state.pt, ray_selfplay.json    resume point (weights, optimiser, version, game counter), config

Self-play is asynchronous: which weights version plays a game depends on timing, so a run is not reproducible
game by game (each game records its weights version and has a unique seed: its global index). A worker that
dies is restarted by Ray (`max_restarts`) and goes on with fresh game ids; only its unfinished games are lost.
A killed driver resumes from its last update: finished replay shards are never replayed.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alphazero_concepts.core.config import DictConfig
from alphazero_concepts.core.files import atomic_write_bytes
from alphazero_concepts.distributed.backend import RayConfig, ShardError, connect_ray, require_ray
from alphazero_concepts.distributed.hub import SelfPlayHub
from alphazero_concepts.nn.checkpoints import CheckpointError, CheckpointMeta, Series
from alphazero_concepts.nn.network import AZNet, NetConfig, resolve_device
from alphazero_concepts.search.mcts import NetEvaluator
from alphazero_concepts.training.replay import ReplayBuffer, ReplayShard
from alphazero_concepts.training.selfplay import SelfPlayConfig, game_stats, load_openings, play_games, train_on_window

STATE_FILE = "learner_state.pt"
CONFIG_FILE = "ray_selfplay.json"


@dataclass(frozen=True)
class RaySelfPlayConfig(DictConfig):
    """Self-play on Ray. `selfplay` holds the game and training parameters (`training.selfplay.SelfPlayConfig`);
    its `games`, `concurrent` and `steps` are replaced by the fields below."""

    workers: int = 2
    games_per_batch: int = 16  # games a worker plays at once (one batched search per ply) between weight polls
    positions_per_update: int = 2048  # fresh positions the learner waits for before each update
    steps_per_update: int = 0  # optimiser steps per update; 0: selfplay.sample_reuse × new positions / batch
    max_staleness: int | None = None  # drop games played with weights more than this many versions old
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None: a share of the cluster's GPUs when it has any, else 0
    max_restarts: int = 3  # Ray restarts a dead worker actor this many times
    idle_timeout_s: float = 900.0  # no game for this long: the run stops with an error
    selfplay: SelfPlayConfig = field(default_factory=SelfPlayConfig)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.games_per_batch < 1 or self.positions_per_update < 1:
            raise ValueError("workers, games_per_batch and positions_per_update must be ≥ 1")
        if self.max_staleness is not None and self.max_staleness < 0:
            raise ValueError(f"max_staleness must be ≥ 0 or None, got {self.max_staleness}")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["selfplay"] = self.selfplay.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict) -> RaySelfPlayConfig:
        data = dict(data)
        data["selfplay"] = SelfPlayConfig.from_dict(data.get("selfplay", {}))
        return super().from_dict(data)

    def worker_selfplay(self) -> SelfPlayConfig:
        from dataclasses import replace

        return replace(self.selfplay, games=self.games_per_batch, concurrent=self.games_per_batch)


class SelfPlayWorker:
    """A Ray actor that plays batches of games with the latest weights it has picked up from the hub."""

    def __init__(self, index: int, net_config: dict, config: dict, hub: Any, games_per_batch: int) -> None:
        ray = require_ray()
        torch.set_num_threads(1)
        self.index = index
        self.hub = hub
        self.games_per_batch = games_per_batch
        self.config = SelfPlayConfig.from_dict(config)
        self.device = torch.device("cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu")
        self.net = AZNet(NetConfig.from_dict(net_config)).to(self.device).eval()
        self.openings = load_openings(self.config)
        self.version = -1
        self.games = 0
        self.versions_loaded: list[int] = []

    def _poll(self) -> bool:
        """Load newer weights if the hub has them; True when the run is over."""
        ray = require_ray()
        stop, version, refs = ray.get(self.hub.poll.remote(self.version, self.index))
        if refs is not None:
            state = ray.get(refs[0])
            self.net.load_state_dict(state)
            self.net.eval()
            self.version = version
            self.versions_loaded.append(version)
        return stop

    def run(self, max_batches: int | None = None) -> dict:
        """Play batches until the hub says stop (or `max_batches`); returns what this worker did."""
        ray = require_ray()
        batches = 0
        fmt = self.net.format
        while not self._poll():
            if self.version < 0:  # no weights published yet
                time.sleep(0.05)
                continue
            if max_batches is not None and batches >= max_batches:
                break
            version = self.version
            ids = ray.get(self.hub.next_ids.remote(self.games_per_batch))
            info = {"policy_format": fmt.name, "policy_size": fmt.policy_size, "network": f"v{version}",
                    "weights_version": version, "worker": self.index}

            def send(shard: ReplayShard, version: int = version) -> None:
                for game in shard.games:
                    game["weights_version"] = version
                    game["worker"] = self.index
                self.hub.add.remote(version, self.index, shard.to_bytes())
                self.games += 1

            play_games(NetEvaluator(self.net), self.config, 1, ids, self.openings, info=info, on_game=send)
            batches += 1
        return {"worker": self.index, "games": self.games, "batches": batches,
                "versions_loaded": self.versions_loaded, "device": str(self.device)}


def shard_from_bytes(data: bytes) -> ReplayShard:
    """A replay shard from the bytes a worker sent, checked as a file would be (ReplayError when unusable)."""
    with tempfile.TemporaryDirectory(prefix="azc-game-") as tmp:
        path = Path(tmp) / "game.npz"
        path.write_bytes(data)
        return ReplayShard.load(path)


@dataclass
class UpdateSummary:
    """One learner update: the weights version it published and what it trained on."""

    version: int
    games: int
    positions: int
    window_positions: int
    steps: int
    stale_dropped: int
    train: dict[str, float]
    game_versions: dict[int, int]  # weights version → games of this update played with it
    seconds: float

    def to_dict(self) -> dict:
        return {k: (v if not isinstance(v, dict) else {str(a): b for a, b in v.items()})
                for k, v in self.__dict__.items()}


class RaySelfPlay:
    """The driver of a Ray self-play run (learner + one writer); `run(updates)` can be called again to go on."""

    def __init__(self, config: RaySelfPlayConfig, start: str | Path, out: str | Path, *,
                 ray_config: RayConfig | None = None, log: Callable[[str], None] | None = None) -> None:
        from alphazero_concepts.nn.loading import load_network

        self.config = config
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.say = log or (lambda _s: None)
        atomic_write_bytes(self.out / CONFIG_FILE, (json.dumps(config.to_dict(), indent=2) + "\n").encode())
        sp = config.selfplay
        self.device = resolve_device(sp.device)
        state_path = self.out / STATE_FILE
        if state_path.is_file():
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            self.net = AZNet(NetConfig.from_dict(state["config"])).to(self.device)
            self.net.load_state_dict(state["model"])
            self.version, self.next_game = int(state["version"]), int(state["next_game"])
            self.totals = dict(state["totals"])
            self.say(f"resuming from {state_path}: weights version {self.version}")
        else:
            net, meta = load_network(str(start), self.device)
            if not isinstance(net, AZNet):
                raise CheckpointError(f"{start}: self-play trains native AZNet checkpoints, not {type(net).__name__}")
            self.net, self.version, self.next_game = net, 0, 0
            self.totals = {"train_steps": 0, "games": 0, "positions": 0, "start": str(start), "parent": meta.name}
            state = None
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=sp.lr, weight_decay=sp.weight_decay)
        if state is not None:
            self.opt.load_state_dict(state["optimizer"])
        self.replay = ReplayBuffer(self.out / "replay")
        self.series = Series(self.out / "series", name=f"{self.out.name}-ray", config=self.net.config)
        self.updates: list[UpdateSummary] = []
        self.pending: list[ReplayShard] = []
        self.stale_dropped = 0
        self._ray_config = ray_config or RayConfig()
        self._owns_ray = connect_ray(self._ray_config)
        self._start_actors()

    # ----------------------------------------------------------------------------------------------------------
    def _start_actors(self) -> None:
        ray = require_ray()
        cfg = self.config
        gpus = cfg.gpus_per_worker
        if gpus is None:
            cluster_gpus = ray.cluster_resources().get("GPU", 0)
            gpus = min(1.0, cluster_gpus / cfg.workers) if cluster_gpus else 0.0
        self.hub = ray.remote(SelfPlayHub).options(num_cpus=0).remote(self.next_game)
        self._publish()
        worker_cls = ray.remote(SelfPlayWorker).options(num_cpus=cfg.cpus_per_worker, num_gpus=gpus,
                                                         max_restarts=cfg.max_restarts, max_task_retries=-1)
        sp_dict = cfg.worker_selfplay().to_dict()
        self.workers = [worker_cls.remote(i, self.net.config.to_dict(), sp_dict, self.hub, cfg.games_per_batch)
                        for i in range(cfg.workers)]
        self.runs = [w.run.remote() for w in self.workers]

    def _publish(self) -> None:
        ray = require_ray()
        state = {k: v.detach().to("cpu", copy=True) for k, v in self.net.state_dict().items()}
        self._weights_ref = ray.put(state)  # kept: the driver owns the object the hub refers to
        ray.get(self.hub.publish.remote(self.version, [self._weights_ref]))

    # ----------------------------------------------------------------------------------------------------------
    def _take(self) -> int:
        """Pull finished games from the hub; returns how many fresh (not stale) games came in."""
        ray = require_ray()
        fresh = 0
        for version, _worker, data in ray.get(self.hub.take.remote()):
            if self.config.max_staleness is not None and version < self.version - self.config.max_staleness:
                self.stale_dropped += 1
                continue
            self.pending.append(shard_from_bytes(data))
            fresh += 1
        return fresh

    def _update(self) -> UpdateSummary:
        t0 = time.time()
        sp = self.config.selfplay
        version = self.version + 1
        fmt = self.net.format
        info = {"policy_format": fmt.name, "policy_size": fmt.policy_size, "network": f"v{self.version}"}
        shard = ReplayShard.concat(self.pending, iteration=version, info=info)
        self.replay.write(shard)  # the one writer: atomic, before the weights it produces exist
        window, problems = self.replay.window(version, sp.window)
        for problem in problems:
            self.say(f"left out of the training window: {problem}")
        steps = self.config.steps_per_update or sp.steps_for(len(shard))
        torch.manual_seed(sp.seed * 1_000_003 + version)
        train = train_on_window(self.net, self.opt, window, sp, steps, np.random.default_rng([sp.seed, version, 7]))
        self.net.eval()
        self.version = version
        self._publish()
        versions: dict[int, int] = {}
        for g in shard.games:
            versions[int(g.get("weights_version", -1))] = versions.get(int(g.get("weights_version", -1)), 0) + 1
        summary = UpdateSummary(version, len(shard.games), len(shard), len(window), steps, self.stale_dropped, train,
                                versions, time.time() - t0)
        stats = game_stats(shard)
        self.totals["train_steps"] += steps
        self.totals["games"] += len(shard.games)
        self.totals["positions"] += len(shard)
        self.next_game = max([self.next_game] + [int(g.get("index", 0)) + 1 for g in shard.games])
        meta = CheckpointMeta(name=f"ray-{version:04d}", step=self.totals["train_steps"],
                              positions_seen=self.totals["train_steps"] * sp.batch_size,
                              games_seen=self.totals["games"], stage="selfplay-ray", seed=sp.seed,
                              parent=self.series.names[-1] if self.series.names else self.totals.get("parent"),
                              extra={"update": summary.to_dict(), "games": {k: v for k, v in stats.items()
                                                                             if k != "false_resign_rate"}})
        self.series.add(self.net, meta, half=True)
        buf = io.BytesIO()
        torch.save({"model": self.net.state_dict(), "optimizer": self.opt.state_dict(), "version": version,
                    "next_game": self.next_game, "config": self.net.config.to_dict(), "totals": self.totals}, buf)
        atomic_write_bytes(self.out / STATE_FILE, buf.getvalue())
        self.pending = []
        self.updates.append(summary)
        return summary

    def run(self, updates: int, *, progress: Callable[[int, int], None] | None = None,
            on_update: Callable[[UpdateSummary], None] | None = None) -> list[UpdateSummary]:
        """Go on until `updates` more learner updates are done; returns their summaries."""
        target = self.version + updates
        done: list[UpdateSummary] = []
        last_game = time.time()
        if progress:
            progress(0, updates)
        while self.version < target:
            if self._take():
                last_game = time.time()
            elif time.time() - last_game > self.config.idle_timeout_s:
                raise ShardError(f"no game from the self-play workers for {self.config.idle_timeout_s:.0f} s "
                                 f"(workers: {self.worker_status()})")
            else:
                time.sleep(0.05)
            if sum(len(s) for s in self.pending) >= self.config.positions_per_update:
                summary = self._update()
                done.append(summary)
                self.say(f"update {summary.version}: {summary.games} games, {summary.positions} positions, "
                         f"loss {summary.train.get('loss', float('nan')):.3f}")
                if on_update:
                    on_update(summary)
                if progress:
                    progress(len(done), updates)
        return done

    def worker_status(self) -> str:
        ray = require_ray()
        ready, _ = ray.wait(self.runs, num_returns=len(self.runs), timeout=0)
        return f"{len(self.runs) - len(ready)} of {len(self.runs)} running"

    def hub_status(self) -> dict:
        return require_ray().get(self.hub.status.remote())

    def close(self, grace_s: float = 5.0) -> list[dict]:
        """Stop the workers (after their current batch, at most `grace_s` seconds), free the actors."""
        ray = require_ray()
        results: list[dict] = []
        if getattr(self, "hub", None) is None:
            return results
        ray.get(self.hub.stop.remote())
        ready, _ = ray.wait(self.runs, num_returns=len(self.runs), timeout=grace_s)
        for ref in ready:
            with contextlib.suppress(ray.exceptions.RayError):
                results.append(ray.get(ref))
        for actor in [*self.workers, self.hub]:
            ray.kill(actor)
        self.hub = None
        if self._owns_ray:
            ray.shutdown()
        return results

    def __enter__(self) -> RaySelfPlay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
