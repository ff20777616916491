"""The rules of chess compiled with numba: python-chess's move generator, move making and draw rules, ported.

Why: the tree search needs the legal moves of every position it creates. python-chess spends tens of microseconds
on a position in Python; this port does the same in well under one, with no objects. It is a line-by-line port,
not a new generator, because the search must be *identical* to the reference search: moves are generated in
python-chess's order (`list(board.legal_moves)`: piece moves from the highest square down, castling, pawn
captures, pushes, double pushes, en passant; evasions when in check) so that ties between equal moves break the
same way, and the board is updated exactly as `Board.push` updates it (castling rights, en-passant square,
counters).

A position is two rows: `bb` (uint64 × 9: pawns, knights, bishops, rooks, queens, kings, White's pieces, Black's
pieces, castling rights as python-chess's mask of rook squares) and `info` (int64 × 4: side to move 1 = White,
en-passant square or -1, half-move clock, full-move number). A move is an int32: from | to << 6 | promotion << 12
(python-chess piece types: 2 knight … 5 queen). Standard chess only; Chess960 stays with the reference search.
The search kernels in `tree.py` compile these functions into themselves: after editing this file, touch `tree.py`
(numba's disk cache does not notice changes in called modules).
"""

from __future__ import annotations

import chess
import numpy as np
from numba import njit

PAWNS, KNIGHTS, BISHOPS, ROOKS, QUEENS, KINGS, OCC_W, OCC_B, CASTLING = range(9)
BB_FIELDS = 9
TURN, EP, HALFMOVE, FULLMOVE = range(4)
INFO_FIELDS = 4
MAX_MOVES = 256  # more than the most legal moves of any chess position (218)

_U = np.uint64
ZERO = _U(0)
ALL = _U(0xFFFF_FFFF_FFFF_FFFF)
BB_SQUARES = np.array([1 << s for s in range(64)], dtype=np.uint64)
KNIGHT_ATTACKS = np.array(chess.BB_KNIGHT_ATTACKS, dtype=np.uint64)
KING_ATTACKS = np.array(chess.BB_KING_ATTACKS, dtype=np.uint64)
PAWN_ATTACKS = np.array([chess.BB_PAWN_ATTACKS[chess.BLACK], chess.BB_PAWN_ATTACKS[chess.WHITE]], dtype=np.uint64)
RAYS = np.array(chess.BB_RAYS, dtype=np.uint64)  # the whole line through two squares (chess.ray)
BETWEEN = np.array([[chess.between(a, b) for b in range(64)] for a in range(64)], dtype=np.uint64)
RANK_LINE = np.array([chess.BB_RANK_ATTACKS[s][0] for s in range(64)], dtype=np.uint64)
FILE_LINE = np.array([chess.BB_FILE_ATTACKS[s][0] for s in range(64)], dtype=np.uint64)
DIAG_LINE = np.array([chess.BB_DIAG_ATTACKS[s][0] for s in range(64)], dtype=np.uint64)
RANKS = np.array(chess.BB_RANKS, dtype=np.uint64)
RANK_1, RANK_3, RANK_4 = _U(chess.BB_RANK_1), _U(chess.BB_RANK_3), _U(chess.BB_RANK_4)
RANK_5, RANK_6, RANK_8 = _U(chess.BB_RANK_5), _U(chess.BB_RANK_6), _U(chess.BB_RANK_8)
FILE_C, FILE_D, FILE_F, FILE_G = (_U(chess.BB_FILE_C), _U(chess.BB_FILE_D), _U(chess.BB_FILE_F),
                                  _U(chess.BB_FILE_G))
DARK_SQUARES, LIGHT_SQUARES = _U(chess.BB_DARK_SQUARES), _U(chess.BB_LIGHT_SQUARES)
E1, G1, C1, H1, A1 = chess.E1, chess.G1, chess.C1, chess.H1, chess.A1
E8, G8, C8, H8, A8 = chess.E8, chess.G8, chess.C8, chess.H8, chess.A8


