"""The funnel from roots to kept concepts, per layer, beside the paper's numbers.

    roots → concepts mined → solved (non-zero vector) → teachable → novel → kept     (teachability first)
    roots → concepts mined → solved → novel → teachable → kept                        (novelty first)

"teachable" = the teachability filter kept the concept (the lift's lower bound above the threshold);
"kept_beating_controls" = kept concepts whose lower bound is also above every random-vector control's lift at
their layer (`control_ceilings`), the "specific" kept rule;
"already known" and "too few prototypes" concepts fail the teachability filter. `lift_comparison` sets the lifts of
every taught concept beside those of the random-vector controls, per layer and in total (means, spreads, a
Mann–Whitney test): whether the test tells this run's concepts from random directions at all.
"novel" = s_k > 0 for every k. With the "independent" order both filters scored every solved concept; the funnel
is then drawn in the paper's order (teachability first). Concepts a filter has not scored yet are counted as
`pending` and fail neither filter.

Paper (Schut et al.): ≈ 97.6% of candidates fail teachability, and ≈ 27% of the rest fail novelty.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from alphazero_concepts.concepts.conceptset import Concept
from alphazero_concepts.plotting import pyplot, save_figure

PAPER = {"fail_teachability": 0.976, "fail_novelty_of_rest": 0.27}
# which concepts are kept (the pipeline's `filters.kept_rule`, applied by `stages.novelty.kept_concepts`)
KEPT_RULES = ("funnel", "specific", "teachable", "novel", "solved")


def control_ceilings(teachability: dict[str, dict]) -> dict[str, float]:
    """The largest lift of a random-vector control at each layer (controls without a lift are left out).

    A concept whose lift's lower bound is above its layer's ceiling teaches the student more than a random
    direction of the same sparsity did: teachable *as this concept*, not only as "the teacher's favourite
    positions" (which random directions also pick; README, "480 roots, three layers").
    """
    out: dict[str, float] = {}
    for r in teachability.values():
        lift = _control_lift(r)
        if lift is not None:
            out[r["layer"]] = max(out.get(r["layer"], float("-inf")), lift)
    return out


def _finite_lift(record: dict) -> float | None:
    """A record's lift, or None when it has none (missing, NaN: not taught)."""
    lift = record.get("lift")
    return float(lift) if isinstance(lift, int | float) and math.isfinite(lift) else None


def _control_lift(record: dict) -> float | None:
    """A control record's lift, or None when it is not a control or was not taught (NaN or missing lift)."""
    return _finite_lift(record) if record.get("kind") == "control" else None


def _taught_lift(record: dict) -> float | None:
    """A concept record's lift when its student was taught (status ok, finite lift), else None."""
    if record.get("kind", "concept") != "concept" or record.get("status") != "ok":
        return None
    return _finite_lift(record)


def _summary(values: Sequence[float]) -> dict:
    n = len(values)
    mean = sum(values) / n if n else None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "sd": sd}


def lift_comparison(teachability: dict[str, dict]) -> dict[str, dict]:
    """Taught concepts' lifts against the random-vector controls' lifts, per layer and over all layers ("all").

    Each entry: {"concepts": {n, mean, sd}, "controls": {n, mean, sd}, "mann_whitney_p"} (two-sided; None with
    fewer than two of either). A large p means the test found no difference from random directions of the same
    sparsity (with few concepts it has little power). "all" pools the layers as they come, so it also reflects how
    the concepts are spread over layers. Records without a status (older files) are left out.
    """
    from scipy.stats import mannwhitneyu

    groups: dict[str, tuple[list[float], list[float]]] = {}
    for r in teachability.values():
        concept, control = _taught_lift(r), _control_lift(r)
        for key in (str(r.get("layer") or ""), "all"):
            if concept is not None:
                groups.setdefault(key, ([], []))[0].append(concept)
            if control is not None:
                groups.setdefault(key, ([], []))[1].append(control)
    out = {}
    for key in sorted((k for k in groups if k != "all"), key=_layer_order) + (["all"] if groups else []):
        concepts, controls = groups[key]
        p = None
        if len(concepts) > 1 and len(controls) > 1:
            p = float(mannwhitneyu(concepts, controls, alternative="two-sided").pvalue)
        out[key] = {"concepts": _summary(concepts), "controls": _summary(controls), "mann_whitney_p": p}
    return out


