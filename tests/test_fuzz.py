"""Property-based fuzzing of every reader of outside input, and of the UCI command loop (issue 23).

The property: any byte string in → records out, or the reader's documented error type, never another exception.

    PGN / EPD / FEN list / Lichess CSV (chess/positions.py)   → positions, or InputError
    JSON lines of the stages (read_jsonl with the roots and rollouts parsers, filters' load_concepts)
                                                              → records, or InputError
    pipeline config (pipeline.load_config)                    → PipelineConfig, or PipelineError
    puzzle book JSON (puzzles/book.py load_book)              → PuzzleBook, or PuzzleSetError
    engine-games files (training/engine_data.py)              → games, or InputError
    UCI command loop (play/uci.py UciEngine.handle)           → never raises; errors are `info string` lines

Inputs mix raw bytes with text built from each format's own fragments (headers, FENs, moves, JSON keys,
separators, NUL and invalid UTF-8), so that the fuzzer gets past the first byte of each parser. Runs are
reproducible (`derandomize=True`); the example count per target is `AZC_FUZZ_EXAMPLES` (default below, sized for
about a minute in all on a busy 2-core machine), e.g. ``AZC_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py`` for a
long run.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import chess
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphazero_concepts.chess.positions import (
    InputError,
    ReadReport,
    read_epd,
    read_fens,
    read_jsonl,
    read_lichess_puzzles,
    read_pgn_games,
    read_pgn_positions,
)

EXAMPLES = int(os.environ.get("AZC_FUZZ_EXAMPLES", "300"))
FUZZ = settings(derandomize=True, max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

START = chess.STARTING_FEN
AFTER_E4 = "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1"
IMPOSSIBLE = "4k3/8/8/8/8/8/4Q3/4K3 w - - 0 1"
ODD = ["\x00", "\ufeff", "\r\n", "\t", "\u2028", "é", "🙂", "\\", '"', "'", "{", "}", "[", "]", "(", ")", ";", ","]
BAD_BYTES = [b"\xff", b"\xfe", b"\x80", b"\xc3(", b"\xed\xa0\x80", b"\x00"]


def texts(fragments: Sequence[str], max_size: int = 40) -> st.SearchStrategy[bytes]:
    """Byte strings made of the format's fragments, odd characters, invalid UTF-8 and random text."""
    piece = st.one_of(st.sampled_from(list(fragments)), st.sampled_from(ODD), st.text(max_size=12),
                      st.integers(-10**9, 10**9).map(str))
    as_bytes = piece.map(lambda s: s.encode("utf-8", "surrogatepass"))
    chunk = st.one_of(as_bytes, as_bytes, as_bytes, st.sampled_from(BAD_BYTES))
    return st.lists(chunk, max_size=max_size).map(b"".join)


def inputs(fragments: Sequence[str]) -> st.SearchStrategy[bytes]:
    return st.one_of(texts(fragments), st.binary(max_size=600))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def _drain(reader: Callable[..., Iterator], path: Path, **kw) -> None:  # type: ignore[type-arg]
    """Read everything, non-strict (bad records skipped into the report) and strict (InputError at the first)."""
    report = ReadReport(str(path))
    records = list(reader(path, report=report, **kw))
    assert report.read == len(records) or reader is read_pgn_positions
    try:
        list(reader(path, strict=True, **kw))
    except InputError as exc:
        assert str(exc).startswith(str(path))


# ---------------------------------------------------------------------------------------------------------------
# Position readers

PGN_FRAGMENTS = ['[Event "x"]\n', '[Result "1-0"]\n', '[FEN "', AFTER_E4, IMPOSSIBLE, '"]\n', '[SetUp "1"]\n',
                 '[Variant "Chess960"]\n', '[WhiteElo "x"]\n', "\n\n", "1.", "1...", " e4 ", " e5 ", " Nf3 ", " O-O ",
                 " Qxh7# ", " e8=Q ", " -- ", " Z0 ", " 1-0", " 0-1", " 1/2-1/2", " *", " {comment} ", " (1. d4) ",
                 " $1 ", "%escape\n", ";rest of line\n", " 9999. "]
EPD_FRAGMENTS = [AFTER_E4.rsplit(" ", 2)[0], IMPOSSIBLE.rsplit(" ", 2)[0], START, " bm ", " am ", " id ", " c0 ",
                 " pv ", " e5", " Nf6", "e5=10, d5=5", ";", '"STS.1"', "\n", "#", " hmvc 3;", " fmvn 1;"]
FEN_FRAGMENTS = [AFTER_E4, IMPOSSIBLE, START, "8/8/8/8/8/8/8/8 w - - 0 1", "\n", "#", " w ", " b ", " KQkq ", " - ",
                 " 0 1", "rnbqkbnr/", "pppppppp/", "8/", "9/", "K7/"]
