"""Tests for the AlphaZero input planes and the 8×8×73 policy map (alphazero_concepts.chess.encoding)."""

from __future__ import annotations

import random
from functools import lru_cache

import chess
import numpy as np
import pytest

from alphazero_concepts.chess.encoding import (
    N_PLANES,
    POLICY_SIZE,
    arrays_to_planes,
    boards_to_arrays,
    encode,
    game_to_arrays,
    index_to_move,
    legal_move_indices,
    move_to_index,
)

pytestmark = pytest.mark.unit

START_PLANES_WHITE = slice(0, 12)
PROMOTION_PIECES = (chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN)

# Positions that guarantee every special move kind, for both colours.
SPECIAL_FENS = (
    "r3k2r/pppppppp/8/8/8/8/PPPPPPPP/R3K2R w KQkq - 0 1",  # White castles both sides
    "r3k2r/pppppppp/8/8/8/8/PPPPPPPP/R3K2R b KQkq - 0 1",  # Black castles both sides
    "4k3/8/8/3pP3/8/8/8/4K3 w - d6 0 2",  # White captures en passant (e5xd6)
    "4k3/8/8/8/3Pp3/8/8/4K3 b - d3 0 1",  # Black captures en passant (e4xd3)
    "r1r1k3/1P6/8/8/8/8/8/4K3 w - - 0 1",  # White b7: push to b8, capture a8 and c8, all four pieces
    "4k3/8/8/8/8/8/1p6/R1R1K3 b - - 0 1",  # Black b2: push to b1, capture a1 and c1, all four pieces
    "4k3/8/8/K2pP2r/8/8/8/8 w - d6 0 2",  # e5xd6 e.p. would expose the king: not legal
    "4k3/8/8/8/1b6/8/3N4/4K3 w - - 0 1",  # a pinned knight
    "4k3/4r3/8/8/8/8/3P4/4K3 w - - 0 1",  # in check
)


def random_game(seed: int, max_plies: int, start: chess.Board | None = None) -> chess.Board:
    """A seeded random game (uniform over legal moves) from `start` (the initial position by default)."""
    rng = random.Random(seed)
    board = start.copy() if start is not None else chess.Board()
    while len(board.move_stack) < max_plies and not board.is_game_over(claim_draw=False):
        board.push(rng.choice(list(board.legal_moves)))
    return board


@lru_cache(maxsize=1)
def sample_positions() -> tuple[chess.Board, ...]:
    """≥ 3,000 positions (with history) from seeded random games, plus the special-move positions."""
    boards: list[chess.Board] = [chess.Board(fen) for fen in SPECIAL_FENS]
    seed = 0
    while len(boards) < 3_000:
        game = random_game(seed, max_plies=160)
        replay = chess.Board()
        for move in game.move_stack:
            boards.append(replay.copy())
            replay.push(move)
        seed += 1
    return tuple(boards)


def move_kind(board: chess.Board, move: chess.Move) -> tuple[str, ...] | None:
    colour = "white" if board.turn == chess.WHITE else "black"
    if board.is_kingside_castling(move):
        return (colour, "O-O")
    if board.is_queenside_castling(move):
        return (colour, "O-O-O")
    if board.is_en_passant(move):
        return (colour, "ep")
    if move.promotion:
        capture = "capture" if board.is_capture(move) else "push"
        return (colour, "promote", chess.piece_symbol(move.promotion), capture)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Policy map


def test_move_map_round_trips_on_every_legal_move_of_3000_positions() -> None:
    boards = sample_positions()
    assert len(boards) >= 3_000
    seen: set[tuple[str, ...]] = set()
    n_moves = 0
    for board in boards:
        moves, idx = legal_move_indices(board)
        assert moves == list(board.legal_moves)
        assert idx.dtype == np.int64
        assert len(set(idx.tolist())) == len(idx), board.fen()
        assert np.all((idx >= 0) & (idx < POLICY_SIZE)), board.fen()
        for move, i in zip(moves, idx.tolist(), strict=True):
            assert move_to_index(move, board) == i, (board.fen(), move.uci())
            assert index_to_move(i, board) == move, (board.fen(), move.uci())
            kind = move_kind(board, move)
            if kind:
                seen.add(kind)
        n_moves += len(moves)
    assert n_moves > 50_000
    required = set()
    for colour in ("white", "black"):
        required |= {(colour, "O-O"), (colour, "O-O-O"), (colour, "ep")}
        for piece in PROMOTION_PIECES:
            for capture in ("push", "capture"):
                required.add((colour, "promote", chess.piece_symbol(piece), capture))
    assert required <= seen, sorted(required - seen)