def _layer_order(layer: str) -> list:
    """Natural order of layer names: block2 before block10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", layer)]


def beats_controls(record: dict | None, ceilings: dict[str, float]) -> bool:
    """Whether a teachability record's lower bound is above its layer's control ceiling (False with no control)."""
    if not record or record.get("ci") is None or record.get("layer") not in ceilings:
        return False
    return float(record["ci"][0]) > ceilings[record["layer"]]


def _stages(order: str) -> list[str]:
    first, second = ("novel", "teachable") if order == "novelty-first" else ("teachable", "novel")
    return ["roots", "mined", "solved", first, second, "kept"]


def funnel(concepts: Sequence[Concept], teachability: dict[str, dict], novelty: dict[str, dict], *,
           roots: int, order: str = "teachability-first") -> dict:
    """Funnel counts per layer and in total, with the shares failing each filter and the paper's shares."""
    stages = _stages(order)
    first, second = stages[3], stages[4]
    results = {"teachable": teachability, "novel": novelty}
    passes = {"teachable": lambda r: bool(r.get("kept")), "novel": lambda r: bool(r.get("novel"))}
    ceilings = control_ceilings(teachability)
    layers: dict[str, dict] = {}
    for c in concepts:
        row = layers.setdefault(c.layer, {"roots": roots, "mined": 0, "solved": 0, first: 0, second: 0, "kept": 0,
                                          "already_known": 0, "too_few_prototypes": 0, "kept_beating_controls": 0,
                                          "pending": {first: 0, second: 0}})
        row["mined"] += 1
        if not c.solved:
            continue
        row["solved"] += 1
        rec1 = results[first].get(c.id)
        if rec1 is None:
            row["pending"][first] += 1
            continue
        t_rec = teachability.get(c.id)
        if t_rec is not None and t_rec.get("status") == "already known":
            row["already_known"] += 1
        if t_rec is not None and t_rec.get("status") == "too few prototypes":
            row["too_few_prototypes"] += 1
        if not passes[first](rec1):
            continue
        row[first] += 1
        rec2 = results[second].get(c.id)
        if rec2 is None:
            row["pending"][second] += 1
            continue
        if passes[second](rec2):
            row[second] += 1
            row["kept"] += 1
            row["kept_beating_controls"] += beats_controls(t_rec, ceilings)
    total = {"roots": roots}
    for key in ("mined", "solved", first, second, "kept", "already_known", "too_few_prototypes",
                "kept_beating_controls"):
        total[key] = sum(r[key] for r in layers.values())
    total["pending"] = {k: sum(r["pending"][k] for r in layers.values()) for k in (first, second)}
    for row in [*layers.values(), total]:
        row["shares"] = _shares(row, first, second)
    controls = [{k: r.get(k) for k in ("id", "layer", "student", "lift", "ci", "kept", "status")}
                for r in teachability.values() if r.get("kind") == "control"]
    return {"order": order, "stages": stages, "layers": layers, "total": total, "controls": controls,
            "control_ceilings": ceilings, "lift_comparison": lift_comparison(teachability),
            "paper": dict(PAPER),
            "notes": "shares: fail_<first> = 1 − first/solved, fail_<second>_of_rest = 1 − second/first; "
                     "paper: ≈97.6% fail teachability, then ≈27% of the rest fail novelty"}


def _shares(row: dict, first: str, second: str) -> dict:
    name = {"teachable": "teachability", "novel": "novelty"}
    scored1 = row["solved"] - row["pending"][first]
    scored2 = row[first] - row["pending"][second]
    return {f"fail_{name[first]}": 1 - row[first] / scored1 if scored1 else None,
            f"fail_{name[second]}_of_rest": 1 - row[second] / scored2 if scored2 else None}


