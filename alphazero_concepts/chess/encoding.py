"""AlphaZero input planes and the 8×8×73 policy map, vectorised over bitboards.

Input (119 × 8 × 8, float32), always from the side to move's perspective: for Black the board is mirrored
vertically (rank 1 ↔ rank 8) and "own" pieces are Black's. Plane row = rank, column = file (row 0 is the side
to move's first rank).

    for each of 8 history steps s = 0 (now), 1 (one ply ago), …, 7:
        14·s + 0..5    own pawns, knights, bishops, rooks, queens, king
        14·s + 6..11   opponent pawns … king
        14·s + 12      1 if this position occurred at least once before (in its reversible window)
        14·s + 13      1 if it occurred at least twice before
    112  colour: 1 when White is to move, 0 when Black is
    113  ply count / 200 (the game's length so far)
    114  own king-side castling right     115  own queen-side castling right
    116  opponent king-side castling     117  opponent queen-side castling
    118  half-move clock / 100 (the fifty-move rule's counter)

History: a `chess.Board` carries its moves (`board.move_stack`), and the planes of steps 1–7 are rebuilt from
them. A board without moves (a bare FEN or EPD line) has no history: its steps 1–7 are all zero, exactly as at
the start of a game. This is a deliberate, documented choice (lc0 repeats the current position instead).

Policy (4672 logits = 73 planes × 64 from-squares, index = plane · 64 + from_square, squares in the side to
move's perspective):

    0..55   queen-like moves: direction d (N, NE, E, SE, S, SW, W, NW) × distance 1..7 → 7·d + distance − 1
            (queen promotions and castling, written king-two-squares, are queen-like moves)
    56..63  knight moves
    64..72  under-promotions: piece (knight, bishop, rook) × direction (capture left, push, capture right)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import chess
import numpy as np

HISTORY_STEPS = 8
PLANES_PER_STEP = 14
N_PLANES = HISTORY_STEPS * PLANES_PER_STEP + 7  # 119
POLICY_PLANES = 73
POLICY_SIZE = POLICY_PLANES * 64  # 4672

_PIECE_TYPES = (chess.PAWN, chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN, chess.KING)
_QUEEN_DIRECTIONS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))  # (d_rank, d_file)
_KNIGHT_OFFSETS = ((2, 1), (1, 2), (-1, 2), (-2, 1), (-2, -1), (-1, -2), (1, -2), (2, -1))
_UNDERPROMOTIONS = (chess.KNIGHT, chess.BISHOP, chess.ROOK)
# promotion code used by the move table: 0 = none or queen (queen-like plane), 1..3 = knight, bishop, rook
_PROMO_CODE = {None: 0, chess.QUEEN: 0, chess.KNIGHT: 1, chess.BISHOP: 2, chess.ROOK: 3}


def _build_move_tables() -> tuple[np.ndarray, np.ndarray]:
    """Table (from, to, promo_code) → policy index, and index → (from, to, promo_code); White's perspective."""
    to_index = np.full((64, 64, 4), -1, dtype=np.int64)
    from_index = np.full((POLICY_SIZE, 3), -1, dtype=np.int64)

    def put(plane: int, frm: int, to: int, promo: int) -> None:
        idx = plane * 64 + frm
        to_index[frm, to, promo] = idx
        from_index[idx] = (frm, to, promo)

    for frm in range(64):
        rank, file = divmod(frm, 8)
        for d, (dr, df) in enumerate(_QUEEN_DIRECTIONS):
            for dist in range(1, 8):
                r, f = rank + dr * dist, file + df * dist
                if 0 <= r < 8 and 0 <= f < 8:
                    put(7 * d + dist - 1, frm, r * 8 + f, 0)
        for k, (dr, df) in enumerate(_KNIGHT_OFFSETS):
            r, f = rank + dr, file + df
            if 0 <= r < 8 and 0 <= f < 8:
                put(56 + k, frm, r * 8 + f, 0)
        if rank == 6:  # under-promotions from the seventh rank
            for p, _piece in enumerate(_UNDERPROMOTIONS):
                for j, df in enumerate((-1, 0, 1)):
                    f = file + df
                    if 0 <= f < 8:
                        put(64 + 3 * p + j, frm, 56 + f, p + 1)
    return to_index, from_index


