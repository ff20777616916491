"""lc0 format without real weights: LINEAR16 and the protobuf wire format, the 112-plane encoder, the 1858-move map,
the conv policy map, networks written in lc0's format by the test and loaded back, and the errors for bad files.

The expectations are written independently of the code under test: hand-checked planes and indices, a slow
per-square reference encoder built on python-chess, and a numpy forward pass that follows lc0's documented
arithmetic (batch norm with variances, squeeze-excitation, heads) on the unquantised numbers the test chose.
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import chess
import numpy as np
import pytest
import torch

from alphazero_concepts.chess import lc0_format as lc0f
from alphazero_concepts.chess.encoding import boards_to_arrays, game_to_arrays
from alphazero_concepts.chess.formats import get_format
from alphazero_concepts.nn import lc0_proto
from alphazero_concepts.nn.checkpoints import CheckpointError
from alphazero_concepts.nn.lc0 import Lc0Config, Lc0FormatError, Lc0Net, load_lc0, save_lc0
from alphazero_concepts.nn.loading import load_network
from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def sq(name: str) -> int:
    return chess.parse_square(name)


def cell(planes: np.ndarray, plane: int, square: str, black: bool = False) -> float:
    """Value of `plane` at `square` (given in absolute coordinates) of planes encoded for the side to move."""
    s = sq(square) ^ (56 if black else 0)
    return float(planes[plane, chess.square_rank(s), chess.square_file(s)])


def play(*sans: str, fen: str | None = None) -> chess.Board:
    board = chess.Board(fen) if fen else chess.Board()
    for san in sans:
        board.push_san(san)
    return board


# ------------------------------------------------------------------------------------------------------------
# LINEAR16 and the protobuf wire format


def test_linear16_decodes_min_plus_fraction_of_range() -> None:
    u = np.array([0, 65535, 32768, 1, 13107], dtype="<u2")
    layer = {"min_val": -1.0, "max_val": 3.0, "params": u.tobytes()}
    got = lc0_proto.decode_layer(layer)
    expected = -1.0 + u.astype(np.float64) / 65535.0 * 4.0
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert got[0] == -1.0 and got[1] == 3.0
    with pytest.raises(lc0_proto.ProtobufError, match="odd number of bytes"):
        lc0_proto.decode_layer({"min_val": 0.0, "max_val": 1.0, "params": b"\x00\x01\x02"})


def test_linear16_encoding_is_within_half_a_step() -> None:
    values = np.random.default_rng(0).normal(size=1000)
    back = lc0_proto.decode_layer(lc0_proto.encode_layer(values))
    step = (values.max() - values.min()) / 65535
    assert np.abs(back - values).max() <= step / 2 + 1e-6
    # encoding what was decoded gives the same bytes (export of a loaded network is lossless)
    again = lc0_proto.encode_layer(back)
    assert again["params"] == lc0_proto.encode_layer(values)["params"]


def test_protobuf_reads_hand_written_wire_bytes() -> None:
    # Net{magic (1, fixed32) = 0x1c0, format (4) = {weights_encoding (1) = 1, network_format (2) = {policy (4) = 2}},
    #     weights (10) = {residual (2) = {}, residual (2) = {}}, field 99 (varint) = 5}
    data = bytes([0x0D, 0xC0, 0x01, 0x00, 0x00,
                  0x22, 0x06, 0x08, 0x01, 0x12, 0x02, 0x20, 0x02,
                  0x52, 0x04, 0x12, 0x00, 0x12, 0x00,
                  0x98, 0x06, 0x05])
    msg = lc0_proto.decode(data)
    assert msg["magic"] == 0x1C0
    assert msg["format"] == {"weights_encoding": 1, "network_format": {"policy": 2}}
    assert msg["weights"]["residual"] == [{}, {}]
    assert msg[lc0_proto.UNKNOWN] == {99: [5]}


def test_protobuf_round_trip_and_truncation() -> None:
    msg = {"magic": lc0_proto.LC0_MAGIC, "license": "test",
           "format": {"weights_encoding": 1, "network_format": {"input": 1, "network": 4}},
           "weights": {"input": {"weights": lc0_proto.encode_layer(np.arange(6.0))},
                       "residual": [{"conv1": {"biases": lc0_proto.encode_layer(np.ones(3))}}, {}]}}
    data = lc0_proto.encode(msg)
    assert lc0_proto.decode(data) == msg
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(lc0_proto.ProtobufError, match="truncated"):
            lc0_proto.decode(data[:cut])
    with pytest.raises(lc0_proto.ProtobufError, match="wire type"):
        lc0_proto.decode(bytes([0x08, 0x01]))  # field 1 (magic, fixed32) sent as a varint


# ------------------------------------------------------------------------------------------------------------
# The 112-plane encoder


def test_start_position_planes() -> None:
    planes = lc0f.encode([chess.Board()])[0]
    assert planes.shape == (112, 8, 8) and planes.dtype == np.float32
    assert planes[0, 1].tolist() == [1.0] * 8 and planes[0].sum() == 8  # own pawns on rank 2
    assert cell(planes, 1, "b1") == cell(planes, 1, "g1") == 1 and planes[1].sum() == 2  # own knights
    assert cell(planes, 4, "d1") == 1 and cell(planes, 5, "e1") == 1  # own queen, king
    assert planes[6, 6].tolist() == [1.0] * 8  # opponent pawns on rank 7
    assert cell(planes, 10, "d8") == 1 and cell(planes, 11, "e8") == 1
    assert planes[12].sum() == 0  # no repetition
    assert planes[13:104].sum() == 0  # a game's first position has no history
    assert [planes[p, 0, 0] for p in range(104, 112)] == [1, 1, 1, 1, 0, 0, 0, 1]
    for p in range(104, 112):
        assert np.all(planes[p] == planes[p, 0, 0])


def test_black_to_move_is_mirrored_with_history() -> None:
    board = play("e4")
    planes = lc0f.encode([board])[0]
    assert cell(planes, 0, "e7", black=True) == 1 and planes[0].sum() == 8  # own (Black) pawns
    assert planes[0, 1].tolist() == [1.0] * 8  # Black's pawns on the side to move's second row
    assert cell(planes, 5, "e8", black=True) == 1 and planes[5, 0, 4] == 1  # own king e8 → row 0, file e
    assert cell(planes, 4, "d8", black=True) == 1 and planes[4, 0, 3] == 1  # the queen stays on the d-file
    assert cell(planes, 6, "e4", black=True) == 1 and cell(planes, 6, "e2", black=True) == 0  # opponent's pawn
    assert cell(planes, 13 + 6, "e2", black=True) == 1 and cell(planes, 13 + 6, "e4", black=True) == 0  # one ply ago
    assert planes[26:104].sum() == 0
    assert planes[108].min() == 1  # Black to move


def test_en_passant_shows_in_the_history() -> None:
    board = play("e4", "d5", "e5", "f5")  # White may take en passant on f6
    planes = lc0f.encode([board])[0]
    assert cell(planes, 6, "f5") == 1 and cell(planes, 6, "f7") == 0  # now: the black pawn has double-stepped
    assert cell(planes, 13 + 6, "f7") == 1 and cell(planes, 13 + 6, "f5") == 0  # one ply ago: still on f7
    assert cell(planes, 0, "e5") == 1
    moves, idx = lc0f.legal_move_indices(board)
    ep = chess.Move.from_uci("e5f6")
    assert board.is_en_passant(ep) and ep in moves
    assert lc0f.index_to_move(int(idx[moves.index(ep)]), board) == ep


def test_castling_planes_are_us_then_them_queen_side_first() -> None:
    fen = "r3k2r/8/8/8/8/8/8/R3K2R {} Kq - 0 1"
    white = lc0f.encode([chess.Board(fen.format("w"))])[0]
    black = lc0f.encode([chess.Board(fen.format("b"))])[0]
    # planes 104..107: own O-O-O, own O-O, opponent O-O-O, opponent O-O
    assert [white[p, 0, 0] for p in range(104, 108)] == [0, 1, 1, 0]
    assert [black[p, 0, 0] for p in range(104, 108)] == [1, 0, 0, 1]
    assert white[108, 0, 0] == 0 and black[108, 0, 0] == 1


def test_history_after_captures_and_zeros_before_the_game() -> None:
    board = play("e4", "d5", "exd5", "Qxd5")
    planes = lc0f.encode([board])[0]
    step = [planes[13 * s : 13 * s + 13] for s in range(8)]
    assert step[0][0].sum() == 7 and cell(step[0], 10, "d5") == 1 and cell(step[0], 6, "d7") == 0
    assert cell(step[1], 0, "d5") == 1 and cell(step[1], 10, "d8") == 1  # before Qxd5: the white pawn on d5
    assert cell(step[2], 0, "e4") == 1 and cell(step[2], 6, "d5") == 1  # before exd5
    assert step[2][6].sum() == 8 and step[1][6].sum() == 7
    assert cell(step[4], 0, "e2") == 1 and step[4][:12].sum() == 32  # the start position
    assert all(step[s].sum() == 0 for s in range(5, 8))  # before the game's start: zeros
    assert planes[109, 0, 0] == 0  # a capture resets the fifty-move counter


def test_rule50_is_raw_and_repetitions_are_marked() -> None:
    planes = lc0f.encode([chess.Board("8/8/4k3/8/8/3K4/8/7R w - - 37 80")])[0]
    assert planes[109].min() == planes[109].max() == 37
    board = play("Nf3", "Nf6", "Ng1", "Ng8")  # the start position again
    planes = lc0f.encode([board])[0]
    assert planes[12].min() == 1  # now: seen before
    assert planes[13 * 4 + 12].max() == 0  # the first occurrence: not
    assert planes[109, 0, 0] == 4


def test_fen_without_moves_repeats_the_position_but_not_the_start_position() -> None:
    board = chess.Board("r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3")
    planes = lc0f.encode([board])[0]
    for s in range(1, 8):
        np.testing.assert_array_equal(planes[13 * s : 13 * s + 13], planes[:13])
    assert lc0f.encode([chess.Board()])[0][13:104].sum() == 0
    # a game from that FEN: known plies first, then the FEN position repeated
    game = board.copy()
    game.push_san("Bb5")
    planes = lc0f.encode([game])[0]
    np.testing.assert_array_equal(planes[13:26], planes[26:39])
    assert not np.array_equal(planes[0:13], planes[13:26])


def reference_planes(board: chess.Board) -> np.ndarray:
    """lc0's planes written square by square from python-chess, following the module's documented rules."""
    out = np.zeros((112, 8, 8), dtype=np.float32)
    us = board.turn
    history = [board.copy()]
    while len(history) < 8 and history[-1].move_stack:
        previous = history[-1].copy()
        previous.pop()
        history.append(previous)
    if history[-1].board_fen() != chess.STARTING_BOARD_FEN:
        history += [history[-1]] * (8 - len(history))
    for s, h in enumerate(history):
        for square, piece in h.piece_map().items():
            row = chess.square_rank(square) if us == chess.WHITE else 7 - chess.square_rank(square)
            kind = piece.piece_type - 1 + (0 if piece.color == us else 6)
            out[13 * s + kind, row, chess.square_file(square)] = 1
        if h.is_repetition(2):
            out[13 * s + 12] = 1
    them = not us
    rights = [board.has_queenside_castling_rights(us), board.has_kingside_castling_rights(us),
              board.has_queenside_castling_rights(them), board.has_kingside_castling_rights(them)]
    out[104:108] = np.array(rights, dtype=np.float32)[:, None, None]
    out[108] = float(us == chess.BLACK)
    out[109] = board.halfmove_clock
    out[111] = 1
    return out


def random_boards(n_games: int, seed: int, fens: tuple[str, ...] = ()) -> list[chess.Board]:
    """Positions (with their move history) of seeded random games, some starting from `fens`."""
    rng = random.Random(seed)
    boards = []
    starts = [chess.STARTING_FEN, *fens]
    for g in range(n_games):
        board = chess.Board(starts[g % len(starts)])
        for _ in range(rng.randint(0, 60)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
            boards.append(board.copy())
    return boards


def test_vectorised_encoder_matches_the_reference_on_random_games() -> None:
    fens = ("r3k2r/pppq1ppp/2np1n2/2b1p3/2B1P1b1/2NP1N2/PPPBQPPP/R3K2R w KQkq - 6 8",)
    boards = random_boards(16, seed=3, fens=fens)[::3]
    boards += [chess.Board(fens[0]), chess.Board("8/8/4k3/8/8/3K4/8/7R b - - 37 80")]
    got = lc0f.encode(boards)
    for board, planes in zip(boards, got, strict=True):
        np.testing.assert_array_equal(planes, reference_planes(board), err_msg=board.fen())


def test_game_arrays_give_the_same_planes_as_boards() -> None:
    board = random_boards(1, seed=5)[-1]
    moves = list(board.move_stack)
    from_game = lc0f.arrays_to_planes(game_to_arrays(chess.Board(), moves))
    boards, b = [], chess.Board()
    for m in moves:
        boards.append(b.copy())
        b.push(m)
    np.testing.assert_array_equal(from_game, lc0f.arrays_to_planes(boards_to_arrays(boards)))


# ------------------------------------------------------------------------------------------------------------
# The 1858-move map and the conv policy map


def uci_at(index: int) -> str:
    frm, to, piece = lc0f.MOVES[index]
    return chess.Move(frm, to, piece).uci()


def test_move_list_facts() -> None:
    assert len(lc0f.MOVES) == 1858 and len(set(lc0f.MOVES)) == 1858
    assert [uci_at(i) for i in range(5)] == ["a1b1", "a1c1", "a1d1", "a1e1", "a1f1"]
    assert uci_at(10) == "a1a3" and uci_at(22) == "a1h8" and uci_at(23) == "b1a1"
    assert [uci_at(i) for i in range(1792, 1798)] == ["a7a8q", "a7a8r", "a7a8b", "a7b8q", "a7b8r", "a7b8b"]
    assert uci_at(1857) == "h7h8b"
    assert sum(piece is None for _, _, piece in lc0f.MOVES) == 1792  # queen-like and knight moves


def test_move_indices_for_both_colours_castling_and_promotions() -> None:
    board = chess.Board()
    e2e4 = lc0f.move_to_index(chess.Move.from_uci("e2e4"), board)
    assert uci_at(e2e4) == "e2e4"
    assert lc0f.move_to_index(chess.Move.from_uci("e7e5"), play("e4")) == e2e4  # mirrored for Black
    castle = chess.Board("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1")
    assert uci_at(lc0f.move_to_index(chess.Move.from_uci("e1g1"), castle)) == "e1h1"  # king takes rook
    assert uci_at(lc0f.move_to_index(chess.Move.from_uci("e1c1"), castle)) == "e1a1"
    castle.turn = chess.BLACK
    assert uci_at(lc0f.move_to_index(chess.Move.from_uci("e8c8"), castle)) == "e1a1"
    assert lc0f.index_to_move(lc0f.move_to_index(chess.Move.from_uci("e8c8"), castle), castle).uci() == "e8c8"
    promo = chess.Board("1n5k/P7/8/8/8/8/8/7K w - - 0 1")
    idx = {m.uci(): lc0f.move_to_index(m, promo) for m in promo.legal_moves if m.from_square == sq("a7")}
    assert uci_at(idx["a7a8n"]) == "a7a8" and uci_at(idx["a7b8q"]) == "a7b8q" and uci_at(idx["a7a8b"]) == "a7a8b"
    assert len(set(idx.values())) == 8
    with pytest.raises(ValueError, match="no lc0 policy index"):
        lc0f.move_to_index(chess.Move.from_uci("a1b4"), chess.Board())
    with pytest.raises(ValueError, match="out of range"):
        lc0f.index_to_move(1858, chess.Board())


SPECIAL_FENS = (
    "r3k2r/pPppqpb1/bn2pnp1/3PN3/1p2P3/2N2Q1p/PPPBBPpP/R3K2R w KQkq - 0 1",
    "r3k2r/pPppqpb1/bn2pnp1/3PN3/1p2P3/2N2Q1p/PPPBBPpP/R3K2R b KQkq - 0 1",
    "4k3/1P6/8/2pP4/8/8/6p1/4K2R w K c6 0 1",
    "r3k3/1P6/8/8/3Pp3/8/6p1/4K3 b q d3 0 1",
)


def test_move_map_round_trip_over_every_legal_move() -> None:
    boards = random_boards(24, seed=11, fens=SPECIAL_FENS) + [chess.Board(f) for f in SPECIAL_FENS]
    checked = 0
    for board in boards:
        moves, idx = lc0f.legal_move_indices(board)
        assert len(set(idx.tolist())) == len(moves), board.fen()
        assert np.all((idx >= 0) & (idx < 1858))
        for move, i in zip(moves, idx.tolist(), strict=True):
            assert lc0f.move_to_index(move, board) == i
            assert lc0f.index_to_move(i, board) == move, (board.fen(), move)
            checked += 1
    assert checked > 5000


def test_chess960_castling_is_king_takes_rook() -> None:
    board = chess.Board("1r2k1r1/pppppppp/8/8/8/8/PPPPPPPP/1R2K1R1 w GBgb - 0 1", chess960=True)
    castles = [m for m in board.legal_moves if board.is_castling(m)]
    assert {m.uci() for m in castles} == {"e1b1", "e1g1"}
    for move in castles:
        i = lc0f.move_to_index(move, board)
        assert uci_at(i) == move.uci() and lc0f.index_to_move(i, board) == move


def az_plane(move: chess.Move, board: chess.Board) -> tuple[int, int]:
    """(plane, from-square) of a legal move in the 80-plane conv output, from the documented layout."""
    frm, to = move.from_square, move.to_square
    if board.is_castling(move):  # king takes rook
        to = chess.square(7 if chess.square_file(to) > chess.square_file(frm) else 0, chess.square_rank(frm))
    if board.turn == chess.BLACK:
        frm, to = frm ^ 56, to ^ 56
    df, dr = chess.square_file(to) - chess.square_file(frm), chess.square_rank(to) - chess.square_rank(frm)
    if move.promotion in (chess.ROOK, chess.BISHOP, chess.QUEEN):
        piece = {chess.ROOK: 0, chess.BISHOP: 1, chess.QUEEN: 2}[move.promotion]
        return 64 + 3 * (df + 1) + piece, frm
    knight = [(1, 2), (2, 1), (2, -1), (1, -2), (-1, -2), (-2, -1), (-2, 1), (-1, 2)]
    if (df, dr) in knight:
        return 56 + knight.index((df, dr)), frm
    dist = max(abs(df), abs(dr))
    direction = [(0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)].index(
        (np.sign(df), np.sign(dr)))
    return 7 * direction + dist - 1, frm


def test_conv_policy_map_covers_each_move_once() -> None:
    table = lc0f.CONV_POLICY_MAP
    assert table.shape == (80 * 64,)
    used = table[table >= 0]
    assert len(used) == 1858 and set(used.tolist()) == set(range(1858))
    assert np.all(table[73 * 64 :] == -1)
    assert uci_at(table[0 * 64 + sq("e2")]) == "e2e3"  # N, distance 1
    assert uci_at(table[(7 * 2 + 2) * 64 + sq("e1")]) == "e1h1"  # E, distance 3
    assert uci_at(table[56 * 64 + sq("g1")]) == "g1h3"  # knight (+1 file, +2 ranks)
    assert uci_at(table[(64 + 2) * 64 + sq("b7")]) == "b7a8q"  # capture to the a-side, queen
    assert uci_at(table[(64 + 3) * 64 + sq("a7")]) == "a7a8r"  # push, rook
    assert table[64 * 64 + sq("a7")] == -1  # no capture to the a-side from the a-file
    for board in random_boards(6, seed=2, fens=SPECIAL_FENS)[::4]:
        for move, i in zip(*lc0f.legal_move_indices(board), strict=True):
            plane, frm = az_plane(move, board)
            assert table[plane * 64 + frm] == i, (board.fen(), move)


def test_format_registry() -> None:
    fmt = get_format("lc0")
    assert (fmt.name, fmt.input_planes, fmt.policy_size) == ("lc0", 112, 1858)
    board = play("d4", "Nf6", "c4")
    np.testing.assert_array_equal(fmt.encode([board]), lc0f.encode([board]))
    np.testing.assert_array_equal(fmt.arrays_to_planes(boards_to_arrays([board])), lc0f.encode([board]))


# ------------------------------------------------------------------------------------------------------------
# Networks written in lc0's format by the test


class Weights:
    """Random LINEAR16 layers: the message the file holds and the exact float values lc0 would decode."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def layer(self, shape: tuple[int, ...], lo: float, hi: float) -> tuple[dict, np.ndarray]:
        u = self.rng.integers(0, 65536, size=int(np.prod(shape)), dtype=np.uint16)
        u[0], u[-1] = 0, 65535
        values = (lo + u.astype(np.float64) / 65535.0 * (hi - lo)).reshape(shape)
        return {"min_val": lo, "max_val": hi, "params": u.astype("<u2").tobytes()}, values

    def conv(self, out_ch: int, in_ch: int, k: int, bn: str) -> tuple[dict, dict]:
        """A conv block; bn = "full" (means, variances, gammas, betas), "old" (means, variances, biases), "none"."""
        msg, ref = {}, {}
        msg["weights"], ref["w"] = self.layer((out_ch, in_ch, k, k), -0.25, 0.25)
        if bn in ("old", "none"):
            msg["biases"], ref["b"] = self.layer((out_ch,), -0.5, 0.5)
        if bn != "none":
            msg["bn_means"], ref["mean"] = self.layer((out_ch,), -0.5, 0.5)
            msg["bn_stddivs"], ref["var"] = self.layer((out_ch,), 0.25, 4.0)
        if bn == "full":
            msg["bn_gammas"], ref["gamma"] = self.layer((out_ch,), 0.5, 1.5)
            msg["bn_betas"], ref["beta"] = self.layer((out_ch,), -0.5, 0.5)
        return msg, ref

    def fc(self, out_dim: int, in_dim: int) -> tuple[dict, dict, dict]:
        w_msg, w = self.layer((out_dim, in_dim), -0.2, 0.2)
        b_msg, b = self.layer((out_dim,), -0.2, 0.2)
        return w_msg, b_msg, {"w": w, "b": b}


