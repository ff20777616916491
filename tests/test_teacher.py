"""The bundled default teacher: a value head that sees a queen, through the UCI engine a user would run.

The positions are built here (the bundled openings, 0–3 seeded random plies on, the queen of the side not to
move removed), so the check needs nothing outside the repository. The engine is `azc uci` with the bundled
default model at `go nodes 1`: the value head alone.
"""

from __future__ import annotations

import json
import sys

import chess
import pytest

from alphazero_concepts.arena.value_check import queen_up_boards, queen_up_summary, uci_scores
from alphazero_concepts.nn.loading import bundled_series

UCI = [sys.executable, "-m", "alphazero_concepts.play.uci"]


def test_queen_up_boards_have_the_side_to_move_a_queen_up() -> None:
    boards = queen_up_boards()
    assert len(boards) >= 80
    assert {b.turn for b in boards} == {chess.WHITE, chess.BLACK}
    for board in boards:
        assert board.is_valid() and not board.is_check()
        mine, theirs = (len(board.pieces(chess.QUEEN, c)) for c in (board.turn, not board.turn))
        assert mine >= 1 and mine > theirs


@pytest.fixture(scope="module")
def queen_up_scores() -> tuple[list[chess.Board], list[int]]:
    boards = queen_up_boards()
    return boards, uci_scores(UCI, boards, nodes=1)


@pytest.mark.parametrize("colour", ["white", "black"])
def test_bundled_teacher_sees_a_queen_with_either_colour_to_move(queen_up_scores, colour: str) -> None:
    summary = queen_up_summary(*queen_up_scores)[colour]
    assert summary["positions"] >= 40
    assert summary["share_ahead"] >= 0.97, json.dumps(summary)
    assert summary["median_cp"] > 300, json.dumps(summary)


def test_bundled_teacher_sees_the_queen_the_other_way_round(queen_up_scores) -> None:
    """The mirror check: with the queen-up side *not* to move, the side to move is scored behind."""
    boards, _ = queen_up_scores
    flipped = []
    for board in boards[::4]:
        other = board.copy()
        other.turn = not board.turn
        other.ep_square = None
        if other.is_valid() and not other.is_check():
            flipped.append(other)
    scores = uci_scores(UCI, flipped, nodes=1)
    assert sum(s < 0 for s in scores) >= 0.9 * len(scores)


def test_bundled_series_reports_held_out_value_mse_for_every_checkpoint() -> None:
    series = bundled_series()
    assert len(series) >= 6
    size = sum(series.path_of(n).stat().st_size for n in series.names)
    assert size <= 40 * 2**20
    for meta in series:
        holdout = meta.extra["holdout"]
        assert 0 <= meta.extra["value_mse"] < holdout["value_mse_constant"], meta.name
    strongest = series.meta(series.strongest())
    assert strongest.extra["value_mse"] < 0.5 * strongest.extra["holdout"]["value_mse_constant"]
