"""`azc study …`: run a study from the command line (serve, create, add participants, export, statistics).

The heavy imports (FastAPI, uvicorn, matplotlib) happen inside the commands, so `azc --help` stays fast and the
rest of `azc` works without the ``study`` extra installed. Run standalone as ``python -m alphazero_concepts.study.cli``.

Errors: a bad input (a missing or corrupt database, a bad puzzle set, an output path that cannot be written) prints
one ``error:`` line naming the file and exits with status 2; `serve` and `create` create a missing database, the
other commands refuse one. Standalone, ``AZC_DEBUG=1`` shows tracebacks; under `azc` the app-wide handler does.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core


class _StudyGroup(typer.core.TyperGroup):
    """Standalone (`python -m alphazero_concepts.study.cli`): a database or file error is one line and exit 2,
    not a traceback (``AZC_DEBUG=1`` lets it through). Under `azc`, the root group's handler does the same."""

    def invoke(self, ctx: Any) -> Any:
        import sqlite3

        try:
            return super().invoke(ctx)
        except (sqlite3.DatabaseError, OSError, ValueError) as exc:
            if ctx.parent is not None or os.environ.get("AZC_DEBUG", "").strip().lower() in ("1", "true", "yes"):
                raise
            where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
            what = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise _fail(f"{where}{what}") from exc


study_app = typer.Typer(help="Run a teaching study: serve the web app, create studies, add participants, export, "
                             "statistics (METHOD.md §5).", no_args_is_help=True, add_completion=False,
                        cls=_StudyGroup)

DbOpt = Annotated[Path, typer.Option("--db", help="Study database (SQLite; created if missing)")]
StudyOpt = Annotated[int, typer.Option("--study", help="Study id (see `azc study list`)")]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {' '.join(str(message).split())}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def _store(db: Path, *, create: bool = False):
    """The study database at `db` (created only when `create`); exit 2 naming the file when it is unusable."""
    from alphazero_concepts.study.store import Store, StoreError

    try:
        return Store(db, create=create)
    except StoreError as exc:
        raise _fail(str(exc)) from exc


def _output_file(path: Path, option: str = "--out") -> Path:
    """Exit 2 before any work when `path` cannot be written as a file."""
    if path.is_dir():
        raise _fail(f"{option} {path}: is a directory (expected a file path)")
    if not path.parent.is_dir():
        raise _fail(f"{option} {path}: directory {path.parent} does not exist")
    return path


