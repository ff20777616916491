"""`azc`: the command line over the toolkit's stages (a thin layer; the work is done by the library)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated

import chess
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from alphazero_concepts.commandline import (
    AzcGroup,
    checked_rollout,
    input_file,
    output_dir,
    output_file,
    read_records,
    remove_empty_dirs,
    root_board,
)
from alphazero_concepts.commandline import fail as _fail
from alphazero_concepts.commandline import load_model as _load
from alphazero_concepts.study.cli import study_app

app = typer.Typer(help="alphazero-concepts: find what a self-play chess network knows that people do not. "
                       "Errors: one line and exit status 2 for a bad input (docs/cli-errors.md).",
                  no_args_is_help=True, add_completion=False, cls=AzcGroup)
train_app = typer.Typer(help="Train networks: supervised kick-start from human games, and self-play RL.",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(study_app, name="study")
console = Console()

ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Checkpoint file, series directory (strongest checkpoint), SERIES:NAME, bundled name, or "
                          "an lc0/Maia weights file (.pb.gz). Default: the bundled teacher.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")]


@app.callback()
def _azc(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error instead of one line "
                                                        "(also AZC_DEBUG=1)")] = False,
) -> None:
    # `debug` is read by AzcGroup (commandline.py) when a command fails
    pass


def _atomic_jsonl(path: Path, records) -> None:  # type: ignore[no-untyped-def]
    """Write JSON lines all at once via a temporary file (a killed command leaves no half-written file)."""
    from alphazero_concepts.core.files import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, "".join(json.dumps(r, default=str) + "\n" for r in records).encode(), fsync=False)


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
    sims: Annotated[int, typer.Option("--sims", min=1, help="MCTS simulations")] = 400,
    top: Annotated[int, typer.Option("--top", min=1, help="How many moves to show")] = 5,
    device: DeviceOpt = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Analyse one position: top moves with visits, Q (side to move's view), priors and the machine's line."""
    from alphazero_concepts.chess.positions import InputError, board_from_fen
    from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator

    try:
        board = chess.Board() if fen == "startpos" else board_from_fen(fen.strip())
    except InputError as exc:
        raise _fail(exc.reason) from exc
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
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes, finishes in a few minutes")] = False,
    ray: Annotated[bool, typer.Option("--ray/--no-ray", help="Also Ray mining with 1 vs 2 workers")] = False,
    training: Annotated[bool, typer.Option("--training/--no-training",
                                           help="Also self-play games/hour and training positions/s")] = True,
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

    if json_path:
        output_file(json_path, "--json")
    try:
        net, meta = load_network(model, resolve_device(device))
        name = meta.name
    except CheckpointError as exc:
        if model is not None:
            raise _fail(str(exc)) from exc
        net, name = AZNet(NetConfig(blocks=blocks, channels=channels)).eval(), f"untrained {blocks}x{channels}"
    start = time.time()
    config = dataclasses.replace(BenchConfig.for_mode(quick), ray=ray, training=training)
    result = run_bench(net, config, log=lambda s: console.print(f"[dim]{s}[/dim]"))
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
    from alphazero_concepts.filters.validation import filters_validation

    if json_path:
        output_file(json_path, "--json")
    net, meta = _load(model, device)
    log = lambda s: console.print(f"[dim]{s}[/dim]")  # noqa: E731
    config = ValidationConfig.for_mode(quick, net)
    result = run_validation(net, config, log=log)
    log("filters: planted novelty, planted teachability, random-vector control …")
    result.update(filters_validation(model, seed=config.seed, log=log))
    result["model"] = meta.name
    table = Table(title=f"azc validate ({'quick' if quick else 'full'}, {meta.name})")
    table.add_column("check")
    table.add_column("value", justify="right")
    for key in ("planted_cosine", "piece_concept_best_acc", "mining_speedup_vs_naive", "dynamic_median_solve_s"):
        table.add_row(key, f"{result[key]:.3f}")
    for name, concept in result["piece_concept"]["concepts"].items():
        table.add_row(f"  {name} (best: {concept['best_layer']})", f"{concept['best_acc']:.3f}")
    table.add_row("novelty_planted_ok", str(result.get("novelty_planted_ok")))
    table.add_row("teachability_planted_lift", f"{result.get('teachability_planted_lift', float('nan')):.3f}")
    table.add_row("random_vector_lift_ci", str([round(x, 3) for x in result.get("random_vector_lift_ci", [])]))
    console.print(table)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        console.print(f"wrote {json_path}")


