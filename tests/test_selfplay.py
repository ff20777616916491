"""Self-play RL: complete legal games with consistent outcomes and targets, resignation, the replay buffer on
disk, kill-and-resume of the iteration loop, learning on visit targets, and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import chess
import chess.pgn
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from alphazero_concepts.chess.encoding import PositionArrays, boards_to_arrays, legal_move_indices
from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series, save_checkpoint
from alphazero_concepts.nn.network import AZNet, NetConfig
from alphazero_concepts.search.mcts import NetEvaluator, UniformEvaluator
from alphazero_concepts.search.roots import bundled_openings
from alphazero_concepts.training import selfplay as sp
from alphazero_concepts.training.commands import register_train
from alphazero_concepts.training.replay import ReplayBuffer, ReplayError, ReplayShard
from alphazero_concepts.training.supervised import train_step

pytestmark = pytest.mark.integration

TINY = NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)
# White to move mates with Ra8 (back rank); 20 legal moves
BACK_RANK = "6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1"


def _tiny_net(seed: int = 0) -> AZNet:
    torch.manual_seed(seed)
    return AZNet(TINY).eval()


def _config(**kw) -> sp.SelfPlayConfig:
    base = dict(games=4, concurrent=4, simulations=8, max_plies=24, threads=1, batch_size=16, steps=2,
                eval_positions=32, save_every_games=1)
    base.update(kw)
    return sp.SelfPlayConfig(**base)


@pytest.fixture(scope="module")
def played() -> ReplayShard:
    shards = sp.play_games(NetEvaluator(_tiny_net()), _config(), 1, list(range(4)), bundled_openings(),
                           info={"policy_size": 4672})
    return ReplayShard.concat(shards, iteration=1)


def _replay(game: dict) -> list[chess.Board]:
    """Boards before each searched move of a stored game, then the final board."""
    board = chess.Board(game["start_fen"])
    boards = []
    for k, uci in enumerate(game["moves"]):
        move = chess.Move.from_uci(uci)
        assert move in board.legal_moves, f"illegal move {uci} at ply {k}"
        if k >= game["opening_plies"]:
            boards.append(board.copy())
        board.push(move)
    return [*boards, board]


def _check_game(shard: ReplayShard, g: int, max_plies: int) -> None:
    game = shard.games[g]
    *searched, final = _replay(game)
    lo, hi = int(shard.game_offsets[g]), int(shard.game_offsets[g + 1])
    assert hi - lo == game["plies"] and game["plies"] >= len(searched)
    # complete games with results that follow from the final board
    term, result = game["termination"], game["result"]
    if term == "checkmate":
        assert final.is_checkmate() and result == ("0-1" if final.turn == chess.WHITE else "1-0")
    elif term == "resignation":
        assert len(searched) == game["plies"] - 1  # the resigner's last position was searched, no move played
        assert result == ("0-1" if game["would_resign"] == "white" else "1-0")
    else:
        assert result == "1/2-1/2"
        if term.startswith("adjudicated"):
            assert game["plies"] == max_plies and not final.is_game_over(claim_draw=True)
        else:
            assert final.is_game_over(claim_draw=True)
    if term != "resignation":
        assert len(searched) == game["plies"]
    # stored inputs are the positions' arrays; targets over legal moves only, summing to 1; z per side to move
    boards = searched if term != "resignation" else [*searched, final]
    expect = boards_to_arrays(boards)
    stored = shard.rows(np.arange(lo, hi))
    for f in ("bitboards", "repetitions", "turn", "castling", "ply", "halfmove"):
        assert np.array_equal(getattr(stored, f), getattr(expect, f)), f
    z_white = {"1-0": 1.0, "0-1": -1.0, "1/2-1/2": 0.0}[result]
    for row, board in zip(range(lo, hi), boards, strict=True):
        index, prob = shard.policy_of(row)
        assert set(index.tolist()) <= set(legal_move_indices(board)[1].tolist())
        assert prob.min() > 0 and abs(prob.sum() - 1.0) < 1e-5
        assert shard.value[row] == (z_white if board.turn == chess.WHITE else -z_white)


def test_selfplay_games_are_legal_complete_and_consistent(played: ReplayShard) -> None:
    assert [g["index"] for g in played.games] == [0, 1, 2, 3]
    assert len({g["opening"] for g in played.games}) == 4  # different openings
    for g in range(len(played.games)):
        _check_game(played, g, max_plies=24)
    assert played.check() is None


def test_a_checkmate_ends_the_game_with_the_right_outcome_signs() -> None:
    config = _config(games=2, concurrent=2, simulations=40, fpu_reduction=-1.0, temperature_plies=0,
                     no_resign_fraction=1.0)
    shards = sp.play_games(UniformEvaluator(), config, 1, [0, 1], [("back rank", chess.Board(BACK_RANK))])
    for shard in shards:
        game = shard.games[0]
        assert game["moves"] == ["a1a8"] and game["termination"] == "checkmate" and game["result"] == "1-0"
        assert shard.value.tolist() == [1.0]  # White to move, White won
        _check_game(shard, 0, max_plies=24)


class _WhiteIsLost:
    """Uniform priors; every position is lost for White (value −0.99 with White to move, +0.99 with Black)."""

    def evaluate(self, arrays: PositionArrays, legal: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        return ([np.full(len(ix), 1.0 / max(1, len(ix))) for ix in legal],
                np.where(arrays.turn, -0.99, 0.99).astype(np.float32))


def test_resignation_and_the_no_resign_games() -> None:
    config = _config(games=8, concurrent=8, simulations=4, max_plies=10, no_resign_fraction=0.5,
                     resign_consecutive=2)
    shard = ReplayShard.concat(sp.play_games(_WhiteIsLost(), config, 1, list(range(8)), bundled_openings()))
    allowed = [g for g in shard.games if g["resign_allowed"]]
    never = [g for g in shard.games if not g["resign_allowed"]]
    assert allowed and never
    for g in allowed:  # White resigns at its second searched move
        assert g["termination"] == "resignation" and g["result"] == "0-1" and g["would_resign"] == "white"
    for g in never:  # played on to the adjudicated draw: the would-be resignation was a false one
        assert g["termination"].startswith("adjudicated") and g["would_resign"] == "white"
    for g in range(len(shard.games)):
        _check_game(shard, g, max_plies=10)
    stats = sp.game_stats(shard)
    assert stats["resigned"] == len(allowed) and stats["would_resign"] == len(never)
    assert stats["false_resigns"] == len(never) and stats["false_resign_rate"] == 1.0


def test_replay_buffer_survives_restart_and_names_a_corrupt_shard(played: ReplayShard, tmp_path: Path) -> None:
    ReplayBuffer(tmp_path).write(played)
    reopened = ReplayBuffer(tmp_path)
    assert reopened.iterations() == [1]
    back = reopened.read(1)
    for f in ("bitboards", "repetitions", "turn", "castling", "ply", "halfmove"):
        assert np.array_equal(getattr(back.arrays, f), getattr(played.arrays, f))
    for f in ("policy_offsets", "policy_index", "policy_prob", "value", "root_value", "game_offsets"):
        assert np.array_equal(getattr(back, f), getattr(played, f)), f
    assert back.games == played.games
    with open(reopened.pgn_path(1)) as fh:
        games = [g for g in iter(lambda: chess.pgn.read_game(fh), None)]
    assert [g.headers["Result"] for g in games] == [g["result"] for g in played.games]
    # a damaged shard: named in the error, left out of the window (reported), the good shard still used
    data = reopened.shard_path(1).read_bytes()
    reopened.shard_path(2).write_bytes(data[: len(data) // 2])
    with pytest.raises(ReplayError, match=r"shard-002\.npz"):
        reopened.read(2)
    window, problems = reopened.window(2, 2)
    assert len(window) == len(played) and len(problems) == 1 and "shard-002.npz" in problems[0]
    # an inconsistent one: the field is named
    bad = ReplayShard.concat([played])
    bad.policy_prob = bad.policy_prob * 2
    bad.save(tmp_path / "shard-003.npz")
    with pytest.raises(ReplayError, match=r"shard-003\.npz: field 'policy_prob'"):
        reopened.read(3)


def test_training_on_selfplay_targets_reduces_loss_on_a_fixed_batch(played: ReplayShard) -> None:
    net = _tiny_net(1)
    batch = sp.shard_batch(played, np.arange(32), net.format.policy_size)
    assert np.allclose(batch.policy.sum(axis=1), 1.0, atol=1e-5)
    target = batch.policy[batch.policy > 0]
    entropy = float(-(target * np.log(target)).sum()) / len(batch.policy)  # the soft cross-entropy's floor
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = train_step(net, opt, batch, 1.0)
    for _ in range(40):
        last = train_step(net, opt, batch, 1.0)
    assert last["loss"] < first["loss"]
    assert last["policy_loss"] - entropy < 0.5 * (first["policy_loss"] - entropy)  # KL to the visit targets halves


def _start_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "start.pt", _tiny_net(), CheckpointMeta(name="tiny-start", stage="test"))


class _Kill(Exception):
    pass


def test_kill_and_resume_continues_without_replaying_games(tmp_path: Path) -> None:
    start, out = _start_checkpoint(tmp_path), tmp_path / "series"
    config = _config(games=3, concurrent=3, simulations=4, max_plies=6)
    events: list[sp.SelfPlayProgress] = []

    def run(iterations: int, kill=None) -> Series:
        def progress(p: sp.SelfPlayProgress) -> None:
            events.append(p)
            if kill and kill(p):
                raise _Kill
        return sp.run_selfplay(config, start, out, iterations=iterations, progress=progress)

    run(1)
    buffer = ReplayBuffer(out / "selfplay")
    shard1 = buffer.shard_path(1).read_bytes()
    assert Series.open(out).names == ["tiny-start", "rl-001"]
    events.clear()
    series = run(2)
    assert {p.iteration for p in events} == {2}  # iteration 1 neither replayed nor retrained
    assert buffer.shard_path(1).read_bytes() == shard1
    assert series.names == ["tiny-start", "rl-001", "rl-002"] and series.meta("rl-002").parent == "rl-001"
    extra = series.meta("rl-002").extra
    assert extra["games"] == 3 and extra["positions"] > 0 and extra["window_positions"] >= extra["positions"]
    assert {"false_resign_rate", "window_false_resign_rate", "new_games_before", "play_s"} <= set(extra)

    # killed while training iteration 3: its finished shard is reused, its games are not played again
    events.clear()
    with pytest.raises(_Kill):
        run(3, kill=lambda p: p.phase == "train")
    assert buffer.has(3) and "rl-003" not in Series.open(out).names
    events.clear()
    series = run(3)
    assert {p.phase for p in events} == {"train"} and series.names[-1] == "rl-003"

    # killed while playing iteration 4 after two games: the saved games are kept, the rest played on resume
    events.clear()
    with pytest.raises(_Kill):
        run(4, kill=lambda p: p.phase == "play" and p.done >= 2)
    kept = buffer.read_partial(4)
    assert kept is not None and len(kept.games) >= 2
    events.clear()
    series = run(4)
    play = [p for p in events if p.phase == "play"]
    assert play[0].done == len(kept.games)
    final = buffer.read(4)
    assert [g["index"] for g in final.games] == [0, 1, 2] and final.games[:len(kept.games)] == kept.games
    assert not buffer.partial_path(4).exists() and series.names[-1] == "rl-004"


def test_config_round_trip_and_validation() -> None:
    config = _config(openings_pgn="x.pgn")
    assert sp.SelfPlayConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown SelfPlayConfig keys"):
        sp.SelfPlayConfig.from_dict({**config.to_dict(), "sims": 3})
    with pytest.raises(ValueError, match="games"):
        sp.SelfPlayConfig(games=0)
    assert sp.SelfPlayConfig(steps=0, sample_reuse=2.0, batch_size=100).steps_for(1000) == 20


def test_openings_from_the_first_plies_of_pgn_games(small_pgn: Path) -> None:
    openings = sp.load_openings(sp.SelfPlayConfig(openings_pgn=str(small_pgn), opening_plies=6))
    assert openings and all(len(b.move_stack) == 6 for _, b in openings)
    assert openings[0][0].startswith("games.pgn#")


def test_bench_functions_report_rates_and_leave_the_net_unchanged() -> None:
    net = _tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert sp.bench_selfplay(net, games=2, sims=2, plies=2)["selfplay_games_per_hour"] > 0
    assert sp.bench_train(net, batch_size=8, steps=1)["train_positions_per_s"] > 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_cli_selfplay_runs_an_iteration_and_reports_errors(tmp_path: Path) -> None:
    app, train = typer.Typer(), typer.Typer()

    @train.command("noop")
    def noop() -> None:  # a second command keeps `selfplay` a sub-command
        pass

    register_train(train)
    app.add_typer(train, name="train")
    start, out = _start_checkpoint(tmp_path), tmp_path / "cli-series"
    args = ["train", "selfplay", "--from", str(start), "--out", str(out), "--games", "2", "--sims", "2",
            "--steps", "1", "--batch-size", "8", "--max-plies", "4", "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "rl-001" in result.output and Series.open(out).names == ["tiny-start", "rl-001"]
    result = CliRunner().invoke(app, [*args, "--openings-pgn", str(tmp_path / "missing.pgn")])
    assert result.exit_code == 2 and "missing.pgn" in result.output
