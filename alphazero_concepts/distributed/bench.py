"""Scale-out benchmark: the same dynamic-mining run on Ray with 1 and with 2 workers, side by side in one run.

Rollouts are made once (in-process, real rollout code on the given network); then the same mining shards run
on one Ray instance, first with one task in flight (one worker busy at a time), then with two, after a warm-up
that has every worker import the code and load the network. The ratio is the scale-out the backend delivers on
this machine. The per-task overhead is the wall time of a no-op shard on Ray (one in flight: submit, schedule,
run, return) minus the same no-op shard in-process, both kept in memory; `shard_write_ms` is what the driver's
atomic writes of a (tiny) shard cost on top, on any backend.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from alphazero_concepts.distributed.backend import (
    Backend,
    LocalBackend,
    RayBackend,
    RayConfig,
    Shard,
    ShardResult,
    ShardStore,
    connect_ray,
    require_ray,
)
from alphazero_concepts.distributed.stages import MineConfig, NetSource, RolloutStageConfig, mine_rollouts, run_rollouts
from alphazero_concepts.nn.checkpoints import CheckpointMeta, load_checkpoint, save_checkpoint
from alphazero_concepts.nn.network import AZNet
from alphazero_concepts.search.roots import bundled_openings


def noop_shard(_context: object, payload: int) -> ShardResult:
    """A shard that does nothing (what remains is the backend's cost)."""
    return ShardResult([{"i": payload}])


class MemoryWriter:
    """A writer that keeps results in memory (measures the backend without the disk)."""

    def __init__(self) -> None:
        self.results: dict[str, ShardResult] = {}

    def is_done(self, shard_id: str) -> bool:
        return shard_id in self.results

    def write(self, shard_id: str, result: ShardResult, seconds: float = 0.0) -> None:
        self.results[shard_id] = result


def _noop_seconds(backend: Backend, n: int, directory: Path | None) -> float:
    writer = ShardStore(directory) if directory is not None else MemoryWriter()
    start = time.perf_counter()
    backend.map_shards(noop_shard, [Shard(f"noop-{i:04d}", i) for i in range(n)], writer=writer)
    return time.perf_counter() - start


def bench_ray_mining(net: AZNet, *, roots: int = 8, layer: str | None = None, simulations: int = 24,
                     noop_tasks: int = 40, repeats: int = 1,
                     log: Callable[[str], None] | None = None) -> dict[str, float]:
    """{"ray_mining_speedup_2_workers", "ray_overhead_per_task_ms", …} measured on a local Ray instance.

    Uses the Ray instance this process is connected to, else starts one with 2 CPUs (and stops it after).
    Returns {} (and logs why) when Ray is not installed. `layer` defaults to the middle residual block.
    """
    say = log or (lambda _s: None)
    try:
        require_ray()
    except Exception as exc:  # ShardError with the install hint
        say(f"ray mining bench skipped: {exc}")
        return {}
    blocks = [name for name in net.layer_names if name.startswith("block") and "." not in name]
    layer = layer or (blocks[len(blocks) // 2] if blocks else net.layer_names[0])
    with tempfile.TemporaryDirectory(prefix="azc-bench-ray-") as tmp:
        work = Path(tmp)
        _, meta = load_checkpoint(save_checkpoint(work / "net.pt", net, CheckpointMeta(name="bench")))
        source = NetSource.of(meta)
        boards = [board for _, board in bundled_openings()][:roots]
        t0 = time.perf_counter()
        made = run_rollouts(LocalBackend(), boards, source, RolloutStageConfig(
            length=6, max_branch=1, max_subpar=3, simulations=simulations, shard_size=len(boards)), work / "rollouts")
        items = made.rollouts
        say(f"ray bench: {len(items)} roots, {sum(len(r.subpar) for r in items)} sub-par lines "
            f"({time.perf_counter() - t0:.1f} s); mining at {layer}")
        config = MineConfig(layer=layer, shard_size=1)
        mine_rollouts(LocalBackend(), items[:2], source, config, work / "local-warm")  # solver and network warm
        owns = connect_ray(RayConfig(num_cpus=2))
        try:
            one = RayBackend(RayConfig(max_in_flight=1))
            two = RayBackend(RayConfig(max_in_flight=2))
            mine_rollouts(two, items[:2], source, config, work / "warm")  # both workers: imports + network
            _noop_seconds(two, 4, None)
            runs: dict[str, Backend] = {"local": LocalBackend(), "one": one, "two": two}
            best = dict.fromkeys(runs, float("inf"))
            for r in range(repeats):  # interleaved, best of `repeats`: all three see the same machine load
                for name, backend in runs.items():
                    start = time.perf_counter()
                    mine_rollouts(backend, items, source, config, work / f"{name}-{r}")
                    best[name] = min(best[name], time.perf_counter() - start)
            ray_noop = _noop_seconds(one, noop_tasks, None)
            local_noop = _noop_seconds(LocalBackend(), noop_tasks, None)
            write_s = _noop_seconds(LocalBackend(), noop_tasks, work / "noop-written") - local_noop
        finally:
            if owns:
                require_ray().shutdown()
    local_s, t1, t2 = best["local"], best["one"], best["two"]
    out = {
        "ray_mining_speedup_2_workers": t1 / t2,
        "ray_overhead_per_task_ms": 1000.0 * max(0.0, ray_noop - local_noop) / noop_tasks,
        "shard_write_ms": 1000.0 * max(0.0, write_s) / noop_tasks,  # the driver's atomic writes of one shard
        "ray_mining_s_1_worker": t1,
        "ray_mining_s_2_workers": t2,
        "local_mining_s": local_s,
        "ray_mining_roots": float(len(items)),
        "ray_bench_load_average": os.getloadavg()[0],  # runnable processes: > CPUs means the workers contended
        "ray_bench_cpus": float(os.cpu_count() or 1),
    }
    say(f"ray bench: mining {len(items)} roots: 1 worker {t1:.2f} s, 2 workers {t2:.2f} s "
        f"(×{out['ray_mining_speedup_2_workers']:.2f}), in-process {local_s:.2f} s; "
        f"overhead {out['ray_overhead_per_task_ms']:.1f} ms/task")
    return out