def _direction_rays() -> np.ndarray:
    """(8, 64) squares a slider sees from each square on an empty board, one direction at a time. Directions 0–3
    go up the square numbers (N, NE, E, NW: the first blocker is the lowest bit), 4–7 down (S, SW, W, SE)."""
    steps = ((1, 0), (1, 1), (0, 1), (1, -1), (-1, 0), (-1, -1), (0, -1), (-1, 1))  # (d_rank, d_file)
    rays = np.zeros((8, 64), dtype=np.uint64)
    for d, (dr, df) in enumerate(steps):
        for sq in range(64):
            r, f, bits = sq // 8 + dr, sq % 8 + df, 0
            while 0 <= r < 8 and 0 <= f < 8:
                bits |= 1 << (8 * r + f)
                r, f = r + dr, f + df
            rays[d, sq] = bits
    return rays


DIR_RAYS = _direction_rays()

# bit scans: a de Bruijn multiply maps 2^(i+1) - 1 (bits 0..i set) to a unique 6-bit slot
_DEBRUIJN = _U(0x03F7_9D71_B4CB_0A89)
_BITSCAN = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _BITSCAN[(((1 << (_i + 1)) - 1) * 0x03F79D71B4CB0A89 % (1 << 64)) >> 58] = _i
del _i
_S1, _S2, _S4, _S8, _S16, _S32, _S56, _S58 = (_U(k) for k in (1, 2, 4, 8, 16, 32, 56, 58))
_M1, _M2, _M4, _H01 = (_U(0x5555555555555555), _U(0x3333333333333333), _U(0x0F0F0F0F0F0F0F0F),
                       _U(0x0101010101010101))


@njit(cache=True, inline='always')
def lsb(bb: np.uint64) -> int:
    """Index of the lowest set bit (bb ≠ 0)."""
    return _BITSCAN[((bb ^ (bb - _S1)) * _DEBRUIJN) >> _S58]


@njit(cache=True, inline='always')
def msb(bb: np.uint64) -> int:
    """Index of the highest set bit (bb ≠ 0), as python-chess's `msb`."""
    bb |= bb >> _S1
    bb |= bb >> _S2
    bb |= bb >> _S4
    bb |= bb >> _S8
    bb |= bb >> _S16
    bb |= bb >> _S32
    return _BITSCAN[(bb * _DEBRUIJN) >> _S58]


@njit(cache=True)
def popcount(x: np.uint64) -> int:
    x = x - ((x >> _S1) & _M1)
    x = (x & _M2) + ((x >> _S2) & _M2)
    x = (x + (x >> _S4)) & _M4
    return int((x * _H01) >> _S56)


@njit(cache=True, inline='always')
def _slide(sq: int, occ: np.uint64, d: int) -> np.uint64:
    ray = DIR_RAYS[d, sq]
    blockers = ray & occ
    if blockers:
        ray ^= DIR_RAYS[d, lsb(blockers) if d < 4 else msb(blockers)]
    return ray


@njit(cache=True)
def rook_attacks(sq: int, occ: np.uint64) -> np.uint64:
    return _slide(sq, occ, 0) | _slide(sq, occ, 2) | _slide(sq, occ, 4) | _slide(sq, occ, 6)


@njit(cache=True)
def bishop_attacks(sq: int, occ: np.uint64) -> np.uint64:
    return _slide(sq, occ, 1) | _slide(sq, occ, 3) | _slide(sq, occ, 5) | _slide(sq, occ, 7)


@njit(cache=True)
def _rank_attacks(sq: int, occ: np.uint64) -> np.uint64:
    return _slide(sq, occ, 2) | _slide(sq, occ, 6)


@njit(cache=True, inline='always')
def encode_move(frm: int, to: int, promotion: int) -> np.int32:
    return np.int32(frm | (to << 6) | (promotion << 12))


@njit(cache=True, inline='always')
def _colour(bb: np.ndarray, white: bool) -> np.uint64:
    return bb[OCC_W] if white else bb[OCC_B]


@njit(cache=True)
def piece_type_at(bb: np.ndarray, sq: int) -> int:
    """python-chess piece type (1 pawn … 6 king) on `sq`, 0 when empty."""
    m = BB_SQUARES[sq]
    if not (bb[OCC_W] | bb[OCC_B]) & m:
        return 0
    for k in range(6):
        if bb[k] & m:
            return k + 1
    return 0