def _progress(label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console)


@app.command()
def collect(
    positions: Annotated[Path, typer.Option("--positions", help="PGN, EPD, FEN list or Lichess CSV")],
    out: Annotated[Path, typer.Option("--out", help="Store directory (resumed when it holds a partial run)")],
    layers: Annotated[list[str] | None, typer.Option("--layers", help="Layer names (repeat); default: all")] = None,
    model: ModelOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many positions")] = None,
    min_ply: Annotated[int, typer.Option(min=0, help="PGN: skip positions before this ply")] = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 256,
    device: DeviceOpt = "cpu",
) -> None:
    """Capture activations at named layers into float16 memory-mapped arrays (resumable)."""
    from alphazero_concepts.commandline import read_positions_or_fail
    from alphazero_concepts.concepts.activations import StoreError
    from alphazero_concepts.concepts.activations import collect as collect_store

    output_dir(out)
    items = read_positions_or_fail(positions, min_ply=min_ply, limit=limit)
    net, meta = _load(model, device)
    names = layers or net.layer_names
    unknown = [x for x in names if x not in net.layer_names]
    if unknown:
        raise _fail(f"unknown layers {unknown}; the network has: {', '.join(net.layer_names)}")
    with _progress("collect") as progress:
        task = progress.add_task("collect", total=len(items))
        try:
            store = collect_store(net, items, names, out, batch_size=batch_size,
                                  model_id=meta.extra.get("sha256", meta.name),
                                  progress=lambda done, total: progress.update(task, completed=done))
        except StoreError as exc:
            raise _fail(str(exc)) from exc
    console.print(f"{store.n} positions × {len(names)} layers → {out}")


@app.command()
def roots(
    out: Annotated[Path, typer.Option("--out", help="roots.jsonl to write")],
    model: ModelOpt = None,
    weaker: Annotated[str | None, typer.Option(help="Root-selection model (default: the series' checkpoint "
                                                    "before the strongest)")] = None,
    games: Annotated[int, typer.Option(min=1, help="Self-play games of the teacher")] = 64,
    max_roots: Annotated[int | None, typer.Option(min=1)] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    device: DeviceOpt = "cpu",
) -> None:
    """Positions where the teacher and a weaker checkpoint choose different moves (each with why)."""
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import resolve_series
    from alphazero_concepts.search.roots import RootConfig
    from alphazero_concepts.stages.roots import earlier_checkpoint, root_records

    output_file(out)
    teacher, meta = _load(model, device)
    if weaker is None:
        try:
            series = resolve_series(model if model and Path(model).is_dir() else None)
        except CheckpointError as exc:
            raise _fail(f"{exc}; give --weaker (the root-selection model)") from exc
        strongest = series.strongest()  # the first checkpoint when the strongest has none before it
        weaker = earlier_checkpoint(series, strongest) or f"{series.directory}:{series.names[0]}"
    weak_net, weak_meta = _load(weaker, device)
    records = root_records(teacher, meta, weak_net, weak_meta, RootConfig(games=games, max_roots=max_roots, seed=seed))
    if not records:
        raise _fail(f"no roots: {meta.name} and {weak_meta.name} chose the same move everywhere in {games} games "
                    f"(more --games, or another --weaker); {out} not written")
    _atomic_jsonl(out, records)
    console.print(f"{len(records)} roots from {games} games ({meta.name} vs {weak_meta.name}) → {out}")


