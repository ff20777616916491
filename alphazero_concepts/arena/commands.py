"""`azc arena` (Elo ladder of a checkpoint series, with Stockfish levels) and `azc sts` (Strategic Test Suite).

A thin layer over `arena.ladder` and `arena.sts`; wire into `azc` with `register(app)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from alphazero_concepts.commandline import fail as _fail
from alphazero_concepts.commandline import input_file, output_dir, output_file

console = Console()

DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")]
ThreadsOpt = Annotated[int, typer.Option("--threads", help="Torch CPU threads (0: torch's default). One is fastest "
                                                           "for the arena's small batches on a shared machine")]


def _set_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def _names(values: list[str] | None) -> list[str]:
    """Repeatable options that also take comma-separated lists: ``--x a,b --x c`` → [a, b, c]."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _ints(values: list[str] | None, option: str) -> list[int]:
    try:
        return [int(v) for v in _names(values)]
    except ValueError as exc:
        raise _fail(f"{option} takes whole numbers (e.g. {option} 1350,1500): {exc}") from exc


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}[/bold]"), BarColumn(),
                    TextColumn("{task.completed}/{task.total} games"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console)


def arena(
    series: Annotated[str, typer.Option("--series", help="Series directory or bundled series name")],
    checkpoints: Annotated[list[str] | None, typer.Option(
        "--checkpoints", help="Checkpoints to rank (comma-separated or repeated; default: all, series order)")] = None,
    games: Annotated[int, typer.Option("--games", help="Games per pairing (each opening with both colours)")] = 40,
    sims: Annotated[int, typer.Option("--sims", help="MCTS simulations per move for our networks")] = 100,
    max_plies: Annotated[int, typer.Option("--max-plies", help="Adjudicate a draw at this many plies")] = 400,
    all_pairs: Annotated[bool, typer.Option("--all-pairs", help="Play every pair, not only neighbours")] = False,
    first_vs_strongest: Annotated[bool, typer.Option(
        "--first-vs-strongest/--no-first-vs-strongest", help="Also pair the first checkpoint with the strongest")
    ] = True,
    stockfish_elo: Annotated[list[str] | None, typer.Option(
        "--stockfish-elo", help="Stockfish UCI_Elo levels (1350–2850), e.g. 1350,1500")] = None,
    stockfish_skill: Annotated[list[str] | None, typer.Option(
        "--stockfish-skill", help="Stockfish Skill Levels (0–20)")] = None,
    stockfish_movetime: Annotated[float, typer.Option(
        "--stockfish-movetime", help="Stockfish seconds per move")] = 0.1,
    stockfish_nodes: Annotated[int | None, typer.Option(
        "--stockfish-nodes", help="Stockfish nodes per move (instead of a movetime)")] = None,
    stockfish: Annotated[str | None, typer.Option(
        "--stockfish", help="Stockfish binary (default: stockfish on PATH or in /usr/games)")] = None,
    stockfish_vs: Annotated[list[str] | None, typer.Option(
        "--stockfish-vs", help="Checkpoints that play Stockfish (default: the strongest)")] = None,
    maia: Annotated[list[str] | None, typer.Option(
        "--maia", help="Maia levels (human yardsticks) for --stockfish-vs to play, e.g. maia-1100,maia-1900")] = None,
    maia_sims: Annotated[int | None, typer.Option("--maia-sims", help="Maia's simulations a move (default: --sims)")
                         ] = None,
    maia_dir: Annotated[Path | None, typer.Option("--maia-dir", help="Folder of maia-<rating>.pb.gz (default: "
                                                                    "../shared/data/models/maia)")] = None,
    pair: Annotated[list[str] | None, typer.Option(
        "--pair", help="Extra pairing in the fit, A:B (checkpoints, or a checkpoint and a Stockfish/Maia level "
                       "given above, e.g. stockfish-elo1800); repeat for more")] = None,
    merge: Annotated[list[Path] | None, typer.Option(
        "--merge", help="Reuse the finished pairings of another arena folder (a part of this ladder played apart, "
                        "or other budgets: listed as not fitted); repeat for more")] = None,
    ci: Annotated[str, typer.Option("--ci", help="Elo intervals: fisher (Hessian) or bootstrap")] = "fisher",
    sts: Annotated[Path | None, typer.Option("--sts", help="STS EPD file: add each checkpoint's STS score")] = None,
    sts_sims: Annotated[int | None, typer.Option("--sts-sims", help="Simulations for STS (default: --sims)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default runs/arena/<series>, "
                                                           "<series>-bf16 with --precision bf16)")] = None,
    write_elo: Annotated[bool, typer.Option("--write-elo", help="Store the fitted Elos in the series manifest")
                         ] = False,
    threads: ThreadsOpt = 1,
    device: DeviceOpt = "cpu",
    precision: Annotated[str, typer.Option(
        "--precision", help="fp32, or bf16: every network (ours and Maia) under bfloat16 autocast, faster where the "
                            "CPU or GPU has bfloat16 units; pairings are stored apart from fp32 ones")] = "fp32",
) -> None:
    """Elo ladder of a checkpoint series: matches, Stockfish levels, fit, ladder.json + PGNs + plot (resumable)."""
    from alphazero_concepts.arena.ladder import Ladder, LadderConfig, precision_tag
    from alphazero_concepts.arena.players import EngineNotFoundError
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import resolve_series

    if sts is not None:
        input_file(sts, "STS suite")
    if maia_dir is not None and not maia_dir.is_dir():
        raise _fail(f"--maia-dir {maia_dir}: no such directory")
    if out is not None:
        output_dir(out)
    _set_threads(threads)
    try:
        s = resolve_series(series)
        config = LadderConfig(games=games, simulations=sims, max_plies=max_plies,
                              checkpoints=tuple(_names(checkpoints)), all_pairs=all_pairs,
                              first_vs_strongest=first_vs_strongest,
                              stockfish_elo=tuple(_ints(stockfish_elo, "--stockfish-elo")),
                              stockfish_skill=tuple(_ints(stockfish_skill, "--stockfish-skill")),
                              stockfish_movetime=stockfish_movetime, stockfish_nodes=stockfish_nodes,
                              stockfish_path=stockfish, stockfish_vs=tuple(_names(stockfish_vs)), ci=ci,
                              maia=tuple(_names(maia)), maia_simulations=maia_sims,
                              maia_dir=str(maia_dir) if maia_dir else None, pairs=tuple(_names(pair)),
                              merge=tuple(str(m) for m in merge or ()),
                              sts_suite=str(sts) if sts else None, sts_simulations=sts_sims, device=device,
                              precision=precision)
        default_out = Path("runs/arena") / f"{s.name}{precision_tag(precision, '-')}"
        ladder = Ladder(s, out or default_out, config)
    except (CheckpointError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    with _progress() as progress:
        tasks: dict[str, TaskID] = {}

        def report(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done)

        try:
            result = ladder.run(report)
        except EngineNotFoundError as exc:
            raise _fail(str(exc)) from exc
        except (CheckpointError, ValueError) as exc:
            raise _fail(str(exc)) from exc
    if write_elo:
        ladder.write_elo(result)
        console.print(f"wrote Elos into {s.directory / 'manifest.json'}")
    _print_ladder(result)
    reused = len(result["pairs"]) - len(ladder.played)
    if ladder.merged:
        console.print(f"{ladder.merged} pairings merged from {', '.join(map(str, merge or ()))}")
    console.print(f"{len(ladder.played)} pairings played, {reused} reused from {ladder.results_path}; "
                  f"wrote {ladder.out / 'ladder.json'}, {ladder.out / 'ladder.png'}, PGNs in {ladder.out / 'games'}")


def _print_ladder(ladder: dict) -> None:
    table = Table(title=f"{ladder['series']}: Elo ({next(iter(ladder['anchor']))} = 0), "
                        f"{ladder['budgets']['ours']['simulations']} simulations/move")
    sf_scale = {r["name"]: r for r in (ladder.get("elo_stockfish_scale") or {}).get("checkpoints", [])}
    for col in ("checkpoint", "Elo", "95% CI", "games", *(["Stockfish scale"] if sf_scale else []),
                *(["STS %"] if "sts" in ladder else [])):
        table.add_column(col, justify="left" if col == "checkpoint" else "right")
    for row in ladder["checkpoints"]:
        if row["elo"] is None:
            continue
        cells = [row["name"], f"{row['elo']:+.0f}", f"[{row['elo_ci'][0]:+.0f}, {row['elo_ci'][1]:+.0f}]",
                 str(row["games"])]
        if sf_scale:
            r = sf_scale.get(row["name"])
            cells.append(f"{r['elo']:.0f} [{r['elo_ci'][0]:.0f}, {r['elo_ci'][1]:.0f}]" if r else "–")
        if "sts" in ladder:
            cells.append(f"{row['sts_percent']:.1f}" if row.get("sts_percent") is not None else "–")
        table.add_row(*cells)
    console.print(table)
    for row in ladder["vs_stockfish"]:
        console.print(f"{row['checkpoint']} ({row['sims']} sims) vs {row['stockfish']}: +{row['wins']} "
                      f"={row['draws']} -{row['losses']} (score {row['score']:.3f} over {row['games']} games)"
                      f"{_unfitted(row)}")
    for row in ladder.get("vs_maia", []):
        console.print(f"{row['checkpoint']} ({row['sims']} sims) vs {row['maia']} ({row['maia_sims']} sims): "
                      f"+{row['wins']} ={row['draws']} -{row['losses']} (score {row['score']:.3f} over "
                      f"{row['games']} games){_unfitted(row)}")


def _unfitted(row: dict) -> str:
    return "" if row.get("fitted", True) else " (not in the fit)"


def sts(
    suite: Annotated[Path, typer.Option("--suite", help="STS EPD file (c0 opcode: move=points)")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="One network (as for other commands)")] = None,
    series: Annotated[str | None, typer.Option("--series", help="Score every checkpoint of a series")] = None,
    checkpoints: Annotated[list[str] | None, typer.Option(
        "--checkpoints", help="With --series: only these (comma-separated or repeated)")] = None,
    sims: Annotated[int, typer.Option("--sims", help="MCTS simulations per position (0 = raw policy)")] = 100,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N positions")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the scores here")] = None,
    threads: ThreadsOpt = 1,
    device: DeviceOpt = "cpu",
) -> None:
    """Strategic Test Suite score per theme and in total (each position normalised by its best move's points)."""
    from alphazero_concepts.arena.sts import read_sts, run_sts
    from alphazero_concepts.chess.positions import InputError, ReadReport
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import load_network, resolve_series
    from alphazero_concepts.nn.network import resolve_device

    if (model is None) == (series is None):
        raise _fail("give exactly one of --model and --series")
    input_file(suite, "STS suite")
    if json_path:
        output_file(json_path, "--json")
    _set_threads(threads)
    report = ReadReport(str(suite))
    try:
        positions = read_sts(suite, report)[:limit]
    except InputError as exc:
        raise _fail(str(exc)) from exc
    if report.skipped:
        console.print(f"[yellow]{report.summary()}[/yellow]")
    if not positions:
        raise _fail(f"{suite}: no usable STS positions")
    try:
        if series is not None:
            s = resolve_series(series)
            wanted = _names(checkpoints) or s.names
            missing = [n for n in wanted if n not in s.names]
            if missing:
                raise _fail(f"{s.directory}: no checkpoint(s) {missing} (have {', '.join(s.names)})")
            jobs = [(n, lambda n=n: s.load(n, resolve_device(device))) for n in s.names if n in wanted]
        else:
            jobs = [(None, lambda: load_network(model, resolve_device(device)))]
    except (CheckpointError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    scores = []
    with Progress(TextColumn("[bold]{task.description}[/bold]"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} positions"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console) as progress:
        for name, load in jobs:
            try:
                net, meta = load()
            except (CheckpointError, ValueError) as exc:
                raise _fail(str(exc)) from exc
            label = name or meta.name
            task = progress.add_task(f"STS {label}", total=len(positions))
            scores.append(run_sts(net, positions, sims, model=label,
                                  progress=lambda done, total, t=task: progress.update(t, completed=done)))
    table = Table(title=f"STS ({suite.name}, {len(positions)} positions, {sims} simulations; % of best-move points)")
    table.add_column("theme")
    for sc in scores:
        table.add_column(sc.model, justify="right")
    for key, row in scores[0].themes.items():
        table.add_row(f"{key} {row['name']}", *[f"{sc.themes[key]['percent']:.1f}" for sc in scores])
    table.add_row("[bold]total[/bold]", *[f"[bold]{sc.percent:.1f}[/bold]" for sc in scores])
    table.add_row("best move found", *[f"{sc.best}/{sc.positions}" for sc in scores])
    console.print(table)
    if json_path:
        data = {"suite": str(suite), "positions": len(positions), "simulations": sims,
                "skipped": report.skipped, "models": [sc.to_dict(with_moves=True) for sc in scores]}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=2) + "\n")
        console.print(f"wrote {json_path}")


