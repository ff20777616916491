"""`azc`: the command line over the toolkit's stages (a thin layer; the work is done by the library)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import chess
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(help="alphazero-concepts: find what a self-play chess network knows that people do not.",
                  no_args_is_help=True, add_completion=False)
train_app = typer.Typer(help="Train networks: supervised kick-start from human games.", no_args_is_help=True)
app.add_typer(train_app, name="train")
console = Console()

ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Checkpoint file, series directory (strongest checkpoint), SERIES:NAME, or bundled name. "
                          "Default: the bundled teacher.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")]


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


def _load(model: str | None, device: str):
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import load_network
    from alphazero_concepts.nn.network import resolve_device

    try:
        return load_network(model, resolve_device(device))
    except (CheckpointError, ValueError) as exc:
        raise _fail(str(exc)) from exc


def _search_table(result, top: int, title: str) -> Table:
    board = result.board
    table = Table(title=title)
    for col in ("move", "visits", "Q (side to move)", "prior", "line"):
        table.add_column(col)
    for move, visits, q, prior in result.ranked()[:top]:
        line = []
        node = result.root.children[result.moves.index(move)]
        b = board.copy(stack=False)
        line_moves = [move]
        while node is not None and node.expanded and node.n_total > 0 and len(line_moves) < 8:
            import numpy as np

            a = int(np.argmax(node.N))
            line_moves.append(node.moves[a])
            node = node.children[a]
        line = b.variation_san(line_moves)
        table.add_row(board.san(move), str(visits), "–" if q != q else f"{q:+.3f}", f"{prior:.3f}", line)
    return table


@app.command()
def analyse(
    fen: Annotated[str, typer.Argument(help="Position as FEN (quote it), or 'startpos'")],
    model: ModelOpt = None,
    sims: Annotated[int, typer.Option("--sims", help="MCTS simulations")] = 400,
    top: Annotated[int, typer.Option("--top", help="How many moves to show")] = 5,
    device: DeviceOpt = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Analyse one position: top moves with visits, Q (side to move's view), priors and the machine's line."""
    from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator

    try:
        board = chess.Board() if fen == "startpos" else chess.Board(fen)
    except ValueError as exc:
        raise _fail(f"invalid FEN {fen!r}: {exc}") from exc
    net, meta = _load(model, device)
    result = MCTS(NetEvaluator(net), MCTSConfig(simulations=sims)).search([board])[0]
    if as_json:
        print(json.dumps({"model": meta.name, **result.to_dict()}, indent=2))
        return
    if not result.moves:
        console.print(f"game over: {board.result(claim_draw=True)}")
        return
    console.print(_search_table(result, top, f"{meta.name}: {sims} simulations"))
    console.print(f"value (side to move): search {result.root_value:+.3f}, network {result.nn_value:+.3f}; "
                  f"principal variation: {board.variation_san(result.pv)}")


app.command("analyze", hidden=True)(analyse)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes, finishes in under a minute")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results here")] = None,
    model: ModelOpt = None,
    blocks: Annotated[int, typer.Option(help="Untrained net of this size when no model is bundled")] = 6,
    channels: Annotated[int, typer.Option()] = 64,
    device: DeviceOpt = "cpu",
) -> None:
    """Measure encoding, network and search throughput side by side; ratios show what batching buys."""
    from alphazero_concepts.bench import BenchConfig, run_bench
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import load_network
    from alphazero_concepts.nn.network import AZNet, NetConfig, resolve_device

    try:
        net, meta = load_network(model, resolve_device(device))
        name = meta.name
    except CheckpointError:
        if model is not None:
            raise
        net, name = AZNet(NetConfig(blocks=blocks, channels=channels)).eval(), f"untrained {blocks}x{channels}"
    start = time.time()
    result = run_bench(net, BenchConfig.for_mode(quick), log=lambda s: console.print(f"[dim]{s}[/dim]"))
    result["model"]["name"] = name
    result["wall_s"] = time.time() - start
    table = Table(title=f"azc bench ({'quick' if quick else 'full'}, {name})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:,.2f}")
    console.print(table)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {json_path}")