@app.command()
def rollouts(
    roots_file: Annotated[Path, typer.Option("--roots", help="roots.jsonl (from `azc roots`)")],
    out: Annotated[Path, typer.Option("--out", help="rollouts.jsonl to write")],
    model: ModelOpt = None,
    length: Annotated[int, typer.Option(min=1, help="T: plies of the chosen line")] = 10,
    subpar: Annotated[int, typer.Option(min=1, help="J: sub-par lines per root")] = 5,
    sims: Annotated[int, typer.Option("--sims", min=1, help="Simulations per search")] = 200,
    limit: Annotated[int | None, typer.Option(min=1)] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Chosen and sub-par lines from every root (FEN + SAN + values + visits, readable by a person)."""
    from alphazero_concepts.search.rollouts import RolloutConfig
    from alphazero_concepts.stages.rollouts import run_rollouts

    output_file(out)
    boards = read_records(roots_file, root_board, "roots")[:limit]
    config = RolloutConfig(length=length, max_subpar=subpar, simulations=sims)
    net, _ = _load(model, device)
    results = run_rollouts(net, boards, config, out)  # every root in one search (the pipeline: chunks of 8)
    n_lines = sum(len(r.subpar) for r in results)
    console.print(f"{len(results)} roots, {n_lines} sub-par lines → {out}")


@app.command()
def mine(
    rollouts_file: Annotated[Path, typer.Option("--rollouts", help="rollouts.jsonl (from `azc rollouts`)")],
    layer: Annotated[str, typer.Option("--layer", help="Layer to mine")],
    out: Annotated[Path, typer.Option("--out", help="Directory for concepts.jsonl + vectors.npz")],
    model: ModelOpt = None,
    player: Annotated[str, typer.Option(help="'one' (the states where the root's side is to move) or 'both'")] = "one",
    device: DeviceOpt = "cpu",
) -> None:
    """Dynamic concepts: one sparse vector per root where the chosen line beats every sub-par line."""
    from alphazero_concepts.concepts.conceptset import ConceptSet
    from alphazero_concepts.stages.mine import mine_roots

    if player not in ("one", "both"):
        raise _fail(f"--player must be 'one' or 'both', got {player!r}")
    output_dir(out)
    items = read_records(rollouts_file, checked_rollout, "rollouts")
    net, meta = _load(model, device)
    if layer not in net.layer_names:
        raise _fail(f"unknown layer {layer!r}; the network has: {', '.join(net.layer_names)}")
    with _progress("mine") as progress:
        task = progress.add_task("mine", total=len(items))
        records, vectors = mine_roots(net, items, [layer], player=player, model=meta.name,
                                      model_sha256=meta.extra.get("sha256"),
                                      progress=lambda done, total: progress.update(task, completed=done))
    ConceptSet.save(out, records, vectors)
    console.print(f"{len(vectors)} concepts from {len(items)} roots at {layer} → {out}")


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
    from alphazero_concepts.chess.positions import InputError
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.network import NetConfig
    from alphazero_concepts.training.supervised import SupervisedConfig, train_supervised

    for path in pgn:
        input_file(path, "PGN file")
    output_dir(out)
    try:
        config = SupervisedConfig(pgn=tuple(str(p) for p in pgn), net=NetConfig(blocks=blocks, channels=channels),
                                  seed=seed, batch_size=batch_size, lr=lr, total_steps=steps, min_elo=min_elo,
                                  checkpoint_every=checkpoint_every, chunk_games=chunk_games, threads=threads,
                                  device=device)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    stop = min(steps, max_steps or steps)
    with Progress(TextColumn("[bold]train[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console) as progress:
        task = progress.add_task("train", total=stop, info="reading games …")

        def report(step: int, stats: dict[str, float]) -> None:
            progress.update(task, completed=step, info=(
                f"loss {stats['loss']:.3f} acc {stats['acc']:.3f} {stats['positions_per_s']:.0f} pos/s"))

        try:
            series = train_supervised(config, out, max_steps=max_steps, progress=report)
        except (InputError, CheckpointError) as exc:
            raise _fail(str(exc)) from exc
    last = series.entries[-1] if series.entries else None
    if last:
        hold = last.extra.get("holdout", {})
        acc = f"{hold['acc']:.3f}" if "acc" in hold else "– (no held-out games)"
        console.print(f"series {out}: {len(series)} checkpoints; last {last.name} at step {last.step}, "
                      f"{last.positions_seen:,} positions; held-out top-1 {acc}")


@train_app.command("distill")
def train_distill_cmd(
    games: Annotated[list[Path], typer.Option("--games", help="Engine-games file(s) (gzip JSON lines, see "
                                                             "docs/teacher.md); machine play only")],
    out: Annotated[Path, typer.Option("--out", help="Series directory (created, or resumed from its state)")],
    steps: Annotated[int | None, typer.Option(help="Total optimiser steps of the schedule [30000]")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this step (resume later)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Positions a step [256]")] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW peak learning rate [1e-3]")] = None,
    temperature: Annotated[float | None, typer.Option(
        "--temperature", help="Policy target: softmax over MultiPV scores / this many centipawns; 0 = the "
                              "engine's best move only [40]")] = None,
    history_dropout: Annotated[float | None, typer.Option(help="Share of positions shown without history, as "
                                                                 "from a bare FEN [0.15]")] = None,
    repeat: Annotated[list[int] | None, typer.Option(
        "--repeat", help="Times each --games file's positions enter an epoch, one per file in order (oversample "
                         "a small file of rare positions) [1 each]")] = None,
    blocks: Annotated[int | None, typer.Option(help="Residual blocks of a new series [6]")] = None,
    channels: Annotated[int | None, typer.Option(help="Channels of a new series [64]")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Add a series checkpoint every N steps [2000]")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the weights and the data order [0]")] = None,
    threads: Annotated[int, typer.Option(help="Torch CPU threads")] = 2,
    device: DeviceOpt = "cpu",
    precision: Annotated[str | None, typer.Option(
        help="fp32, or bf16: bfloat16 autocast for the forward and backward pass (faster where the CPU or GPU "
             "has bfloat16 units; weights and optimiser stay float32) [fp32]")] = None,
) -> None:
    """Kick-start a network from an engine's search (policy: MultiPV scores, value: WDL) on engine-labelled
    machine games; resumable (kill -9 included) with the same data order."""
    from alphazero_concepts.chess.positions import InputError
    from alphazero_concepts.nn.network import NetConfig
    from alphazero_concepts.training.distill import config_of, train_distill

    for path in games:
        input_file(path, "engine-games file")
    output_dir(out)
    try:
        base = config_of(out)
        net = None
        if blocks is not None or channels is not None:
            net = NetConfig.from_dict({**base.net.to_dict(), **{k: v for k, v in
                                        (("blocks", blocks), ("channels", channels)) if v is not None}})
        config = config_of(out, [str(p) for p in games], total_steps=steps, batch_size=batch_size, lr=lr,
                           policy_temperature_cp=temperature, checkpoint_every=checkpoint_every, seed=seed,
                           history_dropout=history_dropout, repeat=tuple(repeat) if repeat else None,
                           threads=threads, device=device, precision=precision, net=net)
    except (ValueError, TypeError) as exc:
        raise _fail(str(exc)) from exc
    stop = min(config.total_steps, max_steps or config.total_steps)
    with Progress(TextColumn("[bold]distill[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console) as progress:
        task = progress.add_task("distill", total=stop, info="reading games …")

        def report(step: int, stats: dict[str, float]) -> None:
            progress.update(task, completed=step, info=(
                f"policy {stats['policy_loss']:.3f} value {stats['value_loss']:.3f} agree {stats['agree']:.2f} "
                f"{stats['positions_per_s']:.0f} pos/s"))

        created = not out.exists()
        try:
            series = train_distill(config, out, max_steps=max_steps, progress=report,
                                   log=lambda s: progress.console.print(f"[dim]{s}[/dim]"))
        except (InputError, ValueError) as exc:
            if created:  # the data could not be used: leave no empty series directory behind
                remove_empty_dirs(out)
            raise _fail(str(exc)) from exc
    last = series.entries[-1] if series.entries else None
    if last:
        hold = last.extra.get("holdout", {})
        console.print(f"series {out}: {len(series)} checkpoints; last {last.name} at step {last.step}; held-out "
                      f"agreement {hold.get('agree', float('nan')):.3f}, "
                      f"value MSE {hold.get('value_mse', float('nan')):.4f}")


def _pipeline(config, out: Path, from_stage: str | None, until: str | None = None) -> None:
    """Run the pipeline with one progress bar per stage, then print the summary table."""
    from alphazero_concepts.chess.positions import InputError
    from alphazero_concepts.filters.stages import StageError
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.pipeline import STAGES, run_pipeline, run_summary
    from alphazero_concepts.stages.config import PipelineError

    start = time.time()
    with Progress(TextColumn("[bold]{task.description:<12}[/bold]"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console) as bar:
        tasks = {stage: bar.add_task(stage, total=None, start=False) for stage in STAGES}

        def progress(stage: str, done: int, total: int | None) -> None:
            bar.start_task(tasks[stage])
            bar.update(tasks[stage], completed=done, total=total)

        try:
            results = run_pipeline(config, out, from_stage=from_stage, until=until, progress=progress,
                                   log=lambda s: bar.console.print(f"[dim]{s}[/dim]"))
        except (PipelineError, StageError, InputError, CheckpointError, ValueError) as exc:
            raise _fail(str(exc)) from exc
    summary = run_summary(out)
    table = Table(title=f"run {out} ({time.time() - start:.0f} s)")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("s", justify="right")
    for r in results:
        table.add_row(r.stage, r.status, f"{r.seconds:.1f}")
    console.print(table)
    funnel = Table(title=f"funnel (kept rule: {summary['kept_rule']})")
    columns = [*summary["stages"], *(["kept_beating_controls"] if summary["kept_rule"] == "specific" else [])]
    for stage in columns:
        funnel.add_column(stage.replace("kept_beating_controls", "beating controls"), justify="right")
    if summary["stages"]:
        funnel.add_row(*[str(summary["funnel"].get(s, 0)) for s in columns])
        console.print(funnel)
    already = summary["funnel"].get("already_known", 0)
    if already:
        console.print(f"{already} solved concepts are 'already known': no earlier checkpoint of the series is weak "
                      "enough on their prototypes to be taught.")
    if summary["kept_rule"] in ("solved", "teachable", "novel"):  # looser than the paper's rule: say so
        rule = {"solved": "every solved concept", "teachable": "every teachable concept",
                "novel": "every novel concept"}[summary["kept_rule"]]
        console.print(f"[yellow]kept rule '{summary['kept_rule']}': {rule} goes on to puzzles and the report (a "
                      f"demonstration of the later stages); by the paper's rule (teachable and novel) "
                      f"{summary['funnel'].get('kept', 0)} are kept.[/yellow]")
    kept = summary["kept"]
    shown = ", ".join(kept[:6]) + (f" … ({len(kept)} in all)" if len(kept) > 6 else "")
    console.print(f"kept concepts: {shown or 'none'}; puzzles written: {summary['puzzles']}")
    console.print(f"report: [bold]{summary['report']}[/bold]")


@app.command("run")
def run_cmd(
    config: Annotated[Path, typer.Argument(help="Pipeline config (TOML; see `azc quickstart` → RUN/config.toml)")],
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default runs/<config name>)")] = None,
    from_stage: Annotated[str | None, typer.Option("--from", help="Re-run from this stage: roots, rollouts, "
                                                   "collect, mine, static, teachability, novelty, puzzles, "
                                                   "report")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Stop after this stage (e.g. mine: look at the "
                                              "concepts before the filters)")] = None,
) -> None:
    """The whole method over one run directory: finished stages are skipped, a stopped run resumes."""
    from alphazero_concepts.pipeline import STAGES
    from alphazero_concepts.stages.config import PipelineError, load_config

    for option, stage in (("--from", from_stage), ("--until", until)):
        if stage is not None and stage not in STAGES:
            raise _fail(f"{option} {stage!r}: not a stage (stages: {', '.join(STAGES)})")
    try:
        cfg = load_config(config)
    except PipelineError as exc:
        raise _fail(str(exc)) from exc
    run_dir = out or Path("runs") / config.stem
    output_dir(run_dir)
    _pipeline(cfg, run_dir, from_stage, until)


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option("--out", help="Where to write the results")] = Path("runs/quickstart"),
    from_stage: Annotated[str | None, typer.Option("--from", help="Re-run from this stage")] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """The main job on the bundled model, in a few minutes on a laptop CPU: roots → … → report.html.

    Small defaults (`PipelineConfig.quickstart()`); the config is written to OUT/config.toml, so
    `azc run OUT/config.toml --out OUT2` repeats it and editing it scales it up.
    """
    import dataclasses

    from alphazero_concepts.pipeline import STAGES
    from alphazero_concepts.stages.config import PipelineConfig

    if from_stage is not None and from_stage not in STAGES:
        raise _fail(f"--from {from_stage!r}: not a stage (stages: {', '.join(STAGES)})")
    output_dir(out)
    config = PipelineConfig.quickstart()
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, device=device))
    _pipeline(config, out, from_stage)


# Stage packages add their own commands (each keeps its CLI next to its code).
from alphazero_concepts.arena.commands import register as _register_arena  # noqa: E402
from alphazero_concepts.distributed.commands import register as _register_distributed  # noqa: E402
from alphazero_concepts.filters.commands import register as _register_filters  # noqa: E402
from alphazero_concepts.play.commands import register as _register_play  # noqa: E402
from alphazero_concepts.probing.commands import register as _register_probing  # noqa: E402
from alphazero_concepts.puzzles.commands import register as _register_puzzles  # noqa: E402
from alphazero_concepts.training.commands import register_data as _register_data  # noqa: E402
from alphazero_concepts.training.commands import register_train as _register_train  # noqa: E402

_register_puzzles(app)
_register_play(app)
_register_distributed(app)
_register_arena(app)
_register_train(train_app)
_register_data(app)
_register_filters(app)
_register_probing(app)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