def value_check(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Network to check (default: the bundled "
                                                                    "teacher)")] = None,
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="UCI `go nodes N` (1: the value head alone)")] = 1,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the summary and every score here")] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Does the value head see a queen? Positions where the side to move is a queen up (the bundled openings, 0–3
    random plies on, the other side's queen removed), scored through this project's UCI engine at `go nodes N`:
    the share scored ahead per colour to move (the teacher issue's target: ≥ 97% for both)."""
    import sys

    from alphazero_concepts.arena.value_check import queen_up_boards, queen_up_summary, uci_scores
    from alphazero_concepts.commandline import load_model

    if json_path:
        output_file(json_path, "--json")
    _, meta = load_model(model, device)  # a bad --model fails here, with its message, before the engine starts
    command = [sys.executable, "-m", "alphazero_concepts.play.uci", *(["--model", model] if model else []),
               "--device", device]
    boards = queen_up_boards()
    scores = uci_scores(command, boards, nodes=nodes)
    summary = queen_up_summary(boards, scores)
    table = Table(title=f"{meta.name}: a queen up, scored through `azc uci` at go nodes {nodes}")
    for col in ("side to move", "positions", "scored ahead", "share", "median cp"):
        table.add_column(col, justify="left" if col == "side to move" else "right")
    for colour, row in summary.items():
        table.add_row(colour, str(row["positions"]), str(row["ahead"]), f"{row['share_ahead']:.0%}",
                      f"{row['median_cp']:+.1f}")
    console.print(table)
    if json_path:
        data = {"model": meta.name, "nodes": nodes, "summary": summary,
                "positions": [{"fen": b.fen(), "cp": cp} for b, cp in zip(boards, scores, strict=True)]}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=2) + "\n")
        console.print(f"wrote {json_path}")


def register(app: typer.Typer) -> None:
    """Add `arena`, `sts` and `value-check` to the `azc` app."""
    app.command("arena")(arena)
    app.command("sts")(sts)
    app.command("value-check")(value_check)