_TO_INDEX, _FROM_INDEX = _build_move_tables()


def _persp(square: int, turn: chess.Color) -> int:
    return square if turn == chess.WHITE else square ^ 56


def move_to_index(move: chess.Move, board: chess.Board) -> int:
    """Policy index (0..4671) of `move` played by the side to move of `board`.

    Raises ValueError for a move the AlphaZero map cannot express (a null move, a drop, a non-adjacent jump).
    """
    if not move:
        raise ValueError(f"null move has no policy index: {move!r}")
    try:
        promo = _PROMO_CODE[move.promotion]
    except KeyError:
        raise ValueError(f"unsupported promotion in {move.uci()}") from None
    idx = int(_TO_INDEX[_persp(move.from_square, board.turn), _persp(move.to_square, board.turn), promo])
    if idx < 0:
        raise ValueError(f"move {move.uci()} has no AlphaZero policy index")
    return idx


def index_to_move(index: int, board: chess.Board) -> chess.Move:
    """The move of policy index `index` for the side to move of `board` (inverse of `move_to_index`).

    A queen-like move of a pawn onto the last rank is a queen promotion. The move is not checked for legality.
    """
    if not 0 <= index < POLICY_SIZE or _FROM_INDEX[index, 0] < 0:
        raise ValueError(f"policy index {index} names no move")
    frm, to, promo = (int(x) for x in _FROM_INDEX[index])
    frm, to = _persp(frm, board.turn), _persp(to, board.turn)
    promotion: chess.PieceType | None = _UNDERPROMOTIONS[promo - 1] if promo else None
    if not promo and board.piece_type_at(frm) == chess.PAWN and chess.square_rank(to) in (0, 7):
        promotion = chess.QUEEN
    return chess.Move(frm, to, promotion)


def _build_flat_table(flip: int) -> list[int]:
    """Python list: (from << 6 | to) + 4096 · promotion piece type → policy index, for one side to move."""
    table = [-1] * (4096 * 7)
    for frm in range(64):
        for to in range(64):
            for piece in (None, chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN):
                idx = int(_TO_INDEX[frm ^ flip, to ^ flip, _PROMO_CODE[piece]])
                table[(frm << 6 | to) + 4096 * (piece or 0)] = idx
    return table


_FLAT_TABLES = {chess.WHITE: _build_flat_table(0), chess.BLACK: _build_flat_table(56)}


def legal_moves(board: chess.Board) -> list[chess.Move]:
    """`list(board.legal_moves)`, same moves in the same order, about twice as fast.

    Out of check, a pseudo-legal move is legal unless it moves the king, a pinned piece or an en-passant pawn;
    only those few go through python-chess's own safety test. In check, python-chess's evasion generator is used.
    """
    king_mask = board.kings & board.occupied_co[board.turn]
    if not king_mask or board.is_check():
        return list(board.legal_moves)
    king = chess.msb(king_mask)
    blockers = board._slider_blockers(king)
    risky = blockers | king_mask
    if board.ep_square is not None:
        risky |= board.pawns & board.occupied_co[board.turn] & chess.BB_PAWN_ATTACKS[not board.turn][board.ep_square]
    is_safe = board._is_safe
    return [m for m in board.generate_pseudo_legal_moves()
            if not chess.BB_SQUARES[m.from_square] & risky or is_safe(king, blockers, m)]


def legal_move_indices(board: chess.Board) -> tuple[list[chess.Move], np.ndarray]:
    """The legal moves of `board` and their policy indices (int64 array, same order)."""
    moves = legal_moves(board)
    table = _FLAT_TABLES[board.turn]
    idx = [table[(m.from_square << 6 | m.to_square) + 4096 * (m.promotion or 0)] for m in moves]
    return moves, np.array(idx, dtype=np.int64)


# --------------------------------------------------------------------------------------------------------------
# Positions as arrays: the per-position facts the planes are made from.