def make_net_message(seed: int = 0, *, blocks: int = 2, channels: int = 8, se: bool = True,
                     policy: str = "convolution", wdl: bool = True, moves_left: bool = True,
                     bn: str = "full") -> tuple[dict, dict]:
    """A small lc0 network message (and the reference numbers) with the requested heads."""
    wt = Weights(seed)
    msg: dict = {"residual": []}
    ref: dict = {"blocks": []}
    msg["input"], ref["input"] = wt.conv(channels, 112, 3, bn)
    for _ in range(blocks):
        block, rblock = {}, {}
        block["conv1"], rblock["conv1"] = wt.conv(channels, channels, 3, bn)
        block["conv2"], rblock["conv2"] = wt.conv(channels, channels, 3, "old")
        if se:
            w1, b1, rblock["se1"] = wt.fc(4, channels)
            w2, b2, rblock["se2"] = wt.fc(2 * channels, 4)
            block["se"] = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
        msg["residual"].append(block)
        ref["blocks"].append(rblock)
    if policy == "convolution":
        msg["policy1"], ref["policy1"] = wt.conv(channels, channels, 3, bn)
        msg["policy"], ref["policy"] = wt.conv(80, channels, 3, "none")
    else:
        msg["policy"], ref["policy"] = wt.conv(6, channels, 1, bn)
        msg["ip_pol_w"], msg["ip_pol_b"], ref["ip_pol"] = wt.fc(1858, 6 * 64)
    msg["value"], ref["value"] = wt.conv(3, channels, 1, bn)
    msg["ip1_val_w"], msg["ip1_val_b"], ref["ip1_val"] = wt.fc(16, 3 * 64)
    msg["ip2_val_w"], msg["ip2_val_b"], ref["ip2_val"] = wt.fc(3 if wdl else 1, 16)
    if moves_left:
        msg["moves_left"], ref["moves_left"] = wt.conv(2, channels, 1, bn)
        msg["ip1_mov_w"], msg["ip1_mov_b"], ref["ip1_mov"] = wt.fc(8, 2 * 64)
        msg["ip2_mov_w"], msg["ip2_mov_b"], ref["ip2_mov"] = wt.fc(1, 8)
    network_format = {"input": 1, "output": 2 if wdl else 1, "network": 4 if se else 3,
                      "policy": 2 if policy == "convolution" else 1, "value": 2 if wdl else 1,
                      "moves_left": 1 if moves_left else 0}
    net = {"magic": 0x1C0, "license": "test fixture", "min_version": {"major": 0, "minor": 21, "patch": 0},
           "format": {"weights_encoding": 1, "network_format": network_format}, "weights": msg,
           "training_params": {"training_steps": 1234}}
    return net, ref


