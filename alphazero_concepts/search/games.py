"""The batched game driver: many games step together, and each step asks for all their moves at once.

Roots (`search.roots`), the filters' teacher sample (`concepts.samples.selfplay_sample`), self-play
(`training.selfplay.play_games`) and the arena (`arena.match.play_match`) all play their games here; they differ
only in how a move is chosen (one batched network call or one batched MCTS search for every game that is to
move) and in what they record, which they pass in as callbacks:

    choose(games) → moves     one call per step for every live game whose mover it is (the batching point);
                              a None move ends that game without a move (a resignation, a search that saw the end)
    end(game) → E | None      after each move: how the game ended (result, reason, …), None while it goes on
    on_end(game, E | None)    each game as it ends, in game order within a step

A step ("round") is: top up the live games to `concurrent` from `games` (a game already over at its start ends
at once), then let each chooser move in turn (the arena's two players: player A in every game where it is to
move, then player B in the games where it is to move now), then `after_step(steps)`, which may stop the driver.
Games keep their order, so a caller that draws from one random generator game by game draws as it did alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import chess

G = TypeVar("G")  # the caller's game record
E = TypeVar("E")  # the caller's description of how a game ended

Chooser = Callable[[list[G]], Sequence[chess.Move | None]]


def play_batched(
    games: Iterable[G],
    choose: Chooser[G] | Sequence[Chooser[G]],
    *,
    play: Callable[[G, chess.Move], None],
    end: Callable[[G], E | None],
    on_end: Callable[[G, E | None], None] | None = None,
    end_at_start: Callable[[G], E | None] | None = None,
    mover: Callable[[G], int] | None = None,
    concurrent: int | None = None,
    after_step: Callable[[int], bool] | None = None,
) -> int:
    """Play `games` to their ends, at most `concurrent` at a time (all when None); returns the steps played.

    `play(game, move)` pushes a chosen move on the game's board (checking it first, where the caller wants).
    `choose` is one chooser, or one per mover with `mover(game)` giving the index of the chooser to move next.
    `end_at_start` checks a game before its first move (`end` when None). `after_step(steps)` returning True
    stops the driver with the games still live left as they are.
    """
    choosers = list(choose) if isinstance(choose, Sequence) else [choose]
    if len(choosers) > 1 and mover is None:
        raise ValueError("several choosers need `mover` to say whose move it is")
    at_start = end_at_start or end
    pending = iter(games)
    limit = concurrent if concurrent is not None else float("inf")
    live: list[G] = []
    steps = 0
    while True:
        while len(live) < limit:
            game = next(pending, _NONE)
            if game is _NONE:
                break
            over = at_start(game)  # type: ignore[arg-type]
            if over is None:
                live.append(game)  # type: ignore[arg-type]
            elif on_end is not None:
                on_end(game, over)  # type: ignore[arg-type]
        if not live:
            return steps
        for k, chooser in enumerate(choosers):
            mine = live if mover is None else [g for g in live if mover(g) == k]
            if not mine:
                continue
            moves = chooser(mine)
            ended: set[int] = set()
            for game, move in zip(mine, moves, strict=True):
                over = None
                if move is not None:
                    play(game, move)
                    over = end(game)
                if move is None or over is not None:
                    ended.add(id(game))
                    if on_end is not None:
                        on_end(game, over)
            if ended:
                live = [g for g in live if id(g) not in ended]
        steps += 1
        if after_step is not None and after_step(steps):
            return steps


_NONE = object()
