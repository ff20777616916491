"""`azc puzzles audit`: the readers (round trips through the exporters, third-party EPD, bad records), the pure
rules on hand-made verdicts, the engine call on a fake engine, and planted positions judged by Stockfish at a
low depth (skipped, with the reason, when Stockfish is not installed)."""

from __future__ import annotations

import json
from pathlib import Path

import chess
import chess.engine
import pytest
import typer
from typer.testing import CliRunner

from alphazero_concepts.chess.positions import InputError
from alphazero_concepts.engines import locate_stockfish
from alphazero_concepts.puzzles.audit import (
    AuditItem,
    AuditRules,
    audit_items,
    audit_report,
    cp_text,
    detect_format,
    judge,
    parse_csv,
    parse_epd,
    parse_json,
    parse_pgn,
    read_puzzle_file,
)
from alphazero_concepts.puzzles.engine import MATE_CP, EngineVerdict, StockfishAnalyser, engine_verdict

pytestmark = pytest.mark.unit

DEPTH = 10  # low, so the planted cases take a fraction of a second each; each was checked at depths 6–18

# Planted positions (solver to move). Scores are Stockfish 15.1's, depth 10, solver's view.
SCOTCH_BEFORE = "r1bqkbnr/pppp1ppp/2n5/8/3NP3/8/PPP2PPP/RNBQKB1R b KQkq - 0 4"  # 4...Nxd4 comes next
SCOTCH = "r1bqkbnr/pppp1ppp/8/8/3nP3/8/PPP2PPP/RNBQKB1R w KQkq - 0 5"  # Qxd4 (+80) recaptures; else −400
DECIDED = "6k1/5pp1/7p/8/8/7P/5PP1/R5K1 w - - 0 1"  # a rook up (+640), quiet Kh2
TWO_SOLUTIONS = "4k3/8/8/4p3/4P3/8/8/4K3 w - - 0 1"  # blocked pawns: Ke2, Kd2, Kf2 all 0.00
SOUND = "4k2r/1b2b3/p3pp1p/1p1p4/3BnpP1/P1P4R/1KP4P/5BR1 w k - 0 1"  # STS Undermine.055: g5 (≈0), rest ≤ −250
ONLY_MOVE = "k7/8/8/8/8/8/1r6/K7 w - - 0 1"  # Kxb2 is the only legal move
MATE_IN_ONE = "6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1"  # Ra8#

STOCKFISH = locate_stockfish()
needs_stockfish = pytest.mark.skipif(STOCKFISH is None, reason="Stockfish not installed (apt-get install "
                                                               "stockfish): the planted positions need the engine")


def item(fen: str, answer: str, *, history: tuple[str, str] | None = None, id_: str = "p") -> AuditItem:
    """An audit item; `history` = (FEN before the opponent's last move, that move in UCI)."""
    if history is not None:
        board = chess.Board(history[0])
        last = chess.Move.from_uci(history[1])
        board.push(last)
        assert board.epd() == chess.Board(fen).epd()
    else:
        board, last = chess.Board(fen), None
    return AuditItem(id_, board, chess.Move.from_uci(answer), last, "test", 1)


def app() -> typer.Typer:
    from alphazero_concepts.puzzles.commands import register

    cli = typer.Typer()
    register(cli)
    return cli


# ---------------------------------------------------------------------------------------------------------------
# Readers


def _line(fen: str, answer: str, plies: int = 3) -> list[str]:
    """The answer and then the alphabetically first legal move, `plies` moves in all (a legal machine line)."""
    board = chess.Board(fen)
    out = [answer]
    board.push_uci(answer)
    while len(out) < plies:
        move = min(board.legal_moves, key=lambda m: m.uci())
        out.append(move.uci())
        board.push(move)
    return out


def _book():
    from alphazero_concepts.puzzles.book import ConceptPuzzle, PuzzleBook

    records = [
        {"id": "scotch-recapture", "fen": SCOTCH, "solution": ["d1d4"], "line": _line(SCOTCH, "d1d4"),
         "concept": "c1", "split": "train", "prev_fen": SCOTCH_BEFORE, "last_move": "c6d4"},
        {"id": "sts-undermine-055", "fen": SOUND, "solution": ["g4g5"], "line": _line(SOUND, "g4g5"),
         "concept": "c1", "split": "test"},
    ]
    return PuzzleBook("audit test", tuple(ConceptPuzzle.from_record(r) for r in records))


