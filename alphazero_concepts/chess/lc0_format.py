"""lc0's input planes and policy encoding (the format of Leela Chess Zero and Maia weights), beside AlphaZero's.

Input (112 × 8 × 8, float32; lc0's INPUT_CLASSICAL_112_PLANE), from the side to move's perspective like the
AlphaZero planes: for Black the board is mirrored vertically (rank 1 ↔ rank 8) and "own" pieces are Black's.
Plane row = rank, column = file (row 0 is the side to move's first rank).

    for each of 8 history steps s = 0 (now), 1 (one ply ago), …, 7:
        13·s + 0..5    own pawns, knights, bishops, rooks, queens, king
        13·s + 6..11   opponent pawns … king
        13·s + 12      1 if this position occurred before (lc0 has one repetition plane, not two)
    104  own queen-side (O-O-O) castling right      105  own king-side (O-O) castling right
    106  opponent queen-side castling right         107  opponent king-side castling right
    108  1 when Black is to move
    109  the half-move clock, raw (not divided by 100, as lc0 feeds it; Maia fits the played moves better so)
    110  zeros (once the move count, unused)
    111  ones (lets the convolutions find the board's edge)

En passant has no plane: it shows in the history (the pawn's double step between steps 1 and 0).

History: steps 1–7 come from the board's moves as in the AlphaZero encoder. Where the history is shorter than 8
positions, lc0's default ("fen_only") is followed: a game that began at the standard start position has zeros
before it (what the networks saw in training), and any other first known position (a bare FEN, or a game set up
from a FEN) is repeated into the missing steps. Unlike lc0, the repeated copies do not move an en-passant pawn
back to its square before the double step (`PositionArrays` does not carry the en-passant square).

Policy (1858 logits, lc0's fixed move list, squares from the side to move's perspective): for each from-square
a1, b1, …, h8, every destination a queen or a knight could reach from it, in square order (1792 moves); then the
promotions from the seventh rank, for each (from, to) pair in square order to queen, rook and bishop (66 moves).
A promotion to a knight is the plain pawn move (a7a8 = a7a8n). Castling is written king-takes-rook, as lc0 does
internally: O-O is e1h1 and O-O-O e1a1 (python-chess's e1g1 / e1c1 are translated both ways). Maia confirms it:
in 300 of 300 master-game positions where a side castled, its logit on e1h1 is far above that on e1g1.

Convolutional policy heads produce 80 × 8 × 8 outputs in AlphaZero's layout (plane · 64 + from-square):
planes 0–55 queen-like moves, direction (N, NE, E, SE, S, SW, W, NW) × distance 1–7; 56–63 knight moves
(file, rank) = (1, 2), (2, 1), (2, −1), (1, −2), (−1, −2), (−2, −1), (−2, 1), (−1, 2); 64–72 promotions,
direction (capture to the a-side, push, capture to the h-side) × piece (rook, bishop, queen); 73–79 unused.
`CONV_POLICY_MAP` names the 1858-index of each of the 80 · 64 outputs (−1 for none).
"""

from __future__ import annotations

from collections.abc import Sequence

import chess
import numpy as np

from alphazero_concepts.chess.encoding import (
    HISTORY_STEPS,
    PositionArrays,
    board_bitboards,
    boards_to_arrays,
    legal_moves,
)

PLANES_PER_STEP = 13
N_PLANES = HISTORY_STEPS * PLANES_PER_STEP + 8  # 112
POLICY_SIZE = 1858
CONV_POLICY_PLANES = 80

_QUEEN_STEPS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))  # (d_file, d_rank) N…NW
_KNIGHT_STEPS = ((1, 2), (2, 1), (2, -1), (1, -2), (-1, -2), (-2, -1), (-2, 1), (-1, 2))
_PROMO_PIECES = (chess.QUEEN, chess.ROOK, chess.BISHOP)  # order of the explicit promotions in the move list
_CONV_PROMO_PIECES = (chess.ROOK, chess.BISHOP, chess.QUEEN)  # order of the promotion planes of conv heads
_CONV_PROMO_DIRECTIONS = (-1, 0, 1)  # file step: capture to the a-side, push, capture to the h-side
_START_BITBOARDS = np.array(board_bitboards(chess.Board()), dtype=np.uint64)


