"""Tests for the position readers: PGN/EPD/FEN/Lichess CSV, provenance, history and error reporting."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import chess
import chess.pgn
import pytest

from alphazero_concepts.chess.positions import (
    GameRecord,
    InputError,
    Position,
    ReadReport,
    boards_of,
    read_epd,
    read_fens,
    read_lichess_puzzles,
    read_pgn_games,
    read_pgn_positions,
    read_positions,
)

pytestmark = pytest.mark.unit

GAME_1 = """[Event "First"]
[White "A"]
[Black "B"]
[WhiteElo "2100"]
[BlackElo "2050"]
[Result "1-0"]

1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 {a comment} 4. Ba4 (4. Bxc6 dxc6) Nf6 5. O-O 1-0
"""
GAME_2_BAD = """[Event "Second"]
[White "C"]
[Black "D"]
[WhiteElo "2300"]
[BlackElo "2250"]
[Result "0-1"]

1. d4 d5 2. c4 e6
3. Nc3 Ke4 4. Nf3 0-1
"""
GAME_3 = """[Event "Third"]
[White "E"]
[Black "F"]
[WhiteElo "1500"]
[BlackElo "2400"]
[Result "1/2-1/2"]

1. c4 c5 2. g3 g6 1/2-1/2
"""
FROM_FEN = """[Event "Endgame"]
[SetUp "1"]
[FEN "8/8/8/4k3/8/8/4P3/4K3 w - - 0 40"]
[Result "*"]

