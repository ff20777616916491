"""Puzzle candidates, checks and exports: hand-made positions with known answers, crafted search results and
engine verdicts, tiny networks for the search and the CLI, and round trips through python-chess."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import chess
import chess.pgn
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from alphazero_concepts.chess.positions import LICHESS_COLUMNS, ReadReport, read_lichess_puzzles
from alphazero_concepts.core.puzzleset import load_puzzle_set
from alphazero_concepts.nn.checkpoints import CheckpointMeta, save_checkpoint
from alphazero_concepts.nn.network import AZNet, NetConfig
from alphazero_concepts.puzzles import export as export_mod
from alphazero_concepts.puzzles.book import ConceptPuzzle, PuzzleBook, load_book, make_book, make_puzzles
from alphazero_concepts.puzzles.candidates import (
    Candidate,
    ConceptPrototypes,
    PlannedPosition,
    PrototypePosition,
    SolveConfig,
    candidate_from_result,
    plan_positions,
    position_key,
    read_prototypes,
    solve,
)
from alphazero_concepts.puzzles.checks import (
    PuzzleChecks,
    check_engine,
    check_only_move,
    check_unique,
    human_policy_probs,
    needs_engine,
    run_checks,
)
from alphazero_concepts.puzzles.engine import EngineUnavailable, EngineVerdict, find_stockfish, win_chances
from alphazero_concepts.puzzles.rating import estimate_rating
from alphazero_concepts.search.mcts import MCTS, NetEvaluator, SearchResult

pytestmark = pytest.mark.unit

SCHOLAR = "r1bqkb1r/pppp1ppp/2n2n2/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4"  # Qxf7# is mate in one
ITALIAN = "r1bqkbnr/pppp1ppp/2n5/4p3/2B1P3/5N2/PPPP1PPP/RNBQK2R b KQkq - 3 3"
ONLY_MOVE = "k7/8/8/8/8/8/1r6/K7 w - - 0 1"  # Kxb2 is the only legal move
RECAPTURE_HISTORY = ("e2e4", "d7d5", "e4d5", "g8f6", "c2c4", "f6d5")  # white to move: c4xd5 recaptures
NO_CHECKS = PuzzleChecks(engine=False, min_visit_share=0.0, min_q_gap=-2.0, trivial=(), min_puzzles_per_concept=1)


def stockfish_path() -> str | None:
    try:
        return find_stockfish()
    except EngineUnavailable:
        return None


needs_stockfish = pytest.mark.skipif(stockfish_path() is None,
                                     reason="Stockfish not installed (apt-get install stockfish)")


def tiny_net(seed: int = 0) -> AZNet:
    torch.manual_seed(seed)
    return AZNet(NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)).eval()


def concept(cid: str = "c1", positions: tuple[PrototypePosition, ...] = (), **kw) -> ConceptPrototypes:
    return ConceptPrototypes(cid, kw.get("label", f"Concept {cid}"), kw.get("layer", "block3"),
                             kw.get("novelty", 0.25), kw.get("teachability", 0.125), positions)


def crafted(board: chess.Board, stats: list[tuple[str, int, float, float]], pv: list[str]) -> SearchResult:
    """A search result with the given (uci, visits, q, prior) per move; the other legal moves unvisited."""
    moves = list(board.legal_moves)
    visits = np.zeros(len(moves), dtype=int)
    q = np.full(len(moves), np.nan)
    priors = np.full(len(moves), 0.001)
    for uci, n, value, prior in stats:
        i = moves.index(chess.Move.from_uci(uci))
        visits[i], q[i], priors[i] = n, value, prior
    return SearchResult(board, moves, visits, q, priors, 0.1, 0.0, [chess.Move.from_uci(u) for u in pv], None)


def make_candidate(fen: str, stats: list[tuple[str, int, float, float]], pv: list[str], *, cid: str = "c1",
                   split: str = "train", history: tuple[str, str, tuple[str, ...]] | None = None) -> Candidate:
    """A candidate from a crafted search; `history` = (start_fen, fen, moves) when the last move is known."""
    if history is not None:
        start, fen, moves = history
        pos = PrototypePosition(fen, split, start, moves)
    else:
        pos = PrototypePosition(chess.Board(fen).fen(), split)
    board = pos.board()
    planned = PlannedPosition(f"{cid}-{position_key(board)[:20]}-{split}", concept(cid), pos)
    return candidate_from_result(planned, crafted(board, stats, pv), SolveConfig())


def clear_candidate(fen: str = ITALIAN, *, cid: str = "c1", split: str = "train") -> Candidate:
    """One clearly best move (80% of visits, Q gap 0.3) with a legal 3-ply line."""
    board = chess.Board(fen)
    line = []
    b = board.copy()
    for _ in range(3):
        move = sorted(b.legal_moves, key=lambda m: m.uci())[0]
        line.append(move.uci())
        b.push(move)
    other = next(m.uci() for m in sorted(board.legal_moves, key=lambda m: m.uci()) if m.uci() != line[0])
    return make_candidate(fen, [(line[0], 80, 0.4, 0.3), (other, 20, 0.1, 0.2)], line, cid=cid, split=split)


def positions_of(n: int, seed: int) -> list[chess.Board]:
    """`n` distinct positions from seeded random games (with their move stacks)."""
    rng = np.random.default_rng(seed)
    out: list[chess.Board] = []
    keys = set()
    while len(out) < n:
        b = chess.Board()
        for _ in range(int(rng.integers(6, 16))):
            moves = sorted(b.legal_moves, key=lambda m: m.uci())
            b.push(moves[int(rng.integers(len(moves)))])
        if not b.is_game_over() and position_key(b) not in keys:
            keys.add(position_key(b))
            out.append(b)
    return out


def proto_from(board: chess.Board, split: str) -> PrototypePosition:
    return PrototypePosition(board.fen(), split, chess.STARTING_FEN, tuple(m.uci() for m in board.move_stack))


# ---------------------------------------------------------------------------------------------------------------
# Input


def test_read_prototypes_keeps_good_records_and_names_bad_ones(tmp_path: Path) -> None:
    board = chess.Board()
    for uci in ("e2e4", "e7e5", "g1f3"):
        board.push_uci(uci)
    good_pos = {"fen": board.fen(), "split": "train", "start_fen": chess.STARTING_FEN,
                "moves": ["e2e4", "e7e5", "g1f3"], "score": 2.5, "source": "selfplay"}
    lines = [
        json.dumps({"concept": "a", "label": "Alpha", "layer": "block2", "novelty": 0.1, "teachability": 0.2,
                    "positions": [good_pos, {"fen": "not a fen", "split": "train"},
                                  {"fen": chess.STARTING_FEN, "split": "test"}], "kind": "dynamic"}),
        "{broken json",
        json.dumps({"concept": "b", "positions": [good_pos]}),  # no layer
        json.dumps({"concept": "c", "layer": "block1", "kept": False, "positions": [good_pos]}),
        json.dumps({"concept": "a", "layer": "block1", "positions": [good_pos]}),  # duplicate id
        json.dumps({"concept": "d", "layer": "block1", "positions": [
            {**good_pos, "moves": ["e2e4", "e7e5"]}, {"fen": chess.STARTING_FEN, "split": "dev"}]}),
    ]
    path = tmp_path / "prototypes.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = ReadReport(str(path))
    concepts = read_prototypes(path, report=report)
    assert [c.concept for c in concepts] == ["a", "d"]
    a = concepts[0]
    assert (a.label, a.layer, a.novelty, a.teachability, a.extra) == ("Alpha", "block2", 0.1, 0.2, {"kind": "dynamic"})
    assert [p.split for p in a.positions] == ["train", "test"]
    assert a.positions[0].last_move == "g1f3" and a.positions[0].meta == {"source": "selfplay"}
    assert a.positions[0].prev_fen() == "rnbqkbnr/pppp1ppp/8/4p3/4P3/8/PPPP1PPP/RNBQKBNR w KQkq - 0 2"
    assert concepts[1].positions == ()  # both positions bad: the concept is kept, empty (it will be left out)
    assert report.read == 2 and report.filtered == 1 and report.skipped == 6
    messages = [str(e) for e in report.errors]
    assert messages[0].startswith(f"{path}:1: positions[1].fen: invalid FEN")
    assert any(m.startswith(f"{path}:2: not valid JSON") for m in messages)
    assert any(m.startswith(f"{path}:3: layer") for m in messages)
    assert any(m.startswith(f"{path}:5: concept: duplicate id 'a' (first on line 1)") for m in messages)
    assert any(m.startswith(f"{path}:6: positions[0].moves: the history replays to") for m in messages)
    assert any(m.startswith(f"{path}:6: positions[1].split") for m in messages)


def test_plan_dedupes_positions_across_concepts_and_drops_finished_games() -> None:
    fen = chess.Board(ITALIAN).fen()
    same_other_counters = " ".join(fen.split()[:4]) + " 0 9"
    mate = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"  # fool's mate: game over
    planned, rejected = plan_positions([
        concept("a", (PrototypePosition(fen, "train"), PrototypePosition(mate, "test"))),
        concept("b", (PrototypePosition(same_other_counters, "test"), PrototypePosition(SCHOLAR, "train"))),
    ])
    assert [(p.concept.concept, p.position.fen) for p in planned] == [("a", fen), ("b", SCHOLAR)]
    reasons = {r.concept: r.reasons[0] for r in rejected}
    assert reasons["a"].startswith("game over")
    assert reasons["b"] == f"dedupe: duplicate of {planned[0].id}"


# ---------------------------------------------------------------------------------------------------------------
# Checks on hand-made positions


def test_two_equal_moves_are_not_unique_and_a_clear_best_move_is() -> None:
    tie = make_candidate(ITALIAN, [("g8f6", 50, 0.2, 0.3), ("f8c5", 50, 0.2, 0.3)], ["g8f6", "d2d3", "f8c5"])
    result = check_unique(tie, PuzzleChecks())
    assert result.passed is False and "Q gap" in result.detail
    checks = run_checks(tie, PuzzleChecks(engine=False))
    assert checks["unique"].passed is False
    assert ConceptPuzzle(tie, checks).accepted is False

    clear = make_candidate(ITALIAN, [("g8f6", 700, 0.35, 0.3), ("f8c5", 100, 0.1, 0.3)], ["g8f6", "d2d3", "f8c5"])
    assert clear.answer == "g8f6" and clear.visit_share == pytest.approx(700 / 800)
    assert clear.q_gap == pytest.approx(0.25)
    assert check_unique(clear, PuzzleChecks()).passed is True
    assert check_unique(clear, PuzzleChecks(min_q_gap=0.3)).passed is False  # the threshold is a parameter
    assert all(c.passed is not False for c in run_checks(clear, PuzzleChecks(engine=False)).values())


def test_stockfish_is_asked_only_about_candidates_the_network_checks_pass() -> None:
    tie = make_candidate(ITALIAN, [("g8f6", 50, 0.2, 0.3), ("f8c5", 50, 0.2, 0.3)], ["g8f6", "d2d3", "f8c5"])
    clear = make_candidate(ITALIAN, [("g8f6", 700, 0.35, 0.3), ("f8c5", 100, 0.1, 0.3)], ["g8f6", "d2d3", "f8c5"])
    assert needs_engine(clear, PuzzleChecks()) and not needs_engine(tie, PuzzleChecks())
    assert needs_engine(tie, PuzzleChecks(engine_scope="all"))  # "all": every candidate gets a verdict
    assert not needs_engine(clear, PuzzleChecks(engine=False))
    assert "engine_scope 'passing'" in run_checks(tie, PuzzleChecks())["engine"].detail
    with pytest.raises(ValueError, match="engine_scope"):
        PuzzleChecks(engine_scope="some")


def test_shared_prototypes_go_to_the_concept_that_needs_them() -> None:
    boards = positions_of(4, seed=11)
    protos = [PrototypePosition(b.fen(), "train" if i % 2 == 0 else "test") for i, b in enumerate(boards)]
    wide = concept("wide", tuple(protos))  # all four positions
    narrow = concept("narrow", tuple(protos[:2]))  # two of them, shared with "wide"
    planned, rejected = plan_positions([wide, narrow])
    assert len(planned) == 4 and len(rejected) == 2  # each position searched once, under "wide"
    cands = []
    for pl in planned:
        move = sorted(pl.position.board().legal_moves, key=lambda m: m.uci())[0]
        probe = pl.position.board()
        line = []
        for _ in range(3):
            line.append(sorted(probe.legal_moves, key=lambda m: m.uci())[0].uci())
            probe.push_uci(line[-1])
        assert line[0] == move.uci()
        cands.append(candidate_from_result(pl, crafted(pl.position.board(), [(line[0], 90, 0.5, 0.5)], line),
                                           SolveConfig()))
    first = replace(NO_CHECKS, min_puzzles_per_concept=2, shared_positions="first")
    book, report = make_book(cands, first, concepts=[wide, narrow], rejected=rejected)
    assert [c["concept"] for c in book.concepts()] == ["wide"] and len(book.puzzles) == 4
    assert report.left_out[0]["concept"] == "narrow"
    balance = replace(first, shared_positions="balance")
    book, report = make_book(cands, balance, concepts=[wide, narrow], rejected=rejected)
    assert {c["concept"]: c["train"] + c["test"] for c in book.concepts()} == {"wide": 2, "narrow": 2}
    assert not report.left_out and len({p.id for p in book.puzzles}) == 4
    assert {p.candidate.fen for p in book.puzzles if p.candidate.concept == "narrow"} == {x.fen for x in protos[:2]}
    assert all(p.id.startswith("narrow-") for p in book.puzzles if p.candidate.concept == "narrow")
    dedupe = [r for r in report.rejected if r.reasons[0].startswith("dedupe")]
    assert len(dedupe) == 2 and all(r.concept == "wide" and "given to narrow" in r.reasons[0] for r in dedupe)


def test_mate_in_one_only_move_and_recapture_are_trivial() -> None:
    config = PuzzleChecks(engine=False)
    mate = make_candidate(SCHOLAR, [("h5f7", 90, 1.0, 0.5), ("c4f7", 10, 0.2, 0.1)], ["h5f7", "e8f7", "c4f7"])
    # the line need not be legal for the triviality check; a mate-in-one position is trivial whatever the answer
    assert run_checks(mate, config)["trivial"].value == ["mate_in_one"]

    board = chess.Board(ONLY_MOVE)
    assert [m.uci() for m in board.legal_moves] == ["a1b2"]
    only = make_candidate(ONLY_MOVE, [("a1b2", 100, 0.0, 1.0)], ["a1b2", "a8b7", "b2c3"])
    result = run_checks(only, config)["trivial"]
    assert result.passed is False and result.value == ["only_legal_move"]

    start = chess.STARTING_FEN
    b = chess.Board()
    for uci in RECAPTURE_HISTORY:
        b.push_uci(uci)
    hist = (start, b.fen(), RECAPTURE_HISTORY)
    recap = make_candidate(b.fen(), [("c4d5", 90, 0.3, 0.6), ("g1f3", 10, -0.1, 0.1)], ["c4d5", "d8d5", "b1c3"],
                           history=hist)
    assert recap.last_move == "f6d5" and recap.prev_fen is not None
    assert run_checks(recap, config)["trivial"].value == ["recapture"]
    quiet = make_candidate(b.fen(), [("g1f3", 90, 0.3, 0.6), ("c4d5", 10, -0.1, 0.1)], ["g1f3", "d5b4", "d2d4"],
                           history=hist)
    assert run_checks(quiet, config)["trivial"].passed is True
    assert run_checks(recap, PuzzleChecks(engine=False, trivial=("mate_in_one",)))["trivial"].passed is True


def test_machine_line_must_have_three_plies() -> None:
    short = make_candidate(ITALIAN, [("g8f6", 90, 0.4, 0.3), ("f8c5", 10, 0.0, 0.3)], ["g8f6", "d2d3"])
    assert run_checks(short, PuzzleChecks(engine=False))["line"].passed is False
    with pytest.raises(ValueError, match="min_line_plies"):
        PuzzleChecks(min_line_plies=2)


def test_engine_refutation_rejects_and_disagreement_is_flagged_or_rejected() -> None:
    cand = clear_candidate()
    answer = cand.answer
    refuted = EngineVerdict(16, "f8c5", 40, answer, -260, "g8f6", 30)
    assert refuted.cp_loss == 300 and refuted.disagrees
    assert check_engine(refuted, PuzzleChecks()).passed is False

    close = EngineVerdict(16, "f8c5", 40, answer, -10, None, None)
    lenient = PuzzleChecks(audit=False)  # the engine check alone: a 50 cp disagreement is flagged, not rejected
    flagged = ConceptPuzzle(cand, run_checks(cand, lenient, close), close)
    assert flagged.accepted and flagged.engine_disagrees is True and "engineDisagrees" in flagged.themes
    strict = run_checks(cand, PuzzleChecks(on_disagree="reject", audit=False), close)
    assert strict["engine"].passed is False and "prefers f8c5" in strict["engine"].detail

    agree = EngineVerdict(16, answer, 35, answer, 35, "f8c5", 20)
    kept = ConceptPuzzle(cand, run_checks(cand, PuzzleChecks(on_disagree="reject", audit=False), agree), agree)
    assert kept.accepted and kept.engine_disagrees is False
    assert check_engine(None, PuzzleChecks(engine=False)).passed is None  # not run: rejects nothing
    with pytest.raises(ValueError, match="verdict is for"):
        run_checks(cand, PuzzleChecks(), EngineVerdict(16, "f8c5", 0, "f8c5", 0))


def test_the_build_applies_the_audit_rules_by_default() -> None:
    """With the engine on, every puzzle must pass the grandmaster-grade rules (the same `rules.judge` as
    `azc puzzles audit`): a 50 cp worse answer, a decided position and a two-solution position are rejected with
    the rule and the numbers; a sound one passes."""
    cand = clear_candidate()
    answer = cand.answer
    cases = {
        "correct": EngineVerdict(18, "f8c5", 40, answer, -10, None, None),
        "undecided": EngineVerdict(18, answer, 420, answer, 420, "f8c5", 100),
        "unique": EngineVerdict(18, answer, 35, answer, 35, "f8c5", 20),
    }
    for rule, verdict in cases.items():
        audit = run_checks(cand, PuzzleChecks(), verdict)["audit"]
        assert audit.passed is False, audit.detail
        assert audit.detail.startswith(rule) or f"; {rule}:" in audit.detail, audit.detail
    sound = EngineVerdict(18, answer, 60, answer, 60, "f8c5", -40)
    checks = run_checks(cand, PuzzleChecks(), sound)
    assert checks["audit"].passed is True and ConceptPuzzle(cand, checks, sound).accepted
    assert run_checks(cand, PuzzleChecks(audit=False), cases["unique"])["audit"].passed is None
    assert PuzzleChecks().engine_depth >= 18


def test_lichess_only_move_rule() -> None:
    assert win_chances(0) == 0.0 and win_chances(10_000) == pytest.approx(1.0)
    config = PuzzleChecks(only_move_rule=True)
    only = EngineVerdict(16, "g8f6", 300, "g8f6", 300, "f8c5", 0)  # 0.537 − 0 > 0.5
    assert check_only_move(only, config).passed is True
    two_good = EngineVerdict(16, "g8f6", 300, "g8f6", 300, "f8c5", 100)
    assert check_only_move(two_good, config).passed is False
    not_best = EngineVerdict(16, "f8c5", 900, "g8f6", 300, "g8f6", 300)  # the answer is not Stockfish's best
    assert check_only_move(not_best, config).passed is False
    assert check_only_move(only, PuzzleChecks()).passed is None  # off by default
    with pytest.raises(ValueError, match="engine"):
        PuzzleChecks(only_move_rule=True, engine=False)


@pytest.mark.needs_engine
@needs_stockfish
def test_stockfish_refutes_a_queen_blunder() -> None:
    from alphazero_concepts.puzzles.engine import StockfishAnalyser

    fen = "r1bqkbnr/pppp1ppp/2n5/4p2Q/4P3/8/PPPP1PPP/RNB1KBNR w KQkq - 2 3"  # Qxe5+?? Nxe5
    blunder = make_candidate(fen, [("h5e5", 90, 0.5, 0.3), ("f1c4", 10, 0.1, 0.2)], ["h5e5", "c6e5", "d2d4"])
    with StockfishAnalyser(depth=10) as sf:
        verdict = sf.verdict(blunder.board(), chess.Move.from_uci(blunder.answer))
        assert verdict.disagrees and verdict.cp_loss > 500 and verdict.answer == "h5e5"
        for action in ("flag", "reject"):
            assert run_checks(blunder, PuzzleChecks(on_disagree=action), verdict)["engine"].passed is False
        # winning a free queen: Stockfish agrees, no disagreement flagged
        free = "rnb1kbnr/pppp1ppp/8/4p3/4P2q/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3"
        good = make_candidate(free, [("f3h4", 90, 0.8, 0.3), ("d1e2", 10, 0.1, 0.2)], ["f3h4", "d7d6", "d2d4"])
        v2 = sf.verdict(good.board(), chess.Move.from_uci("f3h4"))
    assert v2.cp_loss <= 150
    puzzle = ConceptPuzzle(good, run_checks(good, PuzzleChecks(), v2), v2)
    assert puzzle.checks["engine"].passed is True


def test_human_policy_prob_is_the_human_model_policy() -> None:
    net = tiny_net(3)
    board = chess.Board(ITALIAN)
    moves = list(board.legal_moves)
    probs = human_policy_probs(net, [board] * len(moves), moves)
    assert sum(probs) == pytest.approx(1.0, abs=1e-5) and all(0 < p < 1 for p in probs)
    assert estimate_rating(0.5) < estimate_rating(0.1) == 1500 < estimate_rating(0.01)
    cand = clear_candidate()
    book, _ = make_book([cand], NO_CHECKS, human_probs={cand.id: 0.001})
    puzzle = book.puzzles[0]
    assert puzzle.human_policy_prob == 0.001 and puzzle.rating == estimate_rating(0.001)
    assert puzzle.rating_source == "human_policy_prob" and "machineOnly" in puzzle.themes


def test_too_few_puzzles_leave_the_concept_out_with_the_reason() -> None:
    fens = [b.fen() for b in positions_of(8, seed=1)]
    cands = [clear_candidate(f, cid="big", split="train" if i < 3 else "test") for i, f in enumerate(fens[:4])]
    cands += [clear_candidate(f, cid="small") for f in fens[4:7]]
    first = min(chess.Board(fens[7]).legal_moves, key=lambda m: m.uci()).uci()
    cands.append(make_candidate(fens[7], [(first, 9, 0.0, 0.1)], [first], cid="small"))  # fails the line check
    config = PuzzleChecks(engine=False, min_visit_share=0.0, min_q_gap=-2.0)
    book, report = make_book(cands, config, concepts=[concept("big"), concept("small"), concept("empty")])
    assert {p.candidate.concept for p in book.puzzles} == {"big"} and len(book.puzzles) == 4
    assert [p.candidate.split for p in book.puzzles] == ["train", "train", "train", "test"]
    left = {row["concept"]: row for row in report.left_out}
    assert left["small"]["reason"] == "only 3 puzzle(s) passed the checks (need ≥ 4)"
    assert left["empty"]["passed"] == 0
    assert sum(r.reasons[0].startswith("concept left out") for r in report.rejected) == 3
    assert report.reason_counts() == {"concept left out": 3, "line": 1}
    split_rule = PuzzleChecks(engine=False, min_visit_share=0.0, min_q_gap=-2.0, min_puzzles_per_split=2)
    book2, report2 = make_book(cands, split_rule)
    assert not book2.puzzles and "need ≥ 2 in each split" in report2.left_out[0]["reason"]


# ---------------------------------------------------------------------------------------------------------------
# Search


def test_solve_searches_all_positions_in_one_batched_search() -> None:
    boards = positions_of(4, seed=2)
    concepts = [concept("a", tuple(proto_from(b, "train") for b in boards[:2])),
                concept("b", tuple(proto_from(b, "test") for b in boards[2:]))]
    planned, rejected = plan_positions(concepts)
    assert len(planned) == 4 and not rejected
    mcts = MCTS(NetEvaluator(tiny_net()))
    chunks: list[int] = []
    cands = solve(planned, mcts, SolveConfig(simulations=48, alternatives=2), on_chunk=lambda c: chunks.append(len(c)))
    assert chunks == [4]
    assert mcts.calls <= 48 + 1  # one network call per step for all four trees, not one per tree
    for cand, board in zip(cands, boards, strict=True):
        b = chess.Board(cand.fen)
        assert chess.Move.from_uci(cand.answer) in b.legal_moves and cand.line[0] == cand.answer
        for uci in cand.line:
            b.push_uci(uci)  # the machine line is legal
        assert cand.simulations == 48 and len(cand.moves) == 3 and cand.moves[0].uci == cand.answer
        assert cand.moves[0].visits >= cand.moves[1].visits
        assert cand.last_move == board.move_stack[-1].uci()
        assert Candidate.from_dict(json.loads(json.dumps(cand.to_dict()))) == cand
    book, report = make_puzzles(concepts, MCTS(NetEvaluator(tiny_net())), checks=NO_CHECKS,
                                solve_config=SolveConfig(simulations=48), human_net=tiny_net(1))
    assert report.candidates == 4 and all(p.human_policy_prob is not None for p in book.puzzles)


# ---------------------------------------------------------------------------------------------------------------
# Exports


class _Counter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.text: list[str] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag: str) -> None:
        self._in_h2 = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_h2:
            self.headings.append(data)


def sample_book() -> PuzzleBook:
    """Two concepts × 2 puzzles; half with a known last move; engine verdicts and human probabilities."""
    boards = positions_of(4, seed=5)
    cands = []
    for i, board in enumerate(boards):
        cid = "block3/root00012" if i < 2 else "mobility"
        start = chess.STARTING_FEN if i % 2 == 0 else None
        moves = tuple(m.uci() for m in board.move_stack) if start else ()
        pos = PrototypePosition(board.fen(), "train" if i % 2 == 0 else "test", start, moves)
        b = pos.board()
        line = []
        probe = b.copy()
        for _ in range(4):
            move = sorted(probe.legal_moves, key=lambda m: m.uci())[-1]
            line.append(move.uci())
            probe.push(move)
        ranked = sorted(b.legal_moves, key=lambda m: m.uci())
        stats = [(line[0], 70, 0.3, 0.2), (ranked[0].uci(), 20, 0.1, 0.3), (ranked[1].uci(), 10, 0.0, 0.1)]
        planned = PlannedPosition(f"p{i}", concept(cid, label=f"Label; {cid} <&>"), pos)
        cands.append(candidate_from_result(planned, crafted(b, stats, line), SolveConfig()))
    verdicts = {c.id: EngineVerdict(12, c.answer if i % 2 else c.moves[1].uci, 30, c.answer, 0 if i % 2 else -40,
                                    c.moves[1].uci if i % 2 else c.answer, 10 if i % 2 else -40)
                for i, c in enumerate(cands)}
    # planted verdicts with disagreements (exported as flags): the engine check alone, no audit rules
    config = PuzzleChecks(min_visit_share=0.0, min_q_gap=-2.0, trivial=(), min_puzzles_per_concept=1, audit=False)
    book, report = make_book(cands, config, verdicts=verdicts, human_probs={c.id: 0.05 for c in cands},
                             name="sample set", model={"teacher_name": "tiny"})
    assert len(book.puzzles) == 4, report.to_dict()
    return book


def test_exports_round_trip_through_python_chess(tmp_path: Path) -> None:
    book = sample_book()
    written = export_mod.export(book, tmp_path)
    assert set(written) == set(export_mod.FORMATS)
    by_id = {p.id: p.candidate for p in book.puzzles}

    # PGN: one game per puzzle, position set up, answer then the machine line, alternatives as variations
    pgn = io.StringIO(written["pgn"].read_text())
    games = []
    while (game := chess.pgn.read_game(pgn)) is not None:
        games.append(game)
    assert len(games) == 4
    for game in games:
        assert not game.errors
        cand = by_id[game.headers["PuzzleId"]]
        for key in ("SetUp", "FEN", "Concept", "ConceptLabel", "Layer", "Novelty", "Teachability", "PuzzleRating",
                    "HumanPolicyProb", "EngineDisagrees"):
            assert key in game.headers, key
        assert game.headers["SetUp"] == "1" and chess.Board(game.headers["FEN"]).fen() == cand.fen
        assert game.headers["Concept"] == cand.concept and game.headers["Novelty"] == "0.2500"
        assert [m.uci() for m in game.mainline_moves()] == list(cand.line)
        assert [v.move.uci() for v in game.variations[1:]] == [m.uci for m in cand.moves[1:]]
        assert "teachability 0.125" in game.comment

    # EPD: bm, id, pv, c0
    epd_lines = written["epd"].read_text().splitlines()
    assert len(epd_lines) == 4
    for line in epd_lines:
        board, ops = chess.Board.from_epd(line)
        cand = by_id[ops["id"]]
        assert board.fen() == cand.fen
        assert [m.uci() for m in ops["bm"]] == [cand.answer] and [m.uci() for m in ops["pv"]] == list(cand.line)
        assert ops["c0"] == cand.concept and "layer block3" in ops["c2"]

    # CSV: Lichess's column order; FEN before the last move when known, with that move first
    rows = list(csv.reader(io.StringIO(written["csv"].read_text())))
    assert tuple(rows[0]) == LICHESS_COLUMNS and len(rows) == 5
    long_rows = list(csv.reader(io.StringIO(export_mod.to_csv(book, plies=9))))
    for row, long_row in zip(rows[1:], long_rows[1:], strict=True):
        cells = dict(zip(LICHESS_COLUMNS, row, strict=True))
        cand = by_id[cells["PuzzleId"]]
        board = chess.Board(cells["FEN"])
        moves = cells["Moves"].split()
        setup = 1 if cand.last_move else 0
        if cand.last_move:
            assert moves == [cand.last_move, cand.answer] and "solverToMove" not in cells["Themes"]
        else:
            assert board.fen() == cand.fen and moves == [cand.answer] and "solverToMove" in cells["Themes"]
        assert "oneMove" in cells["Themes"].split()  # by default only the checked answer is asked for
        long_moves = long_row[2].split()
        assert long_moves[: setup + 1] == moves and len(long_moves) - setup == 3  # 4-ply line cut to a solver move
        for uci in long_moves:
            board.push_uci(uci)  # every move legal in sequence
        assert int(cells["Rating"]) == estimate_rating(0.05) and cells["RatingDeviation"] == "500"
    known = [p for p in book.puzzles if p.candidate.last_move]
    read = list(read_lichess_puzzles(written["csv"]))
    solver_positions = {position_key(p.board()) for p in read}
    assert all(position_key(p.candidate.fen) in solver_positions for p in known)
    skipped = export_mod.to_csv(book, unknown_last_move="skip")
    assert len(skipped.strip().splitlines()) == 1 + len(known)

    # JSON: a study puzzle set with everything, read back unchanged
    study_set = load_puzzle_set(written["json"])
    assert len(study_set.puzzles) == 4 and study_set.puzzles[0].answer == book.puzzles[0].candidate.answer
    again = load_book(written["json"])
    assert again.puzzles == book.puzzles and again.name == "sample set"
    data = json.loads(written["json"].read_text())
    assert all(set(p) >= {"engine_disagrees", "human_policy_prob", "checks", "search"} for p in data["puzzles"])

    # HTML: parses, one SVG per puzzle, concept headings, answers at the back
    text = written["html"].read_text()
    parser = _Counter()
    parser.feed(text)
    parser.close()
    assert parser.tags["svg"] == 4 and parser.tags["figure"] == 4
    assert parser.headings == ["Label; block3/root00012 <&>", "Label; mobility <&>", "Answers"]
    assert "@media print" in text
    answers = "".join(parser.text).rsplit("Answers", 1)[1]
    for p in book.puzzles:
        c = p.candidate
        assert chess.Board(c.fen).variation_san([chess.Move.from_uci(u) for u in c.line]) in answers


def test_export_of_a_plain_study_set(tmp_path: Path) -> None:
    from alphazero_concepts.study.demo import demo_puzzle_set

    path = tmp_path / "demo.json"
    path.write_text(json.dumps(demo_puzzle_set(2, 1, 1)))
    book = load_book(path)
    out = export_mod.export(book, tmp_path / "out", ["pgn", "html"])
    assert out["pgn"].read_text().count("[SetUp \"1\"]") == 4
    with pytest.raises(ValueError, match="unknown format"):
        export_mod.parse_formats("pgn,docx")


# ---------------------------------------------------------------------------------------------------------------
# CLI


def write_run(tmp_path: Path) -> tuple[Path, Path]:
    run = tmp_path / "run"
    run.mkdir()
    boards = positions_of(8, seed=7)
    records = [{"concept": cid, "label": f"Concept {cid}", "layer": "block0", "novelty": 0.1, "teachability": 0.2,
                "positions": [{"fen": b.fen(), "split": "train" if k % 2 == 0 else "test",
                               "start_fen": chess.STARTING_FEN, "moves": [m.uci() for m in b.move_stack]}
                              for k, b in enumerate(boards[4 * j: 4 * j + 4])]}
               for j, cid in enumerate(("alpha", "beta"))]
    (run / "prototypes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    net_path = save_checkpoint(tmp_path / "net.pt", tiny_net(), CheckpointMeta(name="tiny", stage="supervised"))
    return run, Path(net_path)


@pytest.mark.integration
def test_cli_build_resume_and_export(tmp_path: Path) -> None:
    import typer

    from alphazero_concepts.puzzles.commands import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    run, net = write_run(tmp_path)
    args = ["puzzles", "build", "--run", str(run), "--model", str(net), "--human", str(net), "--no-engine",
            "--sims", "64", "--min-visit-share", "0", "--min-q-gap", "-2", "--min-per-concept", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    puzzles_json = run / "puzzles" / "puzzles.json"
    book = load_book(puzzles_json)
    report = json.loads((run / "puzzles" / "report.json").read_text())
    assert len(book.puzzles) + sum(1 for r in report["rejected"]) == 8
    assert all(p.human_policy_prob is not None and p.engine_disagrees is None for p in book.puzzles)
    assert json.loads((run / "puzzles" / "config.json").read_text())["checks"]["engine"] is False
    cache = run / "puzzles" / "candidates.jsonl"
    cached = cache.read_text()
    assert len(cached.splitlines()) == 8

    # a build killed mid-write: five searches finished, the sixth half-written; the rerun redoes only three
    lines = cached.splitlines(keepends=True)
    cache.write_text("".join(lines[:5]) + lines[5][:40])
    resumed = runner.invoke(app, args)
    assert resumed.exit_code == 0 and "resumed: 5 searches" in resumed.output, resumed.output
    assert [json.loads(x)["id"] for x in cache.read_text().splitlines()] == [json.loads(x)["id"] for x in lines]
    cached = cache.read_text()

    # rerun with a stricter threshold: searches are reused, only the selection is redone
    again = runner.invoke(app, [*args[:-2], "--min-per-concept", "5"])
    assert again.exit_code == 1 and "resumed: 8 searches" in again.output
    assert "left out alpha" in again.output and not puzzles_json.exists()
    assert (run / "puzzles" / "candidates.jsonl").read_text() == cached
    # other search settings: refused with a clear message instead of mixing searches
    changed = runner.invoke(app, [*args[:10], "32", *args[11:]])
    assert changed.exit_code == 2 and "--fresh" in changed.output

    assert runner.invoke(app, args).exit_code == 0
    out = tmp_path / "export"
    exported = runner.invoke(app, ["puzzles", "export", "--run", str(run), "--out", str(out),
                                   "--formats", "pgn,csv,html"])
    assert exported.exit_code == 0, exported.output
    assert sorted(p.name for p in out.iterdir()) == ["booklet.html", "puzzles.csv", "puzzles.pgn"]
    both = runner.invoke(app, ["puzzles", "export", "--out", str(out)])
    assert both.exit_code == 2 and "exactly one" in both.output


def test_cli_names_a_missing_stockfish(tmp_path: Path) -> None:
    import typer

    from alphazero_concepts.puzzles.commands import register

    app = typer.Typer()
    register(app)
    run, net = write_run(tmp_path)
    result = CliRunner().invoke(app, ["puzzles", "build", "--run", str(run), "--model", str(net),
                                      "--stockfish", str(tmp_path / "no-stockfish")])
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "not found" in output and "--no-engine" in output


# ---------------------------------------------------------------------------------------------------------------
# The committed default sets (top-level puzzles/)

PUZZLE_SETS = sorted((Path(__file__).resolve().parents[1] / "puzzles").glob("*/puzzles.json"))


@pytest.mark.parametrize("path", PUZZLE_SETS, ids=lambda p: p.parent.name)
def test_committed_puzzle_sets_are_sound_in_every_format(path: Path) -> None:
    import chess.pgn

    book = load_book(path)
    data = json.loads(path.read_text())
    cap = data["config"]["checks"]["max_cp_loss"]
    for p in book.puzzles:
        board = chess.Board(p.candidate.fen)
        assert board.is_valid() and chess.Move.from_uci(p.candidate.answer) in board.legal_moves
        for uci in p.candidate.line:  # the machine line replays from the puzzle position
            board.push_uci(uci)
        assert p.engine_disagrees is not None and p.human_policy_prob is not None
        assert p.engine is not None and (p.engine.cp_loss or 0) <= cap
    counts: dict[str, int] = {}
    for p in book.puzzles:
        counts[p.candidate.concept] = counts.get(p.candidate.concept, 0) + 1
    assert min(counts.values()) >= data["config"]["checks"]["min_puzzles_per_concept"]
    folder = path.parent
    with open(folder / "puzzles.pgn") as fh:
        games = list(iter(lambda: chess.pgn.read_game(fh), None))
    assert [g.headers["PuzzleId"] for g in games] == [p.id for p in book.puzzles]
    assert all(not g.errors and g.headers["FEN"] == p.candidate.fen for g, p in zip(games, book.puzzles, strict=True))
    epd = [chess.Board.from_epd(line) for line in (folder / "puzzles.epd").read_text().splitlines() if line.strip()]
    assert [ops["id"] for _, ops in epd] == [p.id for p in book.puzzles]
    with open(folder / "puzzles.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["PuzzleId"] for r in rows] == [p.id for p in book.puzzles]
    html = (folder / "booklet.html").read_text()
    assert html.count("<svg") >= len(book.puzzles)


def test_the_default_sets_were_built_under_the_audit_rules_and_can_run_a_study() -> None:
    """Every committed set was built with the grandmaster-grade rules at the audit's default depth (so `azc puzzles
    audit` at its defaults passes it: measured when a set is committed, `puzzles/README.md`), records what the
    Maia ladder plays, and has at least one concept with both learning and unseen puzzles (phases 1-3)."""
    from alphazero_concepts.puzzles.audit import AUDIT_DEPTH

    if not PUZZLE_SETS:
        pytest.fail("no committed puzzle set under puzzles/")
    for path in PUZZLE_SETS:
        book = load_book(path)
        assert book.puzzles, path
        splits: dict[str, set[str]] = {}
        for p in book.puzzles:
            audit = p.checks.get("audit")
            assert audit is not None and audit.passed is True, (path, p.id)
            assert p.engine is not None and (p.engine.depth or 0) >= AUDIT_DEPTH, (path, p.id)
            assert p.maia_probs and set(p.maia_probs) >= {"maia-1100", "maia-1900"}, (path, p.id)
            assert p.difficulty is None or p.difficulty in p.maia_probs, (path, p.id)
            splits.setdefault(p.candidate.concept, set()).add(p.candidate.split)
        assert any(s >= {"train", "test"} for s in splits.values()), path


class PlaneSpy(torch.nn.Module):
    """A 'human model' that records the planes it is shown and plays a planted probability for one move."""

    def __init__(self, answer_index: int, logit: float) -> None:
        super().__init__()
        from alphazero_concepts.chess.formats import get_format

        self.format = get_format("alphazero")
        self.answer_index, self.logit = answer_index, logit
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append(x.clone())
        logits = torch.zeros(x.shape[0], 4672)
        logits[:, self.answer_index] = self.logit
        return logits, torch.zeros(x.shape[0])


def _long_history_candidate() -> Candidate:
    board = chess.Board()
    for san in ["e4", "e5", "Nf3", "Nc6", "Bc4", "Bc5", "c3", "Nf6", "d3", "d6"]:
        board.push_san(san)
    moves = tuple(m.uci() for m in board.move_stack)
    return make_candidate(board.fen(), [("e1g1", 80, 0.4, 0.3), ("b1d2", 20, 0.1, 0.2)], ["e1g1", "a7a6", "a2a4"],
                          history=(chess.STARTING_FEN, board.fen(), moves))


def test_human_models_read_the_whole_game_history() -> None:
    """The human model sees all eight history steps (as the networks were trained), not one ply."""
    from alphazero_concepts.chess.encoding import PLANES_PER_STEP, move_to_index
    from alphazero_concepts.puzzles.book import human_probs_for

    cand = _long_history_candidate()
    assert len(cand.history) == 10 and Candidate.from_dict(cand.to_dict()) == cand
    board = cand.board_with_history()
    spy = PlaneSpy(move_to_index(chess.Move.from_uci("e1g1"), board), 0.0)
    human_probs_for(spy, [cand])
    planes = spy.seen[0][0].numpy()
    for step in range(8):  # every history step holds a position (pieces on the board)
        assert planes[step * PLANES_PER_STEP : step * PLANES_PER_STEP + 12].sum() >= 20, step


def test_maia_ladder_gives_per_level_probabilities_and_a_difficulty(monkeypatch) -> None:
    """maia_probs per level (weakest first); difficulty = the weakest level with p ≥ 0.1; machine-only when none;
    human_policy_prob = the largest."""
    from alphazero_concepts.chess.encoding import move_to_index
    from alphazero_concepts.puzzles.human import HUMAN_THRESHOLD, difficulty, ladder_probs

    cand = _long_history_candidate()
    index = move_to_index(chess.Move.from_uci("e1g1"), cand.board_with_history())
    ladder = {"maia-1100": PlaneSpy(index, 0.0), "maia-1500": PlaneSpy(index, 4.0), "maia-1900": PlaneSpy(index, 6.0)}
    probs = ladder_probs(ladder, [cand])[cand.id]
    assert list(probs) == list(ladder) and probs["maia-1100"] < HUMAN_THRESHOLD <= probs["maia-1500"]
    assert difficulty(probs) == "maia-1500" and difficulty({"maia-1100": 0.01, "maia-1900": 0.05}) is None
    config = replace(NO_CHECKS, min_puzzles_per_concept=1)
    machine = {"maia-1100": 0.01, "maia-1900": 0.05}
    book, _ = make_book([cand], config, maia_probs={cand.id: probs})
    record = book.puzzles[0].to_record()
    assert record["maia_probs"] == probs and record["difficulty"] == "maia-1500" and not record["machine_only"]
    assert record["human_policy_prob"] == max(probs.values())
    assert ConceptPuzzle.from_record(record).difficulty == "maia-1500"
    book, _ = make_book([cand], config, maia_probs={cand.id: machine})
    assert book.puzzles[0].to_record()["machine_only"] is True and book.puzzles[0].difficulty is None
