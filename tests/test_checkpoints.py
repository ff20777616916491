"""Tests for checkpoints: round trips, atomic writes, errors that name the file, and checkpoint series."""

from __future__ import annotations

import io
import os
from pathlib import Path

import chess
import numpy as np
import pytest
import torch

from alphazero_concepts import __version__
from alphazero_concepts.chess.encoding import encode
from alphazero_concepts.core import files
from alphazero_concepts.nn.checkpoints import (
    FORMAT_VERSION,
    MANIFEST,
    CheckpointError,
    CheckpointMeta,
    Series,
    atomic_write_bytes,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from alphazero_concepts.nn.network import AZNet, NetConfig

pytestmark = pytest.mark.unit

TINY = NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def make_net(config: NetConfig = TINY, seed: int = 0) -> AZNet:
    torch.manual_seed(seed)
    net = AZNet(config)
    with torch.no_grad():  # non-default buffers, so a lost buffer would show
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def planes() -> torch.Tensor:
    board = chess.Board()
    boards = [board.copy()]
    for san in ("e4", "c5", "Nf3"):
        board.push_san(san)
        boards.append(board.copy())
    return torch.from_numpy(encode(boards))


def outputs(net: AZNet) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return net.eval()(planes())


META = CheckpointMeta(name="ckpt-a", step=1200, positions_seen=50_000, games_seen=800, parent="ckpt-0",
                      stage="supervised", elo=35.5, seed=7, wall_time_s=12.5, extra={"lr": 0.01})


def write_payload(path: Path, payload: object) -> Path:
    torch.save(payload, path)
    return path


def payload_of(net: AZNet, **changes: object) -> dict:
    data = {"format_version": FORMAT_VERSION, "config": net.config.to_dict(), "meta": META.to_dict(),
            "state_dict": net.state_dict()}
    data.update(changes)
    return data


# ---------------------------------------------------------------------------------------------------------------
# Round trips


def test_round_trip_gives_the_same_outputs_and_metadata(tmp_path: Path) -> None:
    net = make_net()
    path = save_checkpoint(tmp_path / "a.pt", net, META)
    loaded, meta = load_checkpoint(path)
    assert loaded.config == net.config
    assert not loaded.training
    for got, want in zip(outputs(loaded), outputs(net), strict=True):
        assert torch.equal(got, want)
    for name in ("name", "step", "positions_seen", "games_seen", "parent", "stage", "elo", "seed", "wall_time_s"):
        assert getattr(meta, name) == getattr(META, name), name
    assert meta.code_version == __version__  # filled in on save
    assert meta.extra["lr"] == 0.01
    assert meta.extra["sha256"] == file_sha256(path)
    assert meta.extra["path"] == str(path)
    assert META.code_version == ""  # the caller's meta is not changed


def test_half_precision_round_trip_is_close_and_smaller(tmp_path: Path) -> None:
    net = make_net(NetConfig(blocks=1, channels=16, value_channels=4, value_hidden=16))
    full = save_checkpoint(tmp_path / "full.pt", net, META)
    half = save_checkpoint(tmp_path / "half.pt", net, META, half=True)
    assert half.stat().st_size < 0.7 * full.stat().st_size
    loaded, _ = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for got, want in zip(outputs(loaded), outputs(net), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)
    assert not torch.equal(outputs(loaded)[0], outputs(net)[0])  # it really was rounded


def test_save_writes_atomically_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a.pt", make_net(), META)
    save_checkpoint(tmp_path / "a.pt", make_net(seed=1), META)  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"old contents")

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", failing_replace)  # atomic writes live in core/files.py
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new contents")
    monkeypatch.setattr(files.os, "replace", os.replace)
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


# ---------------------------------------------------------------------------------------------------------------
# Errors: each names the file


def assert_error_names_file(path: Path, match: str) -> CheckpointError:
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    assert_error_names_file(tmp_path / "nope.pt", "no such checkpoint file")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    assert_error_names_file(path, "empty file")