def test_a_mirrored_position_uses_the_same_indices() -> None:
    """The map is in the side to move's perspective: a colour-flipped position names its moves identically."""
    for board in sample_positions()[::10]:
        mirrored = board.mirror()
        for move in board.legal_moves:
            flipped = chess.Move(chess.square_mirror(move.from_square), chess.square_mirror(move.to_square),
                                 move.promotion)
            assert move_to_index(flipped, mirrored) == move_to_index(move, board)


@pytest.mark.parametrize(
    ("fen", "uci", "index"),
    [
        (chess.STARTING_FEN, "e2e4", 1 * 64 + 12),  # north, distance 2, from e2
        (chess.STARTING_FEN, "g1f3", 63 * 64 + 6),  # knight offset (+2 ranks, −1 file) is the 8th knight plane
        ("rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1", "e7e5", 1 * 64 + 12),  # mirrored for Black
        ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "e1g1", 15 * 64 + 4),  # east, distance 2
        ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "e1c1", 43 * 64 + 4),  # west, distance 2
        ("r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1", "e8g8", 15 * 64 + 4),
        ("r1r1k3/1P6/8/8/8/8/8/4K3 w - - 0 1", "b7b8q", 0 * 64 + 49),  # queen promotion is a queen-like move
        ("r1r1k3/1P6/8/8/8/8/8/4K3 w - - 0 1", "b7a8n", 64 * 64 + 49),  # knight, capture left
        ("r1r1k3/1P6/8/8/8/8/8/4K3 w - - 0 1", "b7c8b", 69 * 64 + 49),  # bishop, capture right
        ("r1r1k3/1P6/8/8/8/8/8/4K3 w - - 0 1", "b7b8r", 71 * 64 + 49),  # rook, push
        ("4k3/8/8/8/8/8/1p6/R1R1K3 b - - 0 1", "b2a1n", 64 * 64 + 49),  # Black's left is a1 from its side
    ],
)
def test_hand_checked_policy_indices(fen: str, uci: str, index: int) -> None:
    board = chess.Board(fen)
    move = chess.Move.from_uci(uci)
    assert move in board.legal_moves
    assert move_to_index(move, board) == index
    assert index_to_move(index, board) == move


def test_move_to_index_rejects_moves_the_map_cannot_express() -> None:
    board = chess.Board()
    with pytest.raises(ValueError, match="null move"):
        move_to_index(chess.Move.null(), board)
    with pytest.raises(ValueError, match="no AlphaZero policy index"):
        move_to_index(chess.Move.from_uci("a1b4"), board)  # neither queen-like nor a knight jump
    with pytest.raises(ValueError, match="promotion"):
        move_to_index(chess.Move(chess.B7, chess.B8, chess.KING), board)


@pytest.mark.parametrize("index", [-1, POLICY_SIZE, POLICY_SIZE + 100, 56])
def test_index_to_move_rejects_indices_naming_no_move(index: int) -> None:
    # 56 = plane 0 (north, distance 1) from a8: off the board
    with pytest.raises(ValueError, match="names no move"):
        index_to_move(index, chess.Board())


# ---------------------------------------------------------------------------------------------------------------
# Planes


def test_start_position_planes() -> None:
    planes = encode([chess.Board()])
    assert planes.shape == (1, N_PLANES, 8, 8)
    assert planes.dtype == np.float32
    p = planes[0]
    own_pawns = np.zeros((8, 8))
    own_pawns[1] = 1
    np.testing.assert_array_equal(p[0], own_pawns)
    own_king = np.zeros((8, 8))
    own_king[0, 4] = 1
    np.testing.assert_array_equal(p[5], own_king)
    own_queen = np.zeros((8, 8))
    own_queen[0, 3] = 1
    np.testing.assert_array_equal(p[4], own_queen)
    opp_pawns = np.zeros((8, 8))
    opp_pawns[6] = 1
    np.testing.assert_array_equal(p[6], opp_pawns)
    opp_king = np.zeros((8, 8))
    opp_king[7, 4] = 1
    np.testing.assert_array_equal(p[11], opp_king)
    assert p[:12].sum() == 32  # one bit per piece
    assert not p[12:14].any()  # no repetitions
    assert not p[14:112].any()  # a bare board has no history
    assert np.all(p[112] == 1)  # White to move
    assert np.all(p[113] == 0)  # ply 0
    assert np.all(p[114:118] == 1)  # all castling rights
    assert np.all(p[118] == 0)  # half-move clock


