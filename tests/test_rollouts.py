"""Root positions and rollouts: disagreement roots, chosen lines, sub-par lines that obey the branching rule."""

from __future__ import annotations

import math

import chess
import numpy as np
import pytest
import torch

from alphazero_concepts.nn.network import AZNet, NetConfig
from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator
from alphazero_concepts.search.rollouts import Rollout, RolloutConfig, rollouts, subpar_moves
from alphazero_concepts.search.roots import RootConfig, bundled_openings, find_roots

pytestmark = pytest.mark.integration


def tiny(seed: int) -> AZNet:
    torch.manual_seed(seed)
    net = AZNet(NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)).eval()
    with torch.no_grad():  # sharper policies than a fresh init, so the two nets disagree clearly
        net.policy_out.weight.mul_(20)
        net.value_fc2.weight.mul_(20)
    return net


def test_roots_are_positions_where_the_two_models_disagree() -> None:
    teacher, weaker = tiny(0), tiny(1)
    roots = find_roots(teacher, weaker, RootConfig(games=6, max_plies=12, skip_plies=2, seed=3))
    assert roots, "two different random networks must disagree somewhere"
    fmt = teacher.format
    for root in roots:
        board = root.board()
        assert board.fen() == root.fen and len(board.move_stack) >= len(root.moves)
        assert root.teacher_move != root.weaker_move
        assert chess.Move.from_uci(root.teacher_move) in board.legal_moves
        # the recorded choices are the networks' top legal moves
        for net, move in ((teacher, root.teacher_move), (weaker, root.weaker_move)):
            moves, idx = fmt.legal_move_indices(board)
            logits = net(torch.from_numpy(fmt.encode([board])))[0][0].detach().numpy()
            assert moves[int(np.argmax(logits[idx]))].uci() == move
        assert "teacher plays" in root.to_dict()["reason"]


def test_same_model_gives_no_roots() -> None:
    net = tiny(0)
    assert find_roots(net, net, RootConfig(games=3, max_plies=8, skip_plies=0)) == []


def test_bundled_openings_are_legal_lines() -> None:
    openings = bundled_openings()
    assert len(openings) >= 20
    assert all(board.is_valid() and board.move_stack for _, board in openings)


@pytest.fixture(scope="module")
def rolled() -> tuple[list[Rollout], RolloutConfig]:
    config = RolloutConfig(length=6, max_branch=2, max_subpar=3, simulations=40)
    mcts = MCTS(NetEvaluator(tiny(2)), MCTSConfig(simulations=40))
    roots = [board for _, board in bundled_openings()[:3]]
    return rollouts(mcts, roots, config), config


def test_chosen_line_follows_the_most_visited_move(rolled) -> None:
    results, config = rolled
    for rollout in results:
        steps = rollout.chosen.steps
        assert len(steps) == config.length + 1
        board = rollout.root_board()
        for step in steps[:-1]:
            assert step.fen == board.fen()
            board.push_uci(step.move)
        assert steps[-1].fen == board.fen()


def test_subpar_lines_obey_the_value_or_visit_rule_and_branch_where_they_say(rolled) -> None:
    results, config = rolled
    n_lines = 0
    for rollout in results:
        chosen = rollout.chosen.steps
        for line in rollout.subpar:
            n_lines += 1
            j = line.branch
            assert j is not None and 0 <= j <= config.branch_limit
            assert [s.move for s in line.steps[:j]] == [s.move for s in chosen[:j]]  # shared up to the branch
            branch, best = line.steps[j], chosen[j]
            assert branch.fen == best.fen and branch.move != best.move
            worse_value = branch.q is not None and best.q is not None and branch.q <= best.q - config.value_gap
            fewer_visits = branch.visits <= (1 - config.visit_gap) * best.visits
            assert worse_value or fewer_visits, line.branch_reason
            assert len(line.steps) == len(chosen)  # the same length: states compared ply by ply
            board = chess.Board(line.steps[j].fen)
            board.push_uci(branch.move)
            assert line.steps[j + 1].fen == board.fen()
    assert n_lines > 0


def test_subpar_moves_rule_on_a_search_result() -> None:
    mcts = MCTS(NetEvaluator(tiny(4)), MCTSConfig(simulations=60))
    result = mcts.search([chess.Board()])[0]
    best = result.moves.index(result.best_move())
    for move, reason in subpar_moves(result, RolloutConfig()):
        i = result.moves.index(move)
        assert i != best and result.visits[i] > 0 and reason
        assert result.q[i] <= result.q[best] - 0.2 or result.visits[i] <= 0.9 * result.visits[best]
        assert not math.isnan(result.q[i])


def test_rollouts_round_trip_as_json(rolled) -> None:
    results, _ = rolled
    again = [Rollout.from_dict(r.to_dict()) for r in results]
    assert [r.to_dict() for r in again] == [r.to_dict() for r in results]
    boards = again[0].boards(again[0].subpar[0])
    assert len(boards) == len(again[0].subpar[0].steps)


def test_single_player_steps_compare_only_the_roots_side_in_a_real_rollout() -> None:
    """Every state a single-player dynamic concept compares has the root's side to move, in both lines, for
    branches at even and odd plies alike (the latents are then all in that player's frame)."""
    from alphazero_concepts.concepts.mining import dynamic_steps

    mcts = MCTS(NetEvaluator(tiny(2)), MCTSConfig(simulations=40))
    roots = [board for _, board in bundled_openings()[:3]]
    results = rollouts(mcts, roots, RolloutConfig(length=5, max_branch=2, max_subpar=80, simulations=40))
    parities, compared = set(), 0
    for rollout in results:
        root_turn = rollout.root_board().turn
        for line in rollout.subpar:
            parities.add(line.branch % 2)
            for t in dynamic_steps(len(rollout.chosen.steps), line.branch, "one"):
                if t >= len(line.steps):
                    continue
                compared += 1
                assert chess.Board(line.steps[t].fen).turn == root_turn
                assert chess.Board(rollout.chosen.steps[t].fen).turn == root_turn
                assert line.steps[t].fen != rollout.chosen.steps[t].fen or t <= line.branch + 1
    assert compared > 0 and parities == {0, 1}, parities


@pytest.mark.parametrize("setup", ["repetition", "fifty"])
def test_lines_end_at_a_position_drawn_by_rule(setup: str) -> None:
    """A root drawn by threefold repetition or the fifty-move rule gets no move (no 0-visit 'first legal move')
    and no sub-par line; the same holds for any state of a line."""
    if setup == "repetition":
        board = chess.Board()
        for san in ["Nf3", "Nf6", "Ng1", "Ng8"] * 2:
            board.push_san(san)
        assert board.is_repetition(3)
    else:
        board = chess.Board("4k3/8/8/8/8/8/R7/4K3 w - - 100 90")
    mcts = MCTS(NetEvaluator(tiny(2)), MCTSConfig(simulations=16))
    [rollout] = rollouts(mcts, [board], RolloutConfig(length=4, max_branch=2, simulations=16))
    assert len(rollout.chosen.steps) == 1 and rollout.chosen.steps[0].move is None
    assert rollout.chosen.steps[0].value == 0.0 and rollout.subpar == []
    # one ply before the repetition: the line stops at the drawn state instead of playing on
    if setup == "repetition":
        before = board.copy()
        before.pop()
        result = mcts.search([before], 16)[0]
        assert not result.terminal
        drawn = before.copy()
        drawn.push_san("Ng8")
        assert mcts.search([drawn], 16)[0].terminal
