"""`azc distributed …`: the sharded stages on a chosen backend, and the `--backend/--address/--workers` options.

    azc distributed rollouts --roots roots.jsonl --out runs/x/rollouts --backend ray --address auto
    azc distributed mine --rollouts runs/x/rollouts/rollouts.jsonl --layer block3 --out runs/x/concepts --backend ray
    azc distributed collect --positions games.pgn --layers block3 --out runs/x/activations --backend local --workers 2
    azc distributed selfplay --from teacher --out runs/rl --updates 20 --workers 8 --address auto
    azc distributed status --address auto

Every sharded command resumes: rerun it with the same arguments and only the unfinished shards run. Other
commands can take the same options (`BackendOpt`, `AddressOpt`, `WorkersOpt`) and build their backend with
`backend_from_options`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from alphazero_concepts.commandline import checked_rollout, output_dir, read_records, root_board
from alphazero_concepts.commandline import fail as _fail
from alphazero_concepts.core.rundir import ROLLOUTS
from alphazero_concepts.distributed.backend import BACKENDS, Backend, BackendConfig, ProgressFn, ShardError

console = Console()
T = TypeVar("T")

BackendOpt = Annotated[str, typer.Option(
    "--backend", help="Where shards run: local (this machine) or ray (a Ray cluster, or a local Ray instance)")]
AddressOpt = Annotated[str | None, typer.Option(
    "--address", help="Ray cluster to join: auto (the cluster this machine joined with `ray start`), HOST:6379, or "
                      "ray://HOST:10001; default: $RAY_ADDRESS, else a new local Ray instance")]
WorkersOpt = Annotated[int, typer.Option(
    "--workers", help="local: worker processes (0 = in-process); ray: tasks in flight (0 = 2 × the cluster's CPUs)")]
ShardSizeOpt = Annotated[int | None, typer.Option(
    "--shard-size", help="Items per shard (the unit of work, retry and resume; it fixes how work is batched)")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Checkpoint file, series directory, SERIES:NAME or bundled name (default: the bundled "
                          "teacher); workers load it from the same path (shared filesystem) unless --ship-weights")]
ShipOpt = Annotated[bool, typer.Option(
    "--ship-weights", help="Send the weights through Ray's object store (clusters without a shared filesystem)")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", help="cpu, cuda or auto (auto: the GPU a Ray task was given, else the CPU)")]


def check_address(address: str | None) -> str | None:
    """`address` if it has the form of a Ray address (auto, local, HOST:PORT or ray://HOST:PORT), else exit 2: a
    malformed one would otherwise have Ray retry it for minutes."""
    if address is None or address in ("auto", "local"):
        return address
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    ok = bool(sep and host and port.isdigit() and 0 < int(port) < 65536 and not any(c in host for c in " /\\@"))
    if not ok:
        raise _fail(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT (e.g. 10.0.0.5:6379)")
    return address


def backend_from_options(backend: str = "local", address: str | None = None, workers: int = 0) -> Backend:
    """The backend the options name (clear CLI errors for bad combinations or an unreachable cluster)."""
    check_address(address)
    try:
        return BackendConfig(kind=backend, address=address, workers=workers).make()
    except (ValueError, ShardError) as exc:
        raise _fail(str(exc)) from exc


@contextlib.contextmanager
def shard_progress(label: str, unit: str = "shards") -> Iterator[ProgressFn]:
    """A rich progress bar advanced by `progress(done, total)` as shards finish anywhere in the cluster."""
    with Progress(TextColumn(f"[bold]{label}[/bold]"), BarColumn(), TextColumn(f"{{task.completed}}/{{task.total}} "
                                                                             f"{unit}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _load(model: str | None, device: str, ship: bool):
    from alphazero_concepts.distributed.stages import NetSource
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import load_network

    try:
        net, meta = load_network(model, "cpu")
        return net, meta, NetSource.of(meta, model, ship=ship, device=device)
    except (CheckpointError, ValueError) as exc:
        raise _fail(str(exc)) from exc


def _report_problems(problems: list[str]) -> None:
    for problem in problems[:10]:
        console.print(f"[yellow]skipped[/yellow] {problem}")
    if len(problems) > 10:
        console.print(f"[yellow]… and {len(problems) - 10} more[/yellow]")
    if problems:
        console.print(f"[yellow]{len(problems)} records skipped[/yellow]")


def _sharded(label: str, backend: str, address: str | None, workers: int,
             run: Callable[[Backend, ProgressFn], T], errors: tuple[type[Exception], ...] = (ShardError,)) -> T:
    """`run(backend, progress)` on the backend the options name, with a progress bar; its errors exit 2."""
    with backend_from_options(backend, address, workers) as ex, shard_progress(label) as progress:
        try:
            return run(ex, progress)
        except errors as exc:
            raise _fail(str(exc)) from exc


def _config(make: Callable[[], T], errors: tuple[type[Exception], ...] = (ValueError,)) -> T:
    """A stage config from the options; a bad value exits 2 naming it."""
    try:
        return make()
    except errors as exc:
        raise _fail(str(exc)) from exc


def _summary(report) -> str:  # type: ignore[no-untyped-def]
    return (f"{report.ran} shards run on {report.backend}, {report.skipped} already finished, "
            f"{report.seconds:.1f} s")


distributed_app = typer.Typer(help="Sharded stages on local processes or a Ray cluster (resumable; same results).",
                              no_args_is_help=True)


@distributed_app.command("rollouts")
def rollouts_cmd(
    roots_file: Annotated[Path, typer.Option("--roots", help="roots.jsonl (from `azc roots`): start_fen + moves")],
    out: Annotated[Path, typer.Option("--out", help="Directory: rollouts.jsonl, shards/, distributed.json")],
    model: ModelOpt = None,
    length: Annotated[int, typer.Option(help="T: plies of the chosen line")] = 10,
    subpar: Annotated[int, typer.Option(help="J: sub-par lines per root")] = 5,
    sims: Annotated[int, typer.Option("--sims", help="Simulations per search")] = 200,
    limit: Annotated[int | None, typer.Option(help="At most this many roots")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    shard_size: ShardSizeOpt = None,
    backend: BackendOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = 0,
    ship_weights: ShipOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Chosen and sub-par lines of every root, roots fanned out in shards (searched together within a shard)."""
    from alphazero_concepts.distributed.stages import RolloutStageConfig, run_rollouts

    output_dir(out)
    boards = read_records(roots_file, root_board, "roots")[:limit]
    config = _config(lambda: RolloutStageConfig(length=length, max_subpar=subpar, simulations=sims, seed=seed,
                                                **({"shard_size": shard_size} if shard_size else {})))
    _, _, source = _load(model, device, ship_weights)
    result = _sharded("rollouts", backend, address, workers,
                      lambda ex, progress: run_rollouts(ex, boards, source, config, out, progress=progress))
    n_lines = sum(len(r.subpar) for r in result.rollouts)
    console.print(f"{len(result.rollouts)} roots, {n_lines} sub-par lines → {out / ROLLOUTS} "
                  f"({_summary(result.report)})")


@distributed_app.command("mine")
def mine_cmd(
    rollouts_file: Annotated[Path, typer.Option("--rollouts", help="rollouts.jsonl (from `azc rollouts`)")],
    layer: Annotated[str, typer.Option("--layer", help="Layer to mine")],
    out: Annotated[Path, typer.Option("--out", help="Directory: concepts.jsonl + vectors.npz, shards/")],
    model: ModelOpt = None,
    player: Annotated[str, typer.Option(help="'one' (the states where the root's side is to move) or 'both'")] = "one",
    shard_size: ShardSizeOpt = None,
    backend: BackendOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = 0,
    ship_weights: ShipOpt = False,
    device: DeviceOpt = "cpu",
) -> None:
    """Dynamic concepts (one per root), roots fanned out in shards; the same concepts as `azc mine`."""
    from alphazero_concepts.distributed.stages import MineConfig, mine_rollouts

    output_dir(out)
    items = read_records(rollouts_file, checked_rollout, "rollouts")
    net, meta, source = _load(model, device, ship_weights)
    if layer not in net.layer_names:
        raise _fail(f"unknown layer {layer!r}; the network has: {', '.join(net.layer_names)}")
    config = _config(lambda: MineConfig(layer=layer, player=player,
                                        **({"shard_size": shard_size} if shard_size else {})))
    result = _sharded("mine", backend, address, workers,
                      lambda ex, progress: mine_rollouts(ex, items, source, config, out, model=meta.name,
                                                         progress=progress))
    console.print(f"{len(result.vectors)} concepts from {len(items)} roots at {layer} → {out} "
                  f"({_summary(result.report)})")


@distributed_app.command("collect")
def collect_cmd(
    positions: Annotated[Path, typer.Option("--positions", help="PGN, EPD, FEN list or Lichess CSV")],
    out: Annotated[Path, typer.Option("--out", help="Store directory (an ActivationStore, as `azc collect`)")],
    layers: Annotated[list[str] | None, typer.Option("--layers", help="Layer names (repeat); default: all")] = None,
    model: ModelOpt = None,
    limit: Annotated[int | None, typer.Option(help="At most this many positions")] = None,
    min_ply: Annotated[int, typer.Option(help="PGN: skip positions before this ply")] = 0,
    batch_size: Annotated[int, typer.Option()] = 256,
    shard_size: ShardSizeOpt = None,
    backend: BackendOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = 0,
    ship_weights: ShipOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Activations at named layers, positions fanned out in shards, assembled into one float16 store."""
    from alphazero_concepts.chess.positions import InputError
    from alphazero_concepts.commandline import read_positions_or_fail
    from alphazero_concepts.concepts.activations import StoreError
    from alphazero_concepts.distributed.stages import CollectConfig, collect_activations

    output_dir(out)
    items = read_positions_or_fail(positions, min_ply=min_ply, limit=limit)
    net, meta, source = _load(model, device, ship_weights)
    config = _config(lambda: CollectConfig(layers=tuple(layers or net.layer_names), batch_size=batch_size,
                                           **({"shard_size": shard_size} if shard_size else {})),
                     (InputError, ValueError))
    result = _sharded("collect", backend, address, workers,
                      lambda ex, progress: collect_activations(ex, items, source, net.layer_names, config, out,
                                                               model_id=meta.extra.get("sha256", meta.name),
                                                               progress=progress),
                      (ShardError, StoreError))
    done = _summary(result.report) if result.report else "already complete"
    console.print(f"{result.store.n} positions × {len(config.layers)} layers → {out} ({done})")


@distributed_app.command("selfplay")
def selfplay_cmd(
    start: Annotated[str, typer.Option("--from", help="Checkpoint to start from (ignored when resuming)")],
    out: Annotated[Path, typer.Option("--out", help="Run directory: replay/, series/, learner state")],
    updates: Annotated[int, typer.Option(help="Learner updates to run (each publishes a weights version)")] = 10,
    workers: Annotated[int, typer.Option("--workers", help="Self-play worker actors")] = 2,
    games_per_batch: Annotated[int, typer.Option(help="Games a worker plays at once (batched search)")] = 16,
    positions_per_update: Annotated[int, typer.Option(help="Fresh positions per learner update")] = 2048,
    max_staleness: Annotated[int | None, typer.Option(help="Drop games played with weights older than this "
                                                           "many versions")] = None,
    sims: Annotated[int, typer.Option("--sims", help="MCTS simulations per move")] = 64,
    max_plies: Annotated[int, typer.Option(help="Searched plies before a game is adjudicated drawn")] = 300,
    batch_size: Annotated[int, typer.Option()] = 256,
    lr: Annotated[float, typer.Option()] = 2e-4,
    seed: Annotated[int, typer.Option()] = 0,
    address: AddressOpt = None,
    device: Annotated[str, typer.Option("--device", help="Learner device: cpu, cuda or auto")] = "cpu",
) -> None:
    """Self-play on Ray: worker actors play, the learner (this process) trains and publishes new weights."""
    from alphazero_concepts.distributed.backend import RayConfig
    from alphazero_concepts.distributed.selfplay import STATE_FILE as SELFPLAY_STATE
    from alphazero_concepts.distributed.selfplay import RaySelfPlay, RaySelfPlayConfig
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.training.selfplay import SelfPlayConfig

    output_dir(out)
    check_address(address)
    if not (out / SELFPLAY_STATE).is_file():  # a new run: a bad --from fails before anything is written
        _load(start, "cpu", False)
    try:
        config = RaySelfPlayConfig(workers=workers, games_per_batch=games_per_batch,
                                   positions_per_update=positions_per_update, max_staleness=max_staleness,
                                   selfplay=SelfPlayConfig(simulations=sims, max_plies=max_plies,
                                                           batch_size=batch_size, lr=lr, seed=seed, device=device))
        run = RaySelfPlay(config, start, out, ray_config=RayConfig(address=address),
                          log=lambda s: console.print(f"[dim]{s}[/dim]"))
    except (ValueError, CheckpointError, ShardError) as exc:
        raise _fail(str(exc)) from exc
    with run, shard_progress("self-play", unit="updates") as progress:
        try:
            done = run.run(updates, progress=progress)
        except ShardError as exc:
            raise _fail(str(exc)) from exc
    if done:
        last = done[-1]
        console.print(f"weights version {last.version}: {sum(u.games for u in done)} games, "
                      f"{sum(u.positions for u in done)} positions this session → {out}")


@distributed_app.command("status")
def status_cmd(address: AddressOpt = None) -> None:
    """The Ray cluster's nodes and resources (what the ray backend would use)."""
    from alphazero_concepts.distributed.backend import RayConfig, connect_ray, require_ray

    check_address(address)
    try:
        owns = connect_ray(RayConfig(address=address))
    except ShardError as exc:
        raise _fail(str(exc)) from exc
    ray = require_ray()
    table = Table(title="Ray cluster")
    for col in ("node", "alive", "CPU", "GPU", "memory GiB"):
        table.add_column(col)
    for node in ray.nodes():
        res = node.get("Resources", {})
        table.add_row(node.get("NodeManagerAddress", "?"), str(node.get("Alive")), f"{res.get('CPU', 0):g}",
                      f"{res.get('GPU', 0):g}", f"{res.get('memory', 0) / 2**30:.1f}")
    console.print(table)
    if owns:
        ray.shutdown()


def register(app: typer.Typer) -> None:
    """Add `azc distributed …` to the `azc` app."""
    app.add_typer(distributed_app, name="distributed")


__all__ = ["BACKENDS", "AddressOpt", "BackendOpt", "WorkersOpt", "backend_from_options", "register",
           "shard_progress"]
