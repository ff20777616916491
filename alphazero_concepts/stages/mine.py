"""Stage "mine": one dynamic concept per root and layer, written as the run's concept set (RUN/concepts/).

The unit of work, and of resuming, is one root: `mine_roots` mines it at every layer
(`concepts.mining.mine_rollout`) and, with a `partial` directory, keeps it there (rootNNNNN.npz, then
rootNNNNN.json, whose presence marks the root done) until the set is written with `ConceptSet.save`.
`azc mine` (one layer, no partial files), the pipeline and the distributed backends' shards all mine through it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import alphazero_concepts.concepts.mining as mining
from alphazero_concepts.concepts.conceptset import ConceptSet
from alphazero_concepts.core.files import atomic_write_bytes, write_json
from alphazero_concepts.core.rundir import CONCEPTS, CONCEPTS_DIR, PARTIAL, VECTORS
from alphazero_concepts.nn.network import HookedNet
from alphazero_concepts.search.rollouts import Rollout
from alphazero_concepts.stages.base import Context, StageDef, run_settings
from alphazero_concepts.stages.rollouts import read_rollouts

if TYPE_CHECKING:
    from alphazero_concepts.stages.config import PipelineConfig


def mine_root(net: HookedNet, rollout: Rollout, layers: Sequence[str], *, player: str, model: str | None,
              model_sha256: str | None) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The concept records of one root at every layer, and the vectors of the solved ones (by concept id)."""
    records, vectors = [], {}
    for layer in layers:
        rec, vec = mining.mine_rollout(net, rollout, layer, player=player, model=model, model_sha256=model_sha256)
        records.append(rec)
        if vec is not None:
            vectors[rec["id"]] = vec
    return records, vectors


def mine_roots(net: HookedNet, items: Sequence[Rollout], layers: Sequence[str], *, player: str,
               model: str | None, model_sha256: str | None, partial: Path | None = None,
               progress: Callable[[int, int], None] | None = None) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Concept records (root by root, layer by layer) and vectors of every rollout; resumable with `partial`."""
    records: list[dict] = []
    vectors: dict[str, np.ndarray] = {}
    if partial is not None:
        partial.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(0, len(items))
    for done, r in enumerate(items, 1):
        stem = None if partial is None else partial / f"root{r.root_index:05d}"
        if stem is None or not stem.with_suffix(".json").is_file():
            recs, vecs = mine_root(net, r, layers, player=player, model=model, model_sha256=model_sha256)
            if stem is None:
                records.extend(recs)
                vectors.update(vecs)
            else:
                buf = io.BytesIO()
                np.savez(buf, **vecs)
                atomic_write_bytes(stem.with_suffix(".npz"), buf.getvalue())
                write_json(stem.with_suffix(".json"), recs)  # written last: its presence marks the root done
        if progress:
            progress(done, len(items))
    if partial is not None:
        for r in items:
            stem = partial / f"root{r.root_index:05d}"
            records.extend(json.loads(stem.with_suffix(".json").read_text()))
            with np.load(stem.with_suffix(".npz")) as data:
                vectors.update({k: np.asarray(data[k], dtype=np.float32) for k in data.files})
    return records, vectors


def _run(ctx: Context) -> dict:
    rd = ctx.rundir
    items = read_rollouts(rd.rollouts)
    layers = list(ctx.config.mine.layers)
    ctx.check_layers(layers)
    records, vectors = mine_roots(ctx.net, items, layers, player=ctx.config.mine.player, model=ctx.meta.name,
                                  model_sha256=(ctx.meta.extra or {}).get("sha256"), partial=rd.mine_partial,
                                  progress=lambda d, t: ctx.progress("mine", d, t))
    ConceptSet.save(rd.concepts, records, vectors)
    return {"roots": len(items), "mined": len(records), "solved": len(vectors), "layers": layers}


def _section(config: PipelineConfig) -> dict:
    return {"run": run_settings(config), "mine": config.mine.to_dict()}


# its own files only: other concept kinds keep their sets in RUN/concepts/<kind>/ (`RunDir.concept_kind`)
OUTPUTS = (f"{CONCEPTS_DIR}/{CONCEPTS}", f"{CONCEPTS_DIR}/{VECTORS}", f"{CONCEPTS_DIR}/{PARTIAL}")
STAGE = StageDef("mine", inputs=("rollouts",), outputs=OUTPUTS, section_of=_section, work=_run)
