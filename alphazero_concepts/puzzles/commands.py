"""`azc puzzles …`: build checked puzzle sets from a run's prototypes, and export them (PGN, EPD, CSV, JSON, HTML).

Wire into `azc` with ``register(app)``, which adds the ``puzzles`` sub-app. The work is done by the library
(`build.build_run`, `export.export`); these commands parse options, show progress and print a summary.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from alphazero_concepts.commandline import fail, load_model
from alphazero_concepts.core.rundir import PUZZLES, PUZZLES_DIR
from alphazero_concepts.puzzles.audit import audit_command

__all__ = ["puzzles_app", "register"]

puzzles_app = typer.Typer(help="Puzzle sets from kept concepts: build (teacher search + checks), export "
                               "(PGN, EPD, Lichess CSV, JSON, HTML booklet) and audit (Stockfish re-check of "
                               "any puzzle file).", no_args_is_help=True,
                          add_completion=False)
console = Console(soft_wrap=True)  # long paths and messages stay on one line (greppable logs)


def register(app: typer.Typer) -> None:
    """Add the ``puzzles`` sub-app (``build``, ``export``, ``audit``) to `app`."""
    app.add_typer(puzzles_app, name="puzzles")


def default_human_spec(model: str | None) -> str | None:
    """The human model by default when no Maia weights are found (`nn.loading.human_model_spec`).

    The series is the one `model` names (a series directory, ``DIR:NAME`` or a bundled name), else the bundled
    default series. None when no series can be found.
    """
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import human_model_spec, resolve_series

    spec: str | None = model
    if model is not None:
        path = Path(model)
        if ":" in model and not path.exists():
            spec = model.rsplit(":", 1)[0]
        elif path.is_file():
            spec = None
    try:
        series = resolve_series(spec)
    except CheckpointError:
        try:
            series = resolve_series(None)
        except CheckpointError:
            return None
    if not series.names:
        return None
    teacher = model.rsplit(":", 1)[1] if model and ":" in model and not Path(model).exists() else None
    return human_model_spec(series, teacher)


def _checks(config_file: Path | None, overrides: dict[str, Any]):
    from alphazero_concepts.puzzles.checks import PuzzleChecks

    base = PuzzleChecks()
    if config_file is not None:
        try:
            data = json.loads(config_file.read_text(encoding="utf-8"))
            base = PuzzleChecks.from_dict(data.get("checks", data))
        except (OSError, json.JSONDecodeError, TypeError, ValueError) as exc:
            raise fail(f"{config_file}: not a puzzle-checks config: {exc}") from exc
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return replace(base, **given)
    except ValueError as exc:
        raise fail(str(exc)) from exc


@puzzles_app.command()
def build(
    run: Annotated[Path, typer.Option("--run", help="Run directory (reads RUN/prototypes.jsonl, writes "
                                                    "RUN/puzzles/)")],
    prototypes: Annotated[Path | None, typer.Option(help="Prototypes JSONL (default RUN/prototypes.jsonl)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default RUN/puzzles)")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Teacher: checkpoint, series dir, "
                                                                    "SERIES:NAME or bundled name (default: the "
                                                                    "bundled teacher)")] = None,
    human: Annotated[str | None, typer.Option(help="Model of human play for human_policy_prob: 'maia' (the Maia "
                                                   "ladder 1100…1900, the default when its weights are found), "
                                                   "or one model (checkpoint, series, .pb.gz); without Maia the "
                                                   "default is the teacher series' human-games checkpoint")] = None,
    no_human: Annotated[bool, typer.Option("--no-human", help="Do not compute human_policy_prob")] = False,
    sims: Annotated[int, typer.Option("--sims", help="Teacher MCTS simulations per position")] = 800,
    stockfish_depth: Annotated[int | None, typer.Option("--stockfish-depth", help="Stockfish depth [18]")] = None,
    stockfish: Annotated[str | None, typer.Option(help="Stockfish binary (default: PATH, /usr/games)")] = None,
    no_engine: Annotated[bool, typer.Option("--no-engine", help="Skip the Stockfish cross-check "
                                                                "(engine_disagrees = null)")] = False,
    max_cp_loss: Annotated[int | None, typer.Option(help="Reject answers losing more than this against "
                                                         "Stockfish's best [150]")] = None,
    on_disagree: Annotated[str | None, typer.Option(help="When Stockfish prefers another move: flag | reject "
                                                         "[flag]")] = None,
    engine_scope: Annotated[str | None, typer.Option(help="Ask Stockfish about: passing (candidates the "
                                                          "network's checks pass) | all [passing]")] = None,
    only_move: Annotated[bool | None, typer.Option("--only-move/--no-only-move", help="Lichess only-move rule "
                                                                                      "on Stockfish's lines")] = None,
    min_visit_share: Annotated[float | None, typer.Option(help="Answer's visit share ≥ this [0.5]")] = None,
    min_q_gap: Annotated[float | None, typer.Option(help="Answer's Q gap over the second move ≥ this [0.05]")] = None,
    min_line_plies: Annotated[int | None, typer.Option(help="Machine line length ≥ this [3]")] = None,
    min_per_concept: Annotated[int | None, typer.Option(help="Concepts with fewer puzzles are left out [4]")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="PuzzleChecks JSON (a config.json of an "
                                                                 "earlier build works); flags override it")] = None,
    alternatives: Annotated[int, typer.Option(help="Alternatives kept per puzzle (PGN variations)")] = 3,
    chunk: Annotated[int, typer.Option(help="Positions searched together (resume granularity)")] = 128,
    name: Annotated[str | None, typer.Option(help="Puzzle-set name (default: '<run> puzzles')")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard cached searches and verdicts")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")] = "cpu",
) -> None:
    """Solve every kept concept's prototype positions with the teacher, check them, keep sound puzzles.

    Writes RUN/puzzles/puzzles.json (a study puzzle set with everything) and RUN/puzzles/report.json (every
    rejected candidate with its reasons, every concept left out and why). Resumable: rerun the same command.
    """
    from alphazero_concepts.nn.checkpoints import code_version
    from alphazero_concepts.puzzles.build import BuildError, build_run
    from alphazero_concepts.puzzles.candidates import SolveConfig
    from alphazero_concepts.puzzles.engine import EngineUnavailable, find_stockfish

    checks = _checks(config, {"engine": False if no_engine else None, "engine_depth": stockfish_depth,
                              "max_cp_loss": max_cp_loss, "on_disagree": on_disagree, "only_move_rule": only_move,
                              "engine_scope": engine_scope,
                              "min_visit_share": min_visit_share, "min_q_gap": min_q_gap,
                              "min_line_plies": min_line_plies, "min_puzzles_per_concept": min_per_concept})
    if checks.engine:
        try:
            find_stockfish(stockfish)
        except EngineUnavailable as exc:
            raise fail(str(exc)) from exc
    try:
        solve_config = SolveConfig(simulations=sims, alternatives=alternatives, chunk_size=chunk)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    teacher, meta = load_model(model, device)
    human_net: Any = None
    human_meta = None
    human_name = None
    if not no_human:
        from alphazero_concepts.puzzles.human import load_maia_ladder

        ladder = load_maia_ladder(device) if human in (None, "maia") else {}
        if human == "maia" and not ladder:
            raise fail("--human maia: no Maia weights found (set AZC_MAIA_DIR to the folder of maia-*.pb.gz)")
        human_spec = None if ladder else human or default_human_spec(model)
        if ladder:
            human_net, human_name = ladder, "maia ladder: " + ", ".join(ladder)
        elif human_spec is None:
            console.print("[yellow]no human model found: human_policy_prob not recorded (pass --human)[/yellow]")
        else:
            human_net, human_meta = load_model(human_spec, device)
            human_name = human_meta.name
    provenance = {"teacher_name": meta.name, "teacher_sha256": meta.extra.get("sha256"),
                  "human_name": human_name,
                  "human_sha256": human_meta.extra.get("sha256") if human_meta else None,
                  "code_version": code_version(), "seed": 0}
    with Progress(TextColumn("[bold]{task.description}[/bold]"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        try:
            result = build_run(run, teacher, teacher_id=meta.extra.get("sha256") or meta.name, checks=checks,
                               solve_config=solve_config, human=human_net,
                               human_id=human_name, stockfish=stockfish,
                               prototypes=prototypes, out=out, name=name, model=provenance, fresh=fresh,
                               progress=progress)
        except (BuildError, EngineUnavailable) as exc:
            raise fail(str(exc)) from exc
    report = result.report
    if result.read.skipped:
        console.print(f"[yellow]{result.read.summary()}[/yellow]")
        for err in result.read.errors[:5]:
            console.print(f"  [dim]{err}[/dim]")
    if result.resumed_candidates or result.resumed_verdicts:
        console.print(f"[dim]resumed: {result.resumed_candidates} searches, {result.resumed_verdicts} "
                      "Stockfish verdicts from earlier runs[/dim]")
    table = Table(title=f"puzzles from {result.paths.prototypes}")
    table.add_column("stage")
    table.add_column("count", justify="right")
    for label, value in (("concepts in", report.concepts_in), ("positions in", report.positions_in),
                         ("candidates searched", report.candidates), ("passed the checks", report.passed_checks),
                         ("puzzles kept", report.puzzles), ("concepts kept", report.concepts_kept),
                         ("kept with engine_disagrees", report.engine_disagrees)):
        table.add_row(label, str(value))
    for reason, n in report.reason_counts().items():
        table.add_row(f"  rejected: {reason}", str(n))
    console.print(table)
    for row in report.left_out:
        console.print(f"left out {row['concept']} ({row['label']}): {row['reason']}")
    console.print(f"report → {result.paths.report}")
    if result.book is None:
        console.print("[red]no puzzle passed the checks; see the report[/red]")
        raise typer.Exit(code=1)
    console.print(f"{len(result.book.puzzles)} puzzles on {report.concepts_kept} concepts → {result.paths.puzzles}")


@puzzles_app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option("--out", help="Directory for the exported files")],
    run: Annotated[Path | None, typer.Option("--run", help="Run directory (reads RUN/puzzles/puzzles.json)")] = None,
    puzzles: Annotated[Path | None, typer.Option("--puzzles", help="A puzzles.json (or any study puzzle "
                                                                   "set)")] = None,
    formats: Annotated[str, typer.Option("--formats", help="Comma-separated: pgn,epd,csv,json,html")]
    = "pgn,epd,csv,json,html",
    unknown_last_move: Annotated[str, typer.Option(help="CSV rows whose last move is unknown: 'solver' (FEN = the "
                                                        "solver's position, theme solverToMove) or 'skip'")]
    = "solver",
    csv_plies: Annotated[int, typer.Option(help="CSV Moves after the setup move: 1 = the answer only (the checked "
                                                "move); more adds the machine line")] = 1,
) -> None:
    """Export a puzzle book: PGN, EPD, Lichess-style CSV, JSON, printable HTML booklet."""
    from alphazero_concepts.core.puzzleset import PuzzleSetError
    from alphazero_concepts.puzzles.book import load_book
    from alphazero_concepts.puzzles.export import UNKNOWN_LAST_MOVE, export, parse_formats

    if (run is None) == (puzzles is None):
        raise fail("give exactly one of --run RUN or --puzzles FILE")
    source = puzzles if puzzles is not None else run / PUZZLES_DIR / PUZZLES  # type: ignore[operator]
    if unknown_last_move not in UNKNOWN_LAST_MOVE:
        raise fail(f"--unknown-last-move must be one of {', '.join(UNKNOWN_LAST_MOVE)}")
    try:
        chosen = parse_formats(formats)
        book = load_book(source)
    except (ValueError, PuzzleSetError) as exc:
        raise fail(str(exc)) from exc
    if csv_plies < 1:
        raise fail("--csv-plies must be ≥ 1")
    written = export(book, out, chosen, unknown_last_move=unknown_last_move, csv_plies=csv_plies)
    for fmt, path in written.items():
        console.print(f"{fmt:5s} → {path}")
    console.print(f"{len(book.puzzles)} puzzles on {len(book.concepts())} concepts")


puzzles_app.command("audit")(audit_command)  # the command lives with its library: puzzles/audit.py
