"""Execution backends: one function mapped over shards of work, results kept by one writer, resumable.

A stage is cut into shards with stable ids (``shard-00003``). ``Backend.map_shards(fn, shards, writer=store,
context=ctx, progress=cb)`` runs ``fn(context, shard.payload) -> ShardResult`` for every shard the writer has not
finished, wherever the backend runs it, and hands each result to the one writer (the driver process), which
stores it atomically in the run directory:

    <dir>/plan.json       stage, fingerprint of the inputs, shard ids (a rerun with other inputs is refused)
    <dir>/<id>.jsonl      the shard's records (one JSON object a line)
    <dir>/<id>.npz        the shard's arrays, when it has any
    <dir>/<id>.done       written last: the shard is finished (record count, array shapes, seconds)

Each file is written as a temporary file + ``os.replace``, and the done marker last, so a shard without its
marker is unfinished and is never read, and a rerun skips every shard that has one. Workers never touch the
run directory: a worker that dies mid-shard leaves nothing behind, and its shard is simply run again.

Backends: `LocalBackend` (in-process, or a process pool of `workers`), `RayBackend` (an existing cluster by
address, or a local Ray instance; tasks retried when their worker dies). Shard functions run with one thread
(torch and BLAS) under every backend (parallelism comes from shards), so a shard's result does not depend on
the backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from alphazero_concepts.core.config import DictConfig
from alphazero_concepts.core.files import atomic_write_bytes

PLAN = "plan.json"
BACKENDS = ("local", "ray")

ProgressFn = Callable[[int, int], None]


class ShardError(RuntimeError):
    """Shards that failed, or a run directory that cannot be used; the message names the shards or the file."""


@dataclass(frozen=True)
class Shard:
    """A unit of work: a stable id (a file name stem) and a picklable payload (plain data preferred)."""

    id: str
    payload: Any

    def __post_init__(self) -> None:
        if not self.id or any(c in self.id for c in "/\\") or self.id.startswith("."):
            raise ValueError(f"shard id {self.id!r} must be a plain file name stem")


@dataclass
class ShardResult:
    """What a shard produces: JSON records and named arrays (stored as `<id>.jsonl` and `<id>.npz`)."""

    records: list[dict] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


ShardFn = Callable[[Any, Any], ShardResult]


class ShardWriter(Protocol):
    """The one writer of a run: knows which shards are finished and stores a finished shard atomically."""

    def is_done(self, shard_id: str) -> bool: ...

    def write(self, shard_id: str, result: ShardResult, seconds: float = 0.0) -> None: ...


def fingerprint(*parts: Any) -> str:
    """sha256 of the JSON form of `parts`: what identifies a run's inputs in its plan."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def shard_ids(n: int, prefix: str = "shard") -> list[str]:
    """Stable, sortable ids for `n` shards."""
    return [f"{prefix}-{k:05d}" for k in range(n)]


def chunk(items: Sequence[Any], size: int) -> list[list[Any]]:
    """`items` cut into consecutive pieces of at most `size` (the shard layout; it fixes the results)."""
    if size < 1:
        raise ValueError(f"shard size must be ≥ 1, got {size}")
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