40. e4+ Kxe4 *
"""


def write(tmp_path: Path, name: str, text: str, *, newline: str = "\n", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def games_pgn(tmp_path: Path) -> Path:
    return write(tmp_path, "games.pgn", "\n".join([GAME_1, GAME_2_BAD, GAME_3]))


# ---------------------------------------------------------------------------------------------------------------
# PGN


def test_pgn_skips_the_game_with_illegal_san_and_names_its_line(tmp_path: Path) -> None:
    path = games_pgn(tmp_path)
    report = ReadReport(str(path))
    games = list(read_pgn_games(path, report=report))

    assert [g.headers["Event"] for g in games] == ["First", "Third"]
    assert [g.game for g in games] == [0, 2]
    assert report.read == 2 and report.skipped == 1
    lines = path.read_text().splitlines()
    bad_line = next(i for i, text in enumerate(lines, 1) if "Ke4" in text)
    (error,) = report.errors
    assert error.source == str(path) and error.line == bad_line
    assert str(error).startswith(f"{path}:{bad_line}: ")
    assert "Ke4" in str(error) and "game index 1" in str(error)
    assert str(error) in report.summary() and "2 read, 1 skipped" in report.summary()


def test_pgn_records_start_lines_moves_and_result(tmp_path: Path) -> None:
    path = games_pgn(tmp_path)
    first, third = read_pgn_games(path, report=ReadReport(str(path)))
    lines = path.read_text().splitlines()
    assert lines[first.line - 1] == '[Event "First"]' and lines[third.line - 1] == '[Event "Third"]'
    # main line only: the (4. Bxc6 dxc6) variation is not part of the moves
    assert [m.uci() for m in first.moves][:8] == ["e2e4", "e7e5", "g1f3", "b8c6", "f1b5", "a7a6", "b5a4", "g8f6"]
    assert first.moves[-1] == chess.Move.from_uci("e1g1") and len(first.moves) == 9
    assert (first.result, third.result) == ("1-0", "1/2-1/2")
    assert first.start_fen == chess.STARTING_FEN and first.board().fen() == chess.STARTING_FEN


def test_pgn_strict_raises(tmp_path: Path) -> None:
    path = games_pgn(tmp_path)
    with pytest.raises(InputError, match="Ke4") as info:
        list(read_pgn_games(path, strict=True))
    bad_line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "Ke4" in text)
    assert (info.value.source, info.value.line) == (str(path), bad_line) == (str(path), 18)


def test_truncated_pgn_skips_the_cut_game(tmp_path: Path) -> None:
    cut = GAME_3[: GAME_3.index("g3") + 2]  # file ends inside the movetext, after "2. g3"
    path = write(tmp_path, "cut.pgn", GAME_1 + "\n" + cut)
    report = ReadReport(str(path))
    games = list(read_pgn_games(path, report=report))
    assert [g.headers["Event"] for g in games] == ["First"]
    assert report.skipped == 1 and "truncated" in str(report.errors[0])
    assert report.errors[0].line == GAME_1.count("\n") + 2

    mid_token = write(tmp_path, "cut2.pgn", GAME_1 + "\n" + GAME_3[: GAME_3.index("g3") + 1])  # "2. g"
    report = ReadReport(str(mid_token))
    assert len(list(read_pgn_games(mid_token, report=report))) == 1 and report.skipped == 1


def test_headers_only_garbage_is_skipped(tmp_path: Path) -> None:
    garbage = '[Event "orphan"]\n[Site "?"]\n\n\n'
    path = write(tmp_path, "garbage.pgn", garbage + GAME_3 + "\nthis is not chess\n\n" + GAME_1)
    report = ReadReport(str(path))
    games = list(read_pgn_games(path, report=report))
    assert [g.headers["Event"] for g in games] == ["Third", "First"]
    assert report.skipped == 2
    assert report.errors[0].line == 1 and "no movetext" in str(report.errors[0])


def test_min_elo_and_max_games(tmp_path: Path) -> None:
    path = write(tmp_path, "elo.pgn", "\n".join([GAME_1, GAME_3, FROM_FEN]))
    report = ReadReport(str(path))
    kept = list(read_pgn_games(path, report=report, min_elo=2000))
    assert [g.headers["Event"] for g in kept] == ["First"]  # 1500 < 2000; no Elo headers → dropped
    assert report.filtered == 2 and report.skipped == 0
    assert [g.headers["Event"] for g in read_pgn_games(path, max_games=2)] == ["First", "Third"]


def test_fen_header_sets_the_start_position(tmp_path: Path) -> None:
    path = write(tmp_path, "fen.pgn", FROM_FEN)
    (game,) = read_pgn_games(path)
    assert game.start_fen == "8/8/8/4k3/8/8/4P3/4K3 w - - 0 40"
    assert [m.uci() for m in game.moves] == ["e2e4", "e5e4"]
    positions = list(game.positions())
    assert positions[-1].fen == "8/8/8/8/4k3/8/8/4K3 w - - 0 41"


def test_position_board_rebuilds_game_history(tmp_path: Path) -> None:
    path = games_pgn(tmp_path)
    positions = list(read_pgn_positions(path, report=ReadReport(str(path))))
    assert len(positions) == (9 + 1) + (4 + 1)
    assert [p.ply for p in positions[:10]] == list(range(10))

    game = chess.pgn.read_game(open(path, encoding="utf-8"))  # noqa: SIM115 - tiny test file
    assert game is not None
    played = game.board()
    for move, position in zip(game.mainline_moves(), positions[1:10], strict=True):
        played.push(move)
        board = position.board()
        assert board.fen() == played.fen() == position.fen
        assert board.move_stack == played.move_stack
    last = positions[9]
    assert (last.source, last.game, last.line, len(last.moves)) == (str(path), 0, 1, 9)
    assert last.meta["White"] == "A" and last.meta["Result"] == "1-0"

    late = list(read_pgn_positions(path, min_ply=8, report=ReadReport(str(path))))
    assert [(p.game, p.ply) for p in late] == [(0, 8), (0, 9)]


def test_game_record_positions_are_cheap_prefixes() -> None:
    moves = [chess.Move.from_uci(u) for u in ("e2e4", "e7e5", "g1f3")]
    record = GameRecord({"White": "W"}, chess.STARTING_FEN, moves, "*", "x.pgn", 4, 10)
    positions = list(record.positions(min_ply=1))
    assert [p.moves for p in positions] == [("e2e4",), ("e2e4", "e7e5"), ("e2e4", "e7e5", "g1f3")]
    assert all((p.game, p.line) == (4, 10) for p in positions)


def test_pgn_latin1_crlf_and_bom(tmp_path: Path) -> None:
    text = GAME_1.replace('"A"', '"Müller"')
    latin = write(tmp_path, "latin.pgn", text, newline="\r\n", encoding="latin-1")
    (game,) = read_pgn_games(latin)
    assert game.headers["White"] == "Müller" and len(game.moves) == 9
    bom = tmp_path / "bom.pgn"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    (game,) = read_pgn_games(bom)
    assert game.headers["Event"] == "First" and game.line == 1


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file") as info:
        read_pgn_games(tmp_path / "nope.pgn")
    assert info.value.line is None and info.value.source == str(tmp_path / "nope.pgn")


# ---------------------------------------------------------------------------------------------------------------
# Position


def test_position_dict_round_trip_and_hashing() -> None:
    p = Position(chess.STARTING_FEN, ("e2e4", "c7c5"), "g.pgn", game=3, ply=2, line=40, meta={"White": "A", "Elo": "1"})
    again = Position.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p and hash(again) == hash(p)
    assert pickle.loads(pickle.dumps(p)) == p
    assert {p, again} == {p}
    with pytest.raises(TypeError):
        p.meta["White"] = "B"  # type: ignore[index]
    assert Position.from_dict({"start_fen": chess.STARTING_FEN}) == Position(chess.STARTING_FEN)


def test_position_board_with_illegal_move_names_source_and_line() -> None:
    p = Position(chess.STARTING_FEN, ("e2e4", "e2e4"), "g.pgn", line=12)
    with pytest.raises(InputError, match=r"^g\.pgn:12: move 2 \('e2e4'\)"):
        p.board()


def test_boards_of_continues_game_order_positions_and_equals_a_replay(tmp_path: Path) -> None:
    path = write(tmp_path, "games.pgn", "\n".join([GAME_1, GAME_3, FROM_FEN]))
    positions = list(read_pgn_positions(path, report=ReadReport(str(path))))
    mixed = [*positions, positions[3], chess.Board(), positions[0], *positions[5:2:-1]]  # restarts, a plain board
    boards = list(boards_of(mixed))
    assert len(boards) == len(mixed) and boards[len(positions) + 1] is mixed[len(positions) + 1]
    for p, board in zip(mixed, boards, strict=True):
        expected = p if isinstance(p, chess.Board) else p.board()
        assert board.fen() == expected.fen() and board.move_stack == expected.move_stack
        assert board.root().fen() == expected.root().fen()
    before = [(b.fen(), list(b.move_stack)) for b in boards]
    boards[4].pop()  # each its own board: changing one changes no other
    boards[5].push(next(iter(boards[5].legal_moves)))
    assert [(b.fen(), list(b.move_stack)) for b in boards][6:] == before[6:] and before[3] == (boards[3].fen(),
                                                                                               boards[3].move_stack)
    bad = Position(chess.STARTING_FEN, ("e2e4", "e2e4"), "g.pgn", line=12)  # continues ("e2e4",), then fails
    with pytest.raises(InputError, match=r"^g\.pgn:12: move 2 \('e2e4'\)"):
        list(boards_of([Position(chess.STARTING_FEN, ("e2e4",)), bad]))


def test_input_error_pickles() -> None:
    error = InputError("bad", source="f.epd", line=3)
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.source, again.line) == ("f.epd:3: bad", "f.epd", 3)


# ---------------------------------------------------------------------------------------------------------------
# EPD and FEN lists

STS = [
    '1kr5/3n4/q3p2p/p2n2p1/PppB1P2/5BP1/1P2Q2P/3R2K1 w - - bm f5; id "STS(v1.0) Undermine.001"; c0 "f5=10";',
    "this is not an epd line",
    '8/8/8/8/8/8/8/8 w - - id "empty";',
    'r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - bm Bb5 Bc4; id "two.bm";',
]


def test_epd_skips_bad_lines_and_keeps_opcodes(tmp_path: Path) -> None:
    path = write(tmp_path, "positions.epd", "\n".join(STS) + "\n")
    report = ReadReport(str(path))
    positions = list(read_epd(path, report=report))
    assert [p.line for p in positions] == [1, 4]
    assert positions[0].meta["bm"] == "f5" and positions[0].meta["id"] == "STS(v1.0) Undermine.001"
    assert positions[0].meta["c0"] == "f5=10"
    assert positions[1].meta["bm"] == "Bb5 Bc4"
    assert positions[0].moves == () and positions[0].board().move_stack == []
    assert report.skipped == 2 and [e.line for e in report.errors] == [2, 3]
    assert str(report.errors[0]).startswith(f"{path}:2: invalid EPD")
    assert "no white king" in str(report.errors[1])


def test_epd_crlf(tmp_path: Path) -> None:
    path = write(tmp_path, "sts.epd", STS[0] + "\n" + STS[3] + "\n", newline="\r\n")
    positions = list(read_epd(path))
    assert [p.meta["id"] for p in positions] == ["STS(v1.0) Undermine.001", "two.bm"]
    assert positions[0].fen == "1kr5/3n4/q3p2p/p2n2p1/PppB1P2/5BP1/1P2Q2P/3R2K1 w - - 0 1"


def test_fen_list_ignores_comments_and_blank_lines(tmp_path: Path) -> None:
    text = f"# opening positions\n\n{chess.STARTING_FEN}\n   \n# end\n8/8/8/4k3/8/8/4P3/4K3 w - - 0 40\nnonsense\n"
    path = write(tmp_path, "list.fen", text)
    report = ReadReport(str(path))
    positions = list(read_fens(path, report=report))
    assert [(p.fen, p.line) for p in positions] == [
        (chess.STARTING_FEN, 3),
        ("8/8/8/4k3/8/8/4P3/4K3 w - - 0 40", 6),
    ]
    assert report.skipped == 1 and report.errors[0].line == 7


# ---------------------------------------------------------------------------------------------------------------
# Lichess puzzles

PUZZLE_HEADER = "PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,OpeningTags"
PUZZLE_ROWS = [
    "00008,r6k/pp2r2p/4Rp1Q/3p4/8/1N1P2R1/PqP2bPP/7K b - - 0 24,f2g3 e6e7 b2b1 b3c1 b1c1 h6c1,1913,75,94,6230,"
    "crushing hangingPiece long middlegame,https://lichess.org/787zsVup/black#47,",
    "0000D,5rk1/1p3ppp/pq3b2/8/8/1P1Q1N2/P4PPP/3R2K1 w - - 2 27,d3d6 f8d8 d6d8 f6d8,1452,74,96,27042,"
    "advantage endgame short,https://lichess.org/F8M8OS71#53,",
]


def test_lichess_csv_with_header_applies_first_move(tmp_path: Path) -> None:
    path = write(tmp_path, "puzzles.csv", "\n".join([PUZZLE_HEADER, *PUZZLE_ROWS]) + "\n")
    first, second = read_lichess_puzzles(path)
    assert first.start_fen == "r6k/pp2r2p/4Rp1Q/3p4/8/1N1P2R1/PqP2bPP/7K b - - 0 24"
    assert first.moves == ("f2g3",) and first.line == 2
    assert first.board().turn == chess.WHITE and first.board().peek() == chess.Move.from_uci("f2g3")
    assert first.meta["solution"] == "e6e7 b2b1 b3c1 b1c1 h6c1"
    assert (first.meta["PuzzleId"], first.meta["Rating"]) == ("00008", "1913")
    assert first.meta["Themes"] == "crushing hangingPiece long middlegame"
    assert first.meta["GameUrl"] == "https://lichess.org/787zsVup/black#47"
    assert second.meta["solution"] == "f8d8 d6d8 f6d8" and second.line == 3


def test_lichess_csv_without_header_and_old_columns(tmp_path: Path) -> None:
    old = [row.rsplit(",", 1)[0] for row in PUZZLE_ROWS]  # older dumps have no OpeningTags column
    bad = "0000X,8/8/8/8/8/8/8/K6k w - - 0 1,a2a3 h1h2,1000,1,1,1,x,y"  # first move is not legal
    path = write(tmp_path, "puzzles.csv", "\n".join([*old, bad]) + "\n")
    report = ReadReport(str(path))
    positions = list(read_lichess_puzzles(path, report=report))
    assert [p.meta["PuzzleId"] for p in positions] == ["00008", "0000D"]
    assert [p.line for p in positions] == [1, 2]
    assert "OpeningTags" not in positions[0].meta
    assert report.skipped == 1 and report.errors[0].line == 3 and "illegal" in str(report.errors[0])


def test_lichess_csv_with_wrong_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "other.csv", "id,position,score\n1,2,3\n")
    with pytest.raises(InputError, match=r"wrong CSV columns.*missing FEN, Moves") as info:
        list(read_lichess_puzzles(path))
    assert info.value.line == 1 and str(info.value).startswith(f"{path}:1: ")


# ---------------------------------------------------------------------------------------------------------------
# Dispatch, warnings


def test_read_positions_dispatches_by_suffix(tmp_path: Path) -> None:
    pgn = write(tmp_path, "g.PGN", GAME_3)
    epd = write(tmp_path, "p.epd", STS[0] + "\n")
    txt = write(tmp_path, "p.txt", chess.STARTING_FEN + "\n")
    csv_ = write(tmp_path, "p.csv", PUZZLE_ROWS[0] + "\n")
    assert len(list(read_positions(pgn, min_ply=4))) == 1
    ((from_epd,), (from_txt,), (from_csv,)) = (list(read_positions(p)) for p in (epd, txt, csv_))
    assert from_epd.meta["bm"] == "f5"
    assert from_txt.fen == chess.STARTING_FEN
    assert from_csv.moves == ("f2g3",)
    with pytest.raises(InputError, match=r"unknown position file type '\.json'"):
        read_positions(tmp_path / "p.json")


def test_warns_once_with_skipped_count_when_no_report(tmp_path: Path) -> None:
    path = games_pgn(tmp_path)
    with pytest.warns(UserWarning, match=r"2 read, 1 skipped \(first: .*Ke4") as record:
        games = list(read_pgn_games(path))
    assert len(games) == 2 and len(record) == 1
    with pytest.warns(UserWarning, match="1 skipped") as record:
        list(read_pgn_positions(path))
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(read_pgn_games(path, report=ReadReport(str(path))))  # a caller's report: no warning
        list(read_fens(write(tmp_path, "ok.fen", chess.STARTING_FEN + "\n")))  # nothing skipped: no warning