def _on_board(file: int, rank: int) -> bool:
    return 0 <= file < 8 and 0 <= rank < 8


def _build_move_list() -> list[tuple[int, int, int | None]]:
    """lc0's 1858 moves as (from, to, promotion piece or None), White's perspective, in policy-index order."""
    moves: list[tuple[int, int, int | None]] = []
    for frm in range(64):
        file, rank = chess.square_file(frm), chess.square_rank(frm)
        targets = set()
        for df, dr in _QUEEN_STEPS:
            for dist in range(1, 8):
                if _on_board(file + df * dist, rank + dr * dist):
                    targets.add(chess.square(file + df * dist, rank + dr * dist))
        for df, dr in _KNIGHT_STEPS:
            if _on_board(file + df, rank + dr):
                targets.add(chess.square(file + df, rank + dr))
        moves.extend((frm, to, None) for to in sorted(targets))
    for frm in chess.SquareSet(chess.BB_RANK_7):
        for to in sorted(chess.square(f, 7) for f in (chess.square_file(frm) + d for d in (-1, 0, 1)) if 0 <= f < 8):
            moves.extend((frm, to, piece) for piece in _PROMO_PIECES)
    return moves


MOVES: tuple[tuple[int, int, int | None], ...] = tuple(_build_move_list())
assert len(MOVES) == POLICY_SIZE
_PROMO_CODE = {None: 0, chess.KNIGHT: 0, chess.QUEEN: 1, chess.ROOK: 2, chess.BISHOP: 3}
# (from << 6 | to) + 4096 · promotion code → policy index, White's perspective (−1: no such move)
_INDEX_OF = np.full(4096 * 4, -1, dtype=np.int64)
for _i, (_frm, _to, _piece) in enumerate(MOVES):
    _INDEX_OF[(_frm << 6 | _to) + 4096 * _PROMO_CODE[_piece]] = _i


def _build_conv_policy_map() -> np.ndarray:
    """(80 · 64,) int64: the policy index of each output (plane · 64 + from-square) of a convolutional head."""
    table = np.full(CONV_POLICY_PLANES * 64, -1, dtype=np.int64)

    def put(plane: int, frm: int, df: int, dr: int, piece: int | None) -> None:
        file, rank = chess.square_file(frm) + df, chess.square_rank(frm) + dr
        if _on_board(file, rank):
            table[plane * 64 + frm] = _INDEX_OF[(frm << 6 | chess.square(file, rank)) + 4096 * _PROMO_CODE[piece]]

    for frm in range(64):
        for d, (df, dr) in enumerate(_QUEEN_STEPS):
            for dist in range(1, 8):
                put(7 * d + dist - 1, frm, df * dist, dr * dist, None)
        for k, (df, dr) in enumerate(_KNIGHT_STEPS):
            put(56 + k, frm, df, dr, None)
        if chess.square_rank(frm) == 6:
            for j, df in enumerate(_CONV_PROMO_DIRECTIONS):
                for p, piece in enumerate(_CONV_PROMO_PIECES):
                    put(64 + 3 * j + p, frm, df, 1, piece)
    return table


CONV_POLICY_MAP = _build_conv_policy_map()


def _flat_table(flip: int) -> list[int]:
    """Python list: (from << 6 | to) + 4096 · python-chess promotion piece type → index, for one side to move."""
    table = [-1] * (4096 * 7)
    for frm in range(64):
        for to in range(64):
            base = (frm ^ flip) << 6 | (to ^ flip)
            for piece in (None, chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN):
                table[(frm << 6 | to) + 4096 * (piece or 0)] = int(_INDEX_OF[base + 4096 * _PROMO_CODE[piece]])
    return table


