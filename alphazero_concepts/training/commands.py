"""CLI for self-play RL: `azc train selfplay` (wired into the `train` group by `register_train`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

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
        seed: Annotated[int, typer.Option()] = 0,
        threads: Annotated[int, typer.Option(help="Torch CPU threads (1 is faster on a shared machine)")] = 1,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")] = "cpu",
    ) -> None:
        """Self-play RL: play games with MCTS, train on visit distributions and outcomes, one checkpoint per
        iteration (resumable: a killed run continues at its first unfinished iteration)."""
        from alphazero_concepts.chess.positions import InputError
        from alphazero_concepts.nn.checkpoints import CheckpointError
        from alphazero_concepts.training.selfplay import SelfPlayConfig, SelfPlayProgress, run_selfplay

        if openings_pgn is not None and not openings_pgn.is_file():
            console.print(f"[red]error:[/red] {openings_pgn}: no such PGN file")
            raise typer.Exit(code=2)
        try:
            config = SelfPlayConfig(games=games, simulations=sims, concurrent=concurrent or games, steps=steps,
                                    batch_size=batch_size, lr=lr, window=window, max_plies=max_plies,
                                    resign_threshold=resign_threshold, no_resign_fraction=no_resign,
                                    openings_pgn=str(openings_pgn) if openings_pgn else None,
                                    opening_plies=opening_plies, seed=seed, threads=threads, device=device)
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(code=2) from exc
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
                series = run_selfplay(config, start, out, iterations=iterations, work=work, progress=report,
                                      log=lambda s: progress.console.print(f"[dim]{s}[/dim]"),
                                      on_iteration=lambda s: progress.console.print(iteration_line(s)))
            except (CheckpointError, InputError, ValueError) as exc:
                console.print(f"[red]error:[/red] {exc}")
                raise typer.Exit(code=2) from exc
        console.print(f"series {out}: {len(series)} checkpoints, last {series.names[-1]}")
