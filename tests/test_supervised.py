"""Supervised kick-start: targets, learning on a fixed batch, and exact resume after a kill."""

from __future__ import annotations

from pathlib import Path

import chess
import numpy as np
import pytest
import torch

from alphazero_concepts.chess.encoding import move_to_index
from alphazero_concepts.chess.positions import read_pgn_games
from alphazero_concepts.nn.checkpoints import Series
from alphazero_concepts.nn.network import AZNet, NetConfig
from alphazero_concepts.training import supervised as sup

pytestmark = pytest.mark.integration

TINY = NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)


def _config(pgn: Path, **kw) -> sup.SupervisedConfig:
    base = dict(pgn=(str(pgn),), net=TINY, batch_size=32, total_steps=12, chunk_games=10, holdout_every=20,
                holdout_positions=64, checkpoint_every=4, state_every=2, threads=1, warmup_steps=2)
    base.update(kw)
    return sup.SupervisedConfig(**base)


def test_targets_follow_the_game(small_pgn: Path) -> None:
    game = next(read_pgn_games(small_pgn))
    arrays, policy, value = sup.game_training_arrays(game)
    board = chess.Board(game.start_fen)
    result = sup.RESULT_VALUE[game.result]
    for i, move in enumerate(game.moves):
        assert policy[i] == move_to_index(move, board)
        # side to move's view: a White win is +1 when White is to move and -1 when Black is
        assert value[i] == (result if board.turn == chess.WHITE else -result)
        board.push(move)
    assert len(arrays) == len(game.moves)


def test_value_target_sign_for_a_won_game(tmp_path: Path) -> None:
    # Fool's mate: Black wins. Every position with Black to move must get target +1, White to move -1.
    pgn = tmp_path / "mate.pgn"
    pgn.write_text('[Result "0-1"]\n\n1. f3 e5 2. g4 Qh4# 0-1\n\n')
    game = next(read_pgn_games(pgn))
    arrays, _, value = sup.game_training_arrays(game)
    assert np.array_equal(value[arrays.turn], -np.ones(arrays.turn.sum()))
    assert np.array_equal(value[~arrays.turn], np.ones((~arrays.turn).sum()))


def test_step_reduces_loss_on_a_fixed_batch(small_pgn: Path) -> None:
    torch.manual_seed(0)
    config = _config(small_pgn)
    chunk = next(sup.ChunkStream(config).chunks())[1]
    idx = np.arange(64)
    batch = sup.Batch(sup._take(chunk.arrays, idx), chunk.policy[idx], chunk.value[idx])
    net = AZNet(TINY)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = sup.train_step(net, opt, batch, 1.0)["loss"]
    for _ in range(30):
        last = sup.train_step(net, opt, batch, 1.0)["loss"]
    assert last < 0.7 * first


def test_kill_and_resume_gives_the_same_next_batch_and_weights(small_pgn: Path, tmp_path: Path) -> None:
    config = _config(small_pgn)
    torch.manual_seed(0)
    full = sup.train_supervised(config, tmp_path / "full")
    # "killed" after step 6 (the state is saved every 2 steps), then resumed to the end
    sup.train_supervised(config, tmp_path / "split", max_steps=6)
    seen: list[int] = []
    resumed = sup.train_supervised(config, tmp_path / "split", progress=lambda step, _s: seen.append(step))
    assert seen[0] == 7  # continues at the next step, not from scratch
    a, _ = full.load(full.names[-1])
    b, _ = resumed.load(resumed.names[-1])
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    # the early stop adds its own checkpoint; every scheduled one is there too
    assert set(full.names) <= set(Series.open(tmp_path / "split").names)


def test_chunks_are_a_pure_function_of_the_seed(small_pgn: Path) -> None:
    c1 = [c.policy for _, c in sup.ChunkStream(_config(small_pgn)).chunks()]
    c2 = [c.policy for _, c in sup.ChunkStream(_config(small_pgn)).chunks(start_chunk=1)]
    assert np.array_equal(c1[1], c2[0])
    c3 = [c.policy for _, c in sup.ChunkStream(_config(small_pgn, seed=5)).chunks()]
    assert not np.array_equal(c1[0], c3[0])
