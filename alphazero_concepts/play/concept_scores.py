"""Mined concepts read back from a run directory, and their scores v·z on positions.

`azc mine` writes a directory with

    concepts.jsonl   one record per root: {"id", "layer", ...}; refused roots have a "status" and no vector
    vectors.npz      one float32 vector per mined concept, keyed by its id

`load_concepts(run)` reads it (the directory itself, or a run directory holding `concepts/`), and
`concept_scores(net, boards, concepts)` evaluates every concept on every board with one forward pass per batch,
all layers captured together. A score is the dot product of the concept vector with the flattened activation
of its layer for that position (the side to move's perspective, as the network sees it).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import chess
import numpy as np
import torch

from alphazero_concepts.chess.positions import InputError
from alphazero_concepts.nn.network import HookedNet

CONCEPTS_FILE = "concepts.jsonl"
VECTORS_FILE = "vectors.npz"


@dataclass(frozen=True)
class MinedConcept:
    """One concept: its id, the layer it lives in, its vector and the record `azc mine` wrote for it."""

    id: str
    layer: str
    vector: np.ndarray
    record: dict

    @property
    def short_id(self) -> str:
        """The id without its layer prefix when it has one (``block3/root00012`` → ``root00012``)."""
        return self.id.split("/", 1)[1] if self.id.startswith(f"{self.layer}/") else self.id


def concepts_directory(run: str | Path) -> Path:
    """The directory holding `concepts.jsonl`: `run` itself or `run/concepts`; `InputError` when neither."""
    run = Path(run)
    for candidate in (run, run / "concepts"):
        if (candidate / CONCEPTS_FILE).is_file():
            return candidate
    raise InputError(f"no {CONCEPTS_FILE} here or in its concepts/ folder (write one with `azc mine`)",
                     source=str(run), line=None)


def load_concepts(run: str | Path, ids: Sequence[str] | None = None) -> list[MinedConcept]:
    """The mined concepts of a run (all of them, or those named by `ids`, in that order).

    Records without a vector (roots the miner refused) are left out. Errors name the file and line: an invalid
    JSON line, a record without ``id``/``layer``, a vector missing from `vectors.npz`, an unknown requested id.
    """
    directory = concepts_directory(run)
    jsonl = directory / CONCEPTS_FILE
    npz = directory / VECTORS_FILE
    if not npz.is_file():
        raise InputError(f"missing {VECTORS_FILE} next to {CONCEPTS_FILE}", source=str(directory), line=None)
    records: dict[str, tuple[int, dict]] = {}
    with open(jsonl, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg}", source=str(jsonl), line=lineno) from None
            if not isinstance(rec, dict) or "id" not in rec or "layer" not in rec:
                raise InputError("a concept record needs 'id' and 'layer'", source=str(jsonl), line=lineno)
            records[str(rec["id"])] = (lineno, rec)
    try:
        with np.load(npz) as data:
            vectors = {key: np.asarray(data[key], dtype=np.float32).ravel() for key in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable vectors: {exc}", source=str(npz), line=None) from None
    if ids:
        unknown = [i for i in ids if i not in records]
        if unknown:
            known = [k for k in records if k in vectors]
            raise InputError(f"unknown concept id(s) {unknown}; mined ids include {known[:5]}",
                             source=str(jsonl), line=None)
        chosen = list(ids)
    else:
        chosen = [k for k in records if k in vectors]
    out = []
    for cid in chosen:
        lineno, rec = records[cid]
        if cid not in vectors:
            raise InputError(f"concept {cid!r} has no vector in {VECTORS_FILE} ({rec.get('status', 'not mined')})",
                             source=str(jsonl), line=lineno)
        out.append(MinedConcept(cid, str(rec["layer"]), vectors[cid], rec))
    return out


def check_concepts(net: HookedNet, concepts: Sequence[MinedConcept], model_sha256: str | None = None) -> None:
    """`ValueError` when a concept's layer is not in `net` or its vector does not match the layer's size.

    A concept mined on another network (its record's ``model_sha256`` differs from `model_sha256`) is allowed,
    as the layer sizes fit, but warned about: its scores then read another network's directions.
    """
    for c in concepts:
        if c.layer not in net.layer_names:
            raise ValueError(f"concept {c.id}: layer {c.layer!r} is not in this network "
                             f"(layers: {', '.join(net.layer_names)})")
        size = int(np.prod(net.layer_shape(c.layer)))  # type: ignore[attr-defined]
        if c.vector.size != size:
            raise ValueError(f"concept {c.id}: vector of size {c.vector.size}, but layer {c.layer} has {size} units")
    mined_on = {c.record.get("model_sha256") for c in concepts} - {None}
    if model_sha256 and mined_on and mined_on != {model_sha256}:
        warnings.warn("some concepts were mined on another network (model_sha256 differs); their scores read "
                      "that network's directions in this one", stacklevel=2)


@torch.inference_mode()
def concept_scores(net: HookedNet, boards: Sequence[chess.Board], concepts: Sequence[MinedConcept],
                   batch_size: int = 256) -> np.ndarray:
    """(len(concepts), len(boards)) float32 scores v·z; one forward pass per batch for all layers together."""
    out = np.zeros((len(concepts), len(boards)), dtype=np.float32)
    if not concepts or not boards:
        return out
    layers = sorted({c.layer for c in concepts})
    by_layer = {layer: [i for i, c in enumerate(concepts) if c.layer == layer] for layer in layers}
    matrices = {layer: torch.from_numpy(np.stack([concepts[i].vector for i in rows], axis=1)).to(net.device)
                for layer, rows in by_layer.items()}  # (d, k) per layer
    net.eval()
    for lo in range(0, len(boards), batch_size):
        chunk = boards[lo: lo + batch_size]
        planes = torch.from_numpy(net.format.encode(chunk)).to(net.device)
        _, cache = net.run_with_cache(planes, layers)
        for layer, rows in by_layer.items():
            z = cache[layer].reshape(len(chunk), -1).float()
            out[rows, lo: lo + len(chunk)] = (z @ matrices[layer]).T.cpu().numpy()
    return out