@dataclass
class PositionArrays:
    """Bitboards and counters of N positions with their history, ready to become planes.

    bitboards: (N, 8, 12) uint64, absolute colours (White P N B R Q K, then Black), step 0 = now; missing = 0
    repetitions: (N, 8) int8, how often each history position occurred before (capped at 2)
    turn: (N,) bool, True when White is to move
    castling: (N, 4) bool, White king-side, White queen-side, Black king-side, Black queen-side
    ply: (N,) int32, plies played since the game's start; halfmove: (N,) int32, fifty-move counter
    """

    bitboards: np.ndarray
    repetitions: np.ndarray
    turn: np.ndarray
    castling: np.ndarray
    ply: np.ndarray
    halfmove: np.ndarray

    def __len__(self) -> int:
        return len(self.turn)


def board_bitboards(board: chess.Board) -> tuple[int, ...]:
    """The 12 piece bitboards of `board` (White pawn … king, then Black), absolute colours."""
    white, black = board.occupied_co[chess.WHITE], board.occupied_co[chess.BLACK]
    kinds = (board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings)
    return tuple(k & white for k in kinds) + tuple(k & black for k in kinds)


def castling_bits(board: chess.Board) -> tuple[bool, bool, bool, bool]:
    """(White O-O, White O-O-O, Black O-O, Black O-O-O) castling rights of `board`."""
    rights = board.clean_castling_rights()
    return (
        bool(rights & chess.BB_H1),
        bool(rights & chess.BB_A1),
        bool(rights & chess.BB_H8),
        bool(rights & chess.BB_A8),
    )


def _ply_of(board: chess.Board) -> int:
    return 2 * (board.fullmove_number - 1) + (board.turn == chess.BLACK)


def _state_key(state: chess._BoardState, ep_square: int | None) -> tuple:
    return (state.pawns, state.knights, state.bishops, state.rooks, state.queens, state.kings, state.occupied_w,
            state.occupied_b, state.turn, state.castling_rights, ep_square)


def _capturable_ep(state: chess._BoardState) -> int | None:
    """The en-passant square if a legal en-passant capture exists (as `Board._transposition_key`), else None."""
    ep = state.ep_square
    if ep is None:
        return None
    own = state.occupied_w if state.turn == chess.WHITE else state.occupied_b
    if not chess.BB_PAWN_ATTACKS[not state.turn][ep] & state.pawns & own:
        return None
    # rare: a pawn attacks the square, but the capture may still be illegal (pin, check)
    scratch = chess.Board(None)
    state.restore(scratch)
    return ep if scratch.has_legal_en_passant() else None


def _history_states(board: chess.Board) -> tuple[list[chess._BoardState], list[int]]:
    """The saved states of the up-to-8 most recent positions of `board` (now first) and their repetition counts.

    Reads the board's saved states (python-chess keeps one per move played) instead of copying and popping; the
    input is never changed. Positions are compared as python-chess's repetition rule does (pieces, side to move,
    castling rights, en-passant square when a capture there is possible), only as far back as the fifty-move
    window of the recent positions reaches (a repetition needs at least four reversible plies).
    """
    states = board._stack
    current = chess._BoardState(board)
    history = [current, *reversed(states[-(HISTORY_STEPS - 1) :])] if states else [current]
    clocks = [st.halfmove_clock for st in history]
    if max(clocks) < 4 or not states:
        return history, [0] * len(history)
    reach = max(t + c for t, c in enumerate(clocks))
    window = [current, *reversed(states[-reach:])]
    occupied = [st.occupied for st in window]
    reps = []
    for s in range(len(history)):
        hm = history[s].halfmove_clock
        # cheap filter first: an earlier equal position must have the same occupancy (at an even distance ≥ 4)
        earlier = [u for u in range(s + 4, min(len(window), s + 1 + hm), 2) if occupied[u] == occupied[s]]
        if not earlier:
            reps.append(0)
            continue
        key = _state_key(window[s], _capturable_ep(window[s]))
        reps.append(min(2, sum(_state_key(window[u], _capturable_ep(window[u])) == key for u in earlier)))
    return history, reps