CSV_FRAGMENTS = ["PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,OpeningTags\n",
                 "00001,", AFTER_E4, IMPOSSIBLE, ",", "e7e5 g1f3", "e7e5", "a1a1", "e7e9", ",1500,80,90,100,",
                 "\n", '"', '""', "FEN,Moves\n"]


@FUZZ
@given(data=inputs(PGN_FRAGMENTS))
def test_pgn_reader(scratch: Path, data: bytes) -> None:
    path = _write(scratch, "f.pgn", data)
    _drain(read_pgn_games, path, max_games=50)
    _drain(read_pgn_positions, path, max_games=50)


@FUZZ
@given(data=inputs(EPD_FRAGMENTS))
def test_epd_reader(scratch: Path, data: bytes) -> None:
    _drain(read_epd, _write(scratch, "f.epd", data))


@FUZZ
@given(data=inputs(FEN_FRAGMENTS))
def test_fen_reader(scratch: Path, data: bytes) -> None:
    _drain(read_fens, _write(scratch, "f.fen", data))


@FUZZ
@given(data=inputs(CSV_FRAGMENTS))
def test_lichess_csv_reader(scratch: Path, data: bytes) -> None:
    path = _write(scratch, "f.csv", data)
    report = ReadReport(str(path))
    try:  # a header without FEN/Moves raises InputError whatever `strict` says (documented)
        list(read_lichess_puzzles(path, report=report))
    except InputError as exc:
        assert str(exc).startswith(str(path))
    try:
        list(read_lichess_puzzles(path, strict=True))
    except InputError as exc:
        assert str(exc).startswith(str(path))


# ---------------------------------------------------------------------------------------------------------------
# JSON lines of the stages

JSON_FRAGMENTS = ["{", "}", "[", "]", ",", ":", '"start_fen"', '"fen"', '"moves"', '"history"', '"chosen"',
                  '"subpar"', '"steps"', '"move"', '"branch"', '"root_index"', '"id"', '"layer"', '"value"',
                  f'"{START}"', f'"{AFTER_E4}"', f'"{IMPOSSIBLE}"', '"e2e4"', '"e7e5"', '"a1a8"', "null", "true",
                  "1e999", "NaN", "-0", "\n", '{"start_fen": "' + START + '", "moves": ["e2e4"]}\n']


@st.composite
def roots_lines(draw: st.DrawFn) -> bytes:
    record = {"start_fen": draw(st.sampled_from([START, AFTER_E4, IMPOSSIBLE, "x", 5, None])),
              "moves": draw(st.one_of(st.lists(st.sampled_from(["e2e4", "e7e5", "g1f3", "zz", 3]), max_size=4),
                                      st.sampled_from(["e2e4", None, 7])))}
    return json.dumps(record).encode()


@st.composite
def rollout_lines(draw: st.DrawFn) -> bytes:
    def line() -> dict:
        moves = draw(st.lists(st.sampled_from(["e2e4", "e7e5", "d2d4", "zz", None, 4]), max_size=3))
        steps = [{"fen": START, "value": 0.0, "move": m} for m in moves] + [{"fen": START, "value": 0.0}]
        if draw(st.booleans()):
            steps.append({"bogus": 1})
        return {"steps": steps, "branch": draw(st.sampled_from([None, 0, "1", 1.5, True]))}

    record = {"start_fen": draw(st.sampled_from([START, IMPOSSIBLE, 3])),
              "history": draw(st.sampled_from([[], ["e2e4"], "e2e4", None])), "chosen": line(),
              "subpar": [line() for _ in range(draw(st.integers(0, 2)))],
              "root_index": draw(st.sampled_from([0, "0", None]))}
    return json.dumps(record).encode()


@st.composite
def jsonl_inputs(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.one_of(texts(JSON_FRAGMENTS, 12), roots_lines(), rollout_lines()), max_size=6))
    return b"\n".join(lines)


def _parsers() -> dict[str, Callable[[dict], object]]:
    from alphazero_concepts.commandline import checked_rollout, root_board

    return {"roots": root_board, "rollouts": checked_rollout}


@FUZZ
@given(data=st.one_of(jsonl_inputs(), st.binary(max_size=600)))
def test_jsonl_readers(scratch: Path, data: bytes) -> None:
    path = _write(scratch, "f.jsonl", data)
    for parse in _parsers().values():
        report = ReadReport(str(path))
        items = list(read_jsonl(path, parse, report=report))
        assert len(items) == report.read
        assert all(str(e).startswith(f"{path}:") for e in report.errors)


