"""The run report: one self-contained `report.html` (figures and boards embedded as base64) + PNGs in figures/.

It reads the run directory's artifacts and computes nothing of its own (no network, no search): the stages that
produce what it shows write it (static concepts: stage "static"; machine lines: the puzzle stage's candidates).

Sections, each always present (`SECTIONS`); a section whose stage produced nothing says so in words:

    model       the teacher, its series and the Elo ladder (SERIES/ladder.json, else "not measured")
    static      static-concept accuracy per layer (RUN/static_concepts.json, written by the stage "static")
    spectra     human vs machine singular-value spectra and numerical ranks per layer, beside the paper's
    scores      novelty (min s_k) and teachability (lift, 95% CI) of every scored concept and the controls
    funnel      roots → mined → solved → teachable → novel → kept, beside the paper's shares
    concepts    one card per kept concept: layer, sparsity, scores, prototype boards with the machine line, its
                puzzles, and the concept score v·z along the chosen vs sub-par lines of its root
    puzzles     what the puzzle stage wrote (counts, rejection reasons, files)
    probing     where the what–when–where probes live (not a pipeline stage)
    run         the config and each stage's time

Figures are matplotlib (Agg) PNGs saved under RUN/figures and embedded; boards are `chess.svg` SVGs embedded as
data URIs, so the page opens offline.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chess
import chess.svg
import numpy as np

from alphazero_concepts.core.rundir import (
    ACTIVATIONS,
    CONTROLS_FIGURE,
    FIGURES,
    FUNNEL,
    FUNNEL_FIGURE,
    KEPT,
    LINES,
    NOVELTY,
    NOVELTY_BASIS,
    NOVELTY_SPECTRUM,
    PROTOTYPES,
    PUZZLES,
    PUZZLES_DIR,
    PUZZLES_SUMMARY,
    REPORT,
    ROLLOUTS,
    STAGES_DIR,
    TEACHABILITY,
    PuzzleDir,
    RunDir,
)

SECTIONS = ("model", "static", "spectra", "scores", "funnel", "concepts", "puzzles", "probing", "run")
TITLES = {"model": "Model and Elo ladder", "static": "Static concepts: accuracy per layer",
          "spectra": "Human vs machine latent spaces", "scores": "Novelty and teachability scores",
          "funnel": "Funnel (beside the paper's)", "concepts": "Kept concepts", "puzzles": "Puzzles",
          "probing": "Probing", "run": "Run"}
CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}section{border-top:1px solid #ccc;margin-top:1.5em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 7px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.empty{background:#fff6e0;border-left:4px solid #e0a000;padding:.5em .8em}
.card{border:1px solid #bbb;border-radius:6px;padding:.8em;margin:1em 0}
.boards{display:flex;flex-wrap:wrap;gap:12px}.board{font-size:.8em;max-width:230px}
img.fig{max-width:100%}code{background:#f4f4f4;padding:0 3px}
"""



def _esc(x: object) -> str:
    return html.escape(str(x))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return "(not written)"


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _png_tag(path: Path, alt: str) -> str:
    if not path.is_file():
        return f'<p class="empty">figure {_esc(path.name)} was not produced.</p>'
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img class="fig" alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def board_tag(board: chess.Board, line: list[chess.Move] | None = None, size: int = 220) -> str:
    """An <img> of the board (SVG data URI) with the first move of `line` drawn as an arrow."""
    arrows = [chess.svg.Arrow(line[0].from_square, line[0].to_square)] if line else []
    svg = chess.svg.board(board, size=size, arrows=arrows, lastmove=board.peek() if board.move_stack else None)
    data = base64.b64encode(svg.encode()).decode()
    return f'<img alt="{_esc(board.fen())}" width="{size}" height="{size}" src="data:image/svg+xml;base64,{data}">'


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _empty(text: str) -> str:
    return f'<p class="empty">{_esc(text)}</p>'


