"""Sharded pipeline stages: rollouts over roots, activation collection over positions, dynamic mining of rollouts.

Each stage is a pure shard function `fn(context, payload) -> ShardResult` (module level, so any backend can send
it to another process) and a driver that cuts the inputs into shards, runs them on the backend it is given and
assembles the finished shards into the stage's usual artifact:

    run_rollouts        → <out>/rollouts.jsonl                      (what `azc rollouts` writes)
    collect_activations → <out>/index.jsonl, <layer>.npy, progress.json  (an `ActivationStore`, as `azc collect`)
    mine_rollouts       → <out>/concepts.jsonl + vectors.npz        (what `azc mine` writes)

with the shards themselves in `<out>/shards/` (resume record, see `backend.ShardStore`). The work of a shard is
the stage's own driver (`stages.rollouts.search_roots`, `stages.mine.mine_roots`,
`concepts.activations.fill_rows`), the same the `azc` commands and the pipeline call; the code is the
same for every backend. Results depend on the inputs, the seed and the shard size (network batches are formed
within a shard), never on the backend: a shard's seed is (seed, shard index), and shard functions run with one
thread (torch and BLAS) everywhere.

Workers get the network as a `NetSource`: a checkpoint path (shared filesystem) or the file's bytes (shipped in
the context, stored once in Ray's object store); it is loaded once per worker process and cached by its sha256.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import chess
import numpy as np

from alphazero_concepts.chess.positions import Position
from alphazero_concepts.concepts.activations import (
    INDEX,
    PROGRESS,
    ActivationStore,
    StoreError,
    _write_index,
    fill_rows,
)
from alphazero_concepts.concepts.conceptset import ConceptSet
from alphazero_concepts.core.config import DictConfig
from alphazero_concepts.core.files import atomic_write_bytes, write_jsonl
from alphazero_concepts.core.rundir import DISTRIBUTED, ROLLOUTS, SHARDS
from alphazero_concepts.distributed.backend import (
    Backend,
    MapReport,
    ProgressFn,
    Shard,
    ShardError,
    ShardResult,
    ShardStore,
    chunk,
    fingerprint,
    shard_ids,
)
from alphazero_concepts.nn.checkpoints import CheckpointMeta, file_sha256
from alphazero_concepts.nn.loading import load_network
from alphazero_concepts.nn.network import HookedNet
from alphazero_concepts.search.rollouts import Rollout, RolloutConfig
from alphazero_concepts.stages.mine import mine_roots
from alphazero_concepts.stages.rollouts import search_roots

T = TypeVar("T")
STAGE_FILE = DISTRIBUTED


# ---------------------------------------------------------------------------------------------------------------
# the network, as workers get it

_NETS: dict[tuple[str, str], tuple[HookedNet, CheckpointMeta]] = {}
_MAX_CACHED = 4


@dataclass(frozen=True)
class NetSource:
    """Where a worker gets the network: a spec `load_network` accepts, or the weight file's bytes.

    `spec` is an absolute path on a filesystem every node sees (or a bundled name); with `blob` set (`ship=True`)
    the bytes travel with the stage's context instead (Ray keeps them once in its object store), for clusters
    without a shared filesystem. `device` "auto" uses the GPU a Ray task was given, else the CPU.
    """

    spec: str
    sha256: str = ""
    blob: bytes | None = field(default=None, repr=False)
    device: str = "cpu"

    @classmethod
    def of(cls, meta: CheckpointMeta, spec: str | None = None, *, ship: bool = False,
           device: str = "cpu") -> NetSource:
        """The source of a network the driver loaded (its meta names the file and its sha256)."""
        path = meta.extra.get("path")
        if path is None and spec is None:
            raise ValueError(f"network {meta.name!r} has no file path: pass the spec it was loaded from")
        where = str(Path(path).resolve()) if path else str(spec)
        sha = meta.extra.get("sha256") or (file_sha256(where) if Path(where).is_file() else "")
        blob = Path(where).read_bytes() if ship else None
        return cls(where, sha, blob, device)

    def _suffix(self) -> str:
        name = Path(self.spec).name
        return ".pb.gz" if name.endswith(".pb.gz") else (Path(name).suffix or ".pt")

    def load(self) -> tuple[HookedNet, CheckpointMeta]:
        """The network, loaded once per process (cached by sha256 and device); ShardError if the file changed."""
        key = (self.sha256 or self.spec, self.device)
        if key not in _NETS:
            spec = self.spec
            if self.blob is not None:
                path = Path(tempfile.gettempdir()) / f"azc-net-{(self.sha256 or 'x')[:16]}{self._suffix()}"
                if not path.is_file():
                    atomic_write_bytes(path, self.blob)
                spec = str(path)
            net, meta = load_network(spec, self.device)
            if self.sha256 and meta.extra.get("sha256") not in (None, self.sha256):
                raise ShardError(f"{spec}: the network file changed since the run started (sha256 differs)")
            if len(_NETS) >= _MAX_CACHED:
                _NETS.clear()
            _NETS[key] = (net, meta)
        return _NETS[key]


def _write_stage(out: Path, stage: str, config: dict, backend: Backend, report: MapReport | None = None) -> None:
    """`<out>/distributed.json`: the stage's config and how it ran (what a person checks first)."""
    info = {"stage": stage, "config": config, "backend": backend.name, "parallelism": backend.parallelism}
    if report is not None:
        info["report"] = {"total": report.total, "skipped": report.skipped, "ran": report.ran,
                          "seconds": report.seconds}
    atomic_write_bytes(out / STAGE_FILE, (json.dumps(info, indent=2, default=str) + "\n").encode())