@FUZZ
@given(concepts=st.one_of(texts(JSON_FRAGMENTS, 30), st.binary(max_size=400)),
       vectors=st.one_of(st.just(None), st.binary(max_size=64)))
def test_concept_run_reader(scratch: Path, concepts: bytes, vectors: bytes | None) -> None:
    from alphazero_concepts.concepts.conceptset import ConceptSet

    run = scratch / "run"
    run.mkdir(exist_ok=True)
    _write(run, "concepts.jsonl", concepts)
    npz = run / "vectors.npz"
    if vectors is None:
        np.savez(npz, **{"block1/root00000": np.ones(4, np.float32)})
    else:
        npz.write_bytes(vectors)
    report = ReadReport(str(run))
    entries = ConceptSet.load(run, report=report)
    assert len(entries) == report.read


# ---------------------------------------------------------------------------------------------------------------
# Pipeline config (TOML)

TOML_FRAGMENTS = ["[run]\n", "[roots]\n", "[rollouts]\n", "[mine]\n", "[teachability]\n", "[novelty]\n",
                  "[filters]\n", "[puzzles]\n", "[report]\n", "[[roots]]\n", "[bogus]\n", "games = ", "layers = ",
                  "seed = ", "threads = ", "max_games = ", "formats = ", "human = ", "order = ", "kept_rule = ",
                  "engine_scope = ", "temperature = ", "min_q_gap = ", "rank_rtol = ", "title = ", "model = ",
                  "-5", "0", "4", "1.5", "nan", "inf", "1e400", "true", '"block3"', '["block1"]', '["pgn", 3]', "[]",
                  "{a = 1}", '"passing"', '"funnel"', '"x"', "1979-05-27", "\n", "=", '"""', "'''", "#"]


@FUZZ
@given(data=inputs(TOML_FRAGMENTS))
def test_pipeline_config_reader(scratch: Path, data: bytes) -> None:
    from alphazero_concepts.stages.config import PipelineConfig, PipelineError, load_config

    path = _write(scratch, "c.toml", data)
    try:
        config = load_config(path)
    except PipelineError as exc:
        assert str(exc).startswith(str(path))
        return
    assert isinstance(config, PipelineConfig)
    assert all(isinstance(layer, str) for layer in config.mine.layers) and config.roots.games >= 1


# ---------------------------------------------------------------------------------------------------------------
# Puzzle book (JSON)


def _puzzle_record(draw: st.DrawFn) -> dict:
    value = st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=6), st.lists(st.text(max_size=5), max_size=3))
    record = {"id": draw(st.one_of(st.text(max_size=8), value)),
              "fen": draw(st.sampled_from([AFTER_E4, START, IMPOSSIBLE, "x", 3])),
              "solution": draw(st.sampled_from([["e7e5"], ["e2e4"], [], "e7e5", None, [5]])),
              "line": draw(st.sampled_from([["e7e5", "g1f3", "b8c6"], ["e7e5"], None, ["zz"]])),
              "concept": draw(st.sampled_from(["c1", "", None, 4])), "split": draw(st.sampled_from(["train", "x"])),
              "rating": draw(st.sampled_from([None, 1500, "1500", True]))}
    extra = draw(st.dictionaries(st.sampled_from(["themes", "novelty", "teachability", "layer", "visit_share",
                                                  "q_gap", "alternatives", "engine_disagrees", "line_san"]),
                                 value, max_size=3))
    return {**record, **extra}


@st.composite
def book_inputs(draw: st.DrawFn) -> bytes:
    data = {"schema": draw(st.sampled_from(["alphazero-concepts/puzzles/1", "other", 1])),
            "name": draw(st.sampled_from(["set", "", None])),
            "puzzles": [_puzzle_record(draw) for _ in range(draw(st.integers(0, 3)))]}
    text = json.dumps(data).encode()
    cut = draw(st.integers(0, len(text)))
    return text if draw(st.booleans()) else text[:cut]


@FUZZ
@given(data=st.one_of(book_inputs(), inputs(JSON_FRAGMENTS)))
def test_puzzle_book_reader(scratch: Path, data: bytes) -> None:
    from alphazero_concepts.core.puzzleset import PuzzleSetError
    from alphazero_concepts.puzzles.book import load_book

    path = _write(scratch, "p.json", data)
    try:
        load_book(path)
    except PuzzleSetError as exc:
        assert str(exc).startswith(str(path))


# ---------------------------------------------------------------------------------------------------------------
# Engine-games files (gzip JSON lines)