def test_truncated_file(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path / "good.pt", make_net(), META)
    data = good.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    assert_error_names_file(path, "truncated or corrupt|unreadable")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_error_names_file(path, "checkpoint")


def test_a_pickled_object_is_refused_without_running_it(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"config": TINY.to_dict(), "state_dict": {}, "obj": Path("/x")}, buf)  # not plain data
    path = tmp_path / "pickled.pt"
    path.write_bytes(buf.getvalue())
    assert_error_names_file(path, "not a checkpoint of this project")


def test_a_dict_without_state_dict(tmp_path: Path) -> None:
    net = make_net()
    payload = payload_of(net)
    del payload["state_dict"]
    path = write_payload(tmp_path / "no_state.pt", payload)
    assert_error_names_file(path, "missing 'config' or 'state_dict'")


def test_a_list_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = write_payload(tmp_path / "list.pt", [1, 2, 3])
    assert_error_names_file(path, "not a checkpoint of this project")


def test_weights_of_one_block_under_a_two_block_config(tmp_path: Path) -> None:
    net = make_net()
    config = NetConfig(**{**TINY.to_dict(), "blocks": 2})
    path = write_payload(tmp_path / "blocks.pt", payload_of(net, config=config.to_dict()))
    err = assert_error_names_file(path, "do not match the architecture 2x8")
    assert "blocks.1." in str(err)  # names what is missing


def test_weights_with_other_channels(tmp_path: Path) -> None:
    net = make_net()
    config = NetConfig(**{**TINY.to_dict(), "channels": 16})
    path = write_payload(tmp_path / "channels.pt", payload_of(net, config=config.to_dict()))
    assert_error_names_file(path, "wrong architecture: .* has shape")


def test_an_unknown_config_key(tmp_path: Path) -> None:
    net = make_net()
    path = write_payload(tmp_path / "cfg.pt", payload_of(net, config={**TINY.to_dict(), "depth": 3}))
    assert_error_names_file(path, "invalid architecture config")


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 0, None])
def test_wrong_format_version(tmp_path: Path, version: int | None) -> None:
    path = write_payload(tmp_path / "version.pt", payload_of(make_net(), format_version=version))
    assert_error_names_file(path, f"format_version {version!r}")


# ---------------------------------------------------------------------------------------------------------------
# Series


def test_series_add_reopen_order_and_strongest(tmp_path: Path) -> None:
    directory = tmp_path / "series"
    series = Series(directory, name="run1")
    nets = [make_net(seed=i) for i in range(3)]
    for i, net in enumerate(nets):
        series.add(net, CheckpointMeta(name=f"step{i}", step=100 * i))
    assert sorted(p.name for p in directory.iterdir()) == [MANIFEST, "step0.pt", "step1.pt", "step2.pt"]

    reopened = Series.open(directory)
    assert reopened.name == "run1"
    assert reopened.config == TINY
    assert reopened.names == ["step0", "step1", "step2"]
    assert len(reopened) == 3 and [m.step for m in reopened] == [0, 100, 200]
    assert reopened.strongest() == "step2"  # no Elo known: the last
    loaded, meta = reopened.load()
    assert meta.name == "step2"
    assert torch.equal(outputs(loaded)[0], outputs(nets[2])[0])

    reopened.set_elo({"step0": 0.0, "step1": 120.0, "step2": 80.0})
    again = Series.open(directory)
    assert again.strongest() == "step1"
    assert again.meta("step1").elo == 120.0
    loaded, meta = again.load()
    assert meta.name == "step1"
    assert torch.equal(outputs(loaded)[1], outputs(nets[1])[1])
    assert again.path_of("step0") == directory / "step0.pt"


