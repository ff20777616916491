"""Puzzle-set loading and validation, concept assignment, session plans and server-side move parsing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import chess
import pytest

from alphazero_concepts.core.puzzleset import SCHEMA, PuzzleSetError, load_puzzle_set, parse_puzzle_set
from alphazero_concepts.study.demo import demo_puzzle_set
from alphazero_concepts.study.protocol import (
    AssignmentError,
    choose_assignment,
    complement,
    explicit_assignment,
    plan_session,
    random_assignment,
)
from alphazero_concepts.study.session import StudyError, parse_move

pytestmark = pytest.mark.unit

SCHOLAR = "r1bqkb1r/pppp1ppp/2n2n2/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4"


def tiny_set() -> dict:
    """Two concepts, one train and one test puzzle each, all hand-checked."""
    return {"schema": SCHEMA, "name": "tiny", "model": {"sha256": "abc"}, "puzzles": [
        {"id": "mate", "fen": SCHOLAR, "solution": ["c4f7"], "line": ["c4f7", "e8e7", "h5e5"], "concept": "c1",
         "concept_label": "Concept one", "split": "train", "rating": 1500, "themes": ["mate"], "extra": 1},
        {"id": "open", "fen": chess.STARTING_FEN, "solution": ["e2e4"], "line": ["e2e4", "e7e5", "g1f3"],
         "concept": "c1", "split": "test", "rating": None},
        {"id": "k1", "fen": chess.STARTING_FEN, "solution": ["g1f3"], "line": ["g1f3", "d7d5", "d2d4"],
         "concept": "c2", "split": "train"},
        {"id": "k2", "fen": chess.STARTING_FEN, "solution": ["d2d4"], "line": ["d2d4", "d7d5", "c2c4", "e7e6"],
         "concept": "c2", "split": "test"},
    ]}


def test_valid_set_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "set.json"
    path.write_text(json.dumps(tiny_set()))
    ps = load_puzzle_set(path)
    assert ps.name == "tiny" and len(ps.puzzles) == 4 and ps.model == {"sha256": "abc"}
    assert ps.concepts() == {"c1": "Concept one", "c2": "c2"}  # the label defaults to the id
    assert ps.counts() == {"c1": {"train": 1, "test": 1}, "c2": {"train": 1, "test": 1}}
    mate = ps.by_id()["mate"]
    assert mate.answer == "c4f7" and mate.themes == ("mate",) and mate.rating == 1500
    assert ps.by_id()["open"].themes == ()
    # The round trip is stable (this is what a study stores).
    assert parse_puzzle_set(ps.to_dict()).to_dict() == ps.to_dict()


@pytest.mark.parametrize(("mutate", "where", "words"), [
    (lambda d: d.update(schema="other/1"), "schema", "expected"),
    (lambda d: d.update(name=""), "name", "non-empty"),
    (lambda d: d.update(puzzles=[]), "puzzles", "non-empty list"),
    (lambda d: d["puzzles"][2].update(fen="not a fen"), "puzzles[2].fen", "invalid FEN"),
    (lambda d: d["puzzles"][1].update(fen="8/8/8/8/8/8/8/8 w - - 0 1"), "puzzles[1].fen", "impossible"),
    (lambda d: d["puzzles"][1].update(solution=["e2e5"]), "puzzles[1].solution[0]", "illegal move"),
    (lambda d: d["puzzles"][1].update(solution=[]), "puzzles[1].solution", "at least 1"),
    (lambda d: d["puzzles"][0].update(line=["c4f7", "e8e7"]), "puzzles[0].line", "at least 3"),
    (lambda d: d["puzzles"][0].update(line=["c4f7", "e8e7", "zz"]), "puzzles[0].line[2]", "not a UCI move"),
    (lambda d: d["puzzles"][3].update(line=["e2e4", "d7d5", "c2c4"]), "puzzles[3].line[0]", "must start"),
    (lambda d: d["puzzles"][3].update(split="dev"), "puzzles[3].split", "'train' or 'test'"),
    (lambda d: d["puzzles"][3].update(rating=True), "puzzles[3].rating", "integer"),
    (lambda d: d["puzzles"][3].update(themes="x"), "puzzles[3].themes", "list of strings"),
    (lambda d: d["puzzles"][3].update(id="k1"), "puzzles[3].id", "duplicate id 'k1'"),
    (lambda d: d["puzzles"][3].pop("concept"), "puzzles[3].concept", "missing"),
])
def test_errors_name_the_source_index_and_field(mutate, where, words) -> None:
    data = tiny_set()
    mutate(data)
    with pytest.raises(PuzzleSetError) as err:
        parse_puzzle_set(data, source="set.json")
    message = str(err.value)
    assert message.startswith(f"set.json: {where}:"), message
    assert words in message


def test_game_over_position_is_refused() -> None:
    data = tiny_set()
    mated = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"
    data["puzzles"][1]["fen"] = mated
    with pytest.raises(PuzzleSetError, match=r"puzzles\[1\]\.fen: the game is already over"):
        parse_puzzle_set(data)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PuzzleSetError, match="cannot read"):
        load_puzzle_set(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": ')
    with pytest.raises(PuzzleSetError, match=r"bad\.json: not valid JSON \(line 1"):
        load_puzzle_set(bad)


def test_demo_set_is_valid_and_seeded() -> None:
    a, b = demo_puzzle_set(3, 2, 2, seed=5), demo_puzzle_set(3, 2, 2, seed=5)
    assert a == b and a != demo_puzzle_set(3, 2, 2, seed=6)
    ps = parse_puzzle_set(a)
    assert ps.counts() == {f"demo-{i}": {"train": 2, "test": 2} for i in range(3)}


# -- assignment and plans ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def six():
    return parse_puzzle_set(demo_puzzle_set(6, 2, 3, seed=1))


def test_random_assignment_is_seeded_disjoint_and_complete(six) -> None:
    a = random_assignment(six, seed=42)
    assert a == random_assignment(six, seed=42) and a.seed == 42
    assert len(a.taught) == 3 and len(a.control) == 3 and not set(a.taught) & set(a.control)
    assert set(a.taught) | set(a.control) == set(six.concepts())
    draws = {random_assignment(six, seed=s).taught for s in range(20)}
    assert len(draws) > 5  # the seed matters
    small = random_assignment(six, n_taught=2, n_control=1, seed=1)
    assert len(small.taught) == 2 and len(small.control) == 1
    with pytest.raises(AssignmentError, match="cannot pick"):
        random_assignment(six, n_taught=5, n_control=2, seed=1)


def test_explicit_assignment_is_checked(six) -> None:
    assert explicit_assignment(six, ["demo-0"], ["demo-1"]).taught == ("demo-0",)
    with pytest.raises(AssignmentError, match="both taught and control"):
        explicit_assignment(six, ["demo-0"], ["demo-0"])
    with pytest.raises(AssignmentError, match="unknown taught concept 'nope'"):
        explicit_assignment(six, ["nope"], [])
    with pytest.raises(AssignmentError, match="at least one taught"):
        explicit_assignment(six, [], ["demo-1"])
    no_train = parse_puzzle_set({**tiny_set(), "puzzles": [p for p in tiny_set()["puzzles"] if p["id"] != "k1"]})
    with pytest.raises(AssignmentError, match="'c2' has no train puzzles"):
        explicit_assignment(no_train, ["c2"], ["c1"])


def test_balanced_mode_mirrors_every_second_participant(six) -> None:
    first = choose_assignment(six, "balanced", seed=3)
    second = choose_assignment(six, "balanced", previous=[first], seed=4)
    assert second.taught == first.control and second.control == first.taught
    third = choose_assignment(six, "balanced", previous=[first, second], seed=5)
    assert third == random_assignment(six, seed=5)
    assert complement(six, second) == first  # mirroring twice gives the original (the seed is the pair's)


def test_plan_follows_the_protocol(six) -> None:
    a = explicit_assignment(six, ["demo-0", "demo-1"], ["demo-2", "demo-3"])
    plan = plan_session(six, a, seed=9)
    by_id = six.by_id()
    assert plan.phases[2] == plan.phases[1]
    assert sorted(plan.phases[1]) == sorted(p.id for p in six.puzzles
                                            if p.concept in ("demo-0", "demo-1") and p.split == "train")
    assert sorted(plan.phases[3]) == sorted(p.id for p in six.puzzles
                                            if p.concept in ("demo-0", "demo-1", "demo-2", "demo-3")
                                            and p.split == "test")
    # Control concepts never appear in phases 1-2 (their lines are never shown).
    assert all(by_id[i].concept in a.taught for i in plan.phases[1])
    # Phase 3 is mixed, not blocked by condition, and the order depends on the seed only.
    assert plan == plan_session(six, a, seed=9)
    orders = {plan_session(six, a, seed=s).phases[3] for s in range(10)}
    assert len(orders) == 10


# -- server-side move parsing --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fen", "text", "uci"), [
    (chess.STARTING_FEN, "e2e4", "e2e4"),
    (chess.STARTING_FEN, "E2E4", "e2e4"),
    (chess.STARTING_FEN, "Nf3", "g1f3"),
    (chess.STARTING_FEN, " e4 ", "e2e4"),
    ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "O-O", "e1g1"),
    ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "0-0-0", "e1c1"),
    ("8/4P3/8/8/8/8/k7/7K w - - 0 1", "e8=N", "e7e8n"),
    ("8/4P3/8/8/8/8/k7/7K w - - 0 1", "e7e8q", "e7e8q"),
    (SCHOLAR, "Qxf7#", "h5f7"),
])
def test_parse_move_accepts_uci_and_san(fen, text, uci) -> None:
    assert parse_move(chess.Board(fen), text).uci() == uci


@pytest.mark.parametrize(("fen", "text", "words"), [
    (chess.STARTING_FEN, "", "no move given"),
    (chess.STARTING_FEN, "e2e5", "not a legal move in this position (White to move)"),
    (chess.STARTING_FEN, "Nf6", "not a legal move"),
    (chess.STARTING_FEN, "hello", "is not a move"),
    (chess.STARTING_FEN, "x" * 40, "too long"),
    (chess.STARTING_FEN, "0000", "null move"),
    ("4k3/8/8/8/8/8/8/1N1K1N2 w - - 0 1", "Nd2", "ambiguous"),
    ("8/4P3/8/8/8/8/k7/7K w - - 0 1", "e7e8", "not a legal move"),
])
def test_parse_move_refuses_with_a_clear_422(fen, text, words) -> None:
    board = chess.Board(fen)
    before = copy.deepcopy(board)
    with pytest.raises(StudyError) as err:
        parse_move(board, text)
    assert err.value.status == 422 and words in err.value.message
    assert board == before and board.move_stack == before.move_stack
