"""CLI for self-play RL: `azc train selfplay` (wired into the `train` group by `register_train`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from alphazero_concepts.commandline import fail, input_file, output_dir, output_file

console = Console()


def _fmt_rate(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0%}"


def iteration_line(s: dict) -> str:
    """One-line summary of a finished iteration (what `azc train selfplay` prints)."""
    r = s["results"]
    return (
        f"[bold]{s['checkpoint']}[/bold] ← {s['parent']}: {s['games']} games, {s['positions']} positions, "
        f"mean {s['mean_plies']:.0f} plies, +{r['1-0']} ={r['1/2-1/2']} -{r['0-1']} (White's view), decisive "
        f"{s['decisive_share']:.0%}; resigned {s['resigned']}, false resigns {s['false_resigns']}/"
        f"{s['would_resign']} ({_fmt_rate(s['false_resign_rate'])}) in {s['no_resign_games']} no-resign games "
        f"({s['window_false_resigns']}/{s['window_would_resign']} over the window); "
        f"{s['steps']} steps on {s['window_positions']} positions: policy loss on the new games "
        f"{s['new_games_before']['policy_loss']:.3f} → {s['new_games_after']['policy_loss']:.3f}, value MSE "
        f"{s['new_games_before']['value_loss']:.3f} → {s['new_games_after']['value_loss']:.3f}; play "
        f"{s['play_s']:.0f} s ({s['positions_per_s']:.1f} positions/s), train {s['train_s']:.0f} s"
    )


def register_train(train_app: typer.Typer) -> None:
    """Add `selfplay` to the `azc train` group."""

    @train_app.command("selfplay")
    def selfplay_cmd(
        start: Annotated[str, typer.Option("--from", help="Start checkpoint: file, series dir (strongest), "
                                                          "SERIES:NAME or bundled name")],
        out: Annotated[Path, typer.Option("--out", help="Series to add rl-XXX checkpoints to (created with the "
                                                        "start checkpoint first if new; may be --from's series)")],
        iterations: Annotated[int, typer.Option(help="Run up to this iteration (a resumed run continues)")] = 1,
        games: Annotated[int, typer.Option(help="Games per iteration")] = 32,
        sims: Annotated[int, typer.Option("--sims", help="MCTS simulations per move")] = 64,
        concurrent: Annotated[int | None, typer.Option(help="Games played at once (default: --games)")] = None,
        steps: Annotated[int, typer.Option(help="Optimiser steps per iteration (0: 2 × new positions / "
                                                "batch size)")] = 0,
        batch_size: Annotated[int, typer.Option()] = 256,
        lr: Annotated[float, typer.Option(help="AdamW learning rate (small: fine-tuning)")] = 2e-4,
        window: Annotated[int, typer.Option(help="Train on the last N iterations' games")] = 4,
        max_plies: Annotated[int, typer.Option(help="Searched plies before a game is adjudicated drawn")] = 300,
        resign_threshold: Annotated[float, typer.Option(help="Resign below this searched value")] = -0.9,
        no_resign: Annotated[float, typer.Option("--no-resign", help="Share of games that never resign")] = 0.2,
        openings_pgn: Annotated[Path | None, typer.Option("--openings-pgn", help="Start games from the first "
                                                          "plies of this PGN's games (default: bundled lines)")] = None,
        opening_plies: Annotated[int, typer.Option(help="Plies taken from --openings-pgn games")] = 8,
        work: Annotated[Path | None, typer.Option(help="Replay shards, PGNs and training state "
                                                       "(default: OUT/selfplay)")] = None,
        gate_games: Annotated[int, typer.Option(help="Arena gate: games of each new network against the best one "
                                                     "(0: no gate, every iteration joins the series)")] = 0,
        gate_sims: Annotated[int, typer.Option(help="Simulations a move in gate games (both sides)")] = 64,
        gate_threshold: Annotated[float, typer.Option(help="Gate: accept when the new network scores at least "
                                                           "this")] = 0.5,
        seed: Annotated[int, typer.Option()] = 0,
        threads: Annotated[int, typer.Option(help="Torch CPU threads (1 is faster on a shared machine)")] = 1,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")] = "cpu",
    ) -> None:
        """Self-play RL: play games with MCTS, train on visit distributions and outcomes, one checkpoint per
        iteration (resumable: a killed run continues at its first unfinished iteration)."""
        from alphazero_concepts.chess.positions import InputError
        from alphazero_concepts.nn.checkpoints import CheckpointError
        from alphazero_concepts.training.selfplay import (
            STATE_FILE,
            SelfPlayConfig,
            SelfPlayProgress,
            load_openings,
            run_selfplay,
        )

        if openings_pgn is not None:
            input_file(openings_pgn, "PGN file")
        output_dir(out)
        if work is not None:
            output_dir(work, "--work")
        try:
            config = SelfPlayConfig(games=games, simulations=sims, concurrent=concurrent or games, steps=steps,
                                    batch_size=batch_size, lr=lr, window=window, max_plies=max_plies,
                                    resign_threshold=resign_threshold, no_resign_fraction=no_resign,
                                    openings_pgn=str(openings_pgn) if openings_pgn else None,
                                    opening_plies=opening_plies, seed=seed, threads=threads, device=device,
                                    gate_games=gate_games, gate_simulations=gate_sims, gate_threshold=gate_threshold)
        except ValueError as exc:
            raise fail(str(exc)) from exc
        # Inputs first (openings, the start checkpoint), so that a bad one fails before the work directory is made
        try:
            openings = load_openings(config)
            if not ((work or out / "selfplay") / STATE_FILE).is_file():  # a resumed run does not use --from
                from alphazero_concepts.nn.loading import load_network

                load_network(start, "cpu")
        except (CheckpointError, InputError, ValueError) as exc:
            raise fail(str(exc)) from exc
        with Progress(TextColumn("[bold]{task.description}[/bold]"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=console) as progress:
            tasks: dict[tuple[int, str], int] = {}

            def report(p: SelfPlayProgress) -> None:
                key = (p.iteration, p.phase)
                if key not in tasks:
                    unit = "games" if p.phase == "play" else "steps"
                    tasks[key] = progress.add_task(f"it {p.iteration} {p.phase} ({unit})", total=p.total, info="")
                if p.phase == "play":
                    info = f"{p.positions} positions, {p.positions_per_s:.1f}/s"
                else:
                    info = f"loss {p.stats.get('loss', float('nan')):.3f}" if p.stats else ""
                progress.update(tasks[key], completed=p.done, total=p.total, info=info)

            try:
                series = run_selfplay(config, start, out, iterations=iterations, work=work, openings=openings,
                                      progress=report,
                                      log=lambda s: progress.console.print(f"[dim]{s}[/dim]"),
                                      on_iteration=lambda s: progress.console.print(iteration_line(s)))
            except (CheckpointError, InputError, ValueError) as exc:
                raise fail(str(exc)) from exc
        console.print(f"series {out}: {len(series)} checkpoints, last {series.names[-1]}")


def _check_engine_games_out(out: Path) -> None:
    """Refuse an --out that is not (yet) an engine-games file: these commands append to it and rewrite a torn one,
    which would destroy any other file given by mistake."""
    output_file(out)
    if out.is_file() and out.stat().st_size > 0:
        with open(out, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                raise fail(f"--out {out}: exists and is not an engine-games file (gzip JSON lines); not touching it")


def register_data(app: typer.Typer) -> None:
    """Add the `azc data` group: engine-labelled games for distillation."""
    data_app = typer.Typer(help="Make training data: engine self-play games and engine labels for network games.",
                           no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("engine-games")
    def engine_games_cmd(
        out: Annotated[Path, typer.Option("--out", help="Output file (.jsonl.gz); an existing one is extended")],
        games: Annotated[int, typer.Option("--games", help="Stop when the file holds games 0 … N−1")],
        nodes: Annotated[int, typer.Option(help="Stockfish nodes per position (label and move choice)")] = 2000,
        multipv: Annotated[int, typer.Option(help="Moves scored per position")] = 4,
        seed: Annotated[int, typer.Option(help="Game i uses the random seed '{seed}-{i}'")] = 0,
        workers: Annotated[int, typer.Option(help="Engine processes (one thread each)")] = 1,
        max_plies: Annotated[int, typer.Option(help="Adjudicate a draw after this many plies")] = 300,
        blunder: Annotated[float, typer.Option(help="Share of plies (after the opening) played by a random legal "
                                                    "move: material imbalances engine play never reaches")] = 0.0,
        odds: Annotated[float, typer.Option(help="Share of odds games: a queen, rook, bishop or knight of one side "
                                                 "is taken off between plies 4 and 40, the game recorded from there")
                        ] = 0.0,
        stockfish: Annotated[str | None, typer.Option(help="Stockfish binary (default: found on PATH)")] = None,
    ) -> None:
        """Stockfish self-play games with every position labelled by the same search (MultiPV scores, WDL);
        resumable: a kill loses at most the games in hand, a re-run plays only the missing ones."""
        from alphazero_concepts.training.engine_games import EngineGamesConfig, EngineMissing, make_engine_games

        if games < 1 or workers < 1:
            raise fail("--games and --workers must be ≥ 1")
        _check_engine_games_out(out)
        try:
            config = EngineGamesConfig(nodes=nodes, multipv=multipv, seed=seed, max_plies=max_plies, blunder=blunder,
                                       odds=odds)
        except ValueError as exc:
            raise fail(str(exc)) from exc
        with Progress(TextColumn("[bold]engine games[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=console) as progress:
            task = progress.add_task("games", total=games, info="")
            positions = [0]

            def on_game(game: dict, done: int) -> None:
                positions[0] += len(game["plies"])
                progress.update(task, completed=done, info=f"{positions[0]} positions, last {game['result']} "
                                                           f"({game['termination']})")

            try:
                added = make_engine_games(out, games, config, workers=workers, stockfish=stockfish, on_game=on_game)
            except EngineMissing as exc:
                raise fail(str(exc)) from exc
        console.print(f"{out}: {added} games added ({positions[0]} positions); the file holds {games} games")

    @data_app.command("label-games")
    def label_games_cmd(
        pgn: Annotated[Path, typer.Option("--pgn", help="Games a network played (e.g. a self-play or arena PGN)")],
        out: Annotated[Path, typer.Option("--out", help="Output file (.jsonl.gz); an existing one is extended")],
        nodes: Annotated[int, typer.Option(help="Stockfish nodes per position")] = 2000,
        multipv: Annotated[int, typer.Option(help="Moves scored per position")] = 4,
        stockfish: Annotated[str | None, typer.Option(help="Stockfish binary (default: found on PATH)")] = None,
    ) -> None:
        """Label every position of network-played games with Stockfish (DAgger-style data for distillation);
        resumable by game index. Meant for machine games only: the human games stay the novelty filter's side."""
        import chess

        from alphazero_concepts.chess.positions import InputError, ReadReport, read_pgn_games
        from alphazero_concepts.training.engine_data import append_game
        from alphazero_concepts.training.engine_games import (
            EngineGamesConfig,
            EngineMissing,
            finished_games,
            label_moves,
            open_engine,
            repair,
        )

        input_file(pgn, "PGN file")
        _check_engine_games_out(out)
        try:
            config = EngineGamesConfig(nodes=nodes, multipv=multipv)
        except ValueError as exc:
            raise fail(str(exc)) from exc
        report = ReadReport(source=str(pgn))
        try:  # the games first: a PGN with no usable game fails before an engine starts or a file is written
            if not any(game.moves for game in read_pgn_games(pgn, report=ReadReport(source=str(pgn)))):
                raise fail(f"{pgn}: no usable game with moves to label")
        except InputError as exc:
            raise fail(str(exc)) from exc
        try:
            engine = open_engine(stockfish)
        except EngineMissing as exc:
            raise fail(str(exc)) from exc
        repair(out)
        done = finished_games(out)
        added = 0
        try:
            for i, game in enumerate(read_pgn_games(pgn, report=report)):
                if i in done or not game.moves:
                    continue
                append_game(out, label_moves(engine, i, chess.Board(game.start_fen), game.moves, config,
                                             game.result))
                added += 1
                console.print(f"game {i}: {len(game.moves)} positions labelled", highlight=False)
        except InputError as exc:
            raise fail(str(exc)) from exc
        finally:
            engine.quit()
        console.print(f"{out}: {added} games labelled; {report.summary()}")