@app.command()
def validate(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes (a few minutes on 2 cores)")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results here")] = None,
    model: ModelOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Check the mining machinery on known answers: planted direction, piece concept per layer, speed, dynamic."""
    from alphazero_concepts.concepts.validation import ValidationConfig, run_validation

    net, meta = _load(model, device)
    result = run_validation(net, ValidationConfig.for_mode(quick, net), log=lambda s: console.print(f"[dim]{s}[/dim]"))
    result["model"] = meta.name
    table = Table(title=f"azc validate ({'quick' if quick else 'full'}, {meta.name})")
    table.add_column("check")
    table.add_column("value", justify="right")
    for key in ("planted_cosine", "piece_concept_best_acc", "mining_speedup_vs_naive", "dynamic_median_solve_s"):
        table.add_row(key, f"{result[key]:.3f}")
    for layer, row in result["piece_concept"]["layers"].items():
        table.add_row(f"  queen concept @ {layer}", f"{row['test_pair_accuracy']:.3f}")
    console.print(table)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        console.print(f"wrote {json_path}")


@train_app.command("supervised")
def train_supervised_cmd(
    pgn: Annotated[list[Path], typer.Option("--pgn", help="PGN file(s) of human games, streamed in order")],
    out: Annotated[Path, typer.Option("--out", help="Series directory (created, or resumed if it has a state)")],
    steps: Annotated[int, typer.Option(help="Total optimiser steps of the schedule")] = 10_000,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this step (resume later)")] = None,
    batch_size: Annotated[int, typer.Option()] = 256,
    lr: Annotated[float, typer.Option()] = 1e-3,
    seed: Annotated[int, typer.Option()] = 0,
    blocks: Annotated[int, typer.Option()] = 6,
    channels: Annotated[int, typer.Option()] = 64,
    min_elo: Annotated[int | None, typer.Option(help="Keep games where both players are rated at least this")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Add a series checkpoint every N steps")] = 500,
    chunk_games: Annotated[int, typer.Option(help="Games shuffled together")] = 1500,
    threads: Annotated[int, typer.Option(help="Torch CPU threads")] = 2,
    device: DeviceOpt = "cpu",
) -> None:
    """Kick-start a network on human games: policy = the move played, value = the game result."""
    from alphazero_concepts.nn.network import NetConfig
    from alphazero_concepts.training.supervised import SupervisedConfig, train_supervised

    for path in pgn:
        if not path.is_file():
            raise _fail(f"{path}: no such PGN file")
    config = SupervisedConfig(pgn=tuple(str(p) for p in pgn), net=NetConfig(blocks=blocks, channels=channels),
                              seed=seed, batch_size=batch_size, lr=lr, total_steps=steps, min_elo=min_elo,
                              checkpoint_every=checkpoint_every, chunk_games=chunk_games, threads=threads,
                              device=device)
    stop = min(steps, max_steps or steps)
    with Progress(TextColumn("[bold]train[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console) as progress:
        task = progress.add_task("train", total=stop, info="reading games …")

        def report(step: int, stats: dict[str, float]) -> None:
            progress.update(task, completed=step, info=(
                f"loss {stats['loss']:.3f} acc {stats['acc']:.3f} {stats['positions_per_s']:.0f} pos/s"))

        series = train_supervised(config, out, max_steps=max_steps, progress=report)
    last = series.entries[-1] if series.entries else None
    if last:
        hold = last.extra.get("holdout", {})
        console.print(f"series {out}: {len(series)} checkpoints; last {last.name} at step {last.step}, "
                      f"{last.positions_seen:,} positions; held-out top-1 {hold.get('acc', float('nan')):.3f}")


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option("--out", help="Where to write the results")] = Path("runs/quickstart"),
    sims: Annotated[int, typer.Option("--sims")] = 200,
    device: DeviceOpt = "cpu",
) -> None:
    """The main job on the bundled model, in a few minutes on a laptop CPU.

    The concept pipeline (roots → rollouts → mining → filters → puzzles) is being built; until it lands this runs
    its first stage on the bundled teacher: a batched MCTS analysis of test positions, written as JSON.
    """
    from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator

    net, meta = _load(None, device)
    fens = [
        chess.STARTING_FEN,
        "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3",
        "r1bqkb1r/pppp1ppp/2n2n2/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4",
        "6k1/5ppp/8/8/8/8/5PPP/3R2K1 w - - 0 1",
        "r1b1k2r/ppppnppp/2n2q2/2b5/3NP3/2P1B3/PP3PPP/RN1QKB1R w KQkq - 0 7",
        "2rq1rk1/pp1bppbp/3p1np1/4n3/3NP3/1BN1BP2/PPPQ2PP/2KR3R w - - 0 12",
    ]
    boards = [chess.Board(f) for f in fens]
    start = time.time()
    results = MCTS(NetEvaluator(net), MCTSConfig(simulations=sims)).search(boards)
    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(json.dumps({"model": meta.name, "simulations": sims,
                                                   "positions": [r.to_dict() for r in results]}, indent=2))
    table = Table(title=f"quickstart: {meta.name}, {sims} simulations per position ({time.time() - start:.1f} s)")
    for col in ("position", "best move", "visits", "value (side to move)", "machine line"):
        table.add_column(col)
    for board, r in zip(boards, results, strict=True):
        best = r.best_move()
        table.add_row(board.fen().split(" ")[0][:28], board.san(best) if best else "–",
                      str(int(r.visits.max())) if best else "–", f"{r.root_value:+.3f}",
                      board.variation_san(r.pv[:6]) if r.pv else "")
    console.print(table)
    console.print(f"wrote {out / 'analysis.json'}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