def test_a_series_copy_loads_its_checkpoints_under_its_own_names(tmp_path: Path) -> None:
    """A mixed series renames checkpoints of other runs (kd-022000 as kd96-022000): `load` names them as listed."""
    source = Series(tmp_path / "run")
    source.add(make_net(seed=0), CheckpointMeta(name="kd-022000", step=22000))
    copy = source.copy_to(tmp_path / "bundle")
    copy.entries[0].name = "kd96-022000"
    (copy.directory / "kd-022000.pt").rename(copy.directory / "kd96-022000.pt")
    copy.write_manifest()
    _, meta = Series.open(copy.directory).load()
    assert meta.name == "kd96-022000" and meta.step == 22000


def test_series_replaces_a_checkpoint_of_the_same_name(tmp_path: Path) -> None:
    series = Series(tmp_path)
    series.add(make_net(seed=0), CheckpointMeta(name="a"))
    series.add(make_net(seed=1), CheckpointMeta(name="b"))
    series.add(make_net(seed=2), CheckpointMeta(name="a", step=5))
    reopened = Series.open(tmp_path)
    assert reopened.names == ["b", "a"]
    assert reopened.meta("a").step == 5


def test_series_errors(tmp_path: Path) -> None:
    series = Series(tmp_path / "s")
    with pytest.raises(CheckpointError, match="empty series"):
        series.strongest()
    series.add(make_net(), CheckpointMeta(name="only"))
    with pytest.raises(CheckpointError, match=r"no checkpoint named 'missing' \(have only\)"):
        series.path_of("missing")
    with pytest.raises(CheckpointError, match="series architecture differs"):
        series.add(make_net(NetConfig(blocks=2, channels=8, value_channels=2, value_hidden=8)),
                   CheckpointMeta(name="other"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint series") as info:
        Series.open(empty)
    assert str(empty) in str(info.value)
    (empty / MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        Series.open(empty)


def test_human_model_is_the_latest_human_games_checkpoint_before_the_teacher(tmp_path: Path) -> None:
    series = Series(tmp_path / "s", name="s")
    for name, stage, elo in [("sup-1", "supervised", 0.0), ("sup-2", "supervised", 100.0),
                             ("sup-3", "supervised", 300.0), ("rl-1", "selfplay", 250.0)]:
        series.add(make_net(seed=0), CheckpointMeta(name=name, stage=stage, elo=elo))
    assert series.human_model() == "sup-2"  # before the strongest (sup-3)
    assert series.human_model("rl-1") == "sup-3"  # a self-play teacher: the kick-start end is the human model
    assert series.human_model("sup-1") == "sup-1"  # nothing earlier: the first checkpoint
    assert Series(tmp_path / "empty").human_model() is None


def test_a_machine_only_series_takes_the_bundled_human_model(tmp_path: Path, monkeypatch) -> None:
    from alphazero_concepts.nn import loading

    mixed = Series(tmp_path / "mixed", name="mixed")
    for name, stage in [("sup-1", "supervised"), ("sup-2", "supervised"), ("rl-1", "selfplay")]:
        mixed.add(make_net(seed=0), CheckpointMeta(name=name, stage=stage))
    assert loading.human_model_spec(mixed, "rl-1") == f"{mixed.directory}:sup-2"
    machine = Series(tmp_path / "machine", name="machine")
    for name in ("kd-1", "kd-2"):
        machine.add(make_net(seed=0), CheckpointMeta(name=name, stage="distill"))
    models = tmp_path / "models"
    monkeypatch.setattr(loading, "MODELS_DIR", models)
    assert loading.human_model_spec(machine, "kd-2") is None  # no human-games network anywhere: none
    human = Series(models / loading.HUMAN_SERIES, name=loading.HUMAN_SERIES)
    human.add(make_net(seed=1), CheckpointMeta(name="sup-9", stage="supervised"))
    assert loading.human_model_spec(machine, "kd-2") == loading.HUMAN_SERIES
    _, meta = loading.load_network(loading.HUMAN_SERIES)
    assert meta.name == "sup-9"
