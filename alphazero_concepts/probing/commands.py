"""`azc probe`, `azc static` and `azc steer`: a thin command layer over `probing` (the lead wires it with
`register(app)`)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import chess
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from alphazero_concepts.commandline import fail as _fail
from alphazero_concepts.commandline import input_file, output_dir, output_file, run_dir

console = Console()

QUICK_TARGETS = ("material", "material_white", "mobility", "passed_pawns", "pawn_shield", "king_attackers")
FULL_TARGETS = ("material", "material_white", "pieces", "mobility", "opp_mobility", "king_safety", "passed_pawns",
                "opp_passed_pawns", "in_check", "threats")
QUICK_POSITIONS = 2500


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console)


# ------------------------------------------------------------------------------------------------------------
# probe


def _networks(model: str | None, series: str | None, checkpoints: list[str], device: str
              ) -> tuple[dict[str, Callable], str, str]:
    """({checkpoint: loader}, strongest checkpoint, label) for --model or --series (default: the bundled series)."""
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import load_network, resolve_series
    from alphazero_concepts.nn.network import resolve_device

    dev = resolve_device(device)
    try:
        if model is not None:
            if checkpoints:
                raise _fail("--checkpoints needs --series")
            net, meta = load_network(model, dev)
            return {meta.name: lambda: net}, meta.name, meta.name
        s = resolve_series(series)
        names = checkpoints or s.names
        missing = [n for n in names if n not in s.names]
        if missing:
            raise _fail(f"{s.directory}: no checkpoints {missing} (have {', '.join(s.names)})")
        names = [n for n in s.names if n in names]  # training order
        strongest = s.strongest()
        strongest = strongest if strongest in names else names[-1]
        loaders = {n: (lambda n=n: s.load(n, dev)[0]) for n in names}
        return loaders, strongest, s.name
    except (CheckpointError, ValueError) as exc:
        raise _fail(str(exc)) from exc


def _file_positions(path: Path, limit: int | None, min_ply: int, seed: int
                    ) -> tuple[list[chess.Board], dict[str, list[str]], str]:
    """Boards of a position file (up to `limit`: a seeded uniform sample, streamed, when the file has more) with
    block labels."""
    import random

    from alphazero_concepts.chess.positions import InputError, ReadReport, boards_of, read_positions
    from alphazero_concepts.probing.probes import material_class

    report = ReadReport(str(path))
    rng = random.Random(seed)
    items: list = []
    try:
        kw = {"min_ply": min_ply} if path.suffix.lower() == ".pgn" else {}
        for k, item in enumerate(read_positions(path, report=report, **kw)):
            if limit is None or k < limit:
                items.append(item)
            elif (j := rng.randrange(k + 1)) < limit:  # reservoir sampling: memory stays at `limit` positions
                items[j] = item
    except InputError as exc:
        raise _fail(str(exc)) from exc
    if report.skipped:
        console.print(f"[yellow]{report.summary()}[/yellow]")
    items.sort(key=lambda p: (p.game if p.game is not None else -1, p.line or 0, p.ply or 0))
    if not items:
        raise _fail(f"{path}: no positions")
    boards = list(boards_of(items))  # sorted by game and ply: each board continues the previous one
    games = [f"{p.source}#{p.game if p.game is not None else p.line}" for p in items]
    openings = [(p.meta.get("ECO") or "?")[:1] for p in items]
    groups = {"game": games, "material": material_class(boards)}
    if len(set(openings) - {"?"}) >= 2:
        groups["opening"] = openings
    return boards, groups, f"{path} ({len(boards)} positions, {report.skipped} skipped)"


def probe(
    model: Annotated[str | None, typer.Option("--model", "-m", help="One network (file, SERIES:NAME, bundled name)")
                     ] = None,
    series: Annotated[str | None, typer.Option("--series", "-s", help="Series directory or bundled name (default: "
                                                                     "the bundled teacher)")] = None,
    positions: Annotated[Path | None, typer.Option("--positions", help="PGN, EPD, FEN list or Lichess CSV "
                                                   "(with --quick: optional, default sampled games)")] = None,
    targets: Annotated[list[str] | None, typer.Option("--targets", help="Comma list of targets (material, "
                                                      "mobility, in_check …), groups (pieces, king_safety, threats, "
                                                      "board), stockfish, csv:PATH")] = None,
    layers: Annotated[list[str] | None, typer.Option("--layers", help="Comma list (default: all; quick: the "
                                                     "residual stream and value.fc1)")] = None,
    checkpoints: Annotated[list[str] | None, typer.Option("--checkpoints", help="Comma list of series "
                                                          "checkpoints (default: all)")] = None,
    mlp_layers: Annotated[list[str] | None, typer.Option("--mlp-layers", help="Layers for the MLP probe "
                                                         "(default: the middle block)")] = None,
    features: Annotated[str, typer.Option(help="flat, pool2, pool or pca (quick: pool2)")] = "",
    block: Annotated[str, typer.Option(help="Block hold-out by game, opening, material or none (default: "
                                            "opening when known, else game)")] = "",
    l1: Annotated[bool, typer.Option("--l1", help="Also fit sparse (L1) probes")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many positions (a seeded sample)")] = None,
    min_ply: Annotated[int, typer.Option(help="PGN: skip positions before this ply")] = 8,
    policy_share: Annotated[float, typer.Option(help="Sampled positions: share of games played by the "
                                                     "network's policy (the rest: random moves)")] = 0.0,
    stockfish_depth: Annotated[int, typer.Option(help="Stockfish target: search depth")] = 8,
    stockfish_nodes: Annotated[int | None, typer.Option(help="Stockfish target: nodes (instead of depth)")] = None,
    engine: Annotated[str | None, typer.Option(help="Stockfish binary (default: PATH, /usr/games)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes: 2,500 positions, the residual stream, "
                                                        "continuous targets (a few minutes on 2 cores)")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the summary here")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Results directory (resumed when rerun): "
                                                           "results.jsonl, figures/")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")] = "cpu",
) -> None:
    """Probes per layer and checkpoint: which targets are (linearly) readable where, and since when in training."""
    from alphazero_concepts.chess.positions import InputError
    from alphazero_concepts.probing import figures
    from alphazero_concepts.probing.probes import ProbeConfig, ProbeError, best_layer, run_probes, score_table
    from alphazero_concepts.probing.sampling import SampleConfig, sample_positions
    from alphazero_concepts.probing.targets import StockfishTarget, TargetError, resolve_targets

    start = time.time()
    if model is not None and series is not None:
        raise _fail("give --model or --series, not both")
    if positions is None and not quick:
        raise _fail("--positions is required (or use --quick for sampled positions)")
    if positions is not None:
        input_file(positions, "positions file")
    if json_path:
        output_file(json_path, "--json")
    if out is not None:
        output_dir(out)
    loaders, strongest, label = _networks(model, series, _split(checkpoints), device)
    out = out or Path("runs/probe") / f"{label}{'-quick' if quick else ''}"
    try:  # targets first: a typo fails before anything is loaded
        sf = StockfishTarget(depth=stockfish_depth, nodes=stockfish_nodes, engine_path=engine,
                             cache=out / "stockfish_cache.jsonl")
        chosen_targets = resolve_targets(_split(targets) or (QUICK_TARGETS if quick else FULL_TARGETS), stockfish=sf)
    except (TargetError, InputError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    first = loaders[strongest]()
    loaders[strongest] = lambda: first  # loaded once
    layer_names = list(first.layer_names)
    blocks = [n for n in layer_names if n.startswith("block") and "." not in n]
    chosen_layers = _split(layers) or (["stem", *blocks, "value.fc1"] if quick else layer_names)
    unknown = [n for n in chosen_layers if n not in layer_names]
    if unknown:
        raise _fail(f"unknown layers {unknown}; the network has: {', '.join(layer_names)}")
    middle = blocks[len(blocks) // 2] if blocks else chosen_layers[len(chosen_layers) // 2]
    mlp = _split(mlp_layers) or [middle]

    if positions is not None:
        boards, groups, source = _file_positions(positions, limit or (QUICK_POSITIONS if quick else None), min_ply,
                                                 seed)
    else:
        cfg = SampleConfig(positions=limit or QUICK_POSITIONS, policy_share=policy_share, seed=seed)
        with console.status("sampling positions …"):
            boards, groups = sample_positions(cfg, first if policy_share > 0 else None)
        source = (f"{len(boards)} positions from seeded games (seed {seed}) from the 26 bundled opening lines, every "
                  f"3rd ply; {policy_share:.0%} of games sampled from {strongest}'s policy, the rest random moves "
                  "(captures preferred half the time)")
    block_kind = block or ("opening" if "opening" in groups else "game")
    if block_kind == "none":
        block_kind = ""
    if block_kind and block_kind not in groups:
        raise _fail(f"no {block_kind!r} labels for these positions (have: {', '.join(groups)})")
    try:
        config = ProbeConfig(layers=tuple(chosen_layers), features=features or ("pool2" if quick else "flat"),
                             block=block_kind, seed=seed, mlp_layers=tuple(mlp),
                             mlp_checkpoints=(strongest,) if quick else (),
                             mlp_targets=("material", "material_white") if quick else (), l1=l1)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"positions: {source}")
    console.print(f"targets: {', '.join(t.name for t in chosen_targets)}; layers: {len(chosen_layers)}; "
                  f"checkpoints: {', '.join(loaders)}; block hold-out by {block_kind or '—'}; results → {out}")
    total = len(loaders) * len(chosen_layers)
    with _progress() as progress:
        task = progress.add_task("probe", total=total)
        step = itertools.count(1)
        try:
            rows = run_probes(loaders, boards, chosen_targets, config, groups=groups.get(block_kind), out=out,
                              progress=lambda lbl, _d, _t: progress.update(task, completed=next(step),
                                                                         description=f"probe {lbl}"))
        except (ProbeError, TargetError) as exc:
            raise _fail(str(exc)) from exc
        progress.update(task, completed=total)
    fig_dir = out / "figures"
    names = [t.name for t in chosen_targets]
    paths = {"heatmap": str(figures.heatmaps(rows, fig_dir / "heatmap.png", targets=names,
                                             title=f"{label}: held-out score by layer and checkpoint")),
             "layer_curves": str(figures.layer_curves(rows, fig_dir / "layer_curves.png", targets=names))}
    if any(r["probe"] == "mlp" for r in rows):
        paths["linear_vs_mlp"] = str(figures.linear_vs_mlp(rows, fig_dir / "linear_vs_mlp.png", checkpoint=strongest))
    if block_kind:
        paths["heatmap_block"] = str(figures.heatmaps(rows, fig_dir / "heatmap_block.png", targets=names,
                                                      split="block", title=f"{label}: block hold-out by {block_kind}"))
    summary = _summary(rows, names, list(loaders), strongest, score_table, best_layer)
    result = {
        **{f"{t}_best_r2" if _kind(rows, t) == "continuous" else f"{t}_best_balanced_accuracy": summary[t]["best"]
           for t in names if t in summary},
        "material_best_layer": summary.get("material", {}).get("best_layer"),
        "strongest_checkpoint": strongest,
        "per_checkpoint": {t: s["per_checkpoint"] for t, s in summary.items()},
        "per_layer": {t: s["per_layer"] for t, s in summary.items()},
        "scores": {t: score_table(rows, t) for t in names},
        "block_scores": {t: score_table(rows, t, split="block") for t in names} if block_kind else {},
        "mlp": [r for r in rows if r["probe"] == "mlp"],
        "held_out": next((r.get("held_out") for r in rows if r.get("split") == "block"), []),
        "heatmap": paths["heatmap"], "figures": paths, "results": str(out / "results.jsonl"),
        "positions": {"n": len(boards), "source": source}, "config": config.to_dict(),
        "model": label, "checkpoints": list(loaders), "wall_s": time.time() - start,
    }
    _print_table(summary, list(loaders), strongest)
    console.print(f"figures: {', '.join(paths.values())}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {json_path}")


def _kind(rows: list[dict], target: str) -> str:
    return next((r["kind"] for r in rows if r["target"] == target), "continuous")


def _summary(rows: list[dict], names: list[str], checkpoints: list[str], strongest: str, score_table: Callable,
             best_layer: Callable) -> dict[str, dict]:
    out = {}
    for t in names:
        table = score_table(rows, t)
        layer, best = best_layer(rows, t, strongest)
        per_ckpt = {}
        for c in checkpoints:
            bl, bs = best_layer(rows, t, c)
            per_ckpt[c] = {"best_layer": bl, "score": None if bs != bs else bs}
        out[t] = {"best": None if best != best else best, "best_layer": layer, "per_checkpoint": per_ckpt,
                  "per_layer": {k: (None if v != v else v) for k, v in table.get(strongest, {}).items()}}
    return out


def _print_table(summary: dict[str, dict], checkpoints: list[str], strongest: str) -> None:
    table = Table(title="best held-out score over layers (random split, linear probe)")
    table.add_column("target")
    for c in checkpoints:
        table.add_column(c + (" *" if c == strongest else ""), justify="right")
    table.add_column("best layer *")
    for t, s in summary.items():
        cells = [("–" if v["score"] is None else f"{v['score']:.3f}") for v in s["per_checkpoint"].values()]
        table.add_row(t, *cells, str(s["best_layer"]))
    console.print(table)


# ------------------------------------------------------------------------------------------------------------
# static

QUICK_STATIC = {"positions": 600, "pairs": 120, "checkpoints": 3}


def _static_sts(sts: str | None, seed: int) -> tuple[list, str]:
    """(STS positions, source) for `--sts`: none without it; "default": the suite beside the checkout when it
    exists (said either way); a path: that file, or exit 2 naming it. The themes are checked before any network
    is loaded."""
    from alphazero_concepts.arena.sts import read_sts
    from alphazero_concepts.chess.positions import InputError, ReadReport
    from alphazero_concepts.probing.static_series import StaticSeriesError, check_splits, default_sts_path, sts_labels

    if sts is None:
        return [], ""
    if sts == "default":
        path = default_sts_path()
        if not path.is_file():
            console.print(f"[yellow]STS: the default suite {path} is not there; piece concepts only[/yellow]")
            return [], ""
        console.print(f"STS: the default suite {path}")
    else:
        path = input_file(Path(sts), "STS suite")
    report = ReadReport(str(path))
    try:
        positions = read_sts(path, report)
    except InputError as exc:
        raise _fail(str(exc)) from exc
    if not positions:
        raise _fail(f"{path}: no usable STS positions ({report.summary()})")
    if report.skipped:
        console.print(f"[yellow]{report.summary()}[/yellow]")
    labels = sts_labels(positions)
    if len(labels) < 2:
        raise _fail(f"{path}: positions of {len(labels)} STS theme(s); a theme concept needs at least two themes")
    try:
        check_splits(labels, seed, "STS positions")
    except StaticSeriesError as exc:
        raise _fail(f"{path}: {exc}") from exc
    return positions, str(path)


def static(
    series: Annotated[str | None, typer.Option("--series", "-s", help="Series directory or bundled name (default: "
                                                                     "the bundled teacher)")] = None,
    layers: Annotated[list[str] | None, typer.Option("--layers", help="Comma list (default: stem, every block, "
                                                     "policy.conv, value.conv; quick: stem, the middle and last "
                                                     "block, value.conv)")] = None,
    checkpoints: Annotated[list[str] | None, typer.Option("--checkpoints", help="'all' or a comma list (default: "
                                                          "all; quick: first, middle and last)")] = None,
    sts: Annotated[str | None, typer.Option("--sts", help="STS suite (EPD) for one concept per theme; 'default': "
                                            "../shared/data/suites/STS1-STS15_LAN_v5.epd when present. Without "
                                            "it: piece concepts only")] = None,
    positions: Annotated[int | None, typer.Option("--positions", min=10, help="Game positions for the piece "
                                                  "concepts (default 2000; quick 600)")] = None,
    pairs: Annotated[int | None, typer.Option("--pairs", min=1, help="Pairs per mined concept (default 400; "
                                              "quick 120)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Few positions, pairs, layers and checkpoints (about 2 "
                                                        "minutes on one core)")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the table here")] = None,
    figure: Annotated[Path | None, typer.Option("--figure", help="PNG of the table (default: "
                                                "runs/static/SERIES.png)")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the positions, the split and the pairs")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")] = "cpu",
) -> None:
    """Static concepts per layer and checkpoint: held-out pair accuracy of mined piece (and STS theme) concepts."""
    import numpy as np

    from alphazero_concepts.concepts.validation import PIECE_CONCEPTS
    from alphazero_concepts.probing.static_series import (
        PAPER,
        StaticSeriesConfig,
        StaticSeriesError,
        default_layers,
        plot_static,
        static_series,
        sts_labels,
    )

    start = time.time()
    if json_path:
        output_file(json_path, "--json")
    if figure is not None:
        output_file(figure, "--figure")
        if figure.suffix.lower() != ".png":
            raise _fail(f"--figure {figure}: expected a .png path")
    wanted = _split(checkpoints)
    wanted = [] if wanted == ["all"] else wanted
    sts_positions, sts_source = _static_sts(sts, seed)
    loaders, _strongest, label = _networks(None, series, wanted, device)
    if quick and not wanted and len(loaders) > QUICK_STATIC["checkpoints"]:
        names = list(loaders)
        keep = sorted({round(i) for i in np.linspace(0, len(names) - 1, QUICK_STATIC["checkpoints"])})
        loaders = {names[i]: loaders[names[i]] for i in keep}
    first_name = next(iter(loaders))
    first = loaders[first_name]()
    loaders[first_name] = lambda: first  # loaded once
    chosen = _split(layers)
    if not chosen:
        chosen = default_layers(first)
        if quick:
            blocks = [n for n in chosen if n.startswith("block")]
            chosen = [n for n in chosen if n == "stem" or n == "value.conv"
                      or (blocks and n in (blocks[len(blocks) // 2], blocks[-1]))]
    unknown = [n for n in chosen if n not in first.layer_names]
    if unknown:
        raise _fail(f"unknown layers {unknown}; the network has: {', '.join(first.layer_names)}")
    try:
        config = StaticSeriesConfig(layers=tuple(chosen),
                                    positions=positions or (QUICK_STATIC["positions"] if quick else 2000),
                                    pairs=pairs or (QUICK_STATIC["pairs"] if quick else 400), seed=seed)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    figure = figure or Path("runs/static") / f"{Path(label).name}{'-quick' if quick else ''}.png"
    n_concepts = len(PIECE_CONCEPTS) + (len(sts_labels(sts_positions)) if sts_positions else 0)
    console.print(f"checkpoints: {', '.join(loaders)}; layers: {', '.join(chosen)}; {config.positions} game "
                  f"positions, {config.pairs} pairs; "
                  + (f"STS themes from {sts_source} ({len(sts_positions)} positions)" if sts_positions
                     else "piece concepts only (no --sts)"))
    total = len(loaders) * len(chosen) * n_concepts
    with _progress() as progress:
        task = progress.add_task("static", total=total)
        try:
            result = static_series(loaders, config, sts=sts_positions or None, sts_source=sts_source,
                                   progress=lambda c, layer, _k: progress.update(
                                       task, advance=1, description=f"static {c} {layer}"))
        except (StaticSeriesError, ValueError) as exc:
            raise _fail(str(exc)) from exc
    result.update({"model": label, "quick": quick, "wall_s": time.time() - start, "figure": str(figure)})
    plot_static(result, figure, title=f"{label}: static concepts — test pair accuracy by layer and checkpoint")
    table = Table(title="best layer (chosen on validation): test pair accuracy")
    table.add_column("concept")
    for c in result["checkpoints"]:
        table.add_column(c, justify="right")
    table.add_column("paper", justify="right")
    for name, concept in result["concepts"].items():
        cells = [f"{e['best_test_pair_accuracy']:.3f} ({e['best_layer']})" for e in concept["checkpoints"].values()]
        table.add_row(name, *cells, "")
    for kind, means in result["summary"]["mean_best"].items():
        table.add_row(f"[bold]mean ({kind})[/bold]", *(f"{v:.3f}" for v in means.values()), f"{PAPER[kind]:.2f}")
    console.print(table)
    console.print(f"wrote {figure}")
    if json_path:
        from alphazero_concepts.core.files import atomic_write_bytes

        json_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(json_path, (json.dumps(result, indent=2) + "\n").encode(), fsync=False)
        console.print(f"wrote {json_path}")


# ------------------------------------------------------------------------------------------------------------
# steer


def read_answers(path: Path, concept_id: str | None = None) -> tuple[list[chess.Board], list[chess.Move], str]:
    """Positions with answer moves: a puzzle set (.json; puzzles of `concept_id` when it has any), a Lichess puzzle
    CSV (answer = first solution move), EPD with ``bm`` or JSONL of roots (``fen``/``start_fen``+``moves`` and
    ``answer``/``teacher_move``/``move`` in UCI). Raises ValueError naming the file (and line) on bad input."""
    from alphazero_concepts.chess.positions import (
        InputError,
        board_from_fen,
        read_epd,
        read_jsonl,
        read_lichess_puzzles,
    )

    suffix = path.suffix.lower()
    boards: list[chess.Board] = []
    moves: list[chess.Move] = []
    note = str(path)
    if suffix == ".json":
        from alphazero_concepts.core.puzzleset import load_puzzle_set

        puzzles = load_puzzle_set(path).puzzles
        mine = [p for p in puzzles if concept_id and p.concept == concept_id]
        chosen = mine or puzzles
        note = f"{path}: {len(chosen)} puzzles" + (f" of concept {concept_id}" if mine else " (all concepts)")
        for p in chosen:
            boards.append(p.board())
            moves.append(chess.Move.from_uci(p.answer))
    elif suffix == ".csv":
        for p in read_lichess_puzzles(path):
            solution = p.meta.get("solution", "").split()
            if solution:
                boards.append(p.board())
                moves.append(chess.Move.from_uci(solution[0]))
    elif suffix == ".epd":
        for p in read_epd(path):
            bm = p.meta.get("bm", "").split()
            if not bm:
                raise InputError("no bm (best move) opcode", source=str(path), line=p.line)
            board = p.board()
            boards.append(board)
            moves.append(board.parse_san(bm[0]))
    elif suffix == ".jsonl":
        def answered(rec: dict) -> tuple[chess.Board, chess.Move]:
            if "start_fen" in rec:
                board = board_from_fen(rec["start_fen"], moves=rec.get("moves", []))
            else:
                board = board_from_fen(rec["fen"])
            answer = rec.get("answer") or rec.get("teacher_move") or rec["move"]
            move = chess.Move.from_uci(answer) if isinstance(answer, str) else None
            if move is None or not board.is_legal(move):
                raise InputError(f"answer {answer!r} is not a legal move in {board.fen()}", source="", line=None)
            return board, move

        for board, move in read_jsonl(path, answered, strict=True):  # a bad line is an error naming file:line
            boards.append(board)
            moves.append(move)
    else:
        raise InputError(f"unknown file type {suffix!r} (expected .json puzzle set, .csv Lichess puzzles, .epd with "
                         "bm, or .jsonl roots)", source=str(path), line=None)
    if not boards:
        raise InputError("no positions with answers", source=str(path), line=None)
    return boards, moves, note


def steer(
    concepts: Annotated[Path, typer.Option("--concepts", help="Mining run directory (concepts.jsonl + "
                                                              "vectors.npz) or an .npy vector")],
    positions: Annotated[Path, typer.Option("--positions", help="Puzzle set .json, Lichess .csv, .epd with bm, "
                                                                "or roots .jsonl")],
    concept: Annotated[str | None, typer.Option("--concept", help="Concept id (as in concepts.jsonl)")] = None,
    layer: Annotated[str | None, typer.Option("--layer", help="Layer of an .npy vector")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Network (default: the bundled teacher)")
                     ] = None,
    alphas: Annotated[str, typer.Option("--alphas", help="Comma list of α (0 is always added)")
                      ] = "0,0.05,0.1,0.25,0.5,0.75,1",
    beta: Annotated[float, typer.Option(help="β: scale of the concept direction")] = 1.0,
    random_vectors: Annotated[int, typer.Option("--random", help="Random vectors of the same sparsity")] = 3,
    limit: Annotated[int | None, typer.Option(help="At most this many positions")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the result here")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the curves here")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")] = "cpu",
) -> None:
    """Amplification check: steer a layer along a concept vector (α grid) and watch agreement with the answers."""
    from alphazero_concepts.chess.positions import InputError
    from alphazero_concepts.core.puzzleset import PuzzleSetError
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import load_network
    from alphazero_concepts.nn.network import resolve_device
    from alphazero_concepts.probing.figures import steer_curves
    from alphazero_concepts.probing.steer import SteerConfig, SteerError, amplification_check, load_concept

    if concepts.suffix != ".npy":
        run_dir(concepts, "--concepts")
    input_file(positions, "positions file")
    if json_path:
        output_file(json_path, "--json")
    if plot:
        output_file(plot, "--plot")
    try:
        grid = tuple(float(a) for a in alphas.split(",") if a.strip())
        config = SteerConfig(alphas=grid, beta=beta, random_vectors=random_vectors, seed=seed)
        try:
            c = load_concept(concepts, concept, layer)
        except (AttributeError, TypeError, KeyError, OSError) as exc:  # records of the wrong shape
            raise SteerError(f"{concepts}: not a readable concept run ({type(exc).__name__}: {exc})") from exc
        boards, answers, note = read_answers(positions, c.id)
        boards, answers = boards[:limit], answers[:limit]
        net, meta = load_network(model, resolve_device(device))
        with console.status(f"steering {c.layer} over {len(config.alphas)} α × {1 + random_vectors} vectors …"):
            result = amplification_check(net, c.layer, c.vector, boards, answers, config)
    except (SteerError, InputError, PuzzleSetError, CheckpointError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    result.update({"concept_id": c.id, "model": meta.name, "positions_source": note})
    table = Table(title=f"{c.id} at {c.layer} ({c.nonzeros}/{c.vector.size} non-zeros), {len(boards)} positions, "
                        f"{meta.name}")
    for col in ("α", "agreement", "random agreement", "P(answer)", "Δ value", "random Δ value"):
        table.add_column(col, justify="right")
    rnd = result["random"] or {k: [float("nan")] * len(config.alphas) for k in result["concept"]}
    for j, a in enumerate(config.alphas):
        table.add_row(f"{a:g}", f"{result['concept']['agreement'][j]:.3f}", f"{rnd['agreement'][j]:.3f}",
                      f"{result['concept']['answer_prob'][j]:.3f}", f"{result['concept']['value_change'][j]:+.3f}",
                      f"{rnd['value_change'][j]:+.3f}")
    console.print(table)
    if plot:
        console.print(f"wrote {steer_curves(result, plot, title=f'{c.id} at {c.layer}')}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {json_path}")


def register(app: typer.Typer) -> None:
    """Add `probe`, `static` and `steer` to the `azc` app."""
    app.command("probe")(probe)
    app.command("static")(static)
    app.command("steer")(steer)