@st.composite
def engine_game_inputs(draw: st.DrawFn) -> bytes:
    def ply() -> dict:
        return {"pv": draw(st.sampled_from([[["e2e4", {"cp": 30}]], [["e7e5", {"mate": -3}]], [], [["zz", {}]],
                                            [["e2e4", 5]], "x"])),
                "wdl": draw(st.sampled_from([[500, 400, 100], None, [1, 2], "x"])),
                "move": draw(st.sampled_from(["e2e4", "e7e5", "g1f3", "a1a8", 3]))}

    game = {"game": draw(st.sampled_from([0, "x", None])), "result": draw(st.sampled_from(["1-0", "0-1", "*", 2])),
            "plies": [ply() for _ in range(draw(st.integers(0, 4)))]}
    if draw(st.booleans()):
        game["start_fen"] = draw(st.sampled_from([START, IMPOSSIBLE, "x"]))
    text = json.dumps(game).encode() + b"\n"
    text += draw(texts(JSON_FRAGMENTS, 8))
    packed = gzip.compress(text) if draw(st.booleans()) else text
    return packed[: draw(st.integers(0, len(packed)))] if draw(st.booleans()) else packed


@FUZZ
@given(data=st.one_of(engine_game_inputs(), st.binary(max_size=600)))
def test_engine_games_reader(scratch: Path, data: bytes) -> None:
    from alphazero_concepts.training.engine_data import load_file_labels, read_engine_games

    path = _write(scratch, "g.jsonl.gz", data)
    report = ReadReport(str(path))
    games = list(read_engine_games(path, report))
    assert report.read == len(games)
    try:
        labels = load_file_labels(path)
    except InputError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert len(labels["pv_cp"]) > 0


# ---------------------------------------------------------------------------------------------------------------
# The UCI command loop

UCI_FRAGMENTS = ["uci", "isready", "ucinewgame", "position startpos", "position fen " + AFTER_E4,
                 "position fen " + IMPOSSIBLE, "position fen 8/8/8/8/8/8/8/8 w - - 0 1", " moves", " e2e4", " e7e5",
                 " e1g1", " a7a8q", " 0000", "go", " nodes 3", " nodes -1", " depth 2", " movetime 5", " wtime 40",
                 " btime 40", " winc x", " movestogo 0", " searchmoves e2e4 zz", " infinite", " ponder", "stop",
                 "ponderhit", "setoption name", " MultiPV value 3", " UCI_ShowWDL value maybe", " Temperature value -1",
                 " Temperature value nan", " MoveOverhead value 99999999", " Bogus value 1", " Concept value x",
                 " ConceptRun value /nonexistent", " MinibatchSize value 0", "debug on", "register later", "quit"]


class _Uniform:
    """Uniform priors and a value of 0: searches are instant."""

    def evaluate(self, arrays, legal):  # type: ignore[no-untyped-def]
        return [np.full(len(i), 1.0 / max(1, len(i))) for i in legal], np.zeros(len(legal))


@st.composite
def uci_sessions(draw: st.DrawFn) -> list[bytes]:
    line = st.one_of(st.lists(st.sampled_from(UCI_FRAGMENTS), min_size=1, max_size=5).map(lambda p: "".join(p)
                                                                                         .encode()),
                     texts(UCI_FRAGMENTS, 6), st.binary(max_size=40))
    return draw(st.lists(line, max_size=12))


@FUZZ
@given(session=uci_sessions())
def test_uci_command_loop(session: list[bytes]) -> None:
    import torch

    from alphazero_concepts.play.uci import UciEngine

    out: list[str] = []
    engine = UciEngine(out.append, evaluator=_Uniform(), options={"Simulations": 8})
    threads = torch.get_num_threads()
    try:
        for raw in session:
            for piece in raw.split(b"\n"):
                text = piece.decode("utf-8", errors="replace")  # what `serve` does with each stdin line
                if text.split()[:1] == ["quit"]:
                    engine.handle(text)
                    break
                assert engine.handle(text) in (True, False)  # never raises
                engine.stop_search()  # as a GUI would (sessions stay short)
        engine.finish_search()
    finally:
        engine.stop_search()
        torch.set_num_threads(threads)
    assert all(isinstance(x, str) and "\n" not in x and "Traceback" not in x for x in out)
    assert all(not x.startswith("info string error:") or len(x) < 2000 for x in out)


def test_settings_are_reproducible() -> None:
    """The fuzz runs are derandomized with a fixed example count (AZC_FUZZ_EXAMPLES for a longer run)."""
    assert FUZZ.derandomize and FUZZ.max_examples == EXAMPLES
    targets = [name for name in globals() if name.startswith("test_") and name != "test_settings_are_reproducible"]
    print(f"\nfuzz: {EXAMPLES} examples per target, {len(targets)} targets")
