"""`azc uci` and `azc annotate`: `register(app)` adds them to the `azc` Typer app.

Heavy imports (torch, matplotlib) happen inside the commands so that `azc --help` stays fast. `azc uci` writes
nothing but the protocol to stdout (errors go to stderr or to ``info string`` lines).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from alphazero_concepts.commandline import fail as _fail
from alphazero_concepts.commandline import input_file, output_dir, output_file, run_dir

ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Checkpoint file, series directory (strongest checkpoint), SERIES:NAME, bundled name, or "
                          "an lc0/Maia weights file (.pb.gz). Default: the bundled teacher.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")]


def uci(
    model: ModelOpt = None,
    device: DeviceOpt = "cpu",
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads (the Threads option; default 1)")] = None,
) -> None:
    """Speak UCI on stdin/stdout: play or analyse in any chess GUI, cutechess-cli or a Lichess bot bridge.

    A model that cannot be loaded is reported on the protocol (``info string error: …`` at `isready`/`go`) and
    the engine keeps serving, so a GUI shows the reason; a bad command-line value exits with status 2."""
    from alphazero_concepts.play.uci import OPTIONS, serve

    if threads is not None:
        try:
            next(o for o in OPTIONS if o.name == "Threads").parse(str(threads))
        except ValueError as exc:
            raise _fail(f"--threads {threads}: {exc}") from exc

    serve(sys.stdin.buffer, sys.stdout, model, device, threads)


def annotate(
    pgn: Annotated[Path, typer.Argument(help="PGN file (one or more games)")],
    out: Annotated[Path, typer.Option("--out", help="Annotated PGN to write")],
    concepts_run: Annotated[Path | None, typer.Option(
        "--concepts", help="Mining output (concepts.jsonl + vectors.npz from `azc mine`), or a run directory "
                           "holding concepts/")] = None,
    concept: Annotated[list[str] | None, typer.Option(
        "--concept", help="Concept id to report (repeat); default: the --top that vary most in each game")] = None,
    top: Annotated[int, typer.Option(help="Concepts per game when no --concept is given")] = 3,
    sims: Annotated[int, typer.Option("--sims", help="MCTS simulations per position (0: raw network)")] = 0,
    marks: Annotated[int, typer.Option(help="Largest rises marked per concept in the figure")] = 3,
    figures: Annotated[Path | None, typer.Option(help="Figure directory (default: OUT's name + _figures)")] = None,
    max_games: Annotated[int | None, typer.Option(help="Annotate at most this many games")] = None,
    model: ModelOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Annotate games: [%eval] and the network's best move per move, concept scores v·z, a figure per game."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from alphazero_concepts.chess.positions import InputError
    from alphazero_concepts.concepts.conceptset import ConceptSet
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import load_network
    from alphazero_concepts.nn.network import resolve_device
    from alphazero_concepts.play.annotate import AnnotateConfig, annotate_pgn
    from alphazero_concepts.play.concept_scores import check_concepts

    console = Console(stderr=True)
    if concept and concepts_run is None:
        raise _fail("--concept needs --concepts RUN (the mining output that holds it)")
    input_file(pgn, "PGN file")
    output_file(out)
    if figures is not None:
        output_dir(figures, "--figures")
    if concepts_run is not None:
        run_dir(concepts_run, "--concepts")
    try:
        config = AnnotateConfig(concept_ids=tuple(concept or ()), top=top, simulations=sims, marks=marks)
        net, meta = load_network(model, resolve_device(device))
        mined = list(ConceptSet.load(concepts_run, solved_only=True, ids=config.concept_ids or None)
                     ) if concepts_run else []
        check_concepts(net, mined, meta.extra.get("sha256"))
    except (InputError, CheckpointError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    with Progress(SpinnerColumn(), TextColumn("[bold]annotate[/bold] {task.completed} games"), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("annotate", total=None)
        try:
            result = annotate_pgn(net, pgn, out, mined, config, figures, meta.name, max_games,
                                  progress=lambda n: progress.update(task, completed=n))
        except InputError as exc:
            raise _fail(str(exc)) from exc
    for error in result.report.errors[:5]:
        console.print(f"[yellow]skipped:[/yellow] {error}")
    if result.report.skipped:
        console.print(f"[yellow]{result.report.summary()}[/yellow]")
    figures_dir = result.figures[0].parent if result.figures else figures
    console.print(f"{result.games} games → {result.out}; figures in {figures_dir}")


def register(app: typer.Typer) -> None:
    """Add `uci` and `annotate` to `app`."""
    app.command("uci")(uci)
    app.command("annotate")(annotate)
