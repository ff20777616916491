"""Stage "report": RUN/report.html and its figures, drawn from the run directory's artifacts only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alphazero_concepts.core.rundir import REPORT
from alphazero_concepts.report import write_report
from alphazero_concepts.stages.base import Context, StageDef

if TYPE_CHECKING:
    from alphazero_concepts.stages.config import PipelineConfig


def _run(ctx: Context) -> dict:
    ctx.progress("report", 0, 1)
    path = write_report(ctx.run, ctx.config, ctx.meta, stages=ctx.stage_names, series=ctx.series())
    ctx.progress("report", 1, 1)
    return {"report": str(path)}


def _section(config: PipelineConfig) -> dict:
    return {"report": config.report.to_dict()}


STAGE = StageDef("report", inputs=("collect", "novelty", "puzzles", "static"), outputs=(REPORT,),
                 section_of=_section, work=_run)