_FLAT = {chess.WHITE: _flat_table(0), chess.BLACK: _flat_table(56)}


def _castling_rook_square(king: int, to: int, board: chess.Board) -> int:
    """Where lc0 puts a castling king's destination: the castling rook's square (the move's own `to` in Chess960)."""
    if board.chess960 or board.piece_type_at(to) == chess.ROOK:
        return to
    return chess.square(7 if chess.square_file(to) > chess.square_file(king) else 0, chess.square_rank(king))


def _is_castling_shape(frm: int, to: int, board: chess.Board) -> bool:
    """A king moving two or more files along its rank: castling (python-chess's e1g1 or king-takes-rook)."""
    return (abs(chess.square_file(to) - chess.square_file(frm)) > 1 and chess.square_rank(to) == chess.square_rank(frm)
            and bool(board.kings & board.occupied_co[board.turn] & chess.BB_SQUARES[frm]))


def move_to_index(move: chess.Move, board: chess.Board) -> int:
    """lc0 policy index (0..1857) of `move` played by the side to move of `board`.

    Castling may be given as python-chess writes it (e1g1) or king-takes-rook (e1h1); both give lc0's index.
    Raises ValueError for a move lc0's list cannot express (a null move, a drop, a non-queen/knight jump).
    """
    if not move or move.drop:
        raise ValueError(f"move {move.uci()} has no lc0 policy index")
    if move.promotion not in _PROMO_CODE:
        raise ValueError(f"unsupported promotion in {move.uci()}")
    to = move.to_square
    if _is_castling_shape(move.from_square, to, board):
        to = _castling_rook_square(move.from_square, to, board)
    idx = _FLAT[board.turn][(move.from_square << 6 | to) + 4096 * (move.promotion or 0)]
    if idx < 0:
        raise ValueError(f"move {move.uci()} has no lc0 policy index")
    return idx


def index_to_move(index: int, board: chess.Board) -> chess.Move:
    """The move of lc0 policy index `index` for the side to move of `board` (inverse of `move_to_index`).

    A plain move of a pawn onto the last rank is a knight promotion; a king's move onto its own rook's square two
    or more files away is castling, returned as python-chess writes it (e1g1, or king-takes-rook on a Chess960
    board). The move is not checked for legality.
    """
    if not 0 <= index < POLICY_SIZE:
        raise ValueError(f"lc0 policy index {index} out of range 0..{POLICY_SIZE - 1}")
    frm, to, promotion = MOVES[index]
    if board.turn == chess.BLACK:
        frm, to = frm ^ 56, to ^ 56
    if promotion is None and board.piece_type_at(frm) == chess.PAWN and chess.square_rank(to) in (0, 7):
        promotion = chess.KNIGHT
    if not board.chess960 and _is_castling_shape(frm, to, board):
        to = chess.square(6 if chess.square_file(to) > chess.square_file(frm) else 2, chess.square_rank(frm))
    return chess.Move(frm, to, promotion)


def legal_move_indices(board: chess.Board) -> tuple[list[chess.Move], np.ndarray]:
    """The legal moves of `board` and their lc0 policy indices (int64 array, same order)."""
    moves = legal_moves(board)
    table = _FLAT[board.turn]
    idx = [table[(m.from_square << 6 | m.to_square) + 4096 * (m.promotion or 0)] for m in moves]
    king_mask = board.kings & board.occupied_co[board.turn]
    if board.castling_rights and king_mask:  # castling: lc0's index is king-takes-rook
        king = chess.msb(king_mask)
        for i, m in enumerate(moves):
            if m.from_square == king and _is_castling_shape(king, m.to_square, board):
                idx[i] = move_to_index(m, board)
    return moves, np.array(idx, dtype=np.int64)