def read_jsonl(path: str | Path, parse: Callable[[dict], T]) -> tuple[list[T], list[str]]:
    """Items parsed from a JSONL file, and one problem ("FILE:LINE: why") per line that could not be used.

    Bad lines are skipped so the good records are still processed; the caller reports the problems.
    """
    items: list[T] = []
    problems: list[str] = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                items.append(parse(json.loads(line)))
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{lineno}: invalid JSON ({exc.msg})")
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                problems.append(f"{path}:{lineno}: unusable record ({type(exc).__name__}: {exc})")
    return items, problems


def root_board(record: dict) -> chess.Board:
    """The board of a roots.jsonl record (`start_fen` + `moves`, or a bare `fen`); ValueError when illegal."""
    board = chess.Board(record["start_fen"] if "start_fen" in record else record["fen"])
    for uci in record.get("moves", ()):
        board.push_uci(uci)
    return board


def _board(record: dict) -> chess.Board:
    board = chess.Board(record["start_fen"])
    for uci in record.get("moves", ()):
        board.push_uci(uci)
    return board


def _history(p: Position | chess.Board) -> dict:
    if isinstance(p, chess.Board):
        return {"start_fen": p.root().fen(), "moves": [m.uci() for m in p.move_stack]}
    return {"start_fen": p.start_fen, "moves": list(p.moves)}


# ---------------------------------------------------------------------------------------------------------------
# dynamic mining

@dataclass(frozen=True)
class MineConfig(DictConfig):
    """Sharded dynamic mining: one concept per root at `layer` (shard_size roots per task)."""

    layer: str = "block0"
    player: str = "one"
    shard_size: int = 4

    def __post_init__(self) -> None:
        if self.player not in ("one", "both"):
            raise ValueError(f"player must be 'one' or 'both', got {self.player!r}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be ≥ 1, got {self.shard_size}")


@dataclass(frozen=True)
class MineContext:
    net: NetSource
    layer: str
    player: str
    model: str | None


def mine_shard(ctx: MineContext, rollouts_: list[dict]) -> ShardResult:
    """Mine every rollout (dict form) of a shard: records, and vectors keyed by concept id."""
    net, _ = ctx.net.load()
    records, vectors = mine_roots(net, [Rollout.from_dict(data) for data in rollouts_], [ctx.layer],
                                  player=ctx.player, model=ctx.model, model_sha256=ctx.net.sha256 or None)
    return ShardResult(records, vectors)


@dataclass
class MineResult:
    records: list[dict]
    vectors: dict[str, np.ndarray]
    report: MapReport