def test_every_export_format_reads_back_the_same_puzzles() -> None:
    from alphazero_concepts.puzzles.export import to_csv, to_epd, to_json, to_pgn

    book = _book()
    read = {"pgn": parse_pgn(to_pgn(book), "p.pgn"), "epd": parse_epd(to_epd(book), "p.epd"),
            "csv": parse_csv(to_csv(book), "p.csv"), "csv3": parse_csv(to_csv(book, plies=3), "p.csv"),
            "json": parse_json(to_json(book), "p.json")}
    for fmt, items in read.items():
        assert [i.id for i in items] == ["scotch-recapture", "sts-undermine-055"], fmt
        assert [i.board.epd() for i in items] == [chess.Board(SCOTCH).epd(), chess.Board(SOUND).epd()], fmt
        assert [i.answer.uci() for i in items] == ["d1d4", "g4g5"], fmt
        assert items[1].last_move is None and items[1].recaptured_square is None, fmt  # no history known
    for fmt in ("csv", "csv3", "json"):  # the opponent's last move travels in the CSV and the JSON
        first = read[fmt][0]
        assert first.last_move == chess.Move.from_uci("c6d4") and first.recaptured_square == chess.D4, fmt
        assert first.board.fen() == SCOTCH
    for fmt in ("pgn", "epd"):
        assert read[fmt][0].last_move is None, fmt
    assert [i.line for i in read["epd"]] == [1, 2] and [i.line for i in read["csv"]] == [2, 3]
    assert read["pgn"][0].line == 1 and read["pgn"][1].line > 20  # where each game starts
    text = to_json(book)
    assert [text.splitlines()[i.line - 1].strip() for i in read["json"]] == ["{", "{"]  # each record's "{"


def test_third_party_epd_and_lichess_csv() -> None:
    epd = ("# a suite someone else wrote\n\n"
           f'{SOUND.rsplit(" ", 2)[0]} bm g5; id "STS Undermine.055";\n'
           f'{SCOTCH} bm Qxd4 Nc3; id "full FEN, two bm: the first is audited";\n'
           f"{TWO_SOLUTIONS.rsplit(' ', 2)[0]} bm Ke2;\n")
    items = parse_epd(epd, "suite.epd")
    assert [(i.id, i.answer_san, i.line) for i in items] == [
        ("STS Undermine.055", "g5", 3), ("full FEN, two bm: the first is audited", "Qxd4", 4),
        ("suite.epd:5", "Ke2", 5)]
    assert items[1].board.fen() == SCOTCH  # the move counters of a full FEN are kept
    # Lichess's own convention: FEN before the opponent's move, then the solution
    lichess = ("PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,OpeningTags\n"
               f"00sHx,{SCOTCH_BEFORE},c6d4 d1d4 g8f6,1500,75,90,100,short,,\n")
    (got,) = parse_csv(lichess, "lichess.csv")
    assert got.id == "00sHx" and got.board.fen() == SCOTCH and got.answer_san == "Qxd4"
    assert got.last_move == chess.Move.from_uci("c6d4")
    headerless = f"00sHx,{SCOTCH_BEFORE},c6d4 d1d4,1500,75,90,100,short,,\n"
    assert parse_csv(headerless, "x.csv")[0].answer_san == "Qxd4"