def _fill_missing_history(bitboards: np.ndarray, repetitions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Repeat the oldest known position into the missing steps unless it is the standard start position."""
    known = bitboards.any(axis=2)  # (N, 8): a real position always has kings
    n_known = known.sum(axis=1)
    oldest = np.maximum(n_known - 1, 0)
    rows = np.arange(len(bitboards))
    oldest_bbs = bitboards[rows, oldest]
    fill = (n_known > 0) & (n_known < HISTORY_STEPS) & ~(oldest_bbs == _START_BITBOARDS).all(axis=1)
    if not fill.any():
        return bitboards, repetitions
    bitboards, repetitions = bitboards.copy(), repetitions.copy()
    missing = fill[:, None] & ~known
    bitboards = np.where(missing[..., None], oldest_bbs[:, None, :], bitboards)
    repetitions = np.where(missing, repetitions[rows, oldest][:, None], repetitions)
    return bitboards, repetitions


def arrays_to_planes(arrays: PositionArrays) -> np.ndarray:
    """(N, 112, 8, 8) float32 lc0 planes from `PositionArrays` (vectorised: no per-square Python)."""
    n = len(arrays)
    bitboards, repetitions = _fill_missing_history(arrays.bitboards, arrays.repetitions)
    bb = bitboards.astype("<u8", copy=True)
    black = ~arrays.turn
    # Black to move: mirror ranks (a byte swap of the bitboard) and make Black's pieces the "own" ones
    bb[black] = bb[black].byteswap()
    bb[black] = np.concatenate([bb[black][..., 6:], bb[black][..., :6]], axis=-1)
    bits = np.unpackbits(bb.view(np.uint8).reshape(n, HISTORY_STEPS, 12, 8), axis=-1, bitorder="little")
    out = np.zeros((n, N_PLANES, 8, 8), dtype=np.float32)
    history = out[:, : HISTORY_STEPS * PLANES_PER_STEP].reshape(n, HISTORY_STEPS, PLANES_PER_STEP, 8, 8)
    history[:, :, :12] = bits.reshape(n, HISTORY_STEPS, 12, 8, 8)
    history[:, :, 12] = (repetitions >= 1)[..., None, None]
    cast = arrays.castling  # White O-O, White O-O-O, Black O-O, Black O-O-O
    white = arrays.turn[:, None]
    us_oo, us_ooo = np.where(white, cast[:, 0:2], cast[:, 2:4]).T
    them_oo, them_ooo = np.where(white, cast[:, 2:4], cast[:, 0:2]).T
    aux = np.stack([us_ooo, us_oo, them_ooo, them_oo, black, arrays.halfmove, np.zeros(n), np.ones(n)], axis=1)
    out[:, HISTORY_STEPS * PLANES_PER_STEP :] = aux.astype(np.float32)[:, :, None, None]
    return out


def encode(boards: Sequence[chess.Board]) -> np.ndarray:
    """lc0 input planes (N, 112, 8, 8) float32 for a batch of boards (see the module docstring)."""
    return arrays_to_planes(boards_to_arrays(boards))


class Lc0Format:
    """lc0's 112 input planes and 1858-move policy (see `alphazero_concepts.chess.lc0_format`)."""

    name = "lc0"
    input_planes = N_PLANES
    policy_size = POLICY_SIZE

    def arrays_to_planes(self, arrays: PositionArrays) -> np.ndarray:
        return arrays_to_planes(arrays)

    def encode(self, boards: Sequence[chess.Board]) -> np.ndarray:
        return encode(boards)

    def move_to_index(self, move: chess.Move, board: chess.Board) -> int:
        return move_to_index(move, board)

    def index_to_move(self, index: int, board: chess.Board) -> chess.Move:
        return index_to_move(index, board)

    def legal_move_indices(self, board: chess.Board) -> tuple[list[chess.Move], np.ndarray]:
        return legal_move_indices(board)


LC0_FORMAT = Lc0Format()