def mine_rollouts(backend: Backend, items: Sequence[Rollout], net: NetSource, config: MineConfig, out: str | Path,
                  *, model: str | None = None, progress: ProgressFn | None = None) -> MineResult:
    """Dynamic concepts of every rollout on `backend` → `<out>/concepts.jsonl` + `vectors.npz` (resumable)."""
    out = Path(out)
    store = ShardStore(out / SHARDS)
    payloads = chunk([r.to_dict() for r in items], config.shard_size)
    ids = shard_ids(len(payloads))
    store.plan("mine", ids, fingerprint(config.to_dict(), net.sha256 or net.spec, model, payloads))
    _write_stage(out, "mine", config.to_dict(), backend)
    report = backend.map_shards(mine_shard, [Shard(i, p) for i, p in zip(ids, payloads, strict=True)],
                                writer=store, context=MineContext(net, config.layer, config.player, model),
                                progress=progress, gpu=False)  # the solver is CPU work
    records: list[dict] = []
    vectors: dict[str, np.ndarray] = {}
    for _, result in store.results(ids):
        records.extend(result.records)
        vectors.update(result.arrays)
    ConceptSet.save(out, records, vectors)
    _write_stage(out, "mine", config.to_dict(), backend, report)
    return MineResult(records, vectors, report)


# ---------------------------------------------------------------------------------------------------------------
# rollouts

@dataclass(frozen=True)
class RolloutStageConfig(DictConfig):
    """Sharded rollouts: `shard_size` roots searched together per task, MCTS seeded by (seed, shard index)."""

    length: int = 10
    max_branch: int | None = None
    value_gap: float = 0.20
    visit_gap: float = 0.10
    max_subpar: int = 5
    simulations: int = 200
    shard_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be ≥ 1, got {self.shard_size}")
        self.rollout_config()  # validates the rollout fields

    def rollout_config(self) -> RolloutConfig:
        return RolloutConfig(length=self.length, max_branch=self.max_branch, value_gap=self.value_gap,
                             visit_gap=self.visit_gap, max_subpar=self.max_subpar, simulations=self.simulations)


@dataclass(frozen=True)
class RolloutContext:
    net: NetSource
    config: RolloutStageConfig


def rollout_shard(ctx: RolloutContext, payload: dict) -> ShardResult:
    """Rollouts of a shard's roots (`{"seed": [seed, k], "roots": [{"index", "start_fen", "moves"}]}`)."""
    net, _ = ctx.net.load()
    roots = payload["roots"]  # consecutive indices: the shard is a chunk of the roots
    results = search_roots(net, [_board(r) for r in roots], ctx.config.rollout_config(), rng_seed=payload["seed"],
                           first_index=int(roots[0]["index"]) if roots else 0)
    return ShardResult([r.to_dict() for r in results])


@dataclass
class RolloutResult:
    rollouts: list[Rollout]
    report: MapReport


def run_rollouts(backend: Backend, roots: Sequence[chess.Board], net: NetSource, config: RolloutStageConfig,
                 out: str | Path, *, progress: ProgressFn | None = None) -> RolloutResult:
    """Chosen and sub-par lines of every root on `backend` → `<out>/rollouts.jsonl` (root_index = input order)."""
    out = Path(out)
    store = ShardStore(out / SHARDS)
    pieces = chunk([{"index": k, **_history(b)} for k, b in enumerate(roots)], config.shard_size)
    payloads = [{"seed": [config.seed, k], "roots": piece} for k, piece in enumerate(pieces)]
    ids = shard_ids(len(payloads))
    store.plan("rollouts", ids, fingerprint(config.to_dict(), net.sha256 or net.spec, payloads))
    _write_stage(out, "rollouts", config.to_dict(), backend)
    report = backend.map_shards(rollout_shard, [Shard(i, p) for i, p in zip(ids, payloads, strict=True)],
                                writer=store, context=RolloutContext(net, config), progress=progress)
    records = [rec for _, result in store.results(ids) for rec in result.records]
    write_jsonl(out / ROLLOUTS, records)
    _write_stage(out, "rollouts", config.to_dict(), backend, report)
    return RolloutResult([Rollout.from_dict(r) for r in records], report)


