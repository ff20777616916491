"""Board formats: how a network reads a position (input planes) and names moves (policy indices).

A network carries its format, and everything downstream (search, activation capture, teaching) asks it instead
of assuming one. The native format is AlphaZero's (119 planes, 4672 moves); lc0's format is added beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import chess
import numpy as np

from alphazero_concepts.chess import encoding
from alphazero_concepts.chess.encoding import PositionArrays


class BoardFormat(Protocol):
    """Input encoder and move map of one network family."""

    name: str
    input_planes: int
    policy_size: int

    def arrays_to_planes(self, arrays: PositionArrays) -> np.ndarray: ...

    def encode(self, boards: Sequence[chess.Board]) -> np.ndarray: ...

    def move_to_index(self, move: chess.Move, board: chess.Board) -> int: ...

    def index_to_move(self, index: int, board: chess.Board) -> chess.Move: ...

    def legal_move_indices(self, board: chess.Board) -> tuple[list[chess.Move], np.ndarray]: ...


class AlphaZeroFormat:
    """AlphaZero's 119 input planes and 8×8×73 policy (see `alphazero_concepts.chess.encoding`)."""

    name = "alphazero"
    input_planes = encoding.N_PLANES
    policy_size = encoding.POLICY_SIZE

    def arrays_to_planes(self, arrays: PositionArrays) -> np.ndarray:
        return encoding.arrays_to_planes(arrays)

    def encode(self, boards: Sequence[chess.Board]) -> np.ndarray:
        return encoding.encode(boards)

    def move_to_index(self, move: chess.Move, board: chess.Board) -> int:
        return encoding.move_to_index(move, board)

    def index_to_move(self, index: int, board: chess.Board) -> chess.Move:
        return encoding.index_to_move(index, board)

    def legal_move_indices(self, board: chess.Board) -> tuple[list[chess.Move], np.ndarray]:
        return encoding.legal_move_indices(board)


_FORMATS: dict[str, BoardFormat] = {"alphazero": AlphaZeroFormat()}


def register_format(fmt: BoardFormat) -> None:
    _FORMATS[fmt.name] = fmt


def get_format(name: str) -> BoardFormat:
    """The format called `name`; KeyError listing the known ones otherwise."""
    if name == "lc0" and name not in _FORMATS:  # imported on first use: it builds move tables
        from alphazero_concepts.chess.lc0_format import LC0_FORMAT

        register_format(LC0_FORMAT)
    try:
        return _FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown board format {name!r}; known: {', '.join(sorted(_FORMATS))}") from None