def test_planes_after_e4_are_from_blacks_view_with_history() -> None:
    board = chess.Board()
    board.push_san("e4")
    p = encode([board])[0]
    own_pawns = np.zeros((8, 8))
    own_pawns[1] = 1  # Black's pawns on rank 7, mirrored to row 1
    np.testing.assert_array_equal(p[0], own_pawns)
    own_king = np.zeros((8, 8))
    own_king[0, 4] = 1  # Black's king e8 → row 0, col 4
    np.testing.assert_array_equal(p[5], own_king)
    opp_pawns = np.zeros((8, 8))
    opp_pawns[6] = 1
    opp_pawns[6, 4] = 0
    opp_pawns[4, 4] = 1  # White's e-pawn on e4 (rank 4) → row 4 when mirrored
    np.testing.assert_array_equal(p[6], opp_pawns)
    assert np.all(p[112] == 0)  # Black to move
    assert np.allclose(p[113], 1 / 200)
    assert np.all(p[114:118] == 1)
    assert np.all(p[118] == 0)  # a pawn move resets the clock
    # history step 1 is the start position, seen from Black
    start_from_black = encode([chess.Board("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR b KQkq - 0 1")])[0]
    np.testing.assert_array_equal(p[14:28], start_from_black[0:14])
    assert p[14:26].sum() == 32
    assert not p[28:112].any()  # nothing before the start


def test_partial_castling_rights_by_side_to_move() -> None:
    white = encode([chess.Board("r3k2r/8/8/8/8/8/8/R3K2R w Kq - 0 1")])[0]
    assert [float(white[i, 0, 0]) for i in range(114, 118)] == [1.0, 0.0, 0.0, 1.0]
    black = encode([chess.Board("r3k2r/8/8/8/8/8/8/R3K2R b Kq - 0 1")])[0]
    # own = Black: king-side no, queen-side yes; opponent = White: king-side yes, queen-side no
    assert [float(black[i, 0, 0]) for i in range(114, 118)] == [0.0, 1.0, 1.0, 0.0]
    none = encode([chess.Board("r3k2r/8/8/8/8/8/8/R3K2R w - - 0 1")])[0]
    assert not none[114:118].any()


def test_counters_scale_ply_and_half_move_clock() -> None:
    p = encode([chess.Board("4k3/8/8/8/8/8/8/R3K3 b - - 50 10")])[0]
    assert np.allclose(p[113], 19 / 200)  # fullmove 10, Black to move → ply 19
    assert np.allclose(p[118], 0.5)


def test_a_bare_fen_has_zero_history_planes() -> None:
    board = chess.Board()
    for san in ("e4", "e5", "Nf3", "Nc6"):
        board.push_san(san)
    with_history = encode([board])[0]
    bare = encode([chess.Board(board.fen())])[0]
    assert with_history[14:112].any()
    assert not bare[14:112].any()  # the documented choice: no history, not a repeated current position
    np.testing.assert_array_equal(bare[:14], with_history[:14])
    np.testing.assert_array_equal(bare[112:], with_history[112:])


def test_encode_does_not_change_its_input() -> None:
    board = random_game(seed=3, max_plies=40)
    fen, stack = board.fen(), list(board.move_stack)
    encode([board, board])
    boards_to_arrays([board])
    assert board.fen() == fen
    assert board.move_stack == stack


def test_a_batch_encodes_like_its_rows() -> None:
    boards = list(sample_positions()[100:140])
    batch = encode(boards)
    for i, board in enumerate(boards):
        np.testing.assert_array_equal(batch[i], encode([board])[0])


# ---------------------------------------------------------------------------------------------------------------
# Repetitions and game_to_arrays


def shuffle_knights(board: chess.Board, cycles: int) -> None:
    for _ in range(cycles):
        for san in ("Nf3", "Nf6", "Ng1", "Ng8"):
            board.push_san(san)