class ShardStore:
    """The run directory's shard files (see the module docstring); used only by the driver."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(".*.tmp"):  # temp files of a writer killed mid-write
            stale.unlink(missing_ok=True)

    def plan(self, stage: str, ids: Sequence[str], inputs: str) -> None:
        """Record (first run) or check (rerun) the stage, its input fingerprint and its shard ids."""
        path = self.directory / PLAN
        plan = {"stage": stage, "fingerprint": inputs, "shards": list(ids)}
        if len(set(ids)) != len(ids):
            raise ShardError(f"{path}: duplicate shard ids")
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ShardError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
            if {k: old.get(k) for k in plan} != plan:
                raise ShardError(f"{path}: this directory holds shards of another run (other inputs, model, "
                                 "settings or shard size); use a new output directory or delete it")
            return
        atomic_write_bytes(path, (json.dumps({**plan, "created": time.time()}, indent=1) + "\n").encode())

    def _marker(self, shard_id: str) -> Path:
        return self.directory / f"{shard_id}.done"

    def is_done(self, shard_id: str) -> bool:
        return self._marker(shard_id).is_file()

    def write(self, shard_id: str, result: ShardResult, seconds: float = 0.0) -> None:
        """Store a finished shard: records, arrays, then the done marker (each file atomically)."""
        lines = "".join(json.dumps(rec, default=str) + "\n" for rec in result.records)
        atomic_write_bytes(self.directory / f"{shard_id}.jsonl", lines.encode())
        if result.arrays:
            buf = io.BytesIO()
            np.savez(buf, **result.arrays)
            atomic_write_bytes(self.directory / f"{shard_id}.npz", buf.getvalue())
        marker = {"id": shard_id, "records": len(result.records), "seconds": seconds,
                  "arrays": {k: list(np.shape(v)) for k, v in result.arrays.items()}}
        atomic_write_bytes(self._marker(shard_id), (json.dumps(marker) + "\n").encode())

    def read(self, shard_id: str) -> ShardResult:
        """A finished shard's result; ShardError for a shard without its done marker."""
        if not self.is_done(shard_id):
            raise ShardError(f"{self.directory}: shard {shard_id} is not finished")
        marker = json.loads(self._marker(shard_id).read_text())
        path = self.directory / f"{shard_id}.jsonl"
        records = []
        with open(path) as fh:
            for lineno, line in enumerate(fh, 1):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ShardError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
        arrays: dict[str, np.ndarray] = {}
        if marker.get("arrays"):
            with np.load(self.directory / f"{shard_id}.npz") as data:
                arrays = {k: data[k] for k in marker["arrays"]}
        return ShardResult(records, arrays)

    def results(self, ids: Sequence[str]) -> Iterator[tuple[str, ShardResult]]:
        """(id, result) of the finished shards among `ids`, in the order given."""
        for shard_id in ids:
            if self.is_done(shard_id):
                yield shard_id, self.read(shard_id)

    def stats(self, ids: Sequence[str]) -> list[dict]:
        """The done markers of the finished shards among `ids` (seconds per shard, sizes)."""
        return [json.loads(self._marker(i).read_text()) for i in ids if self.is_done(i)]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run a shard with one torch thread and one BLAS/OpenMP thread (restored afterwards).

    The same numerics under every backend (Ray already gives a 1-CPU task one OpenMP thread), and no thread
    oversubscription: parallelism comes from shards. BLAS pools are limited through threadpoolctl (installed
    with scikit-learn).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        limits: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=1)
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(before)


def run_shard(fn: ShardFn, context: Any, payload: Any) -> tuple[ShardResult, float]:
    """Run one shard where the backend put it; returns the result and the seconds it took."""
    start = time.perf_counter()
    with one_thread():
        result = fn(context, payload)
    if not isinstance(result, ShardResult):
        raise TypeError(f"{getattr(fn, '__name__', fn)!r} returned {type(result).__name__}, not ShardResult")
    return result, time.perf_counter() - start


@dataclass
class MapReport:
    """What one `map_shards` call did."""

    backend: str
    total: int
    skipped: int = 0  # already finished before this call
    ran: int = 0
    seconds: float = 0.0


