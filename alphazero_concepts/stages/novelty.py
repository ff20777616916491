"""Stage "novelty": novelty scores (M − H), the funnel, and the kept concepts' prototypes (RUN/prototypes.jsonl).

`kept_concepts` applies the kept rule (`filters.kept_rule`); `write_prototypes` reads each kept concept's
prototypes back from the rows the teachability stage saved, for the puzzle stage.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import alphazero_concepts.filters.stages as filter_stages
from alphazero_concepts.concepts.conceptset import ConceptSet
from alphazero_concepts.concepts.samples import PositionSample, bundled_human_games, load_sample
from alphazero_concepts.core.files import write_json, write_jsonl
from alphazero_concepts.core.rundir import (
    CONTROLS_FIGURE,
    FIGURES,
    FUNNEL,
    FUNNEL_FIGURE,
    KEPT,
    NOVELTY,
    NOVELTY_BASIS,
    NOVELTY_SPECTRUM,
    PROTOTYPES,
    RunDir,
)
from alphazero_concepts.filters.funnel import KEPT_RULES, beats_controls, control_ceilings
from alphazero_concepts.filters.rundir import read_results
from alphazero_concepts.filters.teachability import concept_seed, split_rows
from alphazero_concepts.stages.base import Context, PipelineError, StageDef, run_settings

if TYPE_CHECKING:
    from alphazero_concepts.stages.config import PipelineConfig

SCORES = (NOVELTY_BASIS, NOVELTY, f"{FIGURES}/{NOVELTY_SPECTRUM}")  # what the novelty scoring writes
OUTPUTS = (*SCORES[:2], FUNNEL, PROTOTYPES, KEPT, SCORES[2], f"{FIGURES}/{FUNNEL_FIGURE}",
           f"{FIGURES}/{CONTROLS_FIGURE}")


def novelty_scores(ctx: Context) -> dict:
    """Human/machine bases at the mined layers (built once, then reused) and the novelty scores of the concepts."""
    cfg = ctx.config
    nc = cfg.novelty
    rd = ctx.rundir
    human_path = Path(cfg.filters.human_pgn) if cfg.filters.human_pgn else bundled_human_games()
    human = load_sample(human_path, nc.positions, min_ply=nc.human_min_ply, seed=nc.seed, max_games=nc.max_games)
    machine = PositionSample.load(rd.pool)
    if len(machine) > nc.positions:
        rng = np.random.default_rng(nc.seed)
        machine = machine.subset(np.sort(rng.choice(len(machine), nc.positions, replace=False)))
    ctx.progress("novelty", 1, 4)
    filter_stages.novelty_basis_stage(ctx.net, human, machine, list(cfg.mine.layers), rd.novelty_basis, nc,
                                      model_id=ctx.model_id, figure=rd.figure(NOVELTY_SPECTRUM), log=ctx.log)
    ctx.progress("novelty", 2, 4)
    return filter_stages.novelty_stage(ctx.run, order=cfg.filters.order, log=ctx.log)


def kept_concepts(run: str | Path, kept_rule: str = "funnel") -> list[str]:
    """Ids of the kept concepts under `kept_rule` (see `FiltersStage`), in concept order."""
    if kept_rule not in KEPT_RULES:
        raise PipelineError(f"kept rule must be one of {', '.join(KEPT_RULES)}, got {kept_rule!r}")
    rd = RunDir(run)
    teach = read_results(rd.teachability)
    nov = read_results(rd.novelty)
    ceilings = control_ceilings(teach)
    out = []
    for c in ConceptSet.load(rd.root):
        if not c.solved:
            continue
        teachable = bool(teach.get(c.id, {}).get("kept"))
        novel = bool(nov.get(c.id, {}).get("novel"))
        funnel = teachable and novel
        passes = {"solved": True, "teachable": teachable, "novel": novel, "funnel": funnel,
                  "specific": funnel and beats_controls(teach.get(c.id), ceilings)}
        if passes[kept_rule]:
            out.append(c.id)
    return out


def write_prototypes(ctx: Context) -> list[str]:
    """RUN/prototypes.jsonl for the puzzle stage: each kept concept's prototypes, read back from the rows the
    teachability stage saved (`teachability.jsonl`: `prototype_rows`, `prototype_scores`, `train_rows`,
    `test_rows`), never re-picked: "train" are the positions the student was taught, "test" those it was tested
    on; prototypes that were neither (dropped from a test set shared with the random baseline) are left out.
    A kept concept that was not taught (kept rules "solved" and "novel") has its saved prototypes split as
    teaching would have split them, and says so (`split_source`).
    """
    rd = ctx.rundir
    kept_rule = ctx.config.filters.kept_rule
    kept = kept_concepts(rd.root, kept_rule)
    teach = read_results(rd.teachability)
    nov = read_results(rd.novelty)
    records = []
    if kept:
        concepts = {c.id: c for c in ConceptSet.load(rd.root)}
        sample = PositionSample.load(rd.pool)
        tc = ctx.config.teachability
        for cid in kept:
            t = teach.get(cid)
            if t is None or not t.get("prototype_rows"):
                ctx.log(f"{cid}: kept but has no saved prototypes (not scored by teachability): no puzzles")
                continue
            if "prototype_scores" not in t or "train_rows" not in t:
                raise PipelineError(f"{rd.teachability}: {cid} was scored by an older version that did not "
                                    "save its prototype rows; re-run with --from teachability")
            score = dict(zip(t["prototype_rows"], t["prototype_scores"], strict=True))
            if t.get("status") == "ok":
                split = {int(r): "train" for r in t["train_rows"]} | {int(r): "test" for r in t["test_rows"]}
                source = "taught"
            else:
                train, test = split_rows(np.asarray(t["prototype_rows"]), tc.test_fraction,
                                         concept_seed(tc.seed, cid))
                split = {int(r): "train" for r in train} | {int(r): "test" for r in test}
                source = "untaught"
            rows = sorted(split, key=lambda r: -float(score[r]))[: ctx.config.filters.max_prototypes]
            positions = []
            for r in rows:
                b = sample.board(r)
                positions.append({"fen": b.fen(), "split": split[r], "start_fen": b.root().fen(),
                                  "moves": [m.uci() for m in b.move_stack], "score": float(score[r]), "row": r})
            n = nov.get(cid, {})
            c = concepts[cid]
            records.append({"concept": cid, "label": cid, "layer": c.layer, "kept": True,
                            "novelty": _finite(n.get("min_score")), "teachability": _finite(t.get("lift")),
                            "teachability_ci": [_finite(x) for x in t.get("ci") or []] or None,
                            "root": c.record.get("root"), "split_source": source, "nonzeros": c.nonzeros,
                            "dim": 0 if c.vector is None else int(c.vector.size), "kept_rule": kept_rule,
                            "positions": positions})
    write_jsonl(rd.prototypes, records)
    write_json(rd.kept, {"kept_rule": kept_rule, "concepts": kept})
    return kept


def _finite(x: object) -> float | None:
    """A score for JSON: NaN (a concept whose filter did not run, e.g. "already known") becomes null."""
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _run(ctx: Context) -> dict:
    """Novelty scores (see `novelty_scores`), the funnel, and the kept concepts' prototypes."""
    cfg = ctx.config
    ctx.progress("novelty", 0, 4)
    summary = novelty_scores(ctx)
    funnel = filter_stages.funnel_stage(ctx.run, order=cfg.filters.order)
    ctx.progress("novelty", 3, 4)
    kept = write_prototypes(ctx)
    ctx.progress("novelty", 4, 4)
    return {**summary, "funnel_total": funnel["total"], "kept": len(kept), "kept_rule": cfg.filters.kept_rule}


def _section(config: PipelineConfig) -> dict:
    return {"run": run_settings(config), "novelty": config.novelty.to_dict(), "filters": config.filters.to_dict()}


def _clears(order: str) -> tuple[str, ...]:
    if order == "novelty-first":  # the teachability stage wrote the scores (and owns them)
        return tuple(a for a in OUTPUTS if a not in SCORES)
    return OUTPUTS


STAGE = StageDef("novelty", inputs=("teachability",), outputs=OUTPUTS, section_of=_section, work=_run,
                 clears_of=_clears)