def test_repetition_planes_count_earlier_occurrences() -> None:
    board = chess.Board()
    shuffle_knights(board, 1)
    p = encode([board])[0]
    assert np.all(p[12] == 1) and not p[13].any()  # the start position, seen once before
    assert not p[14 + 12].any()  # one ply ago (after Ng1) had not occurred before
    shuffle_knights(board, 1)
    p = encode([board])[0]
    assert np.all(p[12] == 1) and np.all(p[13] == 1)  # seen twice before
    # history step 1 (after the second Ng1) occurred once before (after the first Ng1)
    assert np.all(p[14 + 12] == 1) and not p[14 + 13].any()
    # history step 4 is the start position's second occurrence: seen once before
    assert np.all(p[4 * 14 + 12] == 1) and not p[4 * 14 + 13].any()
    # and its pieces are the start position's
    np.testing.assert_array_equal(p[4 * 14 : 4 * 14 + 12], p[0:12])


def test_an_irreversible_move_ends_the_repetition_window() -> None:
    board = chess.Board()
    shuffle_knights(board, 1)
    board.push_san("e4")
    board.push_san("e5")
    shuffle_knights(board, 1)  # back to the position after 1.e4 e5, first repeat since the pawn moves
    p = encode([board])[0]
    assert np.all(p[12] == 1) and not p[13].any()


def game_with_captures(seed: int) -> tuple[chess.Board, list[chess.Move]]:
    """A seeded random game of ≥ 60 plies with captures, opening with a knight shuffle (repetitions)."""
    opening = chess.Board()
    shuffle_knights(opening, 2)
    game = random_game(seed, max_plies=90, start=opening)
    return chess.Board(), list(game.move_stack)


def test_game_to_arrays_matches_encode_at_every_ply() -> None:
    start, moves = game_with_captures(seed=11)
    assert len(moves) >= 60
    replay = start.copy()
    boards = []
    captures = 0
    for move in moves:
        boards.append(replay.copy())
        captures += replay.is_capture(move)
        replay.push(move)
    assert captures >= 3
    from_game = arrays_to_planes(game_to_arrays(start, moves))
    from_boards = encode(boards)
    assert from_game.shape == (len(moves), N_PLANES, 8, 8)
    np.testing.assert_array_equal(from_game, from_boards)
    assert from_game[:, 12].any() and from_game[:, 13].any()  # the repetition planes were exercised


def test_game_to_arrays_ignores_moves_before_start() -> None:
    start = random_game(seed=5, max_plies=20)  # carries 20 earlier moves
    game = random_game(seed=6, max_plies=50, start=start)
    moves = list(game.move_stack)[20:]
    assert len(moves) >= 10
    from_game = arrays_to_planes(game_to_arrays(start, moves))
    replay = chess.Board(start.fen())
    boards = []
    for move in moves:
        boards.append(replay.copy())
        replay.push(move)
    np.testing.assert_array_equal(from_game, encode(boards))
    assert not from_game[0, 14:112].any()  # the game's history starts at `start`


def python_chess_repetitions(board: chess.Board) -> int:
    """Earlier occurrences of the current position (capped at 2) by python-chess's own repetition rule."""
    return 2 if board.is_repetition(3) else 1 if board.is_repetition(2) else 0


def reversible_walk(fen: str, seed: int, plies: int) -> chess.Board:
    """A seeded random walk that often takes back its own previous move, so positions repeat often."""
    rng = random.Random(seed)
    board = chess.Board(fen)
    for _ in range(plies):
        moves = list(board.legal_moves)
        if not moves or board.is_game_over(claim_draw=False):
            break
        if len(board.move_stack) >= 2 and rng.random() < 0.6:
            own_last = board.move_stack[-2]
            back = chess.Move(own_last.to_square, own_last.from_square)
            if back in moves:
                board.push(back)
                continue
        board.push(rng.choice(moves))
    return board


