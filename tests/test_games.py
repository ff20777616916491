"""The batched game driver (`search.games.play_batched`): batching, refills, ends, movers, stopping."""

from __future__ import annotations

import chess
import pytest

from alphazero_concepts.search.games import play_batched

pytestmark = pytest.mark.unit


class _Game:
    def __init__(self, index: int, plies: int) -> None:
        self.index, self.plies, self.board = index, plies, chess.Board()


def _first_move(games: list[_Game]) -> list[chess.Move | None]:
    return [next(iter(g.board.legal_moves)) for g in games]


def test_games_step_together_refill_and_end_in_order() -> None:
    calls: list[list[int]] = []
    ended: list[tuple[int, object]] = []

    def choose(games: list[_Game]) -> list[chess.Move | None]:
        calls.append([g.index for g in games])
        return [None if g.index == 1 else m for g, m in zip(games, _first_move(games), strict=True)]

    games = [_Game(0, 2), _Game(1, 5), _Game(2, 0), _Game(3, 1)]
    steps = play_batched(games, choose, play=lambda g, m: g.board.push(m),
                         end=lambda g: "plies" if g.board.ply() >= g.plies else None,
                         on_end=lambda g, e: ended.append((g.index, e)), concurrent=2)
    # game 1 resigns at once (None move), game 2 is over at its start, game 3 fills the freed seats
    assert calls == [[0, 1], [0, 3]]
    assert ended == [(1, None), (2, "plies"), (0, "plies"), (3, "plies")]
    assert steps == 2


def test_two_movers_take_turns_and_after_step_stops() -> None:
    seen: list[tuple[int, list[int]]] = []

    def chooser(k: int):
        def choose(games: list[_Game]) -> list[chess.Move | None]:
            seen.append((k, [g.index for g in games]))
            return _first_move(games)
        return choose

    games = [_Game(0, 99), _Game(1, 99)]
    games[1].board.push(chess.Move.from_uci("e2e4"))  # black to move in game 1
    steps = play_batched(games, [chooser(0), chooser(1)], play=lambda g, m: g.board.push(m), end=lambda g: None,
                         mover=lambda g: 0 if g.board.turn == chess.WHITE else 1, after_step=lambda s: s >= 2)
    assert steps == 2
    assert seen == [(0, [0]), (1, [0, 1]), (0, [0, 1]), (1, [0, 1])]
    with pytest.raises(ValueError, match="mover"):
        play_batched(games, [chooser(0), chooser(1)], play=lambda g, m: None, end=lambda g: None)