def _raw_bitboards(st: chess._BoardState) -> tuple[int, ...]:
    return (st.pawns, st.knights, st.bishops, st.rooks, st.queens, st.kings, st.occupied_w, st.occupied_b)


def _board_history(board: chess.Board) -> tuple[list[tuple[int, ...]], list[int]]:
    """Piece bitboards (as `board_bitboards`) of the up-to-8 most recent positions and their repetition counts."""
    history, reps = _history_states(board)
    bbs = []
    for st in history:
        white, black = st.occupied_w, st.occupied_b
        kinds = (st.pawns, st.knights, st.bishops, st.rooks, st.queens, st.kings)
        bbs.append(tuple(k & white for k in kinds) + tuple(k & black for k in kinds))
    return bbs, reps


_EMPTY_RAW = (0,) * 8


def boards_to_arrays(boards: Sequence[chess.Board]) -> PositionArrays:
    """Collect the arrays of `boards` (with their move history); the boards are not changed."""
    n = len(boards)
    raw: list[tuple[int, ...]] = []
    repetitions = np.zeros((n, HISTORY_STEPS), dtype=np.int8)
    for i, board in enumerate(boards):
        history, reps = _history_states(board)
        raw.extend(_raw_bitboards(st) for st in history)
        raw.extend([_EMPTY_RAW] * (HISTORY_STEPS - len(history)))
        repetitions[i, : len(reps)] = reps
    kinds = np.fromiter(itertools.chain.from_iterable(raw), dtype=np.uint64, count=8 * len(raw))
    kinds = kinds.reshape(n, HISTORY_STEPS, 8)
    # piece kinds × colour: (N, 8, 6) & (N, 8, 1) for White, then Black
    bitboards = np.concatenate([kinds[..., :6] & kinds[..., 6:7], kinds[..., :6] & kinds[..., 7:8]], axis=-1)
    return PositionArrays(
        bitboards=bitboards,
        repetitions=repetitions,
        turn=np.fromiter((b.turn == chess.WHITE for b in boards), dtype=bool, count=n),
        castling=np.array([castling_bits(b) for b in boards], dtype=bool).reshape(n, 4),
        ply=np.fromiter((_ply_of(b) for b in boards), dtype=np.int32, count=n),
        halfmove=np.fromiter((b.halfmove_clock for b in boards), dtype=np.int32, count=n),
    )


@dataclass
class GameSnapshots:
    """Per-position facts of one game without the history gather: what `with_history` turns into arrays.

    snaps: (N, 12) uint64 piece bitboards (as `board_bitboards`); the other fields as in `PositionArrays`, with
    `repetitions` (N,) for the position itself. Compact (about 110 bytes a position), so a whole training set of
    millions of positions fits in memory and the history is gathered per batch.
    """

    snaps: np.ndarray
    repetitions: np.ndarray
    turn: np.ndarray
    castling: np.ndarray
    ply: np.ndarray
    halfmove: np.ndarray


def game_snapshots(start: chess.Board, moves: Sequence[chess.Move],
                   visit: Callable[[int, chess.Board], None] | None = None) -> GameSnapshots:
    """Snapshots of every position of a game: before move 0, 1, …, len(moves)-1 (one pass, no copies).

    `visit(i, board)` (optional) sees the board before move i is pushed, e.g. to read labels in its frame; it must
    not change the board. `start`'s own earlier moves are ignored (the game's history starts at `start`).
    """
    board = start.copy(stack=False)
    n = len(moves)
    snaps = np.zeros((n, 12), dtype=np.uint64)
    reps = np.zeros(n, dtype=np.int8)
    turn = np.zeros(n, dtype=bool)
    castling = np.zeros((n, 4), dtype=bool)
    ply = np.zeros(n, dtype=np.int32)
    halfmove = np.zeros(n, dtype=np.int32)
    seen: dict[object, list[int]] = {}
    for i, move in enumerate(moves):
        snaps[i] = board_bitboards(board)
        key = board._transposition_key()
        hm = board.halfmove_clock
        earlier = seen.setdefault(key, [])
        reps[i] = min(2, sum(1 for j in earlier if i - j <= hm))
        earlier.append(i)
        turn[i] = board.turn == chess.WHITE
        castling[i] = castling_bits(board)
        ply[i] = _ply_of(board)
        halfmove[i] = hm
        if visit is not None:
            visit(i, board)
        board.push(move)
    return GameSnapshots(snaps, reps, turn, castling, ply, halfmove)


