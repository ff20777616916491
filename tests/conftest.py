"""Shared fixtures: small PGN files and tiny networks built by the tests themselves (no ../shared needed)."""

from __future__ import annotations

import random
from pathlib import Path

import chess
import chess.pgn
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def random_game(rng: random.Random, max_plies: int = 80) -> chess.pgn.Game:
    """A legal random game; the result is the real one if it ended, else a seeded coin flip."""
    board = chess.Board()
    while not board.is_game_over() and board.ply() < max_plies:
        board.push(rng.choice(list(board.legal_moves)))
    game = chess.pgn.Game.from_board(board)
    result = board.result() if board.is_game_over() else rng.choice(["1-0", "0-1", "1/2-1/2"])
    game.headers["Result"] = result
    game.headers["WhiteElo"] = str(rng.randint(2000, 2800))
    game.headers["BlackElo"] = str(rng.randint(2000, 2800))
    return game


def write_pgn(path: Path, n_games: int, seed: int = 0, max_plies: int = 80) -> Path:
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for _ in range(n_games):
            print(random_game(rng, max_plies), file=fh, end="\n\n")
    return path


@pytest.fixture
def small_pgn(tmp_path: Path) -> Path:
    return write_pgn(tmp_path / "games.pgn", 40, seed=1)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tests use tiny networks: one thread avoids thread-pool overhead (and oversubscription on busy machines)."""
    import torch

    torch.set_num_threads(1)