@njit(cache=True)
def attackers_mask(bb: np.ndarray, white: bool, sq: int, occ: np.uint64) -> np.uint64:
    """Pieces of colour `white` attacking `sq` with occupancy `occ` (python-chess's `attackers_mask`)."""
    queens_rooks = bb[QUEENS] | bb[ROOKS]
    queens_bishops = bb[QUEENS] | bb[BISHOPS]
    attackers = ((KING_ATTACKS[sq] & bb[KINGS]) | (KNIGHT_ATTACKS[sq] & bb[KNIGHTS])
                 | (rook_attacks(sq, occ) & queens_rooks) | (bishop_attacks(sq, occ) & queens_bishops)
                 | (PAWN_ATTACKS[0 if white else 1, sq] & bb[PAWNS]))
    return attackers & _colour(bb, white)


@njit(cache=True)
def _attacks_mask(bb: np.ndarray, sq: int) -> np.uint64:
    m = BB_SQUARES[sq]
    occ = bb[OCC_W] | bb[OCC_B]
    if m & bb[PAWNS]:
        return PAWN_ATTACKS[1 if m & bb[OCC_W] else 0, sq]
    if m & bb[KNIGHTS]:
        return KNIGHT_ATTACKS[sq]
    if m & bb[KINGS]:
        return KING_ATTACKS[sq]
    attacks = ZERO
    if m & bb[BISHOPS] or m & bb[QUEENS]:
        attacks = bishop_attacks(sq, occ)
    if m & bb[ROOKS] or m & bb[QUEENS]:
        attacks |= rook_attacks(sq, occ)
    return attacks


@njit(cache=True)
def _slider_blockers(bb: np.ndarray, white: bool, king: int) -> np.uint64:
    queens_rooks = bb[ROOKS] | bb[QUEENS]
    queens_bishops = bb[BISHOPS] | bb[QUEENS]
    snipers = (((RANK_LINE[king] | FILE_LINE[king]) & queens_rooks) | (DIAG_LINE[king] & queens_bishops))
    snipers &= _colour(bb, not white)
    occ = bb[OCC_W] | bb[OCC_B]
    blockers = ZERO
    while snipers:
        sniper = msb(snipers)
        snipers ^= BB_SQUARES[sniper]
        b = BETWEEN[king, sniper] & occ
        if b and BB_SQUARES[msb(b)] == b:
            blockers |= b
    return blockers & _colour(bb, white)


@njit(cache=True)
def _pin_mask(bb: np.ndarray, white: bool, sq: int) -> np.uint64:
    kings = _colour(bb, white) & bb[KINGS]
    if not kings:
        return ALL
    king = msb(kings)
    square = BB_SQUARES[sq]
    occ = bb[OCC_W] | bb[OCC_B]
    for family in range(3):  # python-chess's order: file, rank, diagonals; only the family holding `sq`
        if family == 0:
            rays, sliders = FILE_LINE[king], bb[ROOKS] | bb[QUEENS]
        elif family == 1:
            rays, sliders = RANK_LINE[king], bb[ROOKS] | bb[QUEENS]
        else:
            rays, sliders = DIAG_LINE[king], bb[BISHOPS] | bb[QUEENS]
        if rays & square:
            snipers = rays & sliders & _colour(bb, not white)
            while snipers:
                sniper = msb(snipers)
                snipers ^= BB_SQUARES[sniper]
                if BETWEEN[sniper, king] & (occ | square) == square:
                    return RAYS[king, sniper]
            break
    return ALL


@njit(cache=True)
def _ep_skewered(bb: np.ndarray, info: np.ndarray, king: int, capturer: int) -> bool:
    white = info[TURN] == 1
    ep = info[EP]
    last_double = ep - 8 if white else ep + 8
    occ = bb[OCC_W] | bb[OCC_B]
    occupancy = (occ & ~BB_SQUARES[last_double] & ~BB_SQUARES[capturer]) | BB_SQUARES[ep]
    theirs = _colour(bb, not white)
    if _rank_attacks(king, occupancy) & theirs & (bb[ROOKS] | bb[QUEENS]):
        return True
    return bool(bishop_attacks(king, occupancy) & theirs & (bb[BISHOPS] | bb[QUEENS]))