class Backend(ABC):
    """Runs `fn(context, payload)` over shards; the driver writes each finished shard through `writer`."""

    name: str = "backend"

    @property
    @abstractmethod
    def parallelism(self) -> int:
        """How many shards can run at once."""

    def map_shards(self, fn: ShardFn, shards: Sequence[Shard], *, writer: ShardWriter, context: Any = None,
                   progress: ProgressFn | None = None, gpu: bool = True) -> MapReport:
        """Run every unfinished shard and write its result; finished shards are skipped (resume).

        `fn` must be a module-level function (it is sent to other processes); `context` is the data every shard
        shares (configs, the network's source), sent once per process or stored once in Ray's object store.
        `progress(done, total)` is called as shards finish. `gpu=False` says the shards gain nothing from a GPU
        (e.g. a CPU solver): the ray backend then asks for none. Shards that raise are reported together at the end
        (ShardError) after every other shard has been written; a rerun runs only what is missing.
        """
        ids = [s.id for s in shards]
        if len(set(ids)) != len(ids):
            raise ShardError("duplicate shard ids")
        start = time.perf_counter()
        pending = [s for s in shards if not writer.is_done(s.id)]
        report = MapReport(self.name, len(shards), skipped=len(shards) - len(pending))
        if progress:
            progress(report.skipped, report.total)
        errors: list[tuple[str, BaseException]] = []

        def finished(shard: Shard, result: ShardResult, seconds: float) -> None:
            writer.write(shard.id, result, seconds)
            report.ran += 1
            if progress:
                progress(report.skipped + report.ran, report.total)

        if pending:
            self._run(fn, pending, context, finished, lambda shard, exc: errors.append((shard.id, exc)), gpu)
        report.seconds = time.perf_counter() - start
        if errors:
            first_id, first = errors[0]
            raise ShardError(f"{len(errors)} of {len(pending)} shards failed ({', '.join(i for i, _ in errors[:5])}"
                             f"{', …' if len(errors) > 5 else ''}); the {report.ran} finished ones are kept and a "
                             f"rerun runs only the rest. First error ({first_id}): {type(first).__name__}: {first}"
                             ) from first
        return report

    @abstractmethod
    def _run(self, fn: ShardFn, pending: list[Shard], context: Any,
             finished: Callable[[Shard, ShardResult, float], None],
             failed: Callable[[Shard, BaseException], None], gpu: bool) -> None:
        """Run `pending`, calling `finished` in the driver for each result and `failed` for each error."""

    def close(self) -> None:
        """Release what the backend started (a local Ray instance); nothing by default."""
        return None

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalBackend(Backend):
    """This machine: shards in-process one after another (`workers=0`), or in a pool of `workers` processes.

    A process pool uses the `spawn` start method (safe with torch threads); each process keeps its own
    network cache (a script that uses a pool needs the usual `if __name__ == "__main__":`
    guard; `azc` has it). A worker process that dies breaks the pool: the run stops with ShardError and a rerun
    resumes from the finished shards.
    """

    name = "local"

    def __init__(self, workers: int = 0) -> None:
        if workers < 0:
            raise ValueError(f"workers must be ≥ 0, got {workers}")
        self.workers = workers

    @property
    def parallelism(self) -> int:
        return max(1, self.workers)

    def _run(self, fn, pending, context, finished, failed, gpu) -> None:  # type: ignore[no-untyped-def]
        if self.workers == 0:
            for shard in pending:
                try:
                    result, seconds = run_shard(fn, context, shard.payload)
                except Exception as exc:
                    failed(shard, exc)
                    continue
                finished(shard, result, seconds)
            return
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))
        futures: dict[Future, Shard] = {}
        queue = deque(pending)
        try:
            while queue or futures:
                while queue and len(futures) < 2 * self.workers:  # bounded: results do not pile up in memory
                    shard = queue.popleft()
                    futures[pool.submit(run_shard, fn, context, shard.payload)] = shard
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for fut in done:
                    shard = futures.pop(fut)
                    try:
                        result, seconds = fut.result()
                    except BrokenProcessPool as exc:
                        raise ShardError(f"a worker process died while running {shard.id}; the finished shards "
                                         "are kept: rerun to resume") from exc
                    except Exception as exc:
                        failed(shard, exc)
                        continue
                    finished(shard, result, seconds)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class RayConfig(DictConfig):
    """How to reach a Ray cluster and how to place shard tasks on it.

    address: None → $RAY_ADDRESS if set, else a new local Ray instance; "auto" → the cluster this machine
    joined with `ray start`; "ray://host:10001" → a remote cluster through Ray Client.
    """

    address: str | None = None
    num_cpus: int | None = None  # CPUs of a new local instance (default: all)
    cpus_per_task: float = 1.0
    gpus_per_task: float | None = None  # None: 1 when the cluster has GPUs, else 0
    max_retries: int = 3  # a task whose worker process dies is run again this many times
    max_in_flight: int = 0  # tasks submitted at once (0: 2 × the cluster's CPUs / cpus_per_task)
    runtime_env: dict | None = None  # e.g. {"py_modules": [...]} when the package is not installed on the nodes

    def __post_init__(self) -> None:
        if self.cpus_per_task <= 0 or self.max_retries < 0 or self.max_in_flight < 0:
            raise ValueError("cpus_per_task must be > 0, max_retries and max_in_flight ≥ 0")