@pytest.mark.parametrize(
    ("fen", "ucis", "expected"),
    [
        # ...d5 leaves an en-passant square that no legal capture uses (exd6 would expose the king on a5 to the
        # rook on h5): python-chess counts the position after Ka6 Kf8 Ka5 Ke8 as a repetition
        ("4k3/3p4/8/K3P2r/8/8/8/8 b - - 0 1", ["d7d5", "a5a6", "e8f8", "a6a5", "f8e8"], 1),
        # here exd6 is legal, so the position with the en-passant right is a different one
        ("4k3/3p4/8/4P3/8/8/8/K7 b - - 0 1", ["d7d5", "a1a2", "e8f8", "a2a1", "f8e8"], 0),
    ],
)
def test_en_passant_rights_count_in_repetitions_only_when_a_legal_capture_exists(
    fen: str, ucis: list[str], expected: int
) -> None:
    board = chess.Board(fen)
    for uci in ucis:
        board.push_uci(uci)
    assert python_chess_repetitions(board) == expected
    assert boards_to_arrays([board]).repetitions[0, 0] == expected
    extended = [*board.move_stack, next(iter(board.legal_moves))]
    assert game_to_arrays(chess.Board(fen), extended).repetitions[len(ucis), 0] == expected
    np.testing.assert_array_equal(encode([board]), arrays_to_planes(game_to_arrays(chess.Board(fen), extended))[-1:])


@pytest.mark.parametrize(
    "fen",
    [
        "8/8/3k4/8/8/3K4/3R4/6n1 w - - 0 1",
        "4k3/8/8/8/8/8/8/R3K2R w KQ - 0 1",  # castling rights are lost on the way
        "4k3/3p4/8/K3P2r/8/8/8/8 b - - 0 1",
    ],
)
def test_repetition_planes_agree_with_python_chess_along_a_game(fen: str) -> None:
    game = reversible_walk(fen, seed=1, plies=80)
    replay = chess.Board(fen)
    boards = []
    for move in game.move_stack:
        boards.append(replay.copy())
        replay.push(move)
    boards.append(replay.copy())
    arrays = boards_to_arrays(boards)
    expected = np.array([python_chess_repetitions(b) for b in boards])
    assert (expected >= 1).sum() >= 5  # the walk did repeat positions
    np.testing.assert_array_equal(arrays.repetitions[:, 0], expected)
    for i in range(len(boards)):  # history step s of ply i is ply i − s
        for s in range(1, min(i, 7) + 1):
            assert arrays.repetitions[i, s] == expected[i - s], (i, s)
            np.testing.assert_array_equal(arrays.bitboards[i, s], arrays.bitboards[i - s, 0])
    from_game = arrays_to_planes(game_to_arrays(chess.Board(fen), list(game.move_stack)))
    np.testing.assert_array_equal(from_game, encode(boards[:-1]))


def test_fast_fen_equals_python_chess_fen_on_every_sample_position() -> None:
    from alphazero_concepts.chess.positions import fast_fen

    boards = sample_positions()
    assert all(fast_fen(b) == b.fen() for b in boards)
    assert any(b.ep_square is not None and not b.has_legal_en_passant() for b in boards)  # "-" written there
    assert any(b.has_legal_en_passant() for b in boards)
    partial = chess.Board("r3k2r/8/8/8/8/8/8/R3K2R w Kq - 3 20")
    assert fast_fen(partial) == partial.fen() == "r3k2r/8/8/8/8/8/8/R3K2R w Kq - 3 20"
    shuffled = chess.Board.from_chess960_pos(518 - 1)  # Chess960 castling: python-chess's own fen
    assert fast_fen(shuffled) == shuffled.fen()


def test_fast_fens_of_a_mixed_batch_equal_python_chess_fen(monkeypatch: pytest.MonkeyPatch) -> None:
    from alphazero_concepts.chess import positions
    from alphazero_concepts.chess.positions import fast_fens

    boards = list(sample_positions())
    boards.insert(3, chess.Board.from_chess960_pos(100))  # falls back to python-chess inside a batch
    boards.insert(5, chess.Board("8/8/8/8/8/8/8/k6K w - - 0 1"))  # seven empty squares in a row, bare kings
    boards.append(chess.Board(None))  # empty board: eight empty ranks
    assert fast_fens(boards) == [b.fen() for b in boards]
    assert fast_fens([]) == []
    monkeypatch.setattr(positions, "FEN_BLOCK", 4)  # many blocks, and a rank cache emptied again and again
    monkeypatch.setattr(positions._RankFen, "MAX", 3)
    positions._RANK_FEN.clear()
    assert fast_fens(boards) == [b.fen() for b in boards]
    assert len(positions._RANK_FEN) <= 3