def _write_text(path: Path, text: str) -> None:
    """Write a whole file at once via a temporary file in the same directory (never half-written)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _limit(minutes: float | None) -> float | None:
    return None if minutes is None or minutes <= 0 else 60.0 * minutes


@study_app.command()
def serve(
    db: DbOpt = Path("study.sqlite"),
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 to serve other laptops on the LAN")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve the study app (offline: no CDN, every asset is packaged). Prints the organiser's login link."""
    try:
        import uvicorn

        from alphazero_concepts.study.app import create_app
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise _fail(f"the study app needs the 'study' extra (pip install 'alphazero-concepts[study]'): {exc}") from exc
    store = _store(db, create=True)
    app = create_app(store)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"study database: {db.resolve()}", flush=True)
    print(f"organiser: http://{shown}:{port}/admin/login?token={store.admin_token()}", flush=True)
    print("(keep this link private: it gives full access to the study)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


@study_app.command()
def token(db: DbOpt = Path("study.sqlite")) -> None:
    """Print the organiser token of a study database."""
    print(_store(db).admin_token())


@study_app.command("create")
def create(
    puzzles: Annotated[Path, typer.Option("--puzzles", help="Puzzle set JSON (alphazero-concepts/puzzles/1)")],
    db: DbOpt = Path("study.sqlite"),
    name: Annotated[str | None, typer.Option(help="Study name (default: the puzzle set's)")] = None,
    phase1_min: Annotated[float, typer.Option("--phase1-min", help="Phase 1 time limit, minutes (0 = none)")] = 120,
    phase2_min: Annotated[float, typer.Option("--phase2-min", help="Phase 2 time limit, minutes (0 = none)")] = 60,
    phase3_min: Annotated[float, typer.Option("--phase3-min", help="Phase 3 time limit, minutes (0 = none)")] = 120,
) -> None:
    """Create a study from a puzzle set; prints its id."""
    from alphazero_concepts.core.puzzleset import PuzzleSetError, load_puzzle_set

    try:
        puzzle_set = load_puzzle_set(puzzles)
    except PuzzleSetError as exc:
        raise _fail(str(exc)) from exc
    for option, minutes in (("--phase1-min", phase1_min), ("--phase2-min", phase2_min), ("--phase3-min", phase3_min)):
        if minutes != minutes or minutes < 0:
            raise _fail(f"{option} {minutes}: expected minutes ≥ 0 (0 = no limit)")
    study_id = _store(db, create=True).create_study(name or puzzle_set.name, puzzle_set,
                                       {1: _limit(phase1_min), 2: _limit(phase2_min), 3: _limit(phase3_min)})
    counts = puzzle_set.counts()
    print(f"study {study_id}: {len(puzzle_set.puzzles)} puzzles, {len(counts)} concepts")
    for concept, n in counts.items():
        print(f"  {concept}: {n['train']} train, {n['test']} test")


@study_app.command("list")
def list_studies(db: DbOpt = Path("study.sqlite")) -> None:
    """List the studies in a database."""
    for s in _store(db).studies():
        print(f"{s['id']}\t{s['name']}\t{s['puzzles']} puzzles\t{s['participants']} participants")


@study_app.command()
def add(
    names: Annotated[list[str], typer.Argument(help="Participant name(s)")],
    study: StudyOpt,
    db: DbOpt = Path("study.sqlite"),
    taught: Annotated[str | None, typer.Option(help="Taught concept ids, comma-separated (explicit split)")] = None,
    control: Annotated[str | None, typer.Option(help="Control concept ids, comma-separated")] = None,
    n_taught: Annotated[int | None, typer.Option(help="Random split: number of taught concepts")] = None,
    n_control: Annotated[int | None, typer.Option(help="Random split: number of control concepts")] = None,
    balanced: Annotated[bool, typer.Option(help="Every second participant mirrors the one before")] = True,
    seed: Annotated[int | None, typer.Option(help="Seed of the first participant (then seed+1, …)")] = None,
    base_url: Annotated[str, typer.Option(help="Server address used in the printed links")] = "http://127.0.0.1:8000",
) -> None:
    """Add participants; prints each one's personal link (send it privately)."""
    from alphazero_concepts.study.protocol import AssignmentError, choose_assignment, new_seed, plan_session, split_list

    store = _store(db)
    try:
        ps = store.study(study).puzzle_set
    except KeyError as exc:
        raise _fail(f"no study {study} in {db}") from exc
    for i, name in enumerate(names):
        s = new_seed() if seed is None else seed + i
        mode = "explicit" if taught is not None else ("balanced" if balanced else "random")
        try:
            assignment = choose_assignment(ps, mode, previous=[p.assignment for p in store.participants(study)],
                                           taught=split_list(taught) if taught is not None else None,
                                           control=split_list(control), n_taught=n_taught, n_control=n_control,
                                           seed=s)
        except AssignmentError as exc:
            raise _fail(str(exc)) from exc
        p = store.add_participant(study, name, assignment, plan_session(ps, assignment, s))
        print(f"{p.name}\t{base_url.rstrip('/')}/p/{p.token}\ttaught={','.join(assignment.taught)}\t"
              f"control={','.join(assignment.control)}\tseed={s}")


@study_app.command()
def export(
    study: StudyOpt,
    db: DbOpt = Path("study.sqlite"),
    out: Annotated[Path | None, typer.Option(help="Output file (default: stdout)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv (answers) or json (everything but tokens)")] = "csv",
) -> None:
    """Export all answers (CSV) or the whole study (JSON)."""
    import csv
    import io

    from alphazero_concepts.study.app import EXPORT_COLUMNS, _csv_safe
    from alphazero_concepts.study.session import refresh_study

    if fmt not in ("csv", "json"):
        raise _fail(f"--format must be csv or json, got {fmt!r}")
    if out is not None:
        _output_file(out)
    store = _store(db)
    try:
        store.study(study)
    except KeyError as exc:
        raise _fail(f"no study {study} in {db}") from exc
    refresh_study(store, study)
    if fmt == "json":
        text = json.dumps(store.export(study), indent=1)
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in store.answer_rows(study):
            writer.writerow({k: _csv_safe(v) for k, v in row.items()})
        text = buf.getvalue()
    else:
        raise _fail(f"--format must be csv or json, got {fmt!r}")
    if out is None:
        sys.stdout.write(text)
    else:
        _write_text(out, text)
        print(f"wrote {out}")


@study_app.command()
def stats(
    study: StudyOpt,
    db: DbOpt = Path("study.sqlite"),
    out: Annotated[Path | None, typer.Option(help="Directory for results.json and the figures (PNG)")] = None,
    seed: Annotated[int, typer.Option(help="Bootstrap seed")] = 0,
) -> None:
    """Solve rates phase 1 vs 3, transfer over the control, paired tests, with the paper's numbers beside."""
    from alphazero_concepts.study.session import refresh_study
    from alphazero_concepts.study.stats import analyse, figures

    if out is not None and out.exists() and not out.is_dir():
        raise _fail(f"--out {out}: exists and is not a directory")
    store = _store(db)
    try:
        store.study(study)
    except KeyError as exc:
        raise _fail(f"no study {study} in {db}") from exc
    refresh_study(store, study)
    results = analyse(store.trial_rows(study), seed=seed)

    def pct(x: float | None) -> str:
        return "  –  " if x is None else f"{100 * x:4.0f}%"

    def pp(x: float | None) -> str:
        return "   –   " if x is None or x != x else f"{100 * x:+5.0f} pp"

    print(f"{'participant':24} {'fin':3} {'phase 1':>8} {'p3 taught':>9} {'p3 ctrl':>8} {'gain':>8} {'transfer':>9}")
    for p in results.participants:
        print(f"{p.name[:24]:24} {'yes' if p.finished else 'no':3} {pct(p.phase1.rate):>8} "
              f"{pct(p.phase3_taught.rate):>9} {pct(p.phase3_control.rate):>8} {pp(p.gain):>8} {pp(p.transfer):>9}")
    print()
    print(f"{'concept':24} {'phase 1':>8} {'p3 taught':>9} {'p3 ctrl':>8} {'transfer':>9}")
    for c in results.concepts:
        print(f"{c.label[:24]:24} {pct(c.phase1.rate):>8} {pct(c.phase3_taught.rate):>9} "
              f"{pct(c.phase3_control.rate):>8} {pp(c.transfer):>9}")
    print()
    for title, r in (("gain (ours)", results.gain), ("transfer (ours)", results.transfer),
                     ("gain (paper, 4 GMs)", results.paper)):
        if r is None:
            print(f"{title:22} no finished participant yet")
            continue
        print(f"{title:22} n={r.n:<3} mean {pp(r.mean_diff)} 95% CI [{pp(r.ci_low)}, {pp(r.ci_high)}]  "
              f"sign p={r.sign.p_value:.3f} ({r.sign.positive}+/{r.sign.negative}-)  "
              f"Wilcoxon p={r.wilcoxon.p_value:.3f}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _write_text(out / "results.json", json.dumps(results.to_dict(), indent=1))
        for name, png in figures(results).items():
            (out / f"{name}.png").write_bytes(png)
        print(f"\nwrote {out / 'results.json'} and figures to {out}")


@study_app.command("demo-set")
def demo_set(
    out: Annotated[Path, typer.Option("--out", help="Where to write the puzzle set JSON")] = Path("demo-puzzles.json"),
    concepts: Annotated[int, typer.Option(help="Number of concepts")] = 6,
    train: Annotated[int, typer.Option(help="Train puzzles per concept")] = 3,
    test: Annotated[int, typer.Option(help="Test puzzles per concept")] = 3,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write a synthetic puzzle set (random legal positions) to rehearse a study; not for real sessions."""
    from alphazero_concepts.study.demo import demo_puzzle_set

    _output_file(out)
    for option, n in (("--concepts", concepts), ("--train", train), ("--test", test)):
        if n < 1:
            raise _fail(f"{option} {n}: expected a number ≥ 1")
    _write_text(out, json.dumps(demo_puzzle_set(concepts, train, test, seed=seed), indent=1))
    print(f"wrote {out}")


@study_app.command()
def pilot(
    puzzle_set: Annotated[Path | None, typer.Option("--set", help="Puzzle set: a JSON file, a directory with "
                                                    "puzzles.json (azc puzzles export), or an STS .epd suite")] = None,
    students: Annotated[str, typer.Option(help="Simulated participants: Maia levels or lc0 .pb.gz files, "
                                          "comma-separated")] = "maia-1100,maia-1500,maia-1900",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the pilot's summary (JSON) here")] = None,
    quick: Annotated[bool, typer.Option(help="2 repetitions, 30 teaching steps (the same STS control: 20+20 "
                                             "positions a theme)")] = False,
    nodes: Annotated[int, typer.Option(help="MCTS simulations per answer (0: the raw policy's top move)")] = 0,
    db: Annotated[Path, typer.Option("--db", help="Database for the simulated answers (created if missing; "
                                     "with --study, the study's own)")] = Path("pilot.sqlite"),
    study: Annotated[int | None, typer.Option("--study", help="Pilot the puzzle set of this study in --db "
                                              "(instead of --set)")] = None,
    repetitions: Annotated[int | None, typer.Option(help="Balanced pairs per student (default 3; --quick 2)")]
    = None,
    steps: Annotated[int | None, typer.Option(help="Phase-2 optimiser steps (default 40; --quick 30)")] = None,
    lr: Annotated[float | None, typer.Option(help="Phase-2 learning rate (Adam; default 1e-4)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of assignments, shuffles and students")] = 0,
    sts: Annotated[Path | None, typer.Option(help="STS suite for the positive control (default: "
                                             "../shared/data/suites/STS1-STS15_LAN_v5.epd when present)")] = None,
    no_sts: Annotated[bool, typer.Option("--no-sts", help="Skip the STS positive control")] = False,
    no_shuffled: Annotated[bool, typer.Option("--no-shuffled", help="Skip the shuffled-label control")] = False,
    maia_dir: Annotated[Path | None, typer.Option(help="Folder of maia-*.pb.gz (default: $AZC_MAIA_DIR, "
                                                  "../shared/data/models/maia)")] = None,
    figures_dir: Annotated[Path | None, typer.Option("--figures", help="Directory for the pilot's figures "
                                                     "(PNG)")] = None,
) -> None:
    """Pilot a study on simulated participants (Maia levels) before inviting players: phases 1-3 as for people,
    phase 2 = training a copy on the machine lines; transfer with intervals, an STS positive control, a
    shuffled-label negative control, and the participants a real study needs for 80% power."""
    import time
    from dataclasses import replace

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from alphazero_concepts.study.pilot import (
        PilotConfig,
        PilotError,
        PilotSet,
        load_pilot_set,
        locate_sts,
        pilot_figures,
        quick_config,
        run_pilot,
        sts_pilot_set,
    )
    from alphazero_concepts.study.protocol import eligible_concepts, split_list
    from alphazero_concepts.study.simulated import StudentError, TeachBudget, resolve_students

    if (puzzle_set is None) == (study is None):
        raise _fail("give the puzzle set: --set PUZZLESET, or --study N (with --db) for a study's own set")
    if nodes < 0:
        raise _fail(f"--nodes {nodes}: expected a number ≥ 0")
    for option, value in (("--repetitions", repetitions), ("--steps", steps)):
        if value is not None and value < 1:
            raise _fail(f"{option} {value}: expected a number ≥ 1")
    if lr is not None and not lr > 0:
        raise _fail(f"--lr {lr}: expected a learning rate > 0")
    if json_out is not None:
        _output_file(json_out, "--json")
    if figures_dir is not None and figures_dir.exists() and not figures_dir.is_dir():
        raise _fail(f"--figures {figures_dir}: exists and is not a directory")
    config = PilotConfig(students=tuple(split_list(students)), nodes=nodes, seed=seed)
    if quick:
        config = quick_config(config)
    budget = config.budget
    config = replace(config, repetitions=repetitions or config.repetitions, shuffled_control=not no_shuffled,
                     budget=TeachBudget(**{**budget.to_dict(), "steps": steps or budget.steps,
                                           "lr": lr or budget.lr}))
    try:
        parent = None
        if study is not None:
            store = _store(db)
            try:
                pset = PilotSet(puzzle_set=store.study(study).puzzle_set)
            except KeyError as exc:
                raise _fail(f"no study {study} in {db}") from exc
            if len(eligible_concepts(pset.puzzle_set)) < 2:
                raise _fail(f"study {study} in {db}: the pilot needs at least 2 concepts with train and test puzzles")
            parent = study
        else:
            assert puzzle_set is not None
            pset = load_pilot_set(puzzle_set, sts_train=config.sts_train, sts_test=config.sts_test, seed=seed)
            if db.exists() and not db.is_file():
                raise _fail(f"--db {db}: is a directory, not a database file")
        resolve_students(config.students, maia_dir)
        control: PilotSet | None = None
        if not no_sts and pset.kind != "sts":
            sts_path = locate_sts(sts)
            if sts is not None and sts_path is None:
                raise _fail(f"--sts {sts}: no such STS suite")
            if sts_path is not None:
                control = sts_pilot_set(sts_path, n_train=config.sts_train, n_test=config.sts_test, seed=seed)
        if study is None:
            store = _store(db, create=True)
    except (PilotError, StudentError) as exc:
        raise _fail(str(exc)) from exc
    console = Console(stderr=True)
    start = time.perf_counter()
    with Progress(TextColumn("[bold]pilot {task.description:<9}[/bold]"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} simulated participants"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        try:
            result = run_pilot(store, pset, config, sts=control, parent_study_id=parent, maia_dir=maia_dir,
                               progress=progress)
        except (PilotError, StudentError) as exc:
            raise _fail(str(exc)) from exc
    result["wall_s"] = round(time.perf_counter() - start, 1)

    def pct(x: float | None) -> str:
        return "  –  " if x is None else f"{100 * x:4.0f}%"

    def ci(r: dict | None) -> str:
        if not r or r.get("estimate") is None:
            return "–"
        lo, hi = r["ci"]
        return f"{100 * r['estimate']:+.1f} pp [{100 * lo:+.1f}, {100 * hi:+.1f}]  (n={r['n']})"

    print(f"pilot of {pset.puzzle_set.name!r}: {result['wall_s']:.0f} s, database {db}")
    print(f"{'student':12} {'phase 1':>8} {'p2 fit':>7} {'p3 taught':>9} {'p3 ctrl':>8}  transfer [95% CI]")
    for name, s in result["students"].items():
        print(f"{name:12} {pct(s['phase1']):>8} {pct(s['phase2_fit']):>7} {pct(s['phase3_taught']):>9} "
              f"{pct(s['phase3_control']):>8}  {ci(result['transfer'][name])}")
    print(f"{'pooled':12} {'':>8} {'':>7} {'':>9} {'':>8}  {ci(result['transfer_pooled'])}")
    print(f"shuffled-label control (must contain 0): {ci(result['shuffled_control'])}")
    print(f"STS positive control:                    {ci(result['positive_control'])}")
    power = result["power"]
    n = result["participants_needed_80pct_power"]
    print(f"participants for 80% power (α = 0.05, {power['puzzles_per_condition']} puzzles a condition): "
          f"{n if n is not None else '–'}" + (f"  ({power['reason']})" if power.get("reason") else ""))
    print(f"studies in {db}: " + ", ".join(f"{k} = {v}" for k, v in result["studies"].items())
          + f"  (azc study stats --study {result['studies']['main']} --db {db})")
    if json_out is not None:
        _write_text(json_out, json.dumps(result, indent=1))
        print(f"wrote {json_out}")
    if figures_dir is not None:
        figures_dir.mkdir(parents=True, exist_ok=True)
        for name, png in pilot_figures(result).items():
            (figures_dir / f"{name}.png").write_bytes(png)
        print(f"wrote figures to {figures_dir}")


if __name__ == "__main__":  # pragma: no cover
    study_app()