@njit(cache=True)
def _is_castling(bb: np.ndarray, white: bool, frm: int, to: int) -> bool:
    if bb[KINGS] & BB_SQUARES[frm]:
        return abs(frm % 8 - to % 8) > 1 or bool(bb[ROOKS] & _colour(bb, white) & BB_SQUARES[to])
    return False


@njit(cache=True, inline='always')
def _is_en_passant(bb: np.ndarray, info: np.ndarray, frm: int, to: int) -> bool:
    return (info[EP] == to and bool(bb[PAWNS] & BB_SQUARES[frm]) and (abs(to - frm) == 7 or abs(to - frm) == 9)
            and not (bb[OCC_W] | bb[OCC_B]) & BB_SQUARES[to])


@njit(cache=True)
def _is_safe(bb: np.ndarray, info: np.ndarray, king: int, blockers: np.uint64, frm: int, to: int) -> bool:
    white = info[TURN] == 1
    if frm == king:
        if _is_castling(bb, white, frm, to):
            return True
        return not attackers_mask(bb, not white, to, bb[OCC_W] | bb[OCC_B])
    if _is_en_passant(bb, info, frm, to):
        return bool(_pin_mask(bb, white, frm) & BB_SQUARES[to]) and not _ep_skewered(bb, info, king, frm)
    return not blockers & BB_SQUARES[frm] or bool(RAYS[frm, to] & BB_SQUARES[king])


@njit(cache=True)
def _push_promotions(out: np.ndarray, n: int, frm: int, to: int) -> int:
    if to < 8 or to >= 56:  # queen, rook, bishop, knight: python-chess's order
        for piece in (5, 4, 3, 2):
            out[n] = encode_move(frm, to, piece)
            n += 1
    else:
        out[n] = encode_move(frm, to, 0)
        n += 1
    return n


@njit(cache=True)
def _attacked_for_king(bb: np.ndarray, white: bool, path: np.uint64, occ: np.uint64) -> bool:
    while path:
        sq = msb(path)
        path ^= BB_SQUARES[sq]
        if attackers_mask(bb, not white, sq, occ):
            return True
    return False


@njit(cache=True)
def _castling_moves(bb: np.ndarray, info: np.ndarray, from_mask: np.uint64, to_mask: np.uint64,
                    out: np.ndarray, n: int) -> int:
    white = info[TURN] == 1
    backrank = RANK_1 if white else RANK_8
    king = _colour(bb, white) & bb[KINGS] & backrank & from_mask
    king &= ~king + _S1  # the lowest one, as `king &= -king`
    if not king:
        return n
    ksq = msb(king)
    occ = bb[OCC_W] | bb[OCC_B]
    candidates = bb[CASTLING] & backrank & to_mask
    while candidates:
        candidate = msb(candidates)
        candidates ^= BB_SQUARES[candidate]
        rook = BB_SQUARES[candidate]
        a_side = candidate < ksq
        king_to = (FILE_C if a_side else FILE_G) & backrank
        rook_to = (FILE_D if a_side else FILE_F) & backrank
        king_path = BETWEEN[ksq, msb(king_to)]
        rook_path = BETWEEN[candidate, msb(rook_to)]
        if not ((occ ^ king ^ rook) & (king_path | rook_path | king_to | rook_to)
                or _attacked_for_king(bb, white, king_path | king, occ ^ king)
                or _attacked_for_king(bb, white, king_to, occ ^ king ^ rook ^ rook_to)):
            to = candidate  # python-chess's `_from_chess960`: the king's two-square move in standard chess
            if ksq == E1 and bb[KINGS] & BB_SQUARES[E1]:
                to = G1 if candidate == H1 else (C1 if candidate == A1 else candidate)
            elif ksq == E8 and bb[KINGS] & BB_SQUARES[E8]:
                to = G8 if candidate == H8 else (C8 if candidate == A8 else candidate)
            out[n] = encode_move(ksq, to, 0)
            n += 1
    return n


