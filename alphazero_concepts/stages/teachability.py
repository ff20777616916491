"""Stage "teachability": the teacher's self-play pool and the teachability filter (RUN/teachability.jsonl).

Under `filters.order = "novelty-first"` it scores novelty first (only novel concepts are taught), so it then
owns the novelty scores too (`clears`), and its hash depends on the novelty settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import alphazero_concepts.filters.stages as filter_stages
from alphazero_concepts.concepts.samples import SelfPlaySampleConfig
from alphazero_concepts.core.rundir import POOL, POOL_TOP1, TEACHABILITY, TEACHABILITY_CONFIG
from alphazero_concepts.stages import novelty
from alphazero_concepts.stages.base import Context, StageDef, run_settings

if TYPE_CHECKING:
    from alphazero_concepts.stages.config import PipelineConfig


def _run(ctx: Context) -> dict:
    tc = ctx.config.teachability
    series = ctx.series()
    students = [] if series is None else filter_stages.series_students(series, ctx.meta, str(ctx.net.device))
    if not students:
        ctx.log("teachability: the series has no checkpoint before the teacher; every concept is 'already known'")
    selfplay = SelfPlaySampleConfig(positions=tc.pool_size, seed=tc.seed)
    # the pool is made here even when no concept needs teaching: the novelty stage's machine sample is the pool
    filter_stages.obtain_pool(ctx.run, ctx.net, size=tc.pool_size, selfplay=selfplay, seed=tc.seed, log=ctx.log,
                              progress=lambda d, t: ctx.progress("teachability", d, t))
    if ctx.config.filters.order == "novelty-first":  # only the novel concepts are taught: score novelty now
        novelty.novelty_scores(ctx)
    summary = filter_stages.teachability_stage(ctx.run, ctx.net, students, tc, teacher_meta=ctx.meta,
                                               selfplay=selfplay, order=ctx.config.filters.order, log=ctx.log,
                                               progress=lambda d, t: ctx.progress("teachability", d, t))
    if not summary.get("scored_now"):
        ctx.progress("teachability", 1, 1)
    ctx.rundir.teachability.touch()  # exists even when nothing was scored (the novelty stage reads it)
    return {**summary, "students": [name for name, _ in students]}


def _section(config: PipelineConfig) -> dict:
    return {"run": run_settings(config), "teachability": config.teachability.to_dict(),
            "order": config.filters.order,
            # novelty-first: the teachability stage scores novelty first (only novel concepts are taught)
            **({"novelty": config.novelty.to_dict(), "human_pgn": config.filters.human_pgn}
               if config.filters.order == "novelty-first" else {})}


OUTPUTS = (TEACHABILITY, TEACHABILITY_CONFIG, POOL, POOL_TOP1)


def _clears(order: str) -> tuple[str, ...]:
    if order == "novelty-first":  # it scores novelty: everything downstream of the scores too
        return (*OUTPUTS, *novelty.OUTPUTS)
    return OUTPUTS


STAGE = StageDef("teachability", inputs=("mine",), outputs=OUTPUTS, section_of=_section, work=_run,
                 clears_of=_clears)
