"""Stage "rollouts": the chosen line and the sub-par lines of every root (RUN/rollouts.jsonl).

The unit of work, and of resuming, is a chunk of roots searched together (`search_roots`): one batched MCTS
seeded by (seed, the chunk's first root index), so a resumed run equals an uninterrupted one. `run_rollouts`
drives the chunks for the pipeline (chunks of `ROLLOUT_CHUNK`, kept in RUN/rollouts.partial/ until the stage
ends) and for `azc rollouts` (one chunk); the distributed backends send `search_roots` to their workers, one
shard a chunk.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import chess
import numpy as np

import alphazero_concepts.search.rollouts as rollouts_module
from alphazero_concepts.core.files import read_jsonl, write_jsonl
from alphazero_concepts.core.rundir import ROLLOUTS, ROLLOUTS_PARTIAL
from alphazero_concepts.nn.network import HookedNet
from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator
from alphazero_concepts.search.rollouts import Rollout, RolloutConfig
from alphazero_concepts.search.roots import Root
from alphazero_concepts.stages.base import Context, StageDef, run_settings

if TYPE_CHECKING:
    from alphazero_concepts.stages.config import PipelineConfig

ROLLOUT_CHUNK = 8  # roots searched together, saved together (the unit of resuming) in RUN/rollouts.partial/


def search_roots(net: HookedNet, boards: Sequence[chess.Board], config: RolloutConfig, *,
                 rng_seed: Sequence[int], first_index: int = 0) -> list[Rollout]:
    """Rollouts of a chunk of roots (one batched search); `root_index` counts from `first_index`."""
    mcts = MCTS(NetEvaluator(net), MCTSConfig(simulations=config.simulations),
                rng=np.random.default_rng(list(rng_seed)))
    found = rollouts_module.rollouts(mcts, list(boards), config)
    for k, item in enumerate(found):
        item.root_index = first_index + k
    return found


def run_rollouts(net: HookedNet, boards: Sequence[chess.Board], config: RolloutConfig, out: Path, *,
                 seed: int = 0, chunk: int | None = None, partial: Path | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[Rollout]:
    """Rollouts of every root → `out` (JSON lines), chunk by chunk (`chunk` None: all roots in one search).

    With `partial`, each finished chunk is kept there and reused by a rerun (the directory is removed at the end).
    """
    size = chunk or max(1, len(boards))
    if partial is not None:
        partial.mkdir(parents=True, exist_ok=True)
    done: list[Rollout] = []
    if progress:
        progress(0, len(boards))
    for lo in range(0, len(boards), size):
        path = None if partial is None else partial / f"roots{lo:06d}.jsonl"
        if path is None or not path.is_file():  # each chunk has its own seed
            part = search_roots(net, boards[lo:lo + size], config, rng_seed=[seed, lo], first_index=lo)
            if path is None:
                done.extend(part)
            else:
                write_jsonl(path, [r.to_dict() for r in part])
        if path is not None:
            done.extend(Rollout.from_dict(d) for d in read_jsonl(path))
        if progress:
            progress(len(done), len(boards))
    write_jsonl(out, [r.to_dict() for r in done])
    if partial is not None:
        shutil.rmtree(partial)
    return done


def read_rollouts(path: Path) -> list[Rollout]:
    return [Rollout.from_dict(d) for d in read_jsonl(path)]


def _run(ctx: Context) -> dict:
    rd = ctx.rundir
    found = [Root.from_dict({k: v for k, v in d.items() if k not in ("teacher", "weaker")})
             for d in read_jsonl(rd.roots)]
    out = run_rollouts(ctx.net, [r.board() for r in found], ctx.config.rollouts.rollout_config(), rd.rollouts,
                       seed=ctx.config.run.seed, chunk=ROLLOUT_CHUNK, partial=rd.rollouts_partial,
                       progress=lambda d, t: ctx.progress("rollouts", d, t))
    return {"roots": len(out), "subpar_lines": sum(len(r.subpar) for r in out),
            "roots_without_subpar": sum(not r.subpar for r in out)}


def _section(config: PipelineConfig) -> dict:
    return {"run": run_settings(config), "rollouts": config.rollouts.to_dict()}


STAGE = StageDef("rollouts", inputs=("roots",), outputs=(ROLLOUTS, ROLLOUTS_PARTIAL), section_of=_section, work=_run)