def funnel_figure(result: dict, path: str | Path) -> Path:
    """Bars of the funnel stages per layer (log scale), with the paper's rates applied to our solved count."""
    plt = pyplot()
    import numpy as np

    stages = result["stages"]
    rows = {**result["layers"], "all layers": result["total"]}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(stages) * max(1, len(rows)) / 2), 4.0))
    width = 0.8 / (len(rows) + 1)
    x = np.arange(len(stages))
    for j, (name, row) in enumerate(rows.items()):
        values = [max(row[s], 0.5) for s in stages]  # 0 drawn as a stub on the log axis, labelled "0"
        bars = ax.bar(x + j * width, values, width, label=name)
        for bar, stage in zip(bars, stages, strict=True):
            ax.annotate(f"{row[stage]:,}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
    total = result["total"]
    paper = result["paper"]
    solved = total["solved"]
    if result["order"] == "novelty-first":
        ref = None
    else:
        teach = solved * (1 - paper["fail_teachability"])
        ref = [total["roots"], total["mined"], solved, teach, teach * (1 - paper["fail_novelty_of_rest"]),
               teach * (1 - paper["fail_novelty_of_rest"])]
    if ref is not None:
        ax.plot(x + width * (len(rows) - 1) / 2, ref, "k--", marker="o", label="paper's rates × our solved")
    ax.set_yscale("log")
    ax.set_xticks(x + width * (len(rows) - 1) / 2)
    ax.set_xticklabels(stages)
    ax.set_ylabel("count")
    ax.set_title(f"concept funnel ({result['order']})")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def controls_figure(teachability: dict[str, dict], path: str | Path) -> Path | None:
    """Per layer with controls: every random-vector control's lift (red ×) beside every taught concept's lift
    (dots: green when its lower bound is above every control of its layer, blue when it is only teachable, grey
    otherwise), the layer's ceiling dashed. Whether concepts and controls overlap is the point of the figure.
    Layers without a taught control are left out (nothing there can beat a control). None without controls."""
    plt = pyplot()
    import numpy as np
    from matplotlib.lines import Line2D

    ceilings = control_ceilings(teachability)
    if not ceilings:
        return None
    layers = sorted(ceilings, key=_layer_order)
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(3.0 + 1.6 * len(layers), 3.8))
    for x, layer in enumerate(layers):
        rows = [r for r in teachability.values() if r.get("layer") == layer]
        lifts = [lift for r in rows if (lift := _control_lift(r)) is not None]
        taught = [r for r in rows if _taught_lift(r) is not None]
        colours = ["#2a7" if r.get("kept") and beats_controls(r, ceilings) else "#36c" if r.get("kept") else "#999"
                   for r in taught]
        ax.scatter(x - 0.17 + rng.uniform(-0.08, 0.08, len(lifts)), lifts, marker="x", color="#c33", zorder=3)
        ax.scatter(x + 0.17 + rng.uniform(-0.08, 0.08, len(taught)), [float(r["lift"]) for r in taught],
                   c=colours, s=14, zorder=3)
        ax.hlines(ceilings[layer], x - 0.4, x + 0.4, colors="#c33", linestyles="--", lw=1)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers)
    ax.set_ylabel("lift in agreement with the teacher")
    ax.set_title("taught concepts against random-vector controls", fontsize=10)
    ax.legend(handles=[Line2D([], [], marker="x", color="#c33", ls="", label="control"),
                       Line2D([], [], color="#c33", ls="--", label="largest control lift"),
                       Line2D([], [], marker="o", color="#2a7", ls="", label="concept: lower bound above it"),
                       Line2D([], [], marker="o", color="#36c", ls="", label="concept: teachable only"),
                       Line2D([], [], marker="o", color="#999", ls="", label="concept: not teachable")],
              fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, path)
