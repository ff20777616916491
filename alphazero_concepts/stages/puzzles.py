"""Stage "puzzles": puzzles from the kept concepts' prototypes, checked and exported (RUN/puzzles/)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alphazero_concepts.core.files import read_jsonl, write_json
from alphazero_concepts.core.rundir import PUZZLES_DIR, PuzzleDir
from alphazero_concepts.puzzles.build import build_run
from alphazero_concepts.puzzles.candidates import SolveConfig
from alphazero_concepts.puzzles.checks import PuzzleChecks
from alphazero_concepts.puzzles.engine import EngineUnavailable, find_stockfish
from alphazero_concepts.puzzles.export import export
from alphazero_concepts.puzzles.human import load_maia_ladder
from alphazero_concepts.stages.base import Context, PipelineError, StageDef, run_settings

if TYPE_CHECKING:
    from alphazero_concepts.stages.config import PipelineConfig


def _human_model(ctx: Context) -> tuple[object | None, str | None]:
    """The model of human play the puzzles are rated with (`puzzles.human_model`), and its id."""
    pc = ctx.config.puzzles
    earlier = ctx.earlier_checkpoints()
    series = ctx.series()
    ladder = load_maia_ladder(ctx.net.device) if pc.human and pc.human_model in ("", "maia") else {}
    if pc.human_model == "maia" and not ladder:
        raise PipelineError("puzzles.human_model = \"maia\": no Maia weights found (set AZC_MAIA_DIR)")
    if ladder:
        return ladder, "maia ladder: " + ", ".join(ladder)
    if pc.human and pc.human_model:
        from alphazero_concepts.nn.loading import load_network

        human, human_meta = load_network(pc.human_model if series is None or pc.human_model not in series.names
                                         else f"{series.directory}:{pc.human_model}", ctx.net.device)
        return human, human_meta.name
    if pc.human and earlier and series is not None:
        from alphazero_concepts.nn.loading import human_model_spec, load_network

        spec = human_model_spec(series, ctx.meta.name)
        if spec is not None:
            human, human_meta = load_network(spec, ctx.net.device)
            return human, human_meta.name
    return None, None


def _run(ctx: Context) -> dict:
    pc = ctx.config.puzzles
    out = PuzzleDir(ctx.rundir.puzzles)
    out.root.mkdir(parents=True, exist_ok=True)
    if not read_jsonl(ctx.rundir.prototypes):
        summary = {"puzzles": 0, "concepts_in": 0, "note": "no kept concept: no puzzles to build"}
        write_json(out.summary, summary)
        ctx.progress("puzzles", 1, 1)
        return summary
    engine = pc.engine == "on"
    if pc.engine == "auto":
        try:
            find_stockfish(None)
            engine = True
        except EngineUnavailable:
            ctx.log("puzzles: Stockfish not found, engine cross-check skipped (engine_disagrees = null)")
    checks = PuzzleChecks(engine=engine, engine_depth=pc.engine_depth, max_cp_loss=pc.max_cp_loss,
                          engine_scope=pc.engine_scope,
                          min_visit_share=pc.min_visit_share, min_q_gap=pc.min_q_gap,
                          min_puzzles_per_concept=pc.min_puzzles_per_concept)
    human, human_id = _human_model(ctx)
    result = build_run(ctx.run, ctx.net, teacher_id=ctx.model_id, checks=checks,
                       solve_config=SolveConfig(simulations=pc.simulations, chunk_size=32), human=human,
                       human_id=human_id, name=f"{ctx.config.report.title} puzzles",
                       model={"teacher_name": ctx.meta.name, "seed": ctx.config.run.seed},
                       progress=lambda stage, d, t: ctx.progress("puzzles", d, t))
    written = {}
    if result.book is not None:
        written = {k: str(v) for k, v in export(result.book, out.export, pc.formats).items()}
    summary = {**{k: v for k, v in result.report.to_dict().items() if k not in ("rejected", "left_out")},
               "engine": engine, "files": written}
    write_json(out.summary, summary)
    return summary


def _section(config: PipelineConfig) -> dict:
    return {"run": run_settings(config), "puzzles": config.puzzles.to_dict()}


STAGE = StageDef("puzzles", inputs=("novelty",), outputs=(PUZZLES_DIR,), section_of=_section, work=_run)