def test_bad_records_are_skipped_with_file_and_line_and_good_ones_kept() -> None:
    errors: list[InputError] = []
    epd = f"{SOUND.rsplit(' ', 2)[0]} bm g5;\nthis is not a position\n{ONLY_MOVE.rsplit(' ', 2)[0]} bm Kb1;\n" \
          f"{TWO_SOLUTIONS.rsplit(' ', 2)[0]} id \"no bm\";\n"
    assert [i.line for i in parse_epd(epd, "s.epd", errors)] == [1]
    assert [str(e).split(": ", 1)[0] for e in errors] == ["s.epd:2", "s.epd:3", "s.epd:4"]
    assert "illegal san" in str(errors[1]) and "no bm opcode" in str(errors[2])
    with pytest.raises(InputError, match=r"^s\.epd:2: "):  # without a list to collect into: strict
        parse_epd(epd, "s.epd")

    errors = []
    csv_text = ("PuzzleId,FEN,Moves,Themes\n"
                f"good,{SCOTCH_BEFORE},c6d4 d1d4,\n"
                "bad-fen,not a fen,e2e4 e7e5,\n"
                f"no-answer,{SCOTCH_BEFORE},c6d4,\n"
                f"illegal,{SCOTCH},e1e3,solverToMove oneMove\n"
                "garbage\n")
    assert [i.id for i in parse_csv(csv_text, "p.csv", errors)] == ["good"]
    assert [e.line for e in errors] == [3, 4, 5, 6] and all(e.source == "p.csv" for e in errors)
    assert "holds no answer" in errors[1].reason and "illegal move 'e1e3'" in errors[2].reason
    errors = []
    assert parse_csv("id,position,solution\nx,y,z\n", "w.csv", errors) == []
    assert "header lacks FEN, Moves" in str(errors[0])

    errors = []
    pgn = (f'[Event "ok"]\n[SetUp "1"]\n[FEN "{SOUND}"]\n[PuzzleId "sound"]\n\n1. g5 *\n\n'
           "random words in a pgn\n\n"
           '[Event "bad fen"]\n[SetUp "1"]\n[FEN "garbage"]\n\n1. e4 *\n')
    assert [i.id for i in parse_pgn(pgn, "g.pgn", errors)] == ["sound"]
    assert [e.line for e in errors] == [8, 10] and "no moves" in errors[0].reason

    errors = []
    good = {"id": "ok", "fen": SOUND, "solution": ["g4g5"]}
    mismatched = {"id": "hist", "fen": SOUND, "solution": ["g4g5"], "prev_fen": SCOTCH_BEFORE,
                  "last_move": "c6d4"}
    text = json.dumps({"puzzles": [good, 7, {"id": "nofen"}, mismatched, {"fen": SOUND, "line": ["g5"]}]},
                      indent=1)
    items = parse_json(text, "b.json", errors)
    assert [i.id for i in items] == ["ok", f"b.json:{items[1].line}"]  # an id-less record gets file:line
    assert text.splitlines()[items[1].line - 1].strip() == "{" and items[1].answer_san == "g5"  # SAN works too
    assert [e.reason.split(":")[0] for e in errors] == ["puzzles[1]", "puzzles[2]", "puzzles[3]"]
    assert "not the fen" in errors[2].reason
    errors = []
    assert parse_json("{not json", "c.json", errors) == [] and str(errors[0]).startswith("c.json:1: not valid JSON")


