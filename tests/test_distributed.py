"""Scale-out on Ray: the same results as the local backend, self-play actors feeding a learner, dead workers retried.

One local Ray instance serves the whole session (`ray.init(num_cpus=2)`; Ray has no local mode any more). The
network is a tiny random one saved as a checkpoint; the rollouts are made by the real rollout code on it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import chess
import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray", reason="ray is not installed (pip install '.[distributed]'); CI installs it")

from alphazero_concepts.distributed.backend import (  # noqa: E402
    LocalBackend,
    RayBackend,
    Shard,
    ShardError,
    ShardResult,
    ShardStore,
    chunk,
    shard_ids,
)
from alphazero_concepts.distributed.stages import (  # noqa: E402
    CollectConfig,
    MineConfig,
    MineContext,
    NetSource,
    RolloutStageConfig,
    collect_activations,
    mine_rollouts,
    mine_shard,
    run_rollouts,
)
from alphazero_concepts.nn.checkpoints import CheckpointMeta, load_checkpoint, save_checkpoint  # noqa: E402
from alphazero_concepts.nn.network import AZNet, NetConfig  # noqa: E402
from alphazero_concepts.search.roots import bundled_openings  # noqa: E402

pytestmark = pytest.mark.integration
TIMING = ("solve_time_s",)  # fields that measure time, not results


@pytest.fixture(scope="session")
def ray_session():
    # shard functions defined in this file travel by value (Ray's workers cannot import the test module)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        # Ray lowers its workers' priority by 15 by default; on a busy machine that starves the tests' workers
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory: pytest.TempPathFactory) -> tuple[AZNet, NetSource]:
    torch.manual_seed(2)
    net = AZNet(NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)).eval()
    with torch.no_grad():  # sharper policies than a fresh init: clear best moves and sub-par alternatives
        net.policy_out.weight.mul_(60)
        net.value_fc2.weight.mul_(20)
    path = save_checkpoint(tmp_path_factory.mktemp("net") / "tiny.pt", net, CheckpointMeta(name="tiny", seed=2))
    loaded, meta = load_checkpoint(path)
    return loaded, NetSource.of(meta)


ROLLOUT = RolloutStageConfig(length=4, max_branch=1, max_subpar=2, simulations=16, shard_size=2, seed=5)


@pytest.fixture(scope="module")
def local_rollouts(tiny_net, tmp_path_factory: pytest.TempPathFactory):
    _, source = tiny_net
    roots = [board for _, board in bundled_openings()[:4]]
    result = run_rollouts(LocalBackend(), roots, source, ROLLOUT, tmp_path_factory.mktemp("rollouts"))
    assert sum(len(r.subpar) for r in result.rollouts) > 0, "the tiny net must give sub-par lines to mine"
    return roots, result.rollouts


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in rec.items() if k not in TIMING} for rec in records]


def test_ray_and_local_backends_give_identical_rollouts_concepts_and_activations(
        ray_session, tiny_net, local_rollouts, tmp_path: Path) -> None:
    net, source = tiny_net
    roots, rolled = local_rollouts
    with RayBackend() as backend:
        assert backend.parallelism == 2
        # the first shard's roots only (same shard layout and seed as the local run, half the search time)
        again = run_rollouts(backend, roots[:2], source, ROLLOUT, tmp_path / "ray-rollouts")
        assert [r.to_dict() for r in again.rollouts] == [r.to_dict() for r in rolled[:2]]
        assert [r.root_index for r in again.rollouts] == [0, 1]

        config = MineConfig(layer="block0", shard_size=1)
        ray_mined = mine_rollouts(backend, rolled, source, config, tmp_path / "ray-mine", model="tiny")
        local_mined = mine_rollouts(LocalBackend(), rolled, source, config, tmp_path / "local-mine", model="tiny")
        assert ray_mined.report.ran == len(rolled) and ray_mined.report.backend == "ray"
        assert without_timing(ray_mined.records) == without_timing(local_mined.records)
        assert sorted(ray_mined.vectors) == sorted(local_mined.vectors) and ray_mined.vectors
        for cid, vector in local_mined.vectors.items():
            assert np.array_equal(ray_mined.vectors[cid], vector), cid
        # the merged artifact is what `azc mine` writes: concepts.jsonl + vectors.npz
        lines = (tmp_path / "ray-mine" / "concepts.jsonl").read_text().splitlines()
        assert [json.loads(line)["id"] for line in lines] == [r["id"] for r in local_mined.records]
        with np.load(tmp_path / "ray-mine" / "vectors.npz") as saved:
            assert sorted(saved.files) == sorted(local_mined.vectors)

        boards = [b for r in rolled for b in r.boards(r.chosen)]
        collect = CollectConfig(layers=("stem", "block0"), shard_size=7)
        ray_store = collect_activations(backend, boards, source, net.layer_names, collect, tmp_path / "ray-act").store
    local_store = collect_activations(LocalBackend(), boards, source, net.layer_names, collect,
                                      tmp_path / "local-act").store
    assert ray_store.complete and ray_store.n == len(boards)
    for layer in ("stem", "block0"):
        assert np.array_equal(ray_store.read(layer), local_store.read(layer))
    assert ray_store.index() == local_store.index()


@dataclass(frozen=True)
class CrashOnce:
    """Context of a mining shard that kills its own worker process the first time it runs root `crash_root`."""

    inner: MineContext
    crash_root: int
    marker_dir: str


def crash_once_mine_shard(ctx: CrashOnce, payload: list[dict]) -> object:
    root = payload[0]["root_index"]
    Path(ctx.marker_dir, f"ran-{root}-{os.getpid()}-{len(os.listdir(ctx.marker_dir))}").touch()
    marker = Path(ctx.marker_dir, f"crashed-{root}")
    if root == ctx.crash_root and not marker.exists():
        marker.touch()
        os._exit(1)  # the worker process dies mid-shard, as a killed node would
    return mine_shard(ctx.inner, payload)


def test_a_worker_killed_mid_run_loses_no_finished_shard_and_the_run_completes_the_same(
        ray_session, tiny_net, local_rollouts, tmp_path: Path) -> None:
    _, source = tiny_net
    _, rolled = local_rollouts
    payloads = chunk([r.to_dict() for r in rolled], 1)
    shards = [Shard(i, p) for i, p in zip(shard_ids(len(payloads)), payloads, strict=True)]
    inner = MineContext(source, "block0", "one", "tiny")
    reference = {s.id: mine_shard(inner, s.payload) for s in shards}
    marks = tmp_path / "marks"
    marks.mkdir()
    store = ShardStore(tmp_path / "shards")
    with RayBackend() as backend:
        report = backend.map_shards(crash_once_mine_shard, shards, writer=store,
                                    context=CrashOnce(inner, crash_root=2, marker_dir=str(marks)))
    assert (marks / "crashed-2").exists(), "the worker must have died once"
    assert report.ran == len(shards)
    runs = {k: len(list(marks.glob(f"ran-{k}-*"))) for k in range(len(shards))}
    assert runs == {0: 1, 1: 1, 2: 2, 3: 1}, runs  # only the killed shard ran again
    for shard_id, expected in reference.items():
        got = store.read(shard_id)
        assert without_timing(got.records) == without_timing(expected.records)
        assert sorted(got.arrays) == sorted(expected.arrays)
        assert all(np.array_equal(got.arrays[k], v) for k, v in expected.arrays.items())


def test_local_backend_resumes_a_killed_run_without_redoing_finished_shards(
        tiny_net, local_rollouts, tmp_path: Path) -> None:
    _, source = tiny_net
    _, rolled = local_rollouts
    config = MineConfig(layer="block0", shard_size=1)
    full = mine_rollouts(LocalBackend(), rolled, source, config, tmp_path / "full", model="tiny")

    def kill_after_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt  # the job is killed right after its second shard was written

    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        mine_rollouts(LocalBackend(), rolled, source, config, out, progress=kill_after_two, model="tiny")
    assert not (out / "concepts.jsonl").exists()
    shards = out / "shards"
    assert sorted(p.name for p in shards.glob("*.done")) == ["shard-00000.done", "shard-00001.done"]
    # a shard half-written when the job died: data without its done marker, and a stale temp file
    (shards / "shard-00002.jsonl").write_text('{"id": "half-writ')
    (shards / ".shard-00002.npz.abc.tmp").write_bytes(b"partial")
    resumed = mine_rollouts(LocalBackend(), rolled, source, config, out, model="tiny")
    assert (resumed.report.skipped, resumed.report.ran) == (2, len(rolled) - 2)
    assert without_timing(resumed.records) == without_timing(full.records)
    assert all(np.array_equal(resumed.vectors[k], v) for k, v in full.vectors.items())
    assert not list(shards.glob(".*.tmp"))
    again = mine_rollouts(LocalBackend(), rolled, source, config, out, model="tiny")
    assert again.report.ran == 0 and again.report.skipped == len(rolled)
    with pytest.raises(ShardError, match="another run"):  # other settings into the same directory are refused
        mine_rollouts(LocalBackend(), rolled, source, MineConfig(layer="stem", shard_size=1), out)


def test_selfplay_on_ray_feeds_the_learner_and_workers_pick_up_new_weights(
        ray_session, tiny_net, tmp_path: Path) -> None:
    from alphazero_concepts.distributed.selfplay import RaySelfPlay, RaySelfPlayConfig
    from alphazero_concepts.training.replay import ReplayBuffer
    from alphazero_concepts.training.selfplay import SelfPlayConfig

    net, source = tiny_net
    start = {k: v.clone() for k, v in net.state_dict().items()}
    config = RaySelfPlayConfig(
        workers=2, games_per_batch=2, positions_per_update=8, steps_per_update=2, max_staleness=0,
        selfplay=SelfPlayConfig(simulations=4, max_plies=6, batch_size=8, no_resign_fraction=1.0, cache_size=2000,
                                lr=1e-2, temperature_plies=100),
    )
    out = tmp_path / "selfplay"
    with RaySelfPlay(config, source.spec, out) as run:
        first = run.run(1)
        assert [u.version for u in first] == [1] and set(first[0].game_versions) == {0}
        # kill a worker mid-run: Ray restarts it and its run goes on; the learner keeps getting games
        ray.kill(run.workers[0], no_restart=False)
        second = run.run(1)
        assert [u.version for u in second] == [2]
        # max_staleness=0: update 2 trained only on games played with the weights of update 1 (picked up)
        assert set(second[0].game_versions) == {1}
        assert all(u.steps == 2 and np.isfinite(u.train["loss"]) for u in first + second)
        assert max(run.hub_status()["pickups"].values()) >= 1
    buffer = ReplayBuffer(out / "replay")
    assert buffer.iterations() == [1, 2]
    for it in buffer.iterations():
        shard = buffer.read(it)  # checked on load: offsets, visit shares summing to 1, outcomes
        assert len(shard) >= config.positions_per_update
        for game in shard.games:
            board = chess.Board(game["start_fen"])
            for uci in game["moves"]:
                assert chess.Move.from_uci(uci) in board.legal_moves
                board.push_uci(uci)
    trained, meta = load_checkpoint(out / "series" / "ray-0002.pt")
    assert meta.stage == "selfplay-ray" and meta.extra["update"]["version"] == 2
    assert any(not torch.allclose(trained.state_dict()[k].float(), v.float(), atol=1e-3)
               for k, v in start.items() if v.is_floating_point())


def test_cli_rollouts_and_mine_on_the_local_backend_match_azc_mine(tiny_net, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from alphazero_concepts.cli import app as azc
    from alphazero_concepts.distributed.commands import register

    _, source = tiny_net
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    roots = tmp_path / "roots.jsonl"
    lines = [json.dumps({"start_fen": b.root().fen(), "moves": [m.uci() for m in b.move_stack]})
             for _, b in bundled_openings()[4:6]]
    roots.write_text("\n".join([lines[0], '{"start_fen": "not a fen"}', lines[1], "{oops"]) + "\n")
    result = runner.invoke(app, ["distributed", "rollouts", "--roots", str(roots), "--out", str(tmp_path / "ro"),
                                 "--model", source.spec, "--length", "4", "--subpar", "2", "--sims", "16",
                                 "--shard-size", "1", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "roots.jsonl:2" in result.output and "roots.jsonl:4" in result.output  # bad lines named, good ones run
    assert "2 records skipped" in result.output
    rollouts_file = tmp_path / "ro" / "rollouts.jsonl"
    assert len(rollouts_file.read_text().splitlines()) == 2
    result = runner.invoke(app, ["distributed", "mine", "--rollouts", str(rollouts_file), "--layer", "block0",
                                 "--out", str(tmp_path / "dist"), "--model", source.spec, "--backend", "local"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(azc, ["mine", "--rollouts", str(rollouts_file), "--layer", "block0",
                                 "--out", str(tmp_path / "plain"), "--model", source.spec])
    assert result.exit_code == 0, result.output

    def concepts(directory: Path) -> list[dict]:
        return without_timing([json.loads(x) for x in (directory / "concepts.jsonl").read_text().splitlines()])

    assert concepts(tmp_path / "dist") == concepts(tmp_path / "plain")
    with np.load(tmp_path / "dist" / "vectors.npz") as a, np.load(tmp_path / "plain" / "vectors.npz") as b:
        assert a.files and sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
    result = runner.invoke(app, ["distributed", "mine", "--rollouts", str(rollouts_file), "--layer", "block0",
                                 "--out", str(tmp_path / "x"), "--model", source.spec, "--address", "auto"])
    assert result.exit_code == 2 and "--backend ray" in result.output


def square_unless_bad(bad: set[int], payload: int) -> ShardResult:
    if payload in bad:
        raise ValueError(f"bad input {payload}")
    return ShardResult([{"x": payload}], {"sq": np.array([payload * payload])})


def test_a_failing_shard_is_reported_after_the_others_are_written_and_a_rerun_runs_only_it(tmp_path: Path) -> None:
    shards = [Shard(i, k) for i, k in zip(shard_ids(4), range(4), strict=True)]
    store = ShardStore(tmp_path)
    with pytest.raises(ShardError, match=r"1 of 4 shards failed \(shard-00002\).*bad input 2"):
        LocalBackend().map_shards(square_unless_bad, shards, writer=store, context={2})
    assert [store.is_done(s.id) for s in shards] == [True, True, False, True]
    report = LocalBackend().map_shards(square_unless_bad, shards, writer=store, context=set())
    assert (report.skipped, report.ran) == (3, 1)
    assert [int(store.read(s.id).arrays["sq"][0]) for s in shards] == [0, 1, 4, 9]
    assert store.read("shard-00003").records == [{"x": 3}]