def write_net(path: Path, msg: dict) -> Path:
    path.write_bytes(gzip.compress(lc0_proto.encode(msg)))
    return path


def ref_conv(x: np.ndarray, block: dict) -> np.ndarray:
    """lc0's convolution block: conv (+ bias), then batch norm γ(y − μ)/√(σ² + 1e-5) + β when present."""
    w = block["w"]
    k = w.shape[-1]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    y = np.zeros((x.shape[0], w.shape[0], 8, 8))
    for dy in range(k):
        for dx in range(k):
            y += np.einsum("nchw,oc->nohw", xp[:, :, dy : dy + 8, dx : dx + 8], w[:, :, dy, dx])
    y += block.get("b", np.zeros(w.shape[0]))[None, :, None, None]
    if "mean" in block:
        gamma = block.get("gamma", np.ones(w.shape[0]))
        beta = block.get("beta", np.zeros(w.shape[0]))
        y = (gamma[None, :, None, None] * (y - block["mean"][None, :, None, None])
             / np.sqrt(block["var"][None, :, None, None] + 1e-5) + beta[None, :, None, None])
    return y


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def dense(x: np.ndarray, layer: dict) -> np.ndarray:
    return x @ layer["w"].T + layer["b"]


def ref_forward(ref: dict, planes: np.ndarray) -> dict:
    """lc0's forward pass in float64 numpy (conv policy output kept as 80 × 64 raw values)."""
    x = relu(ref_conv(planes.astype(np.float64), ref["input"]))
    for block in ref["blocks"]:
        y = relu(ref_conv(x, block["conv1"]))
        y = ref_conv(y, block["conv2"])
        if "se1" in block:
            s = dense(relu(dense(y.mean(axis=(2, 3)), block["se1"])), block["se2"])
            c = y.shape[1]
            gamma, beta = 1 / (1 + np.exp(-s[:, :c])), s[:, c:]
            y = gamma[:, :, None, None] * y + beta[:, :, None, None]
        x = relu(x + y)
    out = {}
    if "policy1" in ref:
        out["conv_policy"] = ref_conv(relu(ref_conv(x, ref["policy1"])), ref["policy"]).reshape(len(x), -1)
    else:
        out["policy"] = dense(relu(ref_conv(x, ref["policy"])).reshape(len(x), -1), ref["ip_pol"])
    v = dense(relu(dense(relu(ref_conv(x, ref["value"])).reshape(len(x), -1), ref["ip1_val"])), ref["ip2_val"])
    if v.shape[1] == 3:
        p = np.exp(v - v.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        out["value"] = p[:, 0] - p[:, 2]
    else:
        out["value"] = np.tanh(v[:, 0])
    if "moves_left" in ref:
        m = relu(dense(relu(ref_conv(x, ref["moves_left"])).reshape(len(x), -1), ref["ip1_mov"]))
        out["moves_left"] = relu(dense(m, ref["ip2_mov"]))[:, 0]
    return out


VARIANTS = {
    "se-conv-wdl-mlh": {},
    "classical-policy-value": {"se": False, "policy": "classical", "wdl": False, "moves_left": False, "bn": "old"},
    "se-classical-policy-no-bn": {"policy": "classical", "moves_left": False, "bn": "none", "blocks": 1},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_network_written_in_lc0_format_loads_with_the_reference_outputs(tmp_path: Path, variant: str) -> None:
    msg, ref = make_net_message(seed=len(variant), **VARIANTS[variant])
    path = write_net(tmp_path / f"{variant}.pb.gz", msg)
    net, meta = load_network(path)
    assert isinstance(net, Lc0Net) and net.format.name == "lc0"
    assert meta.name == variant and meta.extra["source"] == "lc0" and meta.step == 1234
    assert meta.extra["min_version"] == "0.21.0" and len(meta.extra["sha256"]) == 64
    boards = [b for i, b in enumerate(random_boards(4, seed=9)) if i % 9 == 0][:6]
    planes = lc0f.encode(boards)
    with torch.no_grad():
        out = net.forward_heads(torch.from_numpy(planes))
    expected = ref_forward(ref, planes)
    np.testing.assert_allclose(out["value"].numpy(), expected["value"], rtol=1e-4, atol=1e-5)
    if "policy" in expected:
        np.testing.assert_allclose(out["policy"].numpy(), expected["policy"], rtol=1e-4, atol=1e-4)
    else:  # each legal move's logit is the conv output at its documented plane and square
        for n, board in enumerate(boards):
            for move, i in zip(*lc0f.legal_move_indices(board), strict=True):
                plane, frm = az_plane(move, board)
                assert out["policy"][n, i].item() == pytest.approx(expected["conv_policy"][n, plane * 64 + frm],
                                                                   rel=1e-4, abs=1e-4)
    if "moves_left" in expected:
        np.testing.assert_allclose(out["moves_left"].numpy(), expected["moves_left"], rtol=1e-4, atol=1e-4)
    assert out["policy"].shape == (len(boards), 1858)


def test_lc0_net_layers_cache_and_search(tmp_path: Path) -> None:
    msg, _ = make_net_message(seed=1)
    net, _ = load_lc0(write_net(tmp_path / "tiny.pb.gz", msg))
    assert net.layer_names == ["stem", "block0.conv1", "block0.conv2", "block0", "block1.conv1", "block1.conv2",
                               "block1", "policy.conv", "policy.logits", "value.conv", "value.fc1", "value.out",
                               "mlh.conv", "mlh.fc1", "mlh.out"]
    planes = torch.from_numpy(lc0f.encode([play("e4", "c5"), play("d4")]))
    (logits, value), cache = net.run_with_cache(planes)
    assert set(cache) == set(net.layer_names)
    for name, tensor in cache.items():
        assert tuple(tensor.shape[1:]) == net.layer_shape(name), name
    assert torch.equal(cache["policy.logits"], logits)
    assert torch.allclose(cache["value.out"][:, 0], value)
    assert net.hook_count() == 0
    with pytest.raises(KeyError, match="unknown layer"):
        net.layer_shape("block9")
    # steering through a hook changes the output, and the hook is gone afterwards
    with net.hooks([("block1", lambda t: t * 0)]):
        steered, _ = net(planes)
    assert not torch.allclose(steered, logits) and net.hook_count() == 0
    result = MCTS(NetEvaluator(net), MCTSConfig(simulations=24)).search([play("e4", "e5", "Nf3")])[0]
    assert result.visits.sum() == 24 and result.best_move() in play("e4", "e5", "Nf3").legal_moves


def test_export_then_load_is_lossless_after_the_first_quantisation(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = Lc0Config(blocks=2, channels=8, se=True, se_channels=2, policy_head="classical", policy_channels=4,
                       value_channels=2, value_hidden=8, wdl=True, moves_left=True, mlh_channels=2, mlh_hidden=4)
    original = Lc0Net(config).eval()
    first, _ = load_lc0(save_lc0(tmp_path / "a.pb.gz", original))
    second, _ = load_lc0(save_lc0(tmp_path / "b.pb.gz", first))
    assert first.config == config
    for key, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[key]), key
    planes = torch.from_numpy(lc0f.encode(random_boards(2, seed=4)[:8]))
    with torch.no_grad():
        a, b, c = original.forward_heads(planes), first.forward_heads(planes), second.forward_heads(planes)
    for key in ("policy", "value", "wdl", "moves_left"):
        assert torch.equal(b[key], c[key])
        assert torch.allclose(a[key], b[key], atol=2e-3, rtol=1e-3)


# ------------------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("policy", 3, r"NetworkFormat\.policy = 3 \(not in net\.proto\)"),
        ("input", 2, r"NetworkFormat\.input = INPUT_112_WITH_CASTLING_PLANE \(2\)"),
        ("value", 0, r"NetworkFormat\.value = VALUE_UNKNOWN \(0\)"),
        ("network", 7, r"NetworkFormat\.network = 7"),
        ("moves_left", 2, r"NetworkFormat\.moves_left = 2"),
    ],
)
def test_unsupported_formats_name_the_field_and_value(tmp_path: Path, field: str, value: int, message: str) -> None:
    msg, _ = make_net_message()
    msg["format"]["network_format"][field] = value
    with pytest.raises(Lc0FormatError, match=message):
        load_network(write_net(tmp_path / "bad.pb.gz", msg))