def test_read_puzzle_file_names_a_missing_file_and_detects_formats(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.pgn: no such file"):
        read_puzzle_file(tmp_path / "nope.pgn")
    weird = tmp_path / "puzzles.txt"
    weird.write_text(f'{SOUND.rsplit(" ", 2)[0]} bm g5; id "x";\n')
    items, errors, fmt = read_puzzle_file(weird)
    assert fmt == "epd" and len(items) == 1 and not errors
    assert detect_format("a.dat", '[Event "x"]') == "pgn" and detect_format("a.dat", '[{"fen": ""}]') == "json"
    assert detect_format("a.dat", "PuzzleId,FEN,Moves\n") == "csv" and detect_format("A.JSON", "") == "json"
    with pytest.raises(ValueError, match="unknown format"):
        read_puzzle_file(weird, "xml")


# ---------------------------------------------------------------------------------------------------------------
# Rules on hand-made verdicts (no engine)


def failed(results: dict) -> list[str]:
    return [name for name, r in results.items() if r.passed is False]


def test_rules_on_hand_made_verdicts() -> None:
    rules = AuditRules()
    sound = item(SOUND, "g4g5")
    ok = judge(sound, EngineVerdict(18, "g4g5", 30, "g4g5", 30, "a3a4", -250), rules)
    assert failed(ok) == [] and all(r.mark is None for r in ok.values())
    assert ok["unique"].value == 280 and ok["undecided"].value == 30
    assert "recapture not checked: last move unknown" in ok["trivial"].detail

    decided = judge(sound, EngineVerdict(18, "g4g5", 412, "g4g5", 412, "a3a4", 100), rules)
    assert failed(decided) == ["undecided"]
    assert decided["undecided"].detail.startswith("undecided: |eval| 412 cp > 250")
    losing = judge(sound, EngineVerdict(18, "g4g5", -412, "g4g5", -412, "a3a4", -700), rules)
    assert failed(losing) == ["undecided"]  # decided either way: |eval|

    inferior = judge(sound, EngineVerdict(18, "h3h1", 40, "g4g5", -5, "g4g5", -5), rules)
    assert failed(inferior) == ["correct", "unique"]
    assert "g5 (-5) is 45 cp below Stockfish's best Rhh1 (+40) > 20" in inferior["correct"].detail
    close = judge(sound, EngineVerdict(18, "h3h1", 40, "g4g5", 25, "a3a4", -300), rules)
    assert failed(close) == ["unique"] and close["correct"].passed and close["unique"].value == -15

    two = judge(sound, EngineVerdict(18, "g4g5", 30, "g4g5", 30, "a3a4", -10), rules)
    assert failed(two) == ["unique"] and "gap 40 cp" in two["unique"].detail and "two solutions" in two["unique"].detail
    assert failed(judge(sound, EngineVerdict(18, "g4g5", 30, "g4g5", 30, "a3a4", -10),
                        AuditRules(min_gap=40))) == []


def test_trivial_rule_single_move_and_forced_recapture() -> None:
    rules = AuditRules()
    only = judge(item(ONLY_MOVE, "a1b2"), EngineVerdict(18, "a1b2", 0, "a1b2", 0), rules)
    assert failed(only) == ["trivial"] and only["trivial"].detail == "trivial: the only legal move"
    assert only["unique"].passed is None  # not applicable: no other move
    recapture = item(SCOTCH, "d1d4", history=(SCOTCH_BEFORE, "c6d4"))
    forced = EngineVerdict(18, "d1d4", 80, "d1d4", 80, "b1c3", -390)
    result = judge(recapture, forced, rules)
    assert failed(result) == ["trivial"] and "forced recapture on d4" in result["trivial"].detail
    assert failed(judge(recapture, forced, AuditRules(fail_trivial=False))) == []
    assert failed(judge(item(SCOTCH, "d1d4"), forced, rules)) == []  # without the last move: not detectable
    # a recapture with an equally good alternative is not "forced": it fails unique instead
    loose = judge(recapture, EngineVerdict(18, "d1d4", 80, "d1d4", 80, "b1c3", 60), rules)
    assert failed(loose) == ["unique"]


def test_worth_asking_marks_won_positions_and_fails_short_mates() -> None:
    rules = AuditRules(max_eval=100_000)  # as when auditing classic tactics, decided by definition
    sound = item(SOUND, "g4g5")
    won = judge(sound, EngineVerdict(18, "g4g5", 812, "g4g5", 812, "a3a4", 0), rules)
    assert failed(won) == [] and won["worth_asking"].mark == "won"
    assert "already won after the answer (+812 ≥ +700 cp)" in won["worth_asking"].detail
    assert failed(judge(sound, EngineVerdict(18, "g4g5", 812, "g4g5", 812, "a3a4", 0),
                        AuditRules(max_eval=100_000, fail_won=True))) == ["worth_asking"]
    mate2 = EngineVerdict(18, "g4g5", MATE_CP - 2, "g4g5", MATE_CP - 2, "a3a4", 0)
    result = judge(sound, mate2, rules)
    assert failed(result) == ["worth_asking"] and "mate in 2 (≤ 2)" in result["worth_asking"].detail
    assert failed(judge(sound, mate2, AuditRules(max_eval=100_000, fail_mate_in=1))) == []
    assert failed(judge(sound, mate2, AuditRules())) == ["undecided", "worth_asking"]  # default: both
    mate3 = EngineVerdict(18, "g4g5", MATE_CP - 3, "g4g5", MATE_CP - 3, "a3a4", 0)
    assert failed(judge(sound, mate3, rules)) == [] and judge(sound, mate3, rules)["worth_asking"].mark == "won"
    assert cp_text(MATE_CP - 3) == "#3" and cp_text(-(MATE_CP - 2)) == "#-2" and cp_text(58) == "+58"
    with pytest.raises(ValueError, match="min_gap"):
        AuditRules(min_gap=-1)


def test_report_has_counts_failures_with_reasons_and_records() -> None:
    from alphazero_concepts.puzzles.audit import AuditRecord

    rules = AuditRules()
    good = item(SOUND, "g4g5", id_="good")
    bad = item(SOUND, "g4g5", id_="bad")
    records = [AuditRecord(good, v, judge(good, v, rules)) for v in
               [EngineVerdict(18, "g4g5", 30, "g4g5", 30, "a3a4", -250)]]
    v_bad = EngineVerdict(18, "g4g5", 412, "g4g5", 412, "a3a4", 400)
    records.append(AuditRecord(bad, v_bad, judge(bad, v_bad, rules)))
    report = audit_report(records, [InputError("junk", source="f.epd", line=3)], {"depth": 18})
    assert report["puzzles"] == 2 and report["passed"] == 1
    assert report["failed"] == [{"id": "bad", "reason": "undecided: |eval| 412 cp > 250: already decided; unique: "
                                 "gap 12 cp to the best other move a4 (+400) < 75: two solutions",
                                 "rules": ["undecided", "unique"], "source": "test", "line": 1}]
    assert report["skipped"] == [{"source": "f.epd", "line": 3, "reason": "junk"}]
    assert report["failed_by_rule"]["undecided"] == 1 and report["records"][0]["gap"] == 280
    json.dumps(report, allow_nan=False)


# ---------------------------------------------------------------------------------------------------------------
# The engine call, on a fake engine: scores turn to the solver's view


class FakeEngine:
    """Answers ``analyse`` with fixed lines (scores given from White's view, as an engine may report them)."""

    def __init__(self, lines: list[tuple[str, int]], alone: int) -> None:
        self.lines, self.alone, self.calls = lines, alone, []

    def analyse(self, board: chess.Board, limit: chess.engine.Limit, **kw):
        self.calls.append((limit, kw))
        if "root_moves" in kw:
            return {"score": chess.engine.PovScore(chess.engine.Cp(self.alone), chess.WHITE), "depth": 7}
        return [{"pv": [chess.Move.from_uci(u)], "score": chess.engine.PovScore(chess.engine.Cp(cp), chess.WHITE),
                 "depth": 7} for u, cp in self.lines]


def test_engine_verdict_scores_from_the_side_to_move() -> None:
    board = chess.Board(SCOTCH_BEFORE)  # Black to move
    fake = FakeEngine([("c6d4", -20), ("g8f6", 90)], alone=400)
    v = engine_verdict(fake, board, chess.Move.from_uci("c6d4"), chess.engine.Limit(nodes=1000))
    assert (v.best, v.best_cp, v.second, v.second_cp, v.answer_cp, v.depth) == ("c6d4", 20, "g8f6", -90, 20, 7)
    assert len(fake.calls) == 1 and fake.calls[0][1]["multipv"] == 2
    v2 = engine_verdict(fake, board, chess.Move.from_uci("a7a6"), chess.engine.Limit(depth=5))
    assert v2.answer_cp == -400 and v2.cp_loss == 420 and fake.calls[-1][1]["root_moves"] == [chess.Move.from_uci(
        "a7a6")]
    with pytest.raises(ValueError, match="illegal"):
        engine_verdict(fake, board, chess.Move.from_uci("e1e2"), chess.engine.Limit(depth=5))


# ---------------------------------------------------------------------------------------------------------------
# Planted positions, judged by Stockfish


@pytest.fixture(scope="module")
def analyser():
    if STOCKFISH is None:
        pytest.skip("Stockfish not installed (apt-get install stockfish)")
    with StockfishAnalyser(depth=DEPTH) as sf:
        yield sf


@pytest.mark.needs_engine
@needs_stockfish
def test_planted_positions_fail_the_rule_they_break(analyser: StockfishAnalyser) -> None:
    cases = {
        "decided": item(DECIDED, "g1h2"),
        "inferior": item(SCOTCH, "b1c3"),
        "two": item(TWO_SOLUTIONS, "e1e2"),
        "sound": item(SOUND, "g4g5"),
        "recapture": item(SCOTCH, "d1d4", history=(SCOTCH_BEFORE, "c6d4")),
        "recapture-no-history": item(SCOTCH, "d1d4"),
        "mate": item(MATE_IN_ONE, "a1a8"),
    }
    done = {rec.item.id: rec for rec in audit_items(
        [AuditItem(k, i.board, i.answer, i.last_move, i.source, i.line) for k, i in cases.items()],
        analyser.verdict, AuditRules())}
    assert "undecided" in done["decided"].failed_rules and done["decided"].verdict.best_cp > 250
    assert "correct" in done["inferior"].failed_rules and "undecided" not in done["inferior"].failed_rules
    assert done["inferior"].verdict.cp_loss > 200
    assert done["two"].failed_rules == ["unique"] and "two solutions" in done["two"].reasons[0]
    assert done["sound"].passed, done["sound"].reasons
    assert abs(done["sound"].verdict.best_cp) <= 250 and done["sound"].rules["unique"].value >= 75
    assert done["recapture"].failed_rules == ["trivial"]
    assert done["recapture-no-history"].passed  # a recapture is only recognised with the last move
    assert done["mate"].failed_rules == ["undecided", "worth_asking"] and done["mate"].marks == ["won"]
    assert all(rec.verdict.depth >= DEPTH for rec in done.values())


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _epd(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.integration
@needs_stockfish
def test_cli_audit_table_json_and_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    planted = _epd(tmp_path / "planted.epd", [
        f'{DECIDED} bm Kh2; id "decided";', f'{SCOTCH} bm Nc3; id "inferior";',
        f'{TWO_SOLUTIONS} bm Ke2; id "two";', f'{SOUND} bm g5; id "sound";', "garbage on line five"])
    out = tmp_path / "out" / "audit.json"
    result = runner.invoke(app(), ["puzzles", "audit", str(planted), "--depth", str(DEPTH), "--json", str(out)])
    assert result.exit_code == 1, result.output  # some puzzles failed
    for word in ("decided", "inferior", "two", "sound", "undecided", "correct", "unique", "pass",
                 "planted.epd:5", "bad records skipped"):
        assert word in result.output, word
    report = json.loads(out.read_text())
    assert report["puzzles"] == 4 and report["passed"] == 1
    assert {f["id"]: f["rules"][0] for f in report["failed"]} == {"decided": "undecided", "inferior": "correct",
                                                                  "two": "unique"}
    assert all(f["reason"].startswith(f["rules"][0] + ":") for f in report["failed"])
    assert report["skipped"][0]["line"] == 5 and report["settings"]["depth"] == DEPTH
    assert report["settings"]["rules"]["min_gap"] == 75 and report["settings"]["engine"].startswith("Stockfish")
    assert {r["id"] for r in report["records"]} == {"decided", "inferior", "two", "sound"}

    sound = _epd(tmp_path / "sound.epd", [f'{SOUND} bm g5; id "sound";'])
    ok = runner.invoke(app(), ["puzzles", "audit", str(sound), "--nodes", "20000", "--json", str(out),
                               "--show", "none"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(out.read_text())
    assert report["settings"]["nodes"] == 20000 and report["settings"]["depth"] is None and report["passed"] == 1
    # a stricter rule turns the pass into a failure; --show reasons prints one line per failed puzzle
    strict = runner.invoke(app(), ["puzzles", "audit", str(sound), "--depth", str(DEPTH), "--min-gap", "2000",
                                   "--show", "reasons"])
    assert strict.exit_code == 1 and f"{sound}:1: sound: unique: gap " in strict.output
    assert "< 2000: two solutions" in strict.output


def test_cli_missing_file_garbage_file_and_bad_options(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app(), ["puzzles", "audit", str(tmp_path / "nope.epd")])
    assert missing.exit_code == 2 and "nope.epd: no such file" in missing.output
    assert isinstance(missing.exception, SystemExit)  # a clean exit, no traceback
    garbage = tmp_path / "garbage.csv"
    garbage.write_text("PuzzleId,FEN,Moves\nzz,not a fen,e2e4\n\x00\x01\x02\n")
    result = runner.invoke(app(), ["puzzles", "audit", str(garbage)])
    assert result.exit_code == 2 and f"{garbage}:2: invalid puzzle row" in result.output
    assert "no usable puzzles" in result.output and "2 bad record(s) skipped" in result.output
    bad = runner.invoke(app(), ["puzzles", "audit", str(garbage), "--max-eval", "-1"])
    assert bad.exit_code == 2 and "max_eval must be ≥ 0" in bad.output


def test_cli_without_stockfish_exits_2_with_one_clear_line(tmp_path: Path) -> None:
    sound = _epd(tmp_path / "sound.epd", [f'{SOUND} bm g5; id "sound";'])
    result = CliRunner().invoke(app(), ["puzzles", "audit", str(sound), "--stockfish", "/nonexistent"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    (line,) = [x for x in result.output.splitlines() if x.strip()]
    assert line.startswith("error: Stockfish not found at '/nonexistent'")
    assert "apt-get install stockfish" in line and "--stockfish PATH" in line
