"""Scores of mined concepts on positions: v·z for every concept and board, one forward pass per batch.

Concepts are read with `ConceptSet.load(run, solved_only=True, ids=...)` (`alphazero_concepts.concepts.conceptset`:
the solved concepts of a concept or run directory, errors naming the file and line). `concept_scores(net, boards,
concepts)` evaluates every concept on every board, all layers captured together. A score is the dot product of
the concept vector with the flattened activation of its layer for that position (the side to move's perspective,
as the network sees it).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import chess
import numpy as np
import torch

from alphazero_concepts.concepts.conceptset import Concept
from alphazero_concepts.nn.network import HookedNet


def check_concepts(net: HookedNet, concepts: Sequence[Concept], model_sha256: str | None = None) -> None:
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
def concept_scores(net: HookedNet, boards: Sequence[chess.Board], concepts: Sequence[Concept],
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
    for batch in net.iter_latents(boards, layers, batch_size):
        for layer, rows in by_layer.items():
            out[np.ix_(rows, batch.rows)] = (batch.flat(layer).float() @ matrices[layer]).T.cpu().numpy()
    return out
