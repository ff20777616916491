"""Engine-labelled games and distillation: the file format's reader and writer (round trip, torn records,
errors naming file and line), the generator's resume and its missing-engine message, the targets, a step that
learns, kill-and-resume with the same next batch, and the self-play gate on planted match results."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import chess
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from alphazero_concepts.chess.encoding import game_to_arrays, move_to_index
from alphazero_concepts.chess.positions import InputError, ReadReport
from alphazero_concepts.engines import locate_stockfish
from alphazero_concepts.nn.checkpoints import Series
from alphazero_concepts.nn.network import AZNet, NetConfig
from alphazero_concepts.training import distill as kd
from alphazero_concepts.training.engine_data import (
    append_game,
    cp_to_wdl,
    label_game,
    load_engine_data,
    read_engine_games,
    score_cp,
)
from alphazero_concepts.training.engine_games import (
    EngineGamesConfig,
    EngineMissing,
    finished_games,
    make_engine_games,
    remove_piece,
)
from alphazero_concepts.training.gate import gate_decision

TINY = NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8, wdl=True)


def fake_game(index: int, seed: int, plies: int = 30) -> dict:
    """A legal random game labelled like the engine format: up to 3 'PV' moves scored by a planted rule
    (captures first), WDL from the planted score."""
    rng = random.Random(f"{seed}-{index}")
    board = chess.Board()
    out = []
    while not board.is_game_over() and board.ply() < plies:
        legal = list(board.legal_moves)
        rng.shuffle(legal)
        ranked = sorted(legal, key=lambda m: -int(board.is_capture(m)))[:3]
        pv = [[m.uci(), {"cp": 50 - 20 * k}] for k, m in enumerate(ranked)]
        out.append({"pv": pv, "wdl": [300, 500, 200], "move": ranked[0].uci()})
        board.push(ranked[0])
    return {"game": index, "seed": seed, "nodes": 1, "multipv": 3, "result": "1/2-1/2", "termination": "max_plies",
            "plies": out}


def write_games(path: Path, n: int, seed: int = 0, plies: int = 30) -> list[dict]:
    games = [fake_game(i, seed, plies) for i in range(n)]
    for g in games:
        append_game(path, g)
    return games


def test_round_trip_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl.gz"
    games = write_games(path, 3)
    read = [g for _, g in read_engine_games(path)]
    assert read == games
    labels = label_game(games[1], source=str(path), line=2)
    n = len(games[1]["plies"])
    assert labels.pv_cp.shape == (n, 8) and (labels.pv_index[:, 3:] == -1).all()
    board = chess.Board()
    for i, ply in enumerate(games[1]["plies"]):
        assert labels.pv_index[i, 0] == move_to_index(chess.Move.from_uci(ply["pv"][0][0]), board)
        assert labels.pv_cp[i, 0] == 50
        board.push_uci(ply["move"])
    np.testing.assert_allclose(labels.wdl, np.tile([0.3, 0.5, 0.2], (n, 1)), rtol=1e-6)


def test_dataset_history_matches_game_arrays(tmp_path: Path) -> None:
    """Rows gathered per batch carry the same 8-step history as encoding a whole game, never across games."""
    path = tmp_path / "g.jsonl.gz"
    games = write_games(path, 4)
    data = load_engine_data([path])
    assert len(data) == sum(len(g["plies"]) for g in games) and data.games == 4
    start = len(games[0]["plies"])
    rows = np.arange(start, start + len(games[1]["plies"]))
    got = data.arrays(rows)
    moves = [chess.Move.from_uci(p["move"]) for p in games[1]["plies"]]
    want = game_to_arrays(chess.Board(), moves)
    np.testing.assert_array_equal(got.bitboards, want.bitboards)
    np.testing.assert_array_equal(got.repetitions, want.repetitions)
    np.testing.assert_array_equal(got.ply, want.ply)
    bare = np.zeros(len(rows), dtype=bool)
    bare[5:] = True  # these rows as from a bare FEN: the position itself, no history
    shown = data.arrays(rows, bare)
    np.testing.assert_array_equal(shown.bitboards[:5], want.bitboards[:5])
    np.testing.assert_array_equal(shown.bitboards[5:, 0], want.bitboards[5:, 0])
    assert not shown.bitboards[5:, 1:].any() and not shown.repetitions[5:, 1:].any()
    a, b = kd.bare_mask(0, 7, 1000, 0.15), kd.bare_mask(0, 7, 1000, 0.15)
    assert (a == b).all() and 0.1 < a.mean() < 0.2 and kd.bare_mask(0, 7, 10, 0.0) is None


def test_policy_and_value_targets(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl.gz"
    write_games(path, 2)
    data = load_engine_data([path])
    rows = np.arange(10)
    soft = data.policy_target(rows, 20.0)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    assert (soft.argmax(axis=1) == data.best_index(rows)).all()
    # 20 cp apart at temperature 20: ratio e between consecutive PV moves
    r0 = soft[0, data.pv_index[0, :3].astype(int)]
    np.testing.assert_allclose(r0[0] / r0[1], np.e, rtol=1e-4)
    hard = data.policy_target(rows, 0.0)
    assert (hard.max(axis=1) == 1).all() and (hard.sum(axis=1) == 1).all()
    np.testing.assert_allclose(data.value_target(rows), 0.1, rtol=1e-5)
    assert score_cp({"mate": 3}) > score_cp({"mate": 5}) > 5000 > score_cp({"cp": 900})
    w, d, loss = cp_to_wdl(0.0)
    assert abs(w - loss) < 1e-9 and abs(w + d + loss - 1) < 1e-9 and cp_to_wdl(800)[0] > 0.9


def test_bad_records_are_skipped_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl.gz"
    write_games(path, 2)
    with gzip.open(path, "at") as fh:
        fh.write('{"game": 2, "plies": "nope", "result": "1-0"}\n')
    good = fake_game(3, 0)
    bad_move = json.loads(json.dumps(good))
    bad_move["plies"][2]["move"] = "a1a8"
    append_game(path, bad_move)
    append_game(path, good)
    with gzip.open(path, "at") as fh:  # a writer killed mid-record
        fh.write('{"game": 5, "plies": [{"pv": [["e2e4"')
    report = ReadReport(source=str(path))
    read = [g["game"] for _, g in read_engine_games(path, report)]
    assert read == [0, 1, 3, 3] and report.skipped == 2
    assert str(report.errors[0]).startswith(f"{path}:3:")
    data = load_engine_data([path])  # the illegal move is skipped too, with its line
    assert data.games == 3 and data.skipped == 3
    with pytest.raises(InputError, match="illegal move"):
        label_game(bad_move, source="x.jsonl", line=4)
    with pytest.raises(InputError, match="no such engine-games file"):
        list(read_engine_games(tmp_path / "missing.jsonl.gz"))
    (tmp_path / "junk.jsonl").write_bytes(b"\x00\xff garbage\n")
    with pytest.raises(InputError, match="no usable game"):
        load_engine_data([tmp_path / "junk.jsonl"])


def test_engine_missing_is_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(EngineMissing, match="apt-get install stockfish"):
        make_engine_games(tmp_path / "o.jsonl.gz", 1, EngineGamesConfig(), stockfish=str(tmp_path / "nope"))
    from alphazero_concepts.cli import app

    result = CliRunner().invoke(app, ["data", "engine-games", "--out", str(tmp_path / "o.jsonl.gz"), "--games", "1",
                                      "--stockfish", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "Stockfish not found" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["train", "distill", "--games", str(tmp_path / "none.gz"), "--out",
                                      str(tmp_path / "s")])
    assert result.exit_code == 2 and "no such engine-games file" in " ".join(result.output.split())


@pytest.mark.skipif(locate_stockfish() is None, reason="Stockfish is not installed (CI installs it)")
def test_generator_resumes_after_a_kill(tmp_path: Path) -> None:
    out = tmp_path / "sf.jsonl.gz"
    config = EngineGamesConfig(nodes=50, multipv=2, max_plies=8, seed=3)
    assert make_engine_games(out, 2, config) == 2
    first = [g for _, g in read_engine_games(out)]
    with gzip.open(out, "at") as fh:  # killed while appending game 2
        fh.write('{"game": 2, "plies": [')
    assert make_engine_games(out, 3, config) == 1  # only the missing game is played; the torn one is dropped
    games = [g for _, g in read_engine_games(out, ReadReport(source=str(out)))]
    assert [g["game"] for g in games] == [0, 1, 2] and games[:2] == first
    assert finished_games(out) == {0, 1, 2}
    data = load_engine_data([out])
    assert len(data) == sum(len(g["plies"]) for g in games)
    for g in games:
        assert all(p["pv"] and p["move"] for p in g["plies"]) and len(g["plies"]) <= 8
    # blunders: after the opening plies, some moves are random legal moves, not among the engine's choices
    wild = tmp_path / "wild.jsonl.gz"
    make_engine_games(wild, 2, EngineGamesConfig(nodes=30, multipv=1, max_plies=30, random_plies=2, blunder=0.5))
    moves = [(p["move"], p["pv"][0][0]) for _, g in read_engine_games(wild) for p in g["plies"][2:]]
    assert any(m != best for m, best in moves) and any(m == best for m, best in moves)
    with pytest.raises(ValueError, match="blunder"):
        EngineGamesConfig(blunder=1.5)


def test_remove_piece_takes_one_non_pawn_piece_and_keeps_the_position_legal() -> None:
    board = chess.Board()
    for move in ("e4", "e5", "Nf3", "Nc6"):
        board.push_san(move)
    for seed in range(40):
        out = remove_piece(board, random.Random(seed))
        assert out.is_valid() and not out.move_stack
        gone = [(t, c) for t in chess.PIECE_TYPES for c in chess.COLORS
                if len(out.pieces(t, c)) != len(board.pieces(t, c))]
        assert len(gone) == 1 and gone[0][0] in (chess.QUEEN, chess.ROOK, chess.BISHOP, chess.KNIGHT)
        assert len(out.pieces(*gone[0])) == len(board.pieces(*gone[0])) - 1
    kings = chess.Board("4k3/pppppppp/8/8/8/8/PPPPPPPP/4K3 w - - 0 1")
    assert remove_piece(kings, random.Random(0)).board_fen() == kings.board_fen()  # nothing to take


@pytest.mark.skipif(locate_stockfish() is None, reason="Stockfish is not installed (CI installs it)")
def test_odds_games_start_where_a_piece_was_taken_off(tmp_path: Path) -> None:
    out = tmp_path / "odds.jsonl.gz"
    make_engine_games(out, 3, EngineGamesConfig(nodes=30, multipv=1, max_plies=20, random_plies=2, odds=1.0,
                                                odds_plies=(2, 6)))
    games = [g for _, g in read_engine_games(out)]
    assert len(games) == 3
    for g in games:
        start = chess.Board(g["start_fen"])
        assert 2 <= start.ply() <= 6 and start.is_valid()
        material = sum(len(start.pieces(t, c)) for t in (chess.QUEEN, chess.ROOK, chess.BISHOP, chess.KNIGHT)
                       for c in chess.COLORS)
        assert material <= 13  # at least one of the 14 non-pawn, non-king pieces is gone (one taken off)
    data = load_engine_data([out])  # the reader starts each game's history at its start_fen
    assert len(data) == sum(len(g["plies"]) for g in games)
    with pytest.raises(ValueError, match="odds"):
        EngineGamesConfig(odds=2.0)


def _config(tmp_path: Path, **kw) -> kd.DistillConfig:
    base = dict(games=(str(tmp_path / "g.jsonl.gz"),), net=TINY, batch_size=32, total_steps=40, warmup_steps=2,
                checkpoint_every=4, checkpoint_steps=(), state_every=1, log_every=2, threads=1, holdout_every=5,
                holdout_positions=64, lr=3e-3)
    base.update(kw)
    return kd.DistillConfig(**base)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_distillation_step_reduces_loss_on_a_fixed_batch(tmp_path: Path, precision: str) -> None:
    write_games(tmp_path / "g.jsonl.gz", 6)
    data = load_engine_data([tmp_path / "g.jsonl.gz"])
    config = _config(tmp_path, precision=precision)
    torch.manual_seed(0)
    net = AZNet(TINY)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    rows = np.arange(64)
    first = kd.train_step(net, opt, data, rows, config)
    for _ in range(30):
        last = kd.train_step(net, opt, data, rows, config)
    assert last["policy_loss"] < first["policy_loss"] - 0.5
    assert last["value_loss"] < first["value_loss"]
    assert all(p.dtype == torch.float32 for p in net.parameters())  # bf16 autocast keeps float32 weights


def test_bf16_runs_the_step_in_bfloat16_and_unknown_precisions_are_refused(tmp_path: Path) -> None:
    write_games(tmp_path / "g.jsonl.gz", 2)
    data = load_engine_data([tmp_path / "g.jsonl.gz"])
    rows = np.arange(32)
    first: dict[str, dict[str, float]] = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        net = AZNet(TINY)
        seen: list[torch.dtype] = []
        net.stem_conv.register_forward_hook(lambda _m, _i, out, seen=seen: seen.append(out.dtype))
        first[precision] = kd.train_step(net, torch.optim.SGD(net.parameters(), lr=0.0), data, rows,
                                         _config(tmp_path, precision=precision))
        assert seen == [torch.bfloat16 if precision == "bf16" else torch.float32]
    assert first["bf16"]["policy_loss"] != first["fp32"]["policy_loss"]  # the same weights, another arithmetic
    assert first["bf16"]["policy_loss"] == pytest.approx(first["fp32"]["policy_loss"], rel=0.02)
    with pytest.raises(ValueError, match="precision"):
        _config(tmp_path, precision="fp8")


def test_data_order_is_a_pure_function_of_seed_and_step() -> None:
    rows = np.arange(1000)
    a = [kd.batch_rows(rows, s, 64, seed=1) for s in range(20)]
    cache: dict = {}
    b = [kd.batch_rows(rows, s, 64, seed=1, _cache=cache) for s in range(20)]
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    epoch0 = np.concatenate(a[:15])
    assert len(set(epoch0.tolist())) == len(epoch0)  # no row twice in an epoch
    assert not (kd.batch_rows(rows, 15, 64, seed=1) == a[0]).all()  # epoch 1 is another permutation
    assert not (kd.batch_rows(rows, 0, 64, seed=2) == a[0]).all()


def test_repeat_oversamples_one_file_and_leaves_the_held_out_games_alone(tmp_path: Path) -> None:
    write_games(tmp_path / "a.jsonl.gz", 10, seed=1)
    write_games(tmp_path / "b.jsonl.gz", 5, seed=2)
    games = (str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.jsonl.gz"))
    data = load_engine_data(games)
    assert data.source_rows == [300, 150]
    once_train, once_held = kd.holdout_rows(data, _config(tmp_path, games=games))
    train, held = kd.holdout_rows(data, _config(tmp_path, games=games, repeat=(1, 3)))
    assert np.array_equal(held, once_held)
    in_b = once_train >= 300
    assert len(train) == (~in_b).sum() + 3 * in_b.sum()
    assert np.array_equal(np.unique(train), once_train)
    assert (np.bincount(train)[once_train[in_b]] == 3).all()
    with pytest.raises(ValueError, match="repeat"):
        _config(tmp_path, games=games, repeat=(1,))


def test_kill_and_resume_gives_the_same_run(tmp_path: Path) -> None:
    write_games(tmp_path / "g.jsonl.gz", 8)
    straight = kd.train_distill(_config(tmp_path), tmp_path / "straight", max_steps=8)
    kd.train_distill(_config(tmp_path), tmp_path / "resumed", max_steps=5)
    state = torch.load(tmp_path / "resumed" / kd.STATE_FILE, weights_only=True)
    assert state["step"] == 5
    resumed = kd.train_distill(_config(tmp_path), tmp_path / "resumed", max_steps=8)
    a, _ = straight.load("kd-000008")
    b, _ = resumed.load("kd-000008")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    meta = Series.open(tmp_path / "resumed").meta("kd-000008")
    assert {"agree", "value_mse", "policy_loss", "value_mse_constant"} <= set(meta.extra["holdout"])
    assert meta.stage == "distill" and meta.extra["value_mse"] == meta.extra["holdout"]["value_mse"]
    log = kd.read_log(tmp_path / "resumed" / kd.LOG_FILE)
    assert [r["step"] for r in log if "train" in r] == [2, 4, 6, 8]  # no duplicate lines after the resume


def test_gate_accepts_and_rejects_planted_results() -> None:
    even = gate_decision(10, 20, 10)
    assert even.accepted and even.score == 0.5 and even.ci[0] < 0.5 < even.ci[1]
    losing = gate_decision(5, 10, 25)
    assert not losing.accepted and losing.ci[1] < 0.5
    assert gate_decision(12, 10, 8).accepted and not gate_decision(12, 10, 8, threshold=0.6).accepted
    assert not gate_decision(0, 0, 0).accepted
    with pytest.raises(ValueError):
        gate_decision(-1, 0, 0)


@pytest.mark.integration
def test_selfplay_gate_keeps_rejected_iterations_out_of_the_series(tmp_path: Path, monkeypatch) -> None:
    from alphazero_concepts.nn.checkpoints import CheckpointMeta, save_checkpoint
    from alphazero_concepts.search.roots import bundled_openings
    from alphazero_concepts.training import selfplay as sp

    planted = iter([gate_decision(2, 0, 6), gate_decision(5, 2, 1)])  # iteration 1 loses, iteration 2 wins
    monkeypatch.setattr(sp, "play_gate", lambda *a, **k: next(planted))
    torch.manual_seed(0)
    start = save_checkpoint(tmp_path / "start.pt", AZNet(NetConfig(blocks=1, channels=8, value_channels=2,
                                                                   value_hidden=8)).eval(), CheckpointMeta("start"))
    config = sp.SelfPlayConfig(games=2, concurrent=2, simulations=4, max_plies=6, threads=1, batch_size=8, steps=1,
                               eval_positions=8, gate_games=8)
    series = sp.run_selfplay(config, start, tmp_path / "series", iterations=2, openings=bundled_openings()[:2])
    assert series.names == ["start", "rl-002"]
    assert series.meta("rl-002").parent == "start" and series.meta("rl-002").extra["gate"]["accepted"]
    lines = [json.loads(x) for x in (tmp_path / "series" / "selfplay" / sp.GATE_FILE).read_text().splitlines()]
    assert [(x["candidate"], x["accepted"]) for x in lines] == [("rl-001", False), ("rl-002", True)]
