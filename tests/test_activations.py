"""Activation store: exact round trip (within float16), bounded streaming, resume after an interruption."""

from __future__ import annotations

import json
from pathlib import Path

import chess
import numpy as np
import pytest
import torch

from alphazero_concepts.bench import random_boards
from alphazero_concepts.concepts.activations import ActivationStore, StoreError, collect
from alphazero_concepts.nn.network import AZNet, NetConfig

pytestmark = pytest.mark.unit

LAYERS = ["block0", "policy.conv", "value.fc1"]


@pytest.fixture
def net() -> AZNet:
    torch.manual_seed(0)
    return AZNet(NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)).eval()


def test_round_trip_matches_run_with_cache(net: AZNet, tmp_path: Path) -> None:
    boards = random_boards(37, seed=2)
    store = collect(net, boards, LAYERS, tmp_path / "acts", batch_size=10)
    assert store.complete and store.n == 37
    planes = torch.from_numpy(net.format.encode(boards))
    _, cache = net.run_with_cache(planes, LAYERS)
    for layer in LAYERS:
        expect = cache[layer].reshape(37, -1).numpy()
        got = store.read(layer)
        assert got.shape == expect.shape
        np.testing.assert_allclose(got, expect.astype(np.float16).astype(np.float32), rtol=0, atol=0)
    rows = store.read("block0", [3, 30])
    np.testing.assert_array_equal(rows, store.read("block0")[[3, 30]])
    index = store.index()
    assert [r["fen"] for r in index] == [b.fen() for b in boards]
    assert index[0]["moves"] == [m.uci() for m in boards[0].move_stack]


def test_index_records_every_position_as_python_chess_sees_it(net: AZNet, tmp_path: Path) -> None:
    from alphazero_concepts.chess.positions import Position

    promotion = chess.Board("8/P7/8/8/8/8/8/k6K w - - 0 1")
    promotion.push_uci("a7a8q")
    null = chess.Board()
    null.push_uci("e2e4")
    null.push(chess.Move.null())
    from_960 = chess.Board.from_chess960_pos(100)
    from_960.push(next(iter(from_960.legal_moves)))
    boards = [*random_boards(9, seed=3), promotion, null, from_960, chess.Board()]
    position = Position("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1", ("g1f3",), source="g.pgn",
                        game=4, ply=1, line=12, meta={"White": 'A "quoted" name'})
    store = collect(net, [*boards, position], ["block0"], tmp_path / "acts", batch_size=4)
    records = store.index()
    expected = [{"start_fen": b.root().fen(), "moves": [m.uci() for m in b.move_stack], "source": "",
                 "fen": b.fen(), "turn": "w" if b.turn else "b"} for b in boards]
    assert records[: len(boards)] == expected
    assert records[-1] == {**position.to_dict(), "fen": position.fen, "turn": "b"}


def test_interrupted_collection_resumes_without_redoing_rows(net: AZNet, tmp_path: Path) -> None:
    boards = random_boards(30, seed=4)
    calls: list[int] = []

    class Stop(Exception):
        pass

    def stop_after_two_batches(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise Stop

    with pytest.raises(Stop):
        collect(net, boards, LAYERS, tmp_path / "acts", batch_size=8, progress=stop_after_two_batches)
    partial = ActivationStore(tmp_path / "acts")
    assert partial.rows_done == 16 and not partial.complete
    resumed_from: list[int] = []
    store = collect(net, boards, LAYERS, tmp_path / "acts", batch_size=8,
                    progress=lambda done, total: resumed_from.append(done))
    assert resumed_from[0] == 24  # the first batch after the resume point, not 8
    fresh = collect(net, boards, LAYERS, tmp_path / "fresh", batch_size=8)
    for layer in LAYERS:
        np.testing.assert_array_equal(store.read(layer), fresh.read(layer))


def test_resume_refuses_a_different_request(net: AZNet, tmp_path: Path) -> None:
    boards = random_boards(5, seed=1)
    collect(net, boards, LAYERS, tmp_path / "acts")
    with pytest.raises(StoreError, match="other positions, layers or model"):
        collect(net, boards, ["block0"], tmp_path / "acts")


def test_errors_name_the_problem(net: AZNet, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unknown layers"):
        collect(net, random_boards(2), ["block99"], tmp_path / "a")
    with pytest.raises(StoreError, match="not an activation store"):
        ActivationStore(tmp_path)
    store = collect(net, random_boards(3), ["block0"], tmp_path / "b")
    with pytest.raises(StoreError, match="no layer"):
        store.read("stem")
    (tmp_path / "b" / "progress.json").write_text("{broken")
    with pytest.raises(StoreError, match="invalid JSON"):
        ActivationStore(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "index.jsonl").read_text().splitlines()[0])["turn"] in ("w", "b")
