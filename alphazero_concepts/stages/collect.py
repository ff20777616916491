"""Stage "collect": activations of every rollout state at the mined layers (RUN/activations/, + lines.json).

The store is written by `concepts.activations.collect` (the same function `azc collect` runs; it resumes by
batch); `rollout_positions` lays the rollouts out as store rows, and lines.json maps each line to its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import chess

from alphazero_concepts.concepts.activations import collect
from alphazero_concepts.core.files import write_json
from alphazero_concepts.core.rundir import ACTIVATIONS
from alphazero_concepts.search.rollouts import Rollout
from alphazero_concepts.stages.base import Context, StageDef, run_settings
from alphazero_concepts.stages.rollouts import read_rollouts

if TYPE_CHECKING:
    from alphazero_concepts.stages.config import PipelineConfig


def rollout_positions(items: Sequence[Rollout]) -> tuple[list[chess.Board], list[dict]]:
    """Every state of every line, in order, and per root the store rows of its chosen and sub-par lines."""
    boards: list[chess.Board] = []
    lines = []
    for r in items:
        entry: dict = {"root": r.root_index, "chosen": [], "subpar": []}
        for j, line in enumerate([r.chosen, *r.subpar]):
            bs = r.boards(line)
            rows = list(range(len(boards), len(boards) + len(bs)))
            boards.extend(bs)
            if j == 0:
                entry["chosen"] = rows
            else:
                entry["subpar"].append({"rows": rows, "branch": line.branch})
        lines.append(entry)
    return boards, lines


def _run(ctx: Context) -> dict:
    rd = ctx.rundir
    boards, lines = rollout_positions(read_rollouts(rd.rollouts))
    layers = list(ctx.config.mine.layers)
    ctx.check_layers(layers)
    store = collect(ctx.net, boards, layers, rd.activations, batch_size=ctx.config.collect.batch_size,
                    model_id=ctx.model_id, progress=lambda d, t: ctx.progress("collect", d, t))
    write_json(rd.lines, {"layers": layers, "roots": lines})
    return {"positions": store.n, "layers": layers}


def _section(config: PipelineConfig) -> dict:
    return {"run": run_settings(config), "layers": list(config.mine.layers)}


STAGE = StageDef("collect", inputs=("rollouts",), outputs=(ACTIVATIONS,), section_of=_section, work=_run)