def test_other_bad_files_give_clear_errors(tmp_path: Path) -> None:
    msg, _ = make_net_message(moves_left=False)
    good = lc0_proto.encode(msg)
    cases = {
        "encoding": ({**msg, "format": {**msg["format"], "weights_encoding": 2}}, r"Format\.weights_encoding = 2"),
        "magic": ({**msg, "magic": 0x1234}, "bad magic number 0x1234"),
        "se": ({**msg, "format": {**msg["format"], "network_format": {**msg["format"]["network_format"],
                                                                      "network": 3}}}, "squeeze-excitation"),
    }
    for name, (bad, message) in cases.items():
        with pytest.raises(Lc0FormatError, match=message):
            load_lc0(write_net(tmp_path / f"{name}.pb.gz", bad))
    short = {**msg, "weights": {**msg["weights"], "ip1_val_w": lc0_proto.encode_layer(np.zeros(100))}}
    with pytest.raises(Lc0FormatError, match=r"layer ip1_val_w has 100 values, expected 3072"):
        load_lc0(write_net(tmp_path / "short.pb.gz", short))
    # a newer lc0's NetworkFormat field 7 (its default activation), written by hand: varint key 7 << 3 = 0x38
    nf = lc0_proto.encode(msg["format"]["network_format"], "NetworkFormat") + bytes([0x38, 0x01])
    fmt = lc0_proto.encode({"weights_encoding": 1}, "Format") + bytes([0x12, len(nf)]) + nf
    data = lc0_proto.encode({**msg, "format": None}) + bytes([0x22, len(fmt)]) + fmt
    (tmp_path / "newer.pb").write_bytes(data)
    with pytest.raises(Lc0FormatError, match=r"NetworkFormat field number\(s\) 7"):
        load_network(tmp_path / "newer.pb")
    gz = gzip.compress(good)
    (tmp_path / "cut.pb.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(Lc0FormatError, match=r"cut\.pb\.gz: truncated or corrupt gzip"):
        load_network(tmp_path / "cut.pb.gz")
    (tmp_path / "cut.pb").write_bytes(good[: len(good) - 10])
    with pytest.raises(Lc0FormatError, match=r"cut\.pb: not a readable lc0 weight file .*truncated"):
        load_network(tmp_path / "cut.pb")
    (tmp_path / "empty.pb.gz").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_network(tmp_path / "empty.pb.gz")
    with pytest.raises(CheckpointError, match="no such lc0 weight file"):
        load_network(tmp_path / "missing.pb.gz")
