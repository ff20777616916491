"""A sanity check of a network's value head through its UCI engine: does it see a whole queen?

Positions: the bundled opening lines, each extended by 0–3 seeded random legal plies, then the queen of the side
*not* to move is taken off (so the side to move is a queen up; positions where that side is in check or has no
queen to lose are skipped). Each is sent as a bare FEN to a UCI engine with `go nodes 1` (the value head alone
for this project's engine, one evaluation for others) and the score is read from the side to move's view.
The share scored ahead, per colour to move, is the check (`azc uci` target: ≥ 97% for both colours).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

import chess
import chess.engine

from alphazero_concepts.search.roots import bundled_openings


def queen_up_boards(extra_plies: Sequence[int] = (0, 1, 2, 3), seed: int = 0) -> list[chess.Board]:
    """Boards (no move stack) where the side to move is a queen up, from the bundled openings."""
    rng = random.Random(seed)
    out = []
    for _, opening in bundled_openings():
        for extra in extra_plies:
            board = opening.copy()
            for _ in range(extra):
                moves = list(board.legal_moves)
                if not moves:
                    break
                board.push(rng.choice(moves))
            board = chess.Board(board.fen())
            queens = board.pieces(chess.QUEEN, not board.turn)
            if not queens or board.is_game_over():
                continue
            board.remove_piece_at(next(iter(queens)))
            if board.is_valid() and not board.is_check():
                out.append(board)
    return out


def uci_scores(command: str | list[str], boards: Sequence[chess.Board], nodes: int = 1,
               options: dict | None = None) -> list[int]:
    """Centipawns (side to move's view; mates as ±100000) a UCI engine gives each board at `nodes` nodes."""
    engine = chess.engine.SimpleEngine.popen_uci(command)
    try:
        if options:
            engine.configure(options)
        scores = []
        for board in boards:
            info = engine.analyse(board, chess.engine.Limit(nodes=nodes))
            scores.append(info["score"].pov(board.turn).score(mate_score=100_000))
        return scores
    finally:
        engine.quit()


def queen_up_summary(boards: Sequence[chess.Board], scores: Sequence[int]) -> dict:
    """Share scored ahead (> 0) and median score, per colour to move."""
    out = {}
    for colour, name in ((chess.WHITE, "white"), (chess.BLACK, "black")):
        mine = [s for b, s in zip(boards, scores, strict=True) if b.turn == colour]
        out[name] = {"positions": len(mine), "ahead": sum(s > 0 for s in mine),
                     "share_ahead": sum(s > 0 for s in mine) / len(mine) if mine else float("nan"),
                     "median_cp": statistics.median(mine) if mine else float("nan")}
    return out