def with_history(snapshots: GameSnapshots, rows: np.ndarray, first: np.ndarray) -> PositionArrays:
    """`PositionArrays` of positions `rows` of concatenated snapshots, each with the up-to-7 positions before it.

    `first[k]` is the row of the first position of row k's game: history never reaches across games (missing
    steps are zero, as at a game's start).
    """
    rows = np.asarray(rows, dtype=np.int64)
    idx = rows[:, None] - np.arange(HISTORY_STEPS)[None, :]
    valid = idx >= np.asarray(first, dtype=np.int64)[:, None]
    idx = np.where(valid, idx, 0)
    bitboards = np.where(valid[..., None], snapshots.snaps[idx], np.uint64(0))
    repetitions = np.where(valid, snapshots.repetitions[idx], 0).astype(np.int8)
    return PositionArrays(bitboards, repetitions, snapshots.turn[rows], snapshots.castling[rows],
                          snapshots.ply[rows], snapshots.halfmove[rows])


def game_to_arrays(start: chess.Board, moves: Sequence[chess.Move]) -> PositionArrays:
    """Arrays for every position of a game: before move 0, 1, …, len(moves)-1 (len(moves) positions).

    One pass over the game (no copying and popping per position), for training on many games.
    `start` may carry its own earlier moves; they are ignored (the game's history starts at `start`).
    """
    n = len(moves)
    return with_history(game_snapshots(start, moves), np.arange(n), np.zeros(n, dtype=np.int64))


def arrays_to_planes(arrays: PositionArrays) -> np.ndarray:
    """(N, 119, 8, 8) float32 planes from `PositionArrays` (vectorised: no per-square Python)."""
    n = len(arrays)
    bb = arrays.bitboards.astype("<u8", copy=True)
    black = ~arrays.turn
    # Black to move: mirror ranks (a byte swap of the bitboard) and make Black's pieces the "own" ones
    bb[black] = bb[black].byteswap()
    bb[black] = np.concatenate([bb[black][..., 6:], bb[black][..., :6]], axis=-1)
    bits = np.unpackbits(bb.view(np.uint8).reshape(n, HISTORY_STEPS, 12, 8), axis=-1, bitorder="little")
    pieces = bits.reshape(n, HISTORY_STEPS, 12, 8, 8)
    reps = arrays.repetitions
    rep_planes = np.stack([reps >= 1, reps >= 2], axis=-1).astype(np.uint8)  # (N, 8, 2)
    rep_planes = np.broadcast_to(rep_planes[..., None, None], (n, HISTORY_STEPS, 2, 8, 8))
    history = np.concatenate([pieces, rep_planes], axis=2).reshape(n, HISTORY_STEPS * PLANES_PER_STEP, 8, 8)
    cast = arrays.castling
    own = np.where(arrays.turn[:, None], cast[:, :2], cast[:, 2:])
    opp = np.where(arrays.turn[:, None], cast[:, 2:], cast[:, :2])
    scalars = np.concatenate(
        [
            arrays.turn[:, None].astype(np.float32),
            (arrays.ply / 200.0)[:, None],
            own,
            opp,
            (arrays.halfmove / 100.0)[:, None],
        ],
        axis=1,
    ).astype(np.float32)
    out = np.empty((n, N_PLANES, 8, 8), dtype=np.float32)
    out[:, : HISTORY_STEPS * PLANES_PER_STEP] = history
    out[:, HISTORY_STEPS * PLANES_PER_STEP :] = scalars[:, :, None, None]
    return out


def encode(boards: Sequence[chess.Board]) -> np.ndarray:
    """AlphaZero input planes (N, 119, 8, 8) float32 for a batch of boards (see the module docstring)."""
    return arrays_to_planes(boards_to_arrays(boards))
