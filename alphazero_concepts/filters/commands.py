"""CLI: `azc novelty basis` and `azc filter teachability | novelty | funnel` (thin layer over `filters.stages`).

Wire into `azc` with `register(app)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from alphazero_concepts.commandline import fail as _fail
from alphazero_concepts.commandline import input_file, output_dir, run_dir
from alphazero_concepts.core.rundir import NOVELTY_SPECTRUM, RunDir

console = Console()

novelty_app = typer.Typer(help="Human vs machine latent spaces: the bases of the novelty filter.",
                          no_args_is_help=True)
filter_app = typer.Typer(help="Filter mined concepts: teachability, novelty (M − H), and the funnel.",
                         no_args_is_help=True)

RunOpt = Annotated[Path, typer.Option("--run", help="Run directory (concepts.jsonl + vectors.npz from `azc mine`)")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Teacher: checkpoint file, series directory, SERIES:NAME or bundled name "
                          "(default: the bundled series' strongest checkpoint)")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")]
OrderOpt = Annotated[str, typer.Option(
    "--order", help="teachability-first (the paper's: novelty scores only teachable concepts), novelty-first, "
                    "or independent (each filter scores every solved concept)")]


def register(app: typer.Typer) -> None:
    """Add `novelty` (with `basis`) and `filter` (with `teachability`, `novelty`, `funnel`) to `app`."""
    app.add_typer(novelty_app, name="novelty")
    app.add_typer(filter_app, name="filter")


def _usable_run(run: Path) -> Path:
    """`run` is a run directory with at least one readable concept record, else exit 2 (a filter over zero
    concepts would write empty results and look like success)."""
    from alphazero_concepts.chess.positions import InputError, ReadReport
    from alphazero_concepts.concepts.conceptset import ConceptSet

    run_dir(run)
    report = ReadReport(str(run))
    try:
        concepts = ConceptSet.load(run, report=report)
    except InputError as exc:
        raise _fail(str(exc)) from exc
    if not concepts:
        first = f"; first problem: {report.errors[0]}" if report.errors else ""
        raise _fail(f"{run}: no usable concept records ({report.skipped} skipped){first}")
    if report.skipped:
        console.print(f"[yellow]{report.summary()}[/yellow]", soft_wrap=True, markup=False)
    return run


def _progress(label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console)


def _log(message: str) -> None:
    console.print(f"[dim]{message}[/dim]")


def _teacher(model: str | None, device: str):
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import load_network
    from alphazero_concepts.nn.network import resolve_device

    try:
        return load_network(model, resolve_device(device))
    except (CheckpointError, ValueError) as exc:
        raise _fail(str(exc)) from exc


@novelty_app.command("basis")
def basis_cmd(
    run: Annotated[Path | None, typer.Option("--run", help="Run directory: layers of its concepts, its pool as "
                                                           "machine positions, bases in RUN/novelty_basis")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Basis directory (default RUN/novelty_basis)")] = None,
    layers: Annotated[list[str] | None, typer.Option("--layers", help="Layers (repeat); default: the run's "
                                                                      "concept layers, else the last block")] = None,
    model: ModelOpt = None,
    human: Annotated[Path | None, typer.Option("--human", help="Human games (PGN) or positions; default: the "
                                                               "bundled 250 master games")] = None,
    machine: Annotated[Path | None, typer.Option("--machine", help="Machine positions (.npz sample, PGN, EPD); "
                                                                   "default: RUN/pool.npz, else new self-play")] = None,
    positions: Annotated[int, typer.Option(help="N positions per side (equal sizes)")] = 4000,
    min_ply: Annotated[int, typer.Option(help="Book plies skipped in human games and self-play")] = 10,
    max_games: Annotated[int | None, typer.Option(help="Human games read at most")] = None,
    max_components: Annotated[int, typer.Option(help="Basis vectors kept per side")] = 2048,
    method: Annotated[str, typer.Option(help="SVD: auto, gram, svd or randomized")] = "auto",
    rank_rtol: Annotated[float | None, typer.Option(help="Rank tolerance σ > rtol·σ_max (default: "
                                                         "σ_max·max(n,d)·eps_float32)")] = None,
    selfplay_mode: Annotated[str, typer.Option(help="Generated self-play: policy or mcts")] = "policy",
    seed: Annotated[int, typer.Option()] = 0,
    device: DeviceOpt = "cpu",
) -> None:
    """Build and save the human and machine bases per layer (ranks, spectrum figure); reused by `filter novelty`."""
    from alphazero_concepts.chess.positions import InputError, ReadReport
    from alphazero_concepts.concepts.conceptset import ConceptSet
    from alphazero_concepts.concepts.samples import (
        SelfPlaySampleConfig,
        bundled_human_games,
        load_sample,
        selfplay_sample,
    )
    from alphazero_concepts.core.rundir import FIGURES, NOVELTY_BASIS, POOL
    from alphazero_concepts.filters.novelty import NoveltyConfig
    from alphazero_concepts.filters.stages import StageError, novelty_basis_stage
    from alphazero_concepts.filters.validation import last_block

    if out is None and run is None:
        raise _fail("give --run RUN or --out DIR")
    if run is not None:
        run_dir(run)
    for path, option in ((human, "--human"), (machine, "--machine")):
        if path is not None:
            input_file(path, f"{option} file")
    out = out or run / NOVELTY_BASIS  # type: ignore[operator]
    output_dir(out)
    if not layers and run is not None:  # the run's concept layers; a run without readable concepts is an error
        report = ReadReport(str(run))
        try:
            layers = sorted({c.layer for c in ConceptSet.load(run, report=report)})
        except InputError as exc:
            raise _fail(f"{exc}; or give --layers") from exc
        if not layers:
            first = f" (first problem: {report.errors[0]})" if report.errors else ""
            raise _fail(f"{run}: no usable concept records ({report.skipped} skipped){first}; or give --layers")
    net, meta = _teacher(model, device)
    layers = layers or [last_block(net)]
    unknown = [x for x in layers if x not in net.layer_names]
    if unknown:
        raise _fail(f"unknown layers {unknown}; the network has: {', '.join(net.layer_names)}")
    try:
        config = NoveltyConfig(positions=positions, human_min_ply=min_ply, max_games=max_games,
                               max_components=max_components, method=method, rank_rtol=rank_rtol, seed=seed)
        h = load_sample(human or bundled_human_games(), positions, min_ply=min_ply, seed=seed, max_games=max_games)
        if machine is None and run is not None and (run / POOL).is_file():
            machine = run / POOL
        if machine is not None:
            m = load_sample(machine, positions, min_ply=min_ply, seed=seed)
        else:
            with _progress("self-play") as progress:
                task = progress.add_task("self-play", total=positions)
                sp_config = SelfPlaySampleConfig(positions=positions, skip_plies=min_ply, mode=selfplay_mode, seed=seed)
                m = selfplay_sample(net, sp_config,
                                    progress=lambda done, total: progress.update(task, completed=done, total=total))
            m.save(out / "machine_sample.npz")
        figure = (run / FIGURES if run else out) / NOVELTY_SPECTRUM
        bases = novelty_basis_stage(net, h, m, layers, out, config, model_id=meta.extra.get("sha256", meta.name),
                                    figure=figure, log=_log)
    except (InputError, StageError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    table = Table(title=f"novelty bases ({meta.name}, n = {min(len(h), len(m)):,} per side)")
    for col in ("layer", "d", "rank human", "rank machine", "kept (h / m)"):
        table.add_column(col, justify="right")
    for b in bases.values():
        table.add_row(b.layer, f"{b.dim:,}", f"{b.rank_human:,}", f"{b.rank_machine:,}",
                      f"{b.human.shape[1]:,} / {b.machine.shape[1]:,}")
    table.add_row("paper: layer 19", "16,384", "7,857", "8,269", "n = 17,184")
    console.print(table)
    console.print(f"bases → {out}; figure → {figure}")


@filter_app.command("teachability")
def teachability_cmd(
    run: RunOpt,
    model: ModelOpt = None,
    series: Annotated[str | None, typer.Option("--series", help="Series of the students (directory or bundled "
                                                                "name; default: the teacher's series)")] = None,
    pool: Annotated[Path | None, typer.Option("--pool", help="Pool positions (.npz sample, PGN, EPD); default: "
                                                             "RUN/pool.npz, else new self-play")] = None,
    pool_size: Annotated[int, typer.Option(help="Pool positions (paper: 30,000)")] = 30_000,
    top_fraction: Annotated[float, typer.Option(help="Prototypes: top share of the pool by v·z")] = 0.025,
    prototype_rule: Annotated[str, typer.Option(help="top (v·z for every concept) or rollouts (exact rule for "
                                                     "dynamic concepts; costly)")] = "top",
    score: Annotated[str, typer.Option(help="Rank the pool by dot (v·z, the paper's) or cosine (v·z / ‖z‖)")] = "dot",
    epochs: Annotated[int, typer.Option()] = 5,
    lr: Annotated[float, typer.Option()] = 1e-4,
    batch_size: Annotated[int, typer.Option()] = 32,
    max_agreement: Annotated[float, typer.Option(help="Student: latest checkpoint under this agreement")] = 0.2,
    threshold: Annotated[float, typer.Option(help="Kept when the lift's CI lower bound exceeds this")] = 0.05,
    controls: Annotated[int, typer.Option(help="Random-vector controls per layer (the 'specific' rule's ceiling)")
                        ] = 8,
    seeds: Annotated[int, typer.Option("--seeds", help="Student training seeds (in the lift's interval)")] = 3,
    order: OrderOpt = "teachability-first",
    limit: Annotated[int | None, typer.Option(help="At most this many concepts")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    device: DeviceOpt = "cpu",
) -> None:
    """Teach each concept's prototypes to a weaker checkpoint; lift vs random positions with a bootstrap CI."""
    from alphazero_concepts.chess.positions import InputError
    from alphazero_concepts.filters.stages import StageError, series_students, teachability_stage
    from alphazero_concepts.filters.teachability import TeachConfig
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import resolve_series

    _usable_run(run)
    if pool is not None:
        input_file(pool, "--pool file")
    teacher, meta = _teacher(model, device)
    spec = series
    if spec is None and model is not None:  # the teacher's own series: DIR, DIR:NAME or a bundled name
        if ":" in model and not Path(model).exists():
            spec = model.rsplit(":", 1)[0]
        elif Path(model).is_file():
            raise _fail(f"--model {model} is a checkpoint file: give --series with the earlier checkpoints")
        else:
            spec = model
    try:
        students = series_students(resolve_series(spec), meta, device)
        config = TeachConfig(pool_size=pool_size, top_fraction=top_fraction, prototype_rule=prototype_rule,
                             score=score, epochs=epochs, lr=lr, batch_size=batch_size,
                             max_student_agreement=max_agreement, threshold=threshold, random_controls=controls,
                             student_seeds=seeds, seed=seed)
        with _progress("teachability") as progress:
            task = progress.add_task("teachability", total=None)
            summary = teachability_stage(run, teacher, students, config, teacher_meta=meta, pool_file=pool,
                                         order=order, limit=limit, log=_log,
                                         progress=lambda d, t: progress.update(task, completed=d, total=t))
    except (InputError, StageError, CheckpointError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    _summary_table("teachability", summary)
    console.print(f"→ {RunDir(run).teachability}")


@filter_app.command("novelty")
def novelty_cmd(
    run: RunOpt,
    basis: Annotated[Path | None, typer.Option("--basis", help="Basis directory (default RUN/novelty_basis, "
                                                               "from `azc novelty basis`)")] = None,
    order: OrderOpt = "teachability-first",
) -> None:
    """Novelty score s_k of each concept over the k grid; novel when s_k > 0 for every k."""
    from alphazero_concepts.chess.positions import InputError
    from alphazero_concepts.filters.stages import StageError, novelty_stage

    _usable_run(run)
    if basis is not None and not basis.is_dir():
        raise _fail(f"--basis {basis}: no such directory (make one with `azc novelty basis`)")
    try:
        summary = novelty_stage(run, basis_dir=basis, order=order, log=_log)
    except (InputError, StageError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    _summary_table("novelty", summary)
    console.print(f"→ {RunDir(run).novelty}")


@filter_app.command("funnel")
def funnel_cmd(
    run: RunOpt,
    order: OrderOpt = "teachability-first",
    figure: Annotated[bool, typer.Option("--figure/--no-figure",
                                         help="Write RUN/figures/funnel.png, controls.png")] = True,
) -> None:
    """Roots → mined → solved → teachable → novel → kept, per layer, beside the paper's rates."""
    from alphazero_concepts.chess.positions import InputError
    from alphazero_concepts.filters.stages import StageError, funnel_stage

    _usable_run(run)
    try:
        result = funnel_stage(run, order=order, figure=figure)
    except (InputError, StageError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    table = Table(title=f"concept funnel ({result['order']})")
    table.add_column("layer")
    for stage in result["stages"]:
        table.add_column(stage, justify="right")
    for name, row in [*result["layers"].items(), ("all", result["total"])]:
        table.add_row(name, *(f"{row[s]:,}" for s in result["stages"]))
    console.print(table)
    shares = result["total"]["shares"]
    text = ", ".join(f"{k} {v:.1%}" if v is not None else f"{k} –" for k, v in shares.items())
    console.print(f"ours: {text}; paper: ≈97.6% fail teachability, ≈27% of the rest fail novelty")
    if result["control_ceilings"]:
        ceilings = ", ".join(f"{layer} {c:+.3f}" for layer, c in sorted(result["control_ceilings"].items()))
        console.print(f"kept concepts whose lower bound beats every control of their layer: "
                      f"{result['total']['kept_beating_controls']} of {result['total']['kept']} "
                      f"(largest control lift: {ceilings}; kept rule 'specific')")
    console.print(f"→ {RunDir(run).funnel}")


def _summary_table(title: str, summary: dict) -> None:
    table = Table(title=title)
    table.add_column("")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, str(value))
    console.print(table)
