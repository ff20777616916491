"""Static concepts per layer and checkpoint (`azc static`): what a series learns, when in training, and where.

McGrath et al. (PNAS 2022) read a training series as a layer × checkpoint table per concept. This module does the
same with the project's own concept miner instead of a probe: for every checkpoint and layer, a sparse concept
vector is mined for each static concept (`ConceptMiner`, METHOD.md §1) and scored by held-out pair accuracy (the
share of (positive, negative) pairs it ranks right; 0.5 = chance). The mining and scoring step is
`concepts.validation.static_concept_scores`, the one `azc validate` uses, so the two agree by construction.

Concepts:

* piece concepts (`PIECE_CONCEPTS`: the side to move has its queen, the opponent has its queen, the side to move
  has the bishop pair) on positions of the bundled master games (`game_positions`, seeded);
* optionally, Strategic Test Suite themes (one concept per theme: its positions against those of every other
  theme), on the suite's positions (without history, as `azc sts` sees them). Paper: pieces ≈ 99%, STS ≈ 92%.

Each position set is split once, 60/20/20 (train/validation/test, `split_masks`, seeded), and the same split is
used for every layer and checkpoint, so the cells of a table compare. The best layer of a concept at a checkpoint is
chosen on validation; its test accuracy is the number reported for that checkpoint. Every checkpoint's activations
are taken in one pass per position set (all layers at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import chess
import numpy as np

from alphazero_concepts.arena.sts import STSPosition
from alphazero_concepts.arena.sts import default_sts_path as default_sts_path  # re-exported: `azc static --sts default`
from alphazero_concepts.concepts.validation import (
    game_positions,
    piece_labels,
    split_masks,
    static_concept_scores,
)
from alphazero_concepts.core.config import DictConfig, Range, check_fields
from alphazero_concepts.nn.network import HookedNet

NetSource = HookedNet | Callable[[], HookedNet]

PAPER = {"piece": 0.99, "sts": 0.92}  # held-out pair accuracy in the paper (METHOD.md §1)
SPLIT_FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}
PIECE_SOURCE = "bundled master games (TWIC 920), positions at ply ≥ 10 with their history, seeded sample"


class StaticSeriesError(ValueError):
    """Inputs that cannot give a meaningful table (an unknown layer, a concept with no positive in a split, …)."""


@dataclass(frozen=True)
class StaticSeriesConfig(DictConfig):
    """What `static_series` mines. `layers` empty: `default_layers` of the first network. `positions`: game
    positions for the piece concepts (the STS themes use every position of the suite). `pairs`: (z+, z−) pairs per
    mined concept (`ConceptMiner`). `seed`: the position sample, the split and the pair sample."""

    layers: tuple[str, ...] = ()
    positions: Annotated[int, Range(10)] = 2000
    pairs: Annotated[int, Range(1)] = 400
    seed: Annotated[int, Range(0)] = 0
    batch_size: Annotated[int, Range(1)] = 256

    def __post_init__(self) -> None:
        check_fields(self)


def default_layers(net: HookedNet) -> list[str]:
    """The residual stream and the heads' convolutions: `stem`, every block's output, `policy.conv`, `value.conv`
    (those the network has), in network order."""
    wanted = {"stem", "policy.conv", "value.conv"}
    return [n for n in net.layer_names if n in wanted or (n.startswith("block") and "." not in n)]


def sts_labels(positions: Sequence[STSPosition]) -> dict[str, np.ndarray]:
    """{theme concept: (N,) booleans}: one concept per STS theme, its positions against those of every other theme.

    Themes are keyed by their STS number (``"STS1 Undermine"``; the name of the theme's first position, since one
    v5 id spells theme 3's name differently), or by the theme name when the ids carry no number; in suite order.
    """
    keys = [f"STS{p.number}" if p.number else p.theme for p in positions]
    names: dict[str, str] = {}
    for key, p in zip(keys, positions, strict=True):
        names.setdefault(key, f"{key} {p.theme}" if p.number else key)
    keys_arr = np.array(keys, dtype=object)
    return {name: keys_arr == key for key, name in names.items()}


def check_splits(labels_by_concept: Mapping[str, np.ndarray], seed: int, what: str) -> dict[str, int]:
    """Split sizes of `split_masks(N, seed)`; StaticSeriesError naming the concept when a split has no positive or
    no negative position (pair accuracy would be undefined there)."""
    n = len(next(iter(labels_by_concept.values()))) if labels_by_concept else 0
    masks = dict(zip(("train", "validation", "test"), split_masks(n, seed), strict=True))
    for name, raw in labels_by_concept.items():
        labels = np.asarray(raw, dtype=bool)
        for split, mask in masks.items():
            pos, neg = int((labels & mask).sum()), int((~labels & mask).sum())
            if pos == 0 or neg == 0:
                raise StaticSeriesError(f"concept {name!r}: {pos} positive and {neg} negative positions in the "
                                        f"{split} split of {n} {what}; more positions are needed")
    return {split: int(mask.sum()) for split, mask in masks.items()}


def static_series(networks: Mapping[str, NetSource] | Sequence[tuple[str, NetSource]],
                  config: StaticSeriesConfig | None = None, *, boards: Sequence[chess.Board] | None = None,
                  sts: Sequence[STSPosition] | None = None, sts_source: str = "",
                  progress: Callable[[str, str, str], None] | None = None) -> dict:
    """Mine and score every static concept at every layer of every checkpoint; a JSON-ready dict.

    `networks`: checkpoint name → network or loader (called one at a time, in the given order, which should be
    training order), or a list of (name, network) pairs. `boards`: the positions of the piece concepts (default:
    `config.positions` seeded game positions). `sts`: STS positions for the theme concepts (none: piece concepts
    only). `progress(checkpoint, layer, concept)` after each mined concept.

    Returns::

        {"settings": {layers, positions, pairs, seed, split: {piece: {train, validation, test}, sts: …}, …},
         "checkpoints": [names],
         "concepts": {concept: {"kind": "piece" | "sts", "positive_share", "positions",
                                "checkpoints": {name: {"layers": {layer: {val_pair_accuracy, test_pair_accuracy,
                                                                          nonzeros, dim, solve_time_s, status}},
                                                       "best_layer", "best_test_pair_accuracy"}}}},
         "summary": {"best_test_pair_accuracy": {concept: {checkpoint: acc}},
                     "mean_best": {"piece" | "sts": {checkpoint: mean over concepts}}, "paper": PAPER}}
    """
    config = config or StaticSeriesConfig()
    items = list(networks.items()) if isinstance(networks, Mapping) else list(networks)
    if not items:
        raise StaticSeriesError("no checkpoints to score")
    piece_source = "given positions" if boards is not None else PIECE_SOURCE
    boards = list(boards) if boards is not None else game_positions(config.positions, config.seed)
    sets: dict[str, tuple[list[chess.Board], dict[str, np.ndarray]]] = {"piece": (boards, piece_labels(boards))}
    split = {"piece": check_splits(sets["piece"][1], config.seed, "game positions")}
    if sts:
        labels = sts_labels(sts)
        if len(labels) < 2:
            raise StaticSeriesError(f"{sts_source or 'STS suite'}: positions of {len(labels)} theme(s); a theme "
                                    "concept needs positions of at least two themes")
        sets["sts"] = ([p.board() for p in sts], labels)
        split["sts"] = check_splits(labels, config.seed, "STS positions")
    layers: list[str] = list(config.layers)
    concepts: dict[str, dict] = {name: {"kind": kind, "positive_share": float(np.mean(lab)), "positions": len(bs),
                                        "checkpoints": {}}
                                 for kind, (bs, labs) in sets.items() for name, lab in labs.items()}
    start = time.perf_counter()
    for ckpt, source in items:
        net = source if isinstance(source, HookedNet) else source()
        net.eval()
        if not layers:
            layers = default_layers(net)
        unknown = [n for n in layers if n not in net.layer_names]
        if unknown:
            raise StaticSeriesError(f"{ckpt}: unknown layers {unknown}; the network has: {', '.join(net.layer_names)}")
        layers = sorted(layers, key=net.layer_names.index)  # input first, as the figure's rows
        for bs, labs in sets.values():
            z_by_layer = net.latents(bs, layers, batch_size=config.batch_size)  # one pass, every layer
            scores = static_concept_scores(z_by_layer, labs, config.pairs, config.seed,
                                           progress=None if progress is None else
                                           (lambda concept, layer, c=ckpt: progress(c, layer, concept)))
            del z_by_layer
            for name, s in scores.items():
                concepts[name]["checkpoints"][ckpt] = {"layers": s["layers"], "best_layer": s["best_layer"],
                                                       "best_test_pair_accuracy": s["best_acc"]}
    names = [c for c, _ in items]
    best = {name: {c: v["best_test_pair_accuracy"] for c, v in concept["checkpoints"].items()}
            for name, concept in concepts.items()}
    mean_best = {kind: {c: float(np.mean([best[n][c] for n in labs])) for c in names} for kind, (_, labs) in
                 sets.items()}
    settings = {"layers": layers, "positions": len(boards), "pairs": config.pairs, "seed": config.seed,
                "batch_size": config.batch_size, "split": split, "split_fractions": SPLIT_FRACTIONS,
                "piece_positions": piece_source,
                "sts": ({"source": sts_source, "positions": len(sets["sts"][0]), "themes": len(sets["sts"][1])}
                        if "sts" in sets else None),
                "mining": "ConceptMiner (min ||v||_1 s.t. v·z+ ≥ v·z− + 1 over sampled pairs), pair accuracy"}
    return {"settings": settings, "checkpoints": names, "concepts": concepts,
            "summary": {"best_test_pair_accuracy": best, "mean_best": mean_best, "paper": PAPER},
            "mining_s": time.perf_counter() - start}


def heatmap_rows(result: Mapping) -> list[dict]:
    """One row per (concept, checkpoint, layer) of a `static_series` result, in the tidy form of
    `figures.heatmaps` (target, checkpoint, layer with their indices, probe "concept", split "test", score)."""
    layers = list(result["settings"]["layers"])
    checkpoints = list(result["checkpoints"])
    rows = []
    for name, concept in result["concepts"].items():
        for ckpt, entry in concept["checkpoints"].items():
            for layer, row in entry["layers"].items():
                rows.append({"target": name, "checkpoint": ckpt, "checkpoint_index": checkpoints.index(ckpt),
                             "layer": layer, "layer_index": layers.index(layer), "probe": "concept",
                             "split": "test", "score": row["test_pair_accuracy"]})
    return rows


def plot_static(result: Mapping, path: str | Path, title: str = "") -> Path:
    """The figure of a `static_series` result: one panel per concept, rows = layers (input at the top), columns =
    checkpoints (training order), colour and number = test pair accuracy (0.5 chance … 1); the layer chosen on
    validation at each checkpoint is outlined. Returns `path` (PNG)."""
    from alphazero_concepts.probing.figures import heatmaps

    outline = {(name, ckpt): entry["best_layer"] for name, concept in result["concepts"].items()
               for ckpt, entry in concept["checkpoints"].items()}
    return heatmaps(heatmap_rows(result), path, targets=list(result["concepts"]), probe="concept", split="test",
                    title=title or "static concepts: what (panel) – when (checkpoint →) – where (layer ↓)",
                    score=lambda r: r["score"], vmin=0.5, vmax=1.0, metric="",
                    label="test pair accuracy (0.5 = chance; outlined: layer chosen on validation)", outline=outline)
