"""Stage "roots": positions where the teacher and a weaker checkpoint choose different moves (RUN/roots.jsonl)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alphazero_concepts.core.files import write_jsonl
from alphazero_concepts.core.rundir import ROOTS
from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series
from alphazero_concepts.nn.network import HookedNet
from alphazero_concepts.search.roots import RootConfig, find_roots
from alphazero_concepts.stages.base import Context, PipelineError, StageDef, run_settings

if TYPE_CHECKING:
    from alphazero_concepts.stages.config import PipelineConfig


def earlier_checkpoint(series: Series, name: str) -> str | None:
    """`SERIES:NAME` of the checkpoint just before `name` in its series (the root-selection model), or None."""
    names = series.names
    earlier = names[: names.index(name)] if name in names else []
    return f"{series.directory}:{earlier[-1]}" if earlier else None


def root_records(teacher: HookedNet, teacher_meta: CheckpointMeta, weak: HookedNet, weak_meta: CheckpointMeta,
                 config: RootConfig) -> list[dict]:
    """The roots as roots.jsonl records (each with why it was chosen, and both models' names); [] when none."""
    return [{**root.to_dict(), "teacher": teacher_meta.name, "weaker": weak_meta.name}
            for root in find_roots(teacher, weak, config)]


def _run(ctx: Context) -> dict:
    from alphazero_concepts.nn.loading import load_network

    cfg = ctx.config
    weaker = cfg.run.weaker
    if not weaker:
        series = ctx.series()
        weaker = earlier_checkpoint(series, ctx.meta.name) if series is not None else None
        if weaker is None:
            raise PipelineError(f"run.model = {cfg.run.model!r}: no earlier checkpoint to select roots with; "
                                "set run.weaker in the config")
    weak_net, weak_meta = load_network(weaker, ctx.net.device)
    rc = cfg.roots
    ctx.progress("roots", 0, 1)
    records = root_records(ctx.net, ctx.meta, weak_net, weak_meta, rc.root_config(cfg.run.seed))
    if not records:  # nothing for the later stages: fail rather than run them on an empty file
        raise PipelineError(f"roots: {ctx.meta.name} and {weak_meta.name} chose the same move in every position of "
                            f"{rc.games} games; no roots (raise roots.games or pick another run.weaker)")
    write_jsonl(ctx.rundir.roots, records)
    ctx.progress("roots", 1, 1)
    return {"roots": len(records), "games": rc.games, "teacher": ctx.meta.name, "weaker": weak_meta.name}


def _section(config: PipelineConfig) -> dict:
    return {"run": {**run_settings(config), "weaker": config.run.weaker}, "roots": config.roots.to_dict()}


STAGE = StageDef("roots", inputs=(), outputs=(ROOTS,), section_of=_section, work=_run)