def _fmt(x: object, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


def _figure(path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    return plt


# --------------------------------------------------------------------------------------------------------------
# Sections


def _model_section(run: Path, meta, series) -> str:
    parts = [f"<p>Teacher: <b>{_esc(meta.name)}</b> (sha256 {_esc(str((meta.extra or {}).get('sha256', '–'))[:16])}"
             f", step {_esc(meta.step)}, {meta.positions_seen:,} positions seen, stage {_esc(meta.stage)})."]
    if series is None:
        parts.append(_empty("The teacher is a single checkpoint file: no series, no students, no Elo ladder."))
        return "".join(parts)
    rows = [[m.name, m.step, f"{m.positions_seen:,}", m.stage, _fmt((m.extra or {}).get("holdout", {}).get("acc")),
             _fmt(m.elo, ".0f")] for m in series]
    parts.append(f"<p>Series <code>{_esc(series.directory)}</code>:</p>")
    parts.append(_table(["checkpoint", "step", "positions", "stage", "held-out top-1", "Elo"], rows))
    ladder = _read_json(series.directory / "ladder.json")
    if not ladder or not ladder.get("checkpoints"):
        parts.append(_empty(f"Elo ladder: not measured (no ladder.json in {series.directory}; "
                            "`azc arena ladder` writes it)."))
        return "".join(parts)
    cps = ladder["checkpoints"]
    parts.append(_table(["checkpoint", "Elo", "95% CI", "games"],
                        [[c.get("name"), _fmt(c.get("elo"), ".0f"),
                          "–" if not c.get("elo_ci") else f"[{c['elo_ci'][0]:.0f}, {c['elo_ci'][1]:.0f}]",
                          c.get("games", "–")] for c in cps]))
    if ladder.get("vs_stockfish"):
        parts.append(_table(["checkpoint", "Stockfish UCI_Elo", "games", "score"],
                            [[r.get("checkpoint"), r.get("uci_elo"), r.get("games"), _fmt(r.get("score"))]
                             for r in ladder["vs_stockfish"]]))
    fig = run / FIGURES / "elo_ladder.png"
    plt = _figure(fig)
    f, ax = plt.subplots(figsize=(6, 3))
    elos = [c.get("elo") or 0.0 for c in cps]
    ax.plot(range(len(cps)), elos, "o-")
    for k, c in enumerate(cps):
        if c.get("elo_ci"):
            ax.plot([k, k], c["elo_ci"], "k-", lw=1)
    ax.set_xticks(range(len(cps)), [c.get("name") for c in cps], rotation=30, fontsize=7)
    ax.set_ylabel("Elo")
    ax.set_title("Elo ladder")
    f.tight_layout()
    f.savefig(fig, dpi=110)
    plt.close(f)
    parts.append(_png_tag(fig, "Elo ladder"))
    return "".join(parts)


def _static_section(run: Path, result: dict) -> str:
    concepts = {name: c.get("layers", {}) for name, c in result.get("concepts", {}).items() if c.get("layers")}
    if not concepts:
        return _empty("No static concept was measured.")
    rows = [[name, layer, _fmt(r.get("test_pair_accuracy")), f"{r.get('nonzeros', '–')} / {r.get('dim', '–')}",
             r.get("status", "–")] for name, layers in concepts.items() for layer, r in layers.items()]
    fig = run / FIGURES / "static_accuracy.png"
    plt = _figure(fig)
    f, ax = plt.subplots(figsize=(7, 3.2))
    layer_names = list(next(iter(concepts.values())))
    width = 0.8 / len(concepts)
    for k, (name, layers) in enumerate(concepts.items()):
        ax.bar(np.arange(len(layer_names)) + k * width, [layers.get(x, {}).get("test_pair_accuracy", 0)
                                                         for x in layer_names], width, label=name)
    ax.set_xticks(np.arange(len(layer_names)) + width * (len(concepts) - 1) / 2, layer_names)
    ax.axhline(0.5, color="k", ls=":", lw=1)
    ax.axhline(0.99, color="r", ls="--", lw=1, label="paper ≈ 0.99 (piece concepts)")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out pair accuracy")
    ax.legend(fontsize=7)
    f.tight_layout()
    f.savefig(fig, dpi=110)
    plt.close(f)
    return (f"<p>Piece concepts ({_esc(result.get('source', ''))}): a sparse vector is mined per concept and "
            "layer on 80% of the positions and scored on the held-out pairs (chance 0.5).</p>"
            + _table(["concept", "layer", "held-out pair accuracy", "non-zeros / d", "solver"], rows)
            + _png_tag(fig, "static"))


def _spectra_section(run: Path) -> str:
    ranks = _read_json(run / NOVELTY_BASIS / "ranks.json")
    if not ranks or not ranks.get("layers"):
        return _empty("No novelty bases were built (the novelty stage did not run).")
    rows = [[layer, f"{r.get('dim', 0):,}", r.get("n"), f"{r.get('rank_human', 0):,}",
             f"{r.get('rank_machine', 0):,}"] for layer, r in ranks["layers"].items()]
    p = ranks.get("paper", {})
    if p:
        rows.append([f"paper: layer {p.get('layer')}", f"{p.get('dim', 0):,}", f"{p.get('n', 0):,}",
                     f"{p.get('human', 0):,}", f"{p.get('machine', 0):,}"])
    return ("<p>Right singular vectors of the stacked latents of equal-size human (master games) and machine "
            "(teacher self-play) samples; numerical rank per layer. With n ≤ d both ranks are capped at n.</p>"
            + _table(["layer", "d", "n per side", "rank human", "rank machine"], rows)
            + _png_tag(run / FIGURES / NOVELTY_SPECTRUM, "spectra"))


def _scores_section(run: Path) -> str:
    from alphazero_concepts.filters.rundir import read_results

    teach = read_results(run / TEACHABILITY)
    nov = read_results(run / NOVELTY)
    if not teach and not nov:
        return _empty("No concept was scored by either filter (no solved concept, or the filters did not run).")
    ids = sorted(set(teach) | set(nov))
    rows = []
    for cid in ids:
        t, n = teach.get(cid, {}), nov.get(cid, {})
        ci = t.get("ci") or [None, None]
        rows.append([cid, t.get("kind", "concept"), t.get("status", "not scored"), t.get("student") or "–",
                     _fmt(t.get("lift")), f"[{_fmt(ci[0])}, {_fmt(ci[1])}]", "yes" if t.get("kept") else "no",
                     _fmt(n.get("min_score")) if n else "not scored", ("yes" if n.get("novel") else "no") if n
                     else "–"])
    statuses: dict[str, int] = {}
    for t in teach.values():
        statuses[t.get("status", "?")] = statuses.get(t.get("status", "?"), 0) + 1
    fig = run / FIGURES / "scores.png"
    plt = _figure(fig)
    f, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    ok = [(cid, t) for cid, t in teach.items() if t.get("status") == "ok"]
    if ok:
        lifts = [t["lift"] for _, t in ok]
        lo = [t["lift"] - t["ci"][0] for _, t in ok]
        hi = [t["ci"][1] - t["lift"] for _, t in ok]
        colors = ["#c33" if t.get("kind") == "control" else "#37a" for _, t in ok]
        axes[0].errorbar(range(len(ok)), lifts, yerr=[lo, hi], fmt="none", ecolor="#888")
        axes[0].scatter(range(len(ok)), lifts, c=colors, zorder=3)
        axes[0].axhline(ok[0][1].get("threshold", 0.05), color="k", ls="--", lw=1, label="threshold")
        axes[0].axhline(0, color="k", lw=0.5)
        axes[0].legend(fontsize=7)
    else:
        axes[0].text(0.5, 0.5, "no concept reached teaching\n(see statuses)", ha="center", va="center")
    axes[0].set_title("teachability lift, 95% CI (red: random control)", fontsize=9)
    ms = [n["min_score"] for n in nov.values() if n.get("min_score") is not None]
    if ms:
        axes[1].hist(ms, bins=min(20, max(3, len(ms))), color="#7a4")
        axes[1].axvline(0, color="k", ls="--", lw=1)
    else:
        axes[1].text(0.5, 0.5, "no concept scored for novelty", ha="center", va="center")
    axes[1].set_title("novelty: min over k of s_k (novel when > 0)", fontsize=9)
    f.tight_layout()
    f.savefig(fig, dpi=110)
    plt.close(f)
    return (f"<p>Teachability statuses: {_esc(', '.join(f'{k}: {v}' for k, v in sorted(statuses.items())))}. "
            "A concept is <i>already known</i> when no earlier checkpoint agrees with the teacher on fewer than "
            "20% of its prototypes (there is no student to teach).</p>" + _png_tag(fig, "scores")
            + _table(["concept", "kind", "teachability", "student", "lift", "95% CI", "teachable",
                      "novelty min s_k", "novel"], rows))


def _funnel_section(run: Path) -> str:
    funnel = _read_json(run / FUNNEL)
    if not funnel:
        return _empty("No funnel: the filter stages did not run.")
    stages = funnel["stages"]
    rows = [[layer, *[r.get(s, 0) for s in stages], r.get("kept_beating_controls", "–"), r.get("already_known", 0)]
            for layer, r in {**funnel["layers"], "all layers": funnel["total"]}.items()]
    shares = funnel["total"].get("shares", {})
    paper = funnel.get("paper", {})
    share_rows = [[k, _fmt(v), _fmt(paper.get(k.replace("fail_teachability", "fail_teachability")
                                             .replace("fail_novelty_of_rest", "fail_novelty_of_rest")))]
                  for k, v in shares.items()]
    note = ""
    if funnel["total"].get("solved", 0) and funnel["total"].get("already_known", 0) == funnel["total"]["solved"]:
        note = _empty("Every solved concept is 'already known': no earlier checkpoint of the series is weak enough "
                      "(agreement with the teacher < 0.2 on the prototypes) to serve as a student. The bundled "
                      "series is a short supervised run; a series with an early, weak checkpoint is needed for "
                      "the teachability filter to keep anything.")
    comparison = funnel.get("lift_comparison") or {}
    lift_rows = [[layer, c["concepts"]["n"], _fmt(c["concepts"]["mean"]), _fmt(c["concepts"]["sd"]),
                  c["controls"]["n"], _fmt(c["controls"]["mean"]), _fmt(c["controls"]["sd"]),
                  _fmt(c["mann_whitney_p"], ".2g")] for layer, c in comparison.items()]
    lifts = (_table(["layer", "concepts taught", "concepts: mean lift", "concepts: sd", "controls taught",
                     "controls: mean lift", "controls: sd", "Mann–Whitney p"], lift_rows) if lift_rows else "")
    return (_table(["layer", *stages, "kept, beating every control", "already known"], rows) + note
            + _table(["share failing", "this run", "paper"], share_rows) + lifts
            + _png_tag(run / FIGURES / FUNNEL_FIGURE, "funnel")
            + (_png_tag(run / FIGURES / CONTROLS_FIGURE, "concepts against random-vector controls")
               if (run / FIGURES / CONTROLS_FIGURE).is_file() else ""))


def _line_scores(store, lines: dict, root: int, layer: str, v: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
    entry = next((e for e in lines["roots"] if e["root"] == root), None)
    if entry is None:
        return np.array([]), []
    chosen = store.read(layer, entry["chosen"]) @ v
    subs = [(s["branch"], store.read(layer, s["rows"]) @ v) for s in entry["subpar"]]
    return chosen, subs


def _lift_text(rec: dict) -> str:
    """"+0.140 (95% CI [+0.060, +0.220])", or why there is no lift (e.g. no student weak enough)."""
    ci = rec.get("teachability_ci") or []
    if rec.get("teachability") is None or len(ci) != 2 or None in ci:
        return "– (not taught: no earlier checkpoint is weak enough on the prototypes, or too few of them)"
    return f"{rec['teachability']:+.3f} (95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}])"


def _machine_lines(run: Path) -> dict[str, list[chess.Move]]:
    """The machine's line from each searched prototype position (the puzzle stage's candidates), by FEN."""
    out = {}
    for c in _read_jsonl(PuzzleDir(run / PUZZLES_DIR).candidates):
        if c.get("fen") and c.get("line"):
            out[c["fen"]] = [chess.Move.from_uci(m) for m in c["line"][:8]]
    return out


def _concepts_section(run: Path, config) -> str:
    protos = _read_jsonl(run / PROTOTYPES)
    kept = _read_json(run / KEPT) or {}
    rule = kept.get("kept_rule", config.filters.kept_rule)
    rule_text = {"funnel": "teachable and novel (the paper's rule)",
                 "specific": "teachable and novel, and teaching more than every random-vector control at the "
                             "concept's layer (stricter than the paper's rule)",
                 "teachable": "teachable (novelty ignored)",
                 "novel": "novel (teachability ignored)",
                 "solved": "every solved concept — a demonstration of the later stages, NOT filtered"}[rule]
    head = f"<p>Kept rule: <b>{_esc(rule_text)}</b>.</p>"
    if not protos:
        return head + _empty("No concept was kept: the funnel above shows where the candidates stopped. "
                             "No concept cards, no puzzles.")
    from alphazero_concepts.concepts.activations import ActivationStore
    from alphazero_concepts.concepts.conceptset import ConceptSet
    from alphazero_concepts.search.rollouts import Rollout

    rc = config.report
    concepts = {c.id: c for c in ConceptSet.load(run)}
    book = _read_json(run / PUZZLES_DIR / PUZZLES) or {}
    puzzles_by: dict[str, list[dict]] = {}
    for p in book.get("puzzles", []):
        puzzles_by.setdefault(p["concept"], []).append(p)
    rollouts = {r["root_index"]: Rollout.from_dict(r) for r in _read_jsonl(run / ROLLOUTS)}
    store = lines = None
    if (run / ACTIVATIONS / LINES).is_file():
        store = ActivationStore(run / ACTIVATIONS)
        lines = _read_json(run / ACTIVATIONS / LINES)
    cards = []
    shown = protos[: rc.max_cards]
    boards_all = [[_board_of(p) for p in rec["positions"][: rc.boards_per_card]] for rec in shown]
    machine_lines = _machine_lines(run)
    for rec, boards in zip(shown, boards_all, strict=True):
        cid = rec["concept"]
        c = concepts.get(cid)
        safe = "".join(ch if ch.isalnum() else "_" for ch in cid)
        parts = [f'<div class="card" id="card-{_esc(safe)}"><h3>{_esc(cid)}</h3>',
                 f"<p>Layer <b>{_esc(rec['layer'])}</b>; sparsity {rec.get('nonzeros')} non-zeros of "
                 f"{rec.get('dim')} ({(rec.get('nonzeros') or 0) / max(1, rec.get('dim') or 1):.1%}); "
                 f"teachability lift {_lift_text(rec)}; "
                 f"novelty min s_k {_fmt(rec.get('novelty'))}.</p>"]
        root = rec.get("root")
        if root in rollouts:
            r = rollouts[root]
            rb = r.root_board()
            parts.append(f"<p>Mined from root {root}: the machine's chosen line "
                         f"<code>{_esc(rb.variation_san([chess.Move.from_uci(m) for m in r.chosen.moves]))}</code>"
                         f" against {len(r.subpar)} sub-par lines.</p>")
        cells = []
        for b, pos in zip(boards, rec["positions"], strict=False):
            pv = machine_lines.get(b.fen(), [])
            line = b.variation_san(pv) if pv else "–"
            cells.append(f'<div class="board">{board_tag(b, pv)}<br>{_esc(pos["split"])}, v·z = '
                         f'{pos["score"]:.2f}<br>machine line: <code>{_esc(line)}</code></div>')
        parts.append("<h4>Top prototype positions</h4><div class=\"boards\">" + "".join(cells) + "</div>")
        ps = puzzles_by.get(cid, [])
        if ps:
            rows = [[p["id"], p["split"], p["solution"][0], " ".join(p["line"][:6]), p.get("rating"),
                     _fmt(p.get("human_policy_prob")), _esc(p.get("engine_disagrees"))] for p in ps]
            parts.append("<h4>Puzzles</h4>" + _table(["id", "split", "answer", "line", "rating", "human p",
                                                       "engine disagrees"], rows))
        else:
            parts.append("<h4>Puzzles</h4>" + _empty("No puzzle of this concept passed the checks "
                                                     "(RUN/puzzles/report.json says why)."))
        if store is not None and c is not None and c.vector is not None and root is not None:
            chosen, subs = _line_scores(store, lines, root, c.layer, c.vector)
            fig = run / FIGURES / f"concept_{safe}.png"
            plt = _figure(fig)
            f, ax = plt.subplots(figsize=(5.5, 3))
            ax.plot(range(len(chosen)), chosen, "o-", color="#37a", lw=2, label="chosen line")
            for k, (_branch, s) in enumerate(subs):
                ax.plot(range(len(s)), s, "x--", color="#c33", alpha=0.7, label="sub-par lines" if k == 0 else None)
            ax.set_xlabel("ply from the root")
            ax.set_ylabel("concept score v·z")
            ax.legend(fontsize=7)
            f.tight_layout()
            f.savefig(fig, dpi=100)
            plt.close(f)
            parts.append("<h4>Concept score along the lines</h4>" + _png_tag(fig, f"score along lines {cid}"))
        else:
            parts.append(_empty("No activations of this concept's lines (collect stage missing)."))
        parts.append("</div>")
        cards.append("".join(parts))
    more = "" if len(protos) <= len(shown) else f"<p>{len(protos) - len(shown)} more kept concepts not shown.</p>"
    return head + "".join(cards) + more


def _board_of(pos: dict) -> chess.Board:
    if pos.get("start_fen") is not None and pos.get("moves") is not None:
        b = chess.Board(pos["start_fen"])
        for m in pos["moves"]:
            b.push_uci(m)
        return b
    return chess.Board(pos["fen"])


def _puzzles_section(run: Path) -> str:
    summary = _read_json(run / PUZZLES_DIR / PUZZLES_SUMMARY)
    if not summary:
        return _empty("The puzzle stage did not run.")
    if not summary.get("puzzles"):
        why = summary.get("note") or f"reasons: {summary.get('reason_counts', {})}"
        return _empty(f"No puzzle was written ({why}).")
    rows = [[k, summary.get(k)] for k in ("concepts_in", "positions_in", "candidates", "passed_checks", "puzzles",
                                          "concepts_kept", "engine_disagrees")]
    files = "".join(f"<li><code>{_esc(v)}</code></li>" for v in summary.get("files", {}).values())
    return (_table(["", "count"], rows) + f"<p>Rejections by check: {_esc(summary.get('reason_counts'))}; "
            f"Stockfish cross-check: {'yes' if summary.get('engine') else 'no'}.</p><ul>{files}</ul>")


def _run_section(run: Path, stages: Sequence[str]) -> str:
    """Each stage's time and hash (its done-marker) and the run's config.toml, as the pipeline wrote them."""
    rows = []
    for stage in stages:
        m = _read_json(run / STAGES_DIR / f"{stage}.json")
        rows.append([stage, _fmt(m.get("seconds"), ".1f") if m else "running", (m or {}).get("hash", "–")])
    return (_table(["stage", "seconds", "hash"], rows)
            + f"<details><summary>config.toml</summary><pre>{_esc(_read_text(RunDir(run).config))}</pre></details>")


def write_report(run: str | Path, config, meta, *, stages: Sequence[str], series=None) -> Path:
    """Write RUN/report.html (and the figures) from what the run directory holds (`stages`: in run order).

    It reads artifacts only: static concepts from RUN/static_concepts.json (stage "static"), machine lines from the
    puzzle stage's candidates; `meta` and `series` describe the teacher."""
    run = Path(run)
    (run / FIGURES).mkdir(parents=True, exist_ok=True)
    body = {
        "model": _model_section(run, meta, series),
        "static": _static_section(run, _read_json(RunDir(run).static_concepts) or {}),
        "spectra": _spectra_section(run),
        "scores": _scores_section(run),
        "funnel": _funnel_section(run),
        "concepts": _concepts_section(run, config),
        "puzzles": _puzzles_section(run),
        "probing": "<p>Probes of what–when–where concepts are not a pipeline stage; see "
                   "<code>notebooks/03_probes.ipynb</code> and <code>alphazero_concepts/probing/</code>.</p>",
        "run": "",
    }
    body["run"] = _run_section(run, stages)
    toc = "".join(f'<li><a href="#{s}">{_esc(TITLES[s])}</a></li>' for s in SECTIONS)
    sections = "".join(f'<section id="{s}"><h2>{_esc(TITLES[s])}</h2>{body[s]}</section>' for s in SECTIONS)
    page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_esc(config.report.title)}"
            f"</title><style>{CSS}</style></head><body><h1>{_esc(config.report.title)}</h1>"
            f"<p>Run directory <code>{_esc(run.resolve())}</code>.</p><ul>{toc}</ul>{sections}</body></html>\n")
    from alphazero_concepts.puzzles.export import write_text  # atomic, and readable like a normal file

    path = run / REPORT
    write_text(path, page)
    return path