@njit(cache=True)
def _pseudo_legal_ep(bb: np.ndarray, info: np.ndarray, from_mask: np.uint64, to_mask: np.uint64,
                     out: np.ndarray, n: int) -> int:
    ep = info[EP]
    if ep <= 0 or not BB_SQUARES[ep] & to_mask:
        return n
    if BB_SQUARES[ep] & (bb[OCC_W] | bb[OCC_B]):
        return n
    white = info[TURN] == 1
    capturers = (bb[PAWNS] & _colour(bb, white) & from_mask & PAWN_ATTACKS[0 if white else 1, ep]
                 & RANKS[4 if white else 3])
    while capturers:
        capturer = msb(capturers)
        capturers ^= BB_SQUARES[capturer]
        out[n] = encode_move(capturer, ep, 0)
        n += 1
    return n


@njit(cache=True)
def _pseudo_legal_moves(bb: np.ndarray, info: np.ndarray, from_mask: np.uint64, to_mask: np.uint64,
                        out: np.ndarray, n: int) -> int:
    white = info[TURN] == 1
    ours, theirs = _colour(bb, white), _colour(bb, not white)
    occ = ours | theirs
    non_pawns = ours & ~bb[PAWNS] & from_mask
    while non_pawns:
        frm = msb(non_pawns)
        non_pawns ^= BB_SQUARES[frm]
        targets = _attacks_mask(bb, frm) & ~ours & to_mask
        while targets:
            to = msb(targets)
            targets ^= BB_SQUARES[to]
            out[n] = encode_move(frm, to, 0)
            n += 1
    if from_mask & bb[KINGS]:
        n = _castling_moves(bb, info, from_mask, to_mask, out, n)
    pawns = bb[PAWNS] & ours & from_mask
    if not pawns:
        return n
    capturers = pawns
    while capturers:
        frm = msb(capturers)
        capturers ^= BB_SQUARES[frm]
        targets = PAWN_ATTACKS[1 if white else 0, frm] & theirs & to_mask
        while targets:
            to = msb(targets)
            targets ^= BB_SQUARES[to]
            n = _push_promotions(out, n, frm, to)
    if white:
        single = (pawns << _S8) & ~occ
        double = (single << _S8) & ~occ & (RANK_3 | RANK_4)
    else:
        single = (pawns >> _S8) & ~occ
        double = (single >> _S8) & ~occ & (RANK_6 | RANK_5)
    single &= to_mask
    double &= to_mask
    while single:
        to = msb(single)
        single ^= BB_SQUARES[to]
        n = _push_promotions(out, n, to - 8 if white else to + 8, to)
    while double:
        to = msb(double)
        double ^= BB_SQUARES[to]
        out[n] = encode_move(to - 16 if white else to + 16, to, 0)
        n += 1
    if info[EP] > 0:
        n = _pseudo_legal_ep(bb, info, from_mask, to_mask, out, n)
    return n


@njit(cache=True)
def _evasions(bb: np.ndarray, info: np.ndarray, king: int, checkers: np.uint64, out: np.ndarray, n: int) -> int:
    white = info[TURN] == 1
    sliders = checkers & (bb[BISHOPS] | bb[ROOKS] | bb[QUEENS])
    attacked = ZERO
    while sliders:
        checker = msb(sliders)
        sliders ^= BB_SQUARES[checker]
        attacked |= RAYS[king, checker] & ~BB_SQUARES[checker]
    targets = KING_ATTACKS[king] & ~_colour(bb, white) & ~attacked
    while targets:
        to = msb(targets)
        targets ^= BB_SQUARES[to]
        out[n] = encode_move(king, to, 0)
        n += 1
    checker = msb(checkers)
    if BB_SQUARES[checker] == checkers:
        target = BETWEEN[king, checker] | checkers
        n = _pseudo_legal_moves(bb, info, ~bb[KINGS], target, out, n)
        ep = info[EP]
        if ep > 0 and not BB_SQUARES[ep] & target:
            last_double = ep - 8 if white else ep + 8
            if last_double == checker:
                n = _pseudo_legal_ep(bb, info, ALL, ALL, out, n)
    return n


