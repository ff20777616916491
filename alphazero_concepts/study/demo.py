"""A synthetic puzzle set for trying the study app (and for its tests): legal positions, legal lines, no chess.

Positions come from seeded random games and the "answer" is a random legal move, so the puzzles are well-formed
but meaningless. Use it to rehearse a session or to check the set-up on the study laptop; real studies use the
puzzle exporter's sets (``alphazero-concepts/puzzles/1``, see core/puzzleset.py).
"""

from __future__ import annotations

import random
from typing import Any

import chess

from alphazero_concepts.core.puzzleset import SCHEMA

__all__ = ["demo_puzzle_set"]


def _position(rng: random.Random) -> chess.Board:
    while True:
        board = chess.Board()
        for _ in range(rng.randint(12, 40)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
        if not board.is_game_over() and len(list(board.legal_moves)) >= 8:
            return chess.Board(board.fen())  # drop the history: a puzzle is its FEN


def _line(rng: random.Random, board: chess.Board, plies: int) -> list[str] | None:
    b = board.copy()
    line: list[str] = []
    for _ in range(plies):
        moves = [m for m in b.legal_moves if m.promotion is None]
        if not moves:
            return None
        # Prefer captures and checks a little, so the lines look less aimless.
        forcing = [m for m in moves if b.is_capture(m) or b.gives_check(m)]
        move = rng.choice(forcing if forcing and rng.random() < 0.6 else moves)
        line.append(move.uci())
        b.push(move)
    return line


def demo_puzzle_set(n_concepts: int = 6, train_per_concept: int = 2, test_per_concept: int = 2, *,
                    seed: int = 0, name: str = "demo puzzle set") -> dict[str, Any]:
    """A puzzle set dict (schema ``alphazero-concepts/puzzles/1``) with `n_concepts` concepts."""
    rng = random.Random(seed)
    puzzles = []
    for c in range(n_concepts):
        concept = f"demo-{c}"
        label = f"Demo concept {chr(ord('A') + c % 26)}{'' if c < 26 else c // 26}"
        for split, n in (("train", train_per_concept), ("test", test_per_concept)):
            for k in range(n):
                while True:
                    board = _position(rng)
                    line = _line(rng, board, rng.randint(3, 6))
                    if line is not None:
                        break
                puzzles.append({"id": f"{concept}-{split}-{k}", "fen": board.fen(), "solution": line[:1],
                                "line": line, "concept": concept, "concept_label": label, "split": split,
                                "rating": None, "themes": ["demo"]})
    return {"schema": SCHEMA, "name": name, "model": {"note": "synthetic demo set: random legal positions",
                                                      "seed": seed}, "puzzles": puzzles}
