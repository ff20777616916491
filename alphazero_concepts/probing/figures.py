"""Figures of probe results (matplotlib, PNG): what is learned (target), when (checkpoint), where (layer).

* `heatmaps`: one panel per target, layers (input at the top, output at the bottom) × checkpoints (training order,
  left to right), colour = held-out R² (continuous) or balanced accuracy (binary, 0.5 = chance). A panel that
  brightens to the right means the network learned the target during training; a bright band low in the panel
  means it is computed late.
  The same function draws `azc static`'s table (`static_series.plot_static`: test pair accuracy of mined static
  concepts, 0.5 = chance, the layer chosen on validation outlined).
* `layer_curves`: the same scores as lines over layers, one line per checkpoint, one panel per target.
* `linear_vs_mlp`: held-out scores of the linear and MLP probes side by side where both ran; a large MLP advantage
  means the target is present but not linearly readable.
* `steer_curves`: policy agreement and value change against α for a concept vector and its random controls.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from alphazero_concepts.probing.probes import score_of


def _ordered(rows: Sequence[Mapping], key: str, index: str) -> list[str]:
    seen: dict[str, int] = {}
    for r in rows:
        seen.setdefault(r[key], r.get(index, len(seen)))
    return sorted(seen, key=lambda k: seen[k])


def _targets(rows: Sequence[Mapping]) -> list[str]:
    out: list[str] = []
    for r in rows:
        if r["target"] not in out:
            out.append(r["target"])
    return out


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(max_cols, max(1, n))
    return math.ceil(n / cols), cols


def heatmaps(rows: Sequence[Mapping], path: str | Path, *, targets: Sequence[str] | None = None,
             probe: str = "linear", split: str = "random", title: str = "",
             score: Callable[[Mapping], float] = score_of, vmin: float = 0.0, vmax: float = 1.0,
             metric: str | None = None, label: str | None = None,
             outline: Mapping[tuple[str, str], str] | None = None) -> Path:
    """Layer × checkpoint heatmaps of held-out scores, one panel per target; returns `path`.

    The defaults draw probe rows (`score_of`, 0 … 1). Other tables reuse it (`azc static`: pair accuracy, 0.5 …
    1) with `score` (a row's number), `vmin`/`vmax` (the colour range; the number in the cell is not clipped),
    `metric` (said in each panel's title; None: R² or balanced accuracy by the rows' kind, "": nothing), `label`
    (the colour bar's) and `outline` ({(target, checkpoint): layer}: that cell is framed, e.g. the chosen layer).
    """
    rows = [r for r in rows if r.get("probe") == probe and r.get("split") == split]
    targets = list(targets or _targets(rows))
    layers = _ordered(rows, "layer", "layer_index")
    checkpoints = _ordered(rows, "checkpoint", "checkpoint_index")
    n_rows, n_cols = _grid(len(targets))
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, layout="constrained",
                             figsize=(1.5 + n_cols * (1.0 + 0.55 * len(checkpoints)),
                                      1.2 + n_rows * (0.4 + 0.3 * max(6, len(layers)))))
    image = None
    for k, target in enumerate(targets):
        ax = axes[k // n_cols][k % n_cols]
        grid = np.full((len(layers), len(checkpoints)), np.nan)
        kind = "continuous"
        for r in rows:
            if r["target"] == target:
                grid[layers.index(r["layer"]), checkpoints.index(r["checkpoint"])] = score(r)
                kind = r.get("kind", kind)
        image = ax.imshow(np.clip(grid, vmin, vmax), vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
        light = vmin + 0.6 * (vmax - vmin)  # viridis is light above this: black numbers there
        for i in range(len(layers)):
            for j in range(len(checkpoints)):
                if grid[i, j] == grid[i, j]:
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if grid[i, j] > light else "white")
        for j, ckpt in enumerate(checkpoints):
            framed = (outline or {}).get((target, ckpt))
            if framed in layers:
                ax.add_patch(Rectangle((j - 0.5, layers.index(framed) - 0.5), 1, 1, fill=False, edgecolor="red",
                                       linewidth=1.5))
        what = ("R²" if kind == "continuous" else "balanced accuracy") if metric is None else metric
        ax.set_title(textwrap.fill(f"{target} ({what})" if what else target, 34), fontsize=9)
        bottom = k + n_cols >= len(targets)  # checkpoint names only under the lowest panel of each column
        ax.set_xticks(range(len(checkpoints)), checkpoints if bottom else [""] * len(checkpoints), rotation=45,
                      ha="right", fontsize=7)
        ax.set_yticks(range(len(layers)), layers if k % n_cols == 0 else [""] * len(layers), fontsize=7)
    for k in range(len(targets), n_rows * n_cols):
        axes[k // n_cols][k % n_cols].axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label=label or f"held-out score ({split} split, {probe} probe)")
    fig.suptitle(title or "what (panel) – when (checkpoint →) – where (layer ↓)", fontsize=10)
    return _save(fig, path)


def layer_curves(rows: Sequence[Mapping], path: str | Path, *, targets: Sequence[str] | None = None,
                 probe: str = "linear", split: str = "random") -> Path:
    """Held-out score against layer, one line per checkpoint, one panel per target."""
    rows = [r for r in rows if r.get("probe") == probe and r.get("split") == split]
    targets = list(targets or _targets(rows))
    layers = _ordered(rows, "layer", "layer_index")
    checkpoints = _ordered(rows, "checkpoint", "checkpoint_index")
    n_rows, n_cols = _grid(len(targets))
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, figsize=(4.2 * n_cols, 3.0 * n_rows), layout="constrained")
    colours = plt.cm.viridis(np.linspace(0.1, 0.9, max(1, len(checkpoints))))
    for k, target in enumerate(targets):
        ax = axes[k // n_cols][k % n_cols]
        for c, ckpt in enumerate(checkpoints):
            ys = [np.nan] * len(layers)
            for r in rows:
                if r["target"] == target and r["checkpoint"] == ckpt:
                    ys[layers.index(r["layer"])] = score_of(r)
            ax.plot(range(len(layers)), ys, marker="o", ms=3, color=colours[c], label=ckpt)
        ax.set_title(target, fontsize=9)
        ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.0)
        ax.grid(alpha=0.3)
    for k in range(len(targets), n_rows * n_cols):
        axes[k // n_cols][k % n_cols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"held-out score per layer ({split} split, {probe} probe)", fontsize=10)
    return _save(fig, path)


def linear_vs_mlp(rows: Sequence[Mapping], path: str | Path, *, checkpoint: str | None = None) -> Path:
    """Grouped bars: linear vs MLP held-out score for every (target, layer) where an MLP probe ran."""
    rows = [r for r in rows if r.get("split") == "random"]
    mlp = [r for r in rows if r.get("probe") == "mlp" and (checkpoint is None or r["checkpoint"] == checkpoint)]
    if checkpoint is None and mlp:
        checkpoint = _ordered(mlp, "checkpoint", "checkpoint_index")[-1]
        mlp = [r for r in mlp if r["checkpoint"] == checkpoint]
    linear = {(r["target"], r["layer"]): score_of(r) for r in rows
              if r.get("probe") == "linear" and r["checkpoint"] == checkpoint}
    keys = [(r["target"], r["layer"]) for r in mlp]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(keys) + 1.5), 3.2))
    x = np.arange(len(keys))
    ax.bar(x - 0.2, [linear.get(k, np.nan) for k in keys], 0.4, label="linear")
    ax.bar(x + 0.2, [score_of(r) for r in mlp], 0.4, label="MLP (1 hidden layer)")
    ax.set_xticks(x, [f"{t}\n{layer}" for t, layer in keys], fontsize=7)
    ax.set_ylabel("held-out score")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"linear vs MLP probe ({checkpoint or 'no MLP probes'})", fontsize=10)
    return _save(fig, path)


def steer_curves(result: Mapping, path: str | Path, title: str = "") -> Path:
    """Agreement with the answers and value change against α, concept vs random vectors of the same sparsity."""
    alphas = result["alphas"]
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2))
    for key, ax, label in (("agreement", axes[0], "policy top-1 = answer"),
                           ("value_change", axes[1], "value change (side to move)")):
        ax.plot(alphas, result["concept"][key], marker="o", label="concept")
        for k, each in enumerate(result.get("random_each", [])):
            ax.plot(alphas, each[key], color="grey", alpha=0.6, lw=1,
                    label="random (same sparsity)" if k == 0 else None)
        ax.set_xlabel("α")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title or f"amplification at {result['layer']} (β = {result['beta']})", fontsize=10)
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