@njit(cache=True)
def legal_moves(bb: np.ndarray, info: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> tuple[int, bool]:
    """Write the legal moves into `out` in python-chess's order; return (how many, side to move in check).
    `scratch` (≥ MAX_MOVES int32) holds the pseudo-legal moves before the safety test."""
    white = info[TURN] == 1
    kings = bb[KINGS] & _colour(bb, white)
    if not kings:  # no king: every pseudo-legal move (python-chess's rule)
        return _pseudo_legal_moves(bb, info, ALL, ALL, out, 0), False
    king = msb(kings)
    blockers = _slider_blockers(bb, white, king)
    checkers = attackers_mask(bb, not white, king, bb[OCC_W] | bb[OCC_B])
    if checkers:
        m = _evasions(bb, info, king, checkers, scratch, 0)
    else:
        m = _pseudo_legal_moves(bb, info, ALL, ALL, scratch, 0)
    n = 0
    for i in range(m):
        mv = scratch[i]
        if _is_safe(bb, info, king, blockers, mv & 63, (mv >> 6) & 63):
            out[n] = mv
            n += 1
    return n, checkers != ZERO


@njit(cache=True)
def legal_ep_square(bb: np.ndarray, info: np.ndarray, moves: np.ndarray, n: int) -> int:
    """The en-passant square when one of the `n` legal `moves` captures en passant, else -1: the en-passant part
    of python-chess's `_transposition_key` (positions differ only by a capture that can really be made)."""
    ep = info[EP]
    if ep < 0:
        return -1
    for i in range(n):
        mv = moves[i]
        frm, to = mv & 63, (mv >> 6) & 63
        if _is_en_passant(bb, info, frm, to):
            return ep
    return -1


@njit(cache=True)
def _remove_piece_at(bb: np.ndarray, sq: int) -> int:
    piece = piece_type_at(bb, sq)
    if piece:
        m = ~BB_SQUARES[sq]
        bb[piece - 1] &= m
        bb[OCC_W] &= m
        bb[OCC_B] &= m
    return piece


@njit(cache=True)
def _set_piece_at(bb: np.ndarray, sq: int, piece: int, white: bool) -> None:
    _remove_piece_at(bb, sq)
    m = BB_SQUARES[sq]
    bb[piece - 1] |= m
    if white:
        bb[OCC_W] |= m
    else:
        bb[OCC_B] |= m


@njit(cache=True)
def push(bb: np.ndarray, info: np.ndarray, mv: int) -> None:
    """Play the (pseudo-legal) move `mv` on the position in place, as `chess.Board.push` does."""
    frm, to, promotion = mv & 63, (mv >> 6) & 63, (mv >> 12) & 7
    white = info[TURN] == 1
    if promotion == 0:  # `_to_chess960`: castling becomes king-takes-own-rook
        if frm == E1 and bb[KINGS] & BB_SQUARES[E1]:
            if to == G1 and not bb[ROOKS] & BB_SQUARES[G1]:
                to = H1
            elif to == C1 and not bb[ROOKS] & BB_SQUARES[C1]:
                to = A1
        elif frm == E8 and bb[KINGS] & BB_SQUARES[E8]:
            if to == G8 and not bb[ROOKS] & BB_SQUARES[G8]:
                to = H8
            elif to == C8 and not bb[ROOKS] & BB_SQUARES[C8]:
                to = A8
    ep = info[EP]
    info[EP] = -1
    info[HALFMOVE] += 1
    if not white:
        info[FULLMOVE] += 1
    from_bb, to_bb = BB_SQUARES[frm], BB_SQUARES[to]
    touched = from_bb ^ to_bb
    if touched & bb[PAWNS] or touched & _colour(bb, not white):
        info[HALFMOVE] = 0
    piece = _remove_piece_at(bb, frm)
    captured = piece_type_at(bb, to)
    bb[CASTLING] &= ~to_bb & ~from_bb
    if piece == 6:
        bb[CASTLING] &= ~(RANK_1 if white else RANK_8)
    elif captured == 6:
        if white and to >= 56:
            bb[CASTLING] &= ~RANK_8
        elif not white and to < 8:
            bb[CASTLING] &= ~RANK_1
    if piece == 1:
        diff = to - frm
        if diff == 16 and frm // 8 == 1:
            info[EP] = frm + 8
        elif diff == -16 and frm // 8 == 6:
            info[EP] = frm - 8
        elif to == ep and (abs(diff) == 7 or abs(diff) == 9) and not captured:
            _remove_piece_at(bb, ep - 8 if white else ep + 8)
    if promotion:
        piece = promotion
    if piece == 6 and _colour(bb, white) & to_bb:  # castling
        _remove_piece_at(bb, to)
        if to % 8 < frm % 8:
            _set_piece_at(bb, C1 if white else C8, 6, white)
            _set_piece_at(bb, chess.D1 if white else chess.D8, 4, white)
        else:
            _set_piece_at(bb, G1 if white else G8, 6, white)
            _set_piece_at(bb, chess.F1 if white else chess.F8, 4, white)
    else:
        _set_piece_at(bb, to, piece, white)
    info[TURN] = 0 if white else 1


@njit(cache=True)
def _has_insufficient_material(bb: np.ndarray, white: bool) -> bool:
    ours, theirs = _colour(bb, white), _colour(bb, not white)
    if ours & (bb[PAWNS] | bb[ROOKS] | bb[QUEENS]):
        return False
    if ours & bb[KNIGHTS]:
        return popcount(ours) <= 2 and not (theirs & ~bb[KINGS] & ~bb[QUEENS])
    if ours & bb[BISHOPS]:
        same_colour = (not bb[BISHOPS] & DARK_SQUARES) or (not bb[BISHOPS] & LIGHT_SQUARES)
        return same_colour and not bb[PAWNS] and not bb[KNIGHTS]
    return True


@njit(cache=True)
def is_insufficient_material(bb: np.ndarray) -> bool:
    """python-chess's `is_insufficient_material`: neither side can mate."""
    return _has_insufficient_material(bb, True) and _has_insufficient_material(bb, False)


def clean_castling_rights(rights: int, rooks: int, kings: int, white: int, black: int) -> int:
    """python-chess's `clean_castling_rights` for standard chess: a right needs its rook on a1/h1/a8/h8 and the
    king on e1/e8. (python-chess skips the cleaning on a board with a move stack, where the rights are clean.)"""
    rights &= rooks
    white_rights = rights & white & (chess.BB_A1 | chess.BB_H1) if white & kings & chess.BB_E1 else 0
    black_rights = rights & black & (chess.BB_A8 | chess.BB_H8) if black & kings & chess.BB_E8 else 0
    return white_rights | black_rights


def board_rows(board: chess.Board) -> tuple[np.ndarray, np.ndarray]:
    """The (bb, info) rows of a python-chess board (castling rights cleaned as python-chess cleans them)."""
    white, black = board.occupied_co[chess.WHITE], board.occupied_co[chess.BLACK]
    rights = clean_castling_rights(board.castling_rights, board.rooks, board.kings, white, black)
    bb = np.array([board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings,
                   white, black, rights], dtype=np.uint64)
    ep = -1 if board.ep_square is None else board.ep_square
    info = np.array([int(board.turn), ep, board.halfmove_clock, board.fullmove_number], dtype=np.int64)
    return bb, info


def rows_board(bb: np.ndarray, info: np.ndarray) -> chess.Board:
    """A python-chess board (no move stack) with the position of the rows."""
    board = chess.Board(None)
    board.pawns, board.knights, board.bishops = int(bb[PAWNS]), int(bb[KNIGHTS]), int(bb[BISHOPS])
    board.rooks, board.queens, board.kings = int(bb[ROOKS]), int(bb[QUEENS]), int(bb[KINGS])
    board.occupied_co[chess.WHITE], board.occupied_co[chess.BLACK] = int(bb[OCC_W]), int(bb[OCC_B])
    board.occupied = int(bb[OCC_W]) | int(bb[OCC_B])
    board.castling_rights = int(bb[CASTLING])
    board.turn = bool(info[TURN])
    board.ep_square = None if info[EP] < 0 else int(info[EP])
    board.halfmove_clock, board.fullmove_number = int(info[HALFMOVE]), int(info[FULLMOVE])
    return board


def supported(board: chess.Board) -> bool:
    """Whether the compiled rules reproduce python-chess on `board`: standard chess, one king a side, no pawns on
    the first or last rank (positions a game can reach)."""
    if type(board) is not chess.Board or board.chess960:
        return False
    kings_ok = all(chess.popcount(board.kings & board.occupied_co[c]) == 1 for c in chess.COLORS)
    return kings_ok and not board.pawns & chess.BB_BACKRANKS