# ---------------------------------------------------------------------------------------------------------------
# activation collection

@dataclass(frozen=True)
class CollectContext:
    net: NetSource
    layers: tuple[str, ...]
    batch_size: int


def activation_shard(ctx: CollectContext, positions: list[dict]) -> ShardResult:
    """float16 activations of a shard's positions (`{"start_fen", "moves"}`) at every layer of the context,
    batched as `azc collect` batches (`concepts.activations.fill_rows`, from the shard's first position)."""
    net, _ = ctx.net.load()
    arrays = {name: np.empty((len(positions), int(np.prod(net.layer_shape(name)))), np.float16)
              for name in ctx.layers}
    for _ in fill_rows(net, [Position.from_dict(p) for p in positions], ctx.layers, arrays,
                       batch_size=ctx.batch_size):
        pass
    return ShardResult([], arrays)


@dataclass(frozen=True)
class CollectConfig(DictConfig):
    layers: tuple[str, ...] = ()
    shard_size: int = 1024
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch_size < 1:
            raise ValueError("shard_size and batch_size must be ≥ 1")
        object.__setattr__(self, "layers", tuple(self.layers))


@dataclass
class CollectResult:
    store: ActivationStore
    report: MapReport | None


def collect_activations(backend: Backend, positions: Sequence[Position | chess.Board], net: NetSource,
                        layer_names: Sequence[str], config: CollectConfig, out: str | Path, *,
                        model_id: str = "", progress: ProgressFn | None = None) -> CollectResult:
    """Activations of every position at `config.layers` on `backend` → an `ActivationStore` at `out`.

    `layer_names` are the network's layers (checked in the driver). The store is assembled from the finished
    shards in order and its `progress.json` written last, so a store is only readable once complete; a rerun
    reuses every finished shard (and a complete store as it is).
    """
    out = Path(out)
    layers = list(config.layers)
    unknown = [name for name in layers if name not in layer_names]
    if unknown or not layers:
        raise StoreError(f"unknown layers {unknown or '(none given)'}; the network has: {', '.join(layer_names)}")
    n = len(positions)
    progress_path = out / PROGRESS
    if progress_path.is_file():
        old = json.loads(progress_path.read_text())
        if old.get("n") == n and old.get("layers") == layers and old.get("model") == model_id \
                and old.get("rows_done") == n:
            if progress:
                progress(0, 0)
            return CollectResult(ActivationStore(out), None)
        raise StoreError(f"{progress_path}: an existing store with other positions, layers or model; "
                         "use a new directory")
    store = ShardStore(out / SHARDS)
    payloads = chunk([_history(p) for p in positions], config.shard_size)
    ids = shard_ids(len(payloads))
    store.plan("collect", ids, fingerprint(config.to_dict(), net.sha256 or net.spec, model_id, payloads))
    _write_stage(out, "collect", config.to_dict(), backend)
    report = backend.map_shards(activation_shard, [Shard(i, p) for i, p in zip(ids, payloads, strict=True)],
                                writer=store, context=CollectContext(net, tuple(layers), config.batch_size),
                                progress=progress)
    _write_index(out / INDEX, positions)
    arrays: dict[str, np.ndarray] = {}
    dims: dict[str, int] = {}
    row = 0
    for _, result in store.results(ids):
        for name in layers:
            block = result.arrays[name]
            if name not in arrays:
                dims[name] = int(block.shape[1])
                arrays[name] = np.lib.format.open_memmap(out / f"{name}.npy", mode="w+", dtype=np.float16,
                                                         shape=(n, dims[name]))
            arrays[name][row:row + len(block)] = block
        row += len(next(iter(result.arrays.values())))
    if row != n:
        raise ShardError(f"{out / SHARDS}: shards hold {row} rows, expected {n}")
    for arr in arrays.values():
        arr.flush()
    meta: dict[str, Any] = {"n": n, "layers": layers, "dims": dims, "model": model_id, "rows_done": n,
                            "dtype": "float16"}
    atomic_write_bytes(progress_path, json.dumps(meta).encode())
    _write_stage(out, "collect", config.to_dict(), backend, report)
    return CollectResult(ActivationStore(out), report)