def require_ray() -> Any:
    """The `ray` module, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ShardError("the ray backend needs Ray: pip install 'alphazero-concepts[distributed]' "
                         "(or pip install 'ray>=2.9')") from exc
    return ray


def connect_ray(config: RayConfig) -> bool:
    """Connect this process to Ray as `config` says (kept if already connected); True if we started it."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    address = config.address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs: dict[str, Any] = {"address": address, "runtime_env": config.runtime_env}
    if address == "local" and config.num_cpus is not None:
        kwargs["num_cpus"] = config.num_cpus
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise ShardError(f"cannot reach the Ray cluster at {address!r}: {exc}") from exc
    return True


class RayBackend(Backend):
    """Shards as Ray tasks on a cluster (or a local Ray instance), progress through `ray.wait`.

    The context is stored once in the object store; each task gets `cpus_per_task` CPUs and, unless the stage
    says its shards are CPU work (`gpu=False`), `gpus_per_task` GPUs (a GPU task sees only its GPU and loads the
    network there with device "auto"), and is retried `max_retries` times when
    its worker process dies. An exception raised by the shard function itself is not retried (it would fail
    again); it is reported after the other shards finish.
    """

    name = "ray"

    def __init__(self, config: RayConfig | None = None) -> None:
        self.config = config or RayConfig()
        self._owns = connect_ray(self.config)
        ray = require_ray()
        resources = ray.cluster_resources()
        self.cluster_cpus = int(resources.get("CPU", 1))
        self.cluster_gpus = int(resources.get("GPU", 0))
        gpus = self.config.gpus_per_task
        self.gpus_per_task = float(gpus if gpus is not None else (1.0 if self.cluster_gpus else 0.0))
        self._task = ray.remote(run_shard)
        self._options = {"num_cpus": self.config.cpus_per_task, "max_retries": self.config.max_retries,
                         "retry_exceptions": False}

    @property
    def cpu_parallelism(self) -> int:
        """Tasks that fit on the cluster's CPUs."""
        return max(1, int(self.cluster_cpus / self.config.cpus_per_task))

    @property
    def parallelism(self) -> int:
        by_cpu = self.cpu_parallelism
        by_gpu = int(self.cluster_gpus / self.gpus_per_task) if self.gpus_per_task else by_cpu
        return max(1, min(by_cpu, by_gpu))

    def _run(self, fn, pending, context, finished, failed, gpu) -> None:  # type: ignore[no-untyped-def]
        ray = require_ray()
        limit = self.config.max_in_flight or 2 * (self.parallelism if gpu else self.cpu_parallelism)
        context_ref = ray.put(context)
        queue = deque(pending)
        in_flight: dict[Any, Shard] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    shard = queue.popleft()
                    name = f"{getattr(fn, '__name__', 'shard')}:{shard.id}"  # as the dashboard lists it
                    task = self._task.options(name=name, num_gpus=self.gpus_per_task if gpu else 0,
                                              **self._options)
                    in_flight[task.remote(fn, context_ref, shard.payload)] = shard
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    shard = in_flight.pop(ref)
                    try:
                        result, seconds = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        failed(shard, exc)
                        continue
                    finished(shard, result, seconds)
        finally:
            for ref in in_flight:  # interrupted (Ctrl-C): stop what is still running
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._owns:
            require_ray().shutdown()
            self._owns = False


@dataclass(frozen=True)
class BackendConfig(DictConfig):
    """Which backend a stage runs on (saved in the run directory beside the stage's own config)."""

    kind: str = "local"
    workers: int = 0  # local: processes (0 = in-process); ray: tasks in flight (0 = 2 × cluster CPUs)
    address: str | None = None  # ray only
    num_cpus: int | None = None  # ray only: CPUs of a new local instance
    max_retries: int = 3  # ray only

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.kind!r}")
        if self.kind == "local" and self.address:
            raise ValueError("--address is for the ray backend; add --backend ray")

    def make(self) -> Backend:
        if self.kind == "local":
            return LocalBackend(self.workers)
        return RayBackend(RayConfig(address=self.address, num_cpus=self.num_cpus, max_retries=self.max_retries,
                                    max_in_flight=self.workers))


def make_backend(kind: str = "local", *, address: str | None = None, workers: int = 0) -> Backend:
    """A backend by name: `local` (workers processes, 0 = in-process) or `ray` (cluster at `address`)."""
    return BackendConfig(kind=kind, workers=workers, address=address).make()
