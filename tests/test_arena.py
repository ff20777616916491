"""Tests for the arena: Elo fit on planted ratings, concurrent matches, Stockfish handling, STS scoring, ladder."""

from __future__ import annotations

import io
import json
import shutil
import stat
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import chess
import chess.pgn
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from alphazero_concepts.arena import ladder as ladder_mod
from alphazero_concepts.arena.commands import register
from alphazero_concepts.arena.elo import (
    PairResult,
    bootstrap_elo,
    elo_difference,
    expected_score,
    fit_elo,
)
from alphazero_concepts.arena.ladder import Ladder, LadderConfig, load_results
from alphazero_concepts.arena.match import ADJUDICATED, play_match
from alphazero_concepts.arena.players import (
    EngineNotFoundError,
    MCTSPlayer,
    Player,
    StockfishPlayer,
    find_stockfish,
)
from alphazero_concepts.arena.sts import read_sts, run_sts, score_moves, theme_of
from alphazero_concepts.chess.positions import ReadReport
from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series
from alphazero_concepts.nn.network import AZNet, NetConfig
from alphazero_concepts.search.mcts import UniformEvaluator

runner = CliRunner()
TINY = NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)
REAL_STOCKFISH = shutil.which("stockfish") or shutil.which("stockfish", path="/usr/games")


def tiny_net(seed: int) -> AZNet:
    torch.manual_seed(seed)
    return AZNet(TINY).eval()


def opening(name: str, sans: str) -> tuple[str, chess.Board]:
    board = chess.Board()
    for san in sans.split():
        board.push_san(san)
    return name, board


OPENINGS = [opening("C60", "e4 e5 Nf3 Nc6 Bb5"), opening("D10", "d4 d5 c4 c6")]


class FirstMovePlayer(Player):
    """Plays a mate in one when there is one, else the first legal move in UCI order (deterministic)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[int] = []

    @property
    def budget(self) -> dict[str, object]:
        return {"kind": "scripted"}

    def choose_moves(self, boards: Sequence[chess.Board]) -> list[chess.Move]:
        self.calls.append(len(boards))
        out = []
        for board in boards:
            moves = sorted(board.legal_moves, key=lambda m: m.uci())
            mates = [m for m in moves if board.gives_check(m) and _mates(board, m)]
            out.append(mates[0] if mates else moves[0])
        return out


def _mates(board: chess.Board, move: chess.Move) -> bool:
    board.push(move)
    try:
        return board.is_checkmate()
    finally:
        board.pop()


FAKE_ENGINE = """#!{python}
import sys
import chess
board = chess.Board()
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "uci":
        print("id name FakeFish 1")
        print("option name Threads type spin default 1 min 1 max 512")
        print("option name Hash type spin default 16 min 1 max 33554432")
        print("option name UCI_LimitStrength type check default false")
        print("option name UCI_Elo type spin default 1350 min 1350 max 2850")
        print("option name Skill Level type spin default 20 min 0 max 20")
        print("uciok")
    elif cmd[0] == "isready":
        print("readyok")
    elif cmd[0] == "position":
        rest = line.split(None, 1)[1]
        fen, _, moves = rest.partition(" moves ")
        fen = fen.strip()
        board = chess.Board() if fen == "startpos" else chess.Board(fen.removeprefix("fen ").strip())
        for uci in moves.split():
            board.push_uci(uci)
    elif cmd[0] == "go":
        move = sorted(board.legal_moves, key=lambda m: m.uci())[0]
        print("info depth 1 score cp 0 nodes 1 pv " + move.uci())
        print("bestmove " + move.uci())
    elif cmd[0] == "quit":
        break
    sys.stdout.flush()
"""


@pytest.fixture(scope="module")
def fake_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny UCI engine (plays the first legal move) standing in for Stockfish where it is not needed."""
    path = tmp_path_factory.mktemp("engine") / "fakefish"
    path.write_text(FAKE_ENGINE.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def series(tmp_path: Path) -> Series:
    s = Series(tmp_path / "tiny", name="tiny")
    for i in range(3):
        s.add(tiny_net(i), CheckpointMeta(name=f"c{i}", step=i, stage="test"))
    return s


def replay(game_pgn: chess.pgn.Game) -> chess.Board:
    board = game_pgn.board()
    for move in game_pgn.mainline_moves():
        assert move in board.legal_moves
        board.push(move)
    return board


# ---------------------------------------------------------------------------------------------------------------
# Elo


def simulate(true: dict[str, float], pairs: list[tuple[str, str]], games: int, seed: int,
             draw_rate: float = 0.3) -> list[PairResult]:
    rng = np.random.default_rng(seed)
    out = []
    for a, b in pairs:
        e = expected_score(true[a] - true[b])
        d = min(draw_rate, 2 * min(e, 1 - e))
        w, dr, lo = rng.multinomial(games, [e - d / 2, d, 1 - e - d / 2])
        out.append(PairResult(a, b, w, dr, lo))
    return out


TRUE = {"A": 0.0, "B": 100.0, "C": 250.0}
PAIRS = [("A", "B"), ("B", "C"), ("A", "C")]


@pytest.mark.unit
def test_expected_score_and_difference_are_inverse() -> None:
    assert expected_score(0) == 0.5
    assert expected_score(400) == pytest.approx(10 / 11)
    for d in (-300.0, -50.0, 0.0, 120.0):
        assert elo_difference(expected_score(d)) == pytest.approx(d)
    assert elo_difference(1.0) == float("inf")


@pytest.mark.unit
@pytest.mark.parametrize("method", ["fisher", "bootstrap"])
def test_elo_fit_recovers_planted_differences_within_intervals(method: str) -> None:
    results = simulate(TRUE, PAIRS, games=200, seed=0)
    fit = fit_elo(results, {"A": 0.0}) if method == "fisher" else bootstrap_elo(results, {"A": 0.0}, samples=200)
    assert fit.ratings["A"] == 0.0 and fit.ci["A"] == (0.0, 0.0)
    for name in ("B", "C"):
        lo, hi = fit.ci[name]
        assert lo <= TRUE[name] <= hi, (name, fit.ratings[name], fit.ci[name])
        assert hi - lo < 150  # informative, not a trivially wide interval
    assert fit.ratings["A"] < fit.ratings["B"] < fit.ratings["C"]
    assert fit.games["B"] == 400


@pytest.mark.unit
def test_elo_intervals_cover_truth_at_about_their_level() -> None:
    hits = total = 0
    for seed in range(40):
        fit = fit_elo(simulate(TRUE, PAIRS, games=100, seed=seed), {"A": 0.0})
        for name in ("B", "C"):
            hits += fit.ci[name][0] <= TRUE[name] <= fit.ci[name][1]
            total += 1
    assert hits / total >= 0.88  # nominal 95% (conservative with draws); a too-narrow SE fails this


@pytest.mark.unit
def test_elo_fit_stockfish_anchors_unconnected_and_perfect_scores() -> None:
    results = [PairResult("net", "sf1350", 20, 10, 10), PairResult("net", "sf1600", 5, 10, 25)]
    fit = fit_elo(results, {"sf1350": 1350.0, "sf1600": 1600.0})
    assert fit.ratings["sf1350"] == 1350.0 and fit.ratings["sf1600"] == 1600.0
    assert 1350 < fit.ratings["net"] < 1600
    shifted = fit_elo([PairResult("x", "y", 30, 5, 5)], {"y": 1000.0}).ratings["x"]
    assert shifted - 1000 == pytest.approx(fit_elo([PairResult("x", "y", 30, 5, 5)], {"y": 0.0}).ratings["x"])
    perfect = fit_elo([PairResult("x", "y", 40, 0, 0)], {"x": 0.0})
    assert np.isfinite(perfect.ratings["y"]) and -900 < perfect.ratings["y"] < -600
    with pytest.raises(ValueError, match="connect"):
        fit_elo([PairResult("a", "b", 1, 0, 0), PairResult("c", "d", 1, 0, 0)], {"a": 0.0})


# ---------------------------------------------------------------------------------------------------------------
# Matches


@pytest.mark.unit
def test_match_bookkeeping_colours_and_mate() -> None:
    # after 1. f3 e5 2. g4 Black mates at once with Qh4#: whoever has Black wins
    fool = opening("fool", "f3 e5 g4")
    a, b = FirstMovePlayer("alice"), FirstMovePlayer("bob")
    result = play_match(a, b, 4, [fool], max_plies=20)
    assert [g.white for g in result.games] == ["alice", "bob", "alice", "bob"]
    assert [g.result for g in result.games] == ["0-1"] * 4
    assert all(g.termination == "checkmate" and g.plies == 4 for g in result.games)
    assert (result.wins, result.draws, result.losses, result.score) == (2, 0, 2, 0.5)
    assert result.to_dict()["score"] == 0.5
    assert type(result).from_dict(json.loads(json.dumps(result.to_dict()))).games == result.games


@pytest.mark.unit
def test_match_resumes_from_stored_games() -> None:
    a, b = FirstMovePlayer("a"), FirstMovePlayer("b")
    stored = []
    full = play_match(a, b, 4, OPENINGS, max_plies=14, on_game=stored.append)
    assert sorted(g.index for g in stored) == [0, 1, 2, 3]
    a.calls.clear()
    again = play_match(a, b, 4, OPENINGS, max_plies=14, done={g.index: g for g in stored if g.index < 2})
    assert max(a.calls) == 2  # only games 2 and 3 were played
    assert again.games == full.games and again.score == full.score
    first = next(g for g in stored if g.index == 0)
    with pytest.raises(ValueError, match="does not fit"):
        play_match(a, b, 4, OPENINGS, max_plies=14, done={0: replace(first, white=first.black, black=first.white)})


@pytest.mark.unit
def test_match_rules_fifty_moves_and_adjudication() -> None:
    fifty = ("fifty", chess.Board("8/8/8/4k3/8/8/8/R3K3 w - - 99 80"))
    a, b = FirstMovePlayer("a"), FirstMovePlayer("b")
    r = play_match(a, b, 2, [fifty], max_plies=400)
    assert [g.termination for g in r.games] == ["fifty_moves", "fifty_moves"] and r.draws == 2
    r = play_match(a, b, 2, OPENINGS[:1], max_plies=12)
    assert all(g.termination == ADJUDICATED and g.plies == 12 and g.result == "1/2-1/2" for g in r.games)
    assert r.adjudicated == 2


@pytest.mark.integration
def test_match_between_search_players_plays_legal_complete_games(tmp_path: Path) -> None:
    net_player = MCTSPlayer(tiny_net(0), 2, name="tiny")
    uniform = MCTSPlayer(None, 3, name="uniform", evaluator=UniformEvaluator())
    done: list[int] = []
    pgn_path = tmp_path / "m.pgn"
    result = play_match(net_player, uniform, 4, OPENINGS, max_plies=40, pgn_path=pgn_path,
                        progress=lambda d, t: done.append(d))
    assert sorted(done) == [1, 2, 3, 4] and result.n_games == 4
    assert [g.opening for g in result.games] == ["C60", "C60", "D10", "D10"]
    assert [g.white for g in result.games] == ["tiny", "uniform", "tiny", "uniform"]
    assert result.wins + result.draws + result.losses == 4
    text = io.StringIO(pgn_path.read_text())
    for g in result.games:
        game = chess.pgn.read_game(text)
        assert game is not None
        board = replay(game)
        assert game.headers["White"] == g.white and game.headers["Result"] == g.result
        assert game.headers["WhiteBudget"].startswith("mcts simulations=")
        assert game.headers["TerminationDetail"] == g.termination and game.headers["Opening"] == g.opening
        over = board.outcome(claim_draw=True)
        assert over is not None or board.ply() >= 40  # complete: over by rules or at the cap
        if g.termination != ADJUDICATED:
            assert over is not None and over.result() == g.result
        expected = g.score_for("tiny")
        assert expected in (0.0, 0.5, 1.0)
    assert result.score == pytest.approx(sum(g.score_for("tiny") for g in result.games) / 4)
    # our MCTS saw several games per call (batched across games)
    assert net_player.mcts.calls > 0 and result.stats_a["moves"] > 0 and result.stats_a["evaluations"] > 0
    with pytest.raises(ValueError, match="both players"):
        play_match(net_player, MCTSPlayer(None, 1, name="tiny", evaluator=UniformEvaluator()), 2, OPENINGS)


@pytest.mark.unit
def test_mcts_player_batches_all_boards_and_raw_policy() -> None:
    boards = [b for _, b in OPENINGS]
    player = MCTSPlayer(tiny_net(1), 0, name="raw")
    moves = player.choose_moves(boards)
    assert all(m in b.legal_moves for m, b in zip(moves, boards, strict=True))
    assert player.budget == {"kind": "mcts", "simulations": 0}


def test_precision_reaches_the_players_and_keeps_bf16_results_apart(series: Series, tmp_path: Path) -> None:
    boards = [b for _, b in OPENINGS]
    bf16 = MCTSPlayer(tiny_net(1), 4, name="bf16", precision="bf16")
    assert bf16.budget == {"kind": "mcts", "simulations": 4, "precision": "bf16"}
    assert bf16.evaluator.precision == "bf16"  # type: ignore[attr-defined]
    assert all(m in b.legal_moves for m, b in zip(bf16.choose_moves(boards), boards, strict=True))
    with pytest.raises(ValueError, match="precision"):
        MCTSPlayer(tiny_net(1), 4, precision="int8")
    with pytest.raises(ValueError, match="evaluator"):
        MCTSPlayer(None, 4, evaluator=UniformEvaluator(), precision="bf16")
    fp32 = LadderConfig(games=2, simulations=8, maia_simulations=16)
    assert ladder_mod.pairing_key("c0", "maia-1900", fp32) == "c0@sims=8 vs maia-1900@sims=16 games=2 max_plies=400"
    config = replace(fp32, precision="bf16")
    assert ladder_mod.pairing_key("c0", "maia-1900", config) == \
        "c0@sims=8,bf16 vs maia-1900@sims=16,bf16 games=2 max_plies=400"  # stored apart from fp32 results
    ladder = Ladder(series, tmp_path / "arena", config, openings=OPENINGS)
    assert ladder._player("c1").evaluator.precision == "bf16"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="precision"):
        LadderConfig(precision="fp16")


# ---------------------------------------------------------------------------------------------------------------
# Stockfish


@pytest.mark.unit
def test_missing_stockfish_gives_clear_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(EngineNotFoundError, match="apt-get install -y stockfish") as info:
        StockfishPlayer(uci_elo=1350, path=tmp_path / "nope")
    assert "--stockfish" in str(info.value) and "nope" in str(info.value)
    import alphazero_concepts.engines as engines_mod

    monkeypatch.setattr(engines_mod.shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(engines_mod, "STOCKFISH_DIRS", (str(tmp_path),))
    with pytest.raises(EngineNotFoundError, match="not found on PATH"):
        find_stockfish()


@pytest.mark.integration
def test_missing_stockfish_cli_message(series: Series, tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    res = runner.invoke(app, ["arena", "--series", str(series.directory), "--games", "2", "--sims", "1",
                              "--stockfish-elo", "1350", "--stockfish", str(tmp_path / "nope"),
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "apt-get install -y stockfish" in res.output
    assert not (tmp_path / "out" / "results.json").exists()  # failed before playing anything


@pytest.mark.integration
def test_stockfish_player_with_fake_engine(fake_engine: Path) -> None:
    with StockfishPlayer(uci_elo=1500, movetime=0.01, path=fake_engine) as sf:
        assert sf.budget == {"kind": "stockfish", "uci_elo": 1500, "skill_level": None, "movetime": 0.01,
                             "nodes": None, "engine": "FakeFish 1"}
        board = chess.Board()
        board.push_san("e4")
        assert sf.choose_moves([board, chess.Board()]) == [chess.Move.from_uci("a7a5"), chess.Move.from_uci("a2a3")]
        assert sf.stats()["moves"] == 2 and sf.stats()["mean_nodes"] == 1 and sf.stats()["mean_depth"] == 1
    with pytest.raises(ValueError, match="outside the engine's range"):
        StockfishPlayer(uci_elo=1000, path=fake_engine)


@pytest.mark.needs_engine
@pytest.mark.integration
def test_real_stockfish_short_game() -> None:
    if REAL_STOCKFISH is None:
        pytest.skip("stockfish not installed (apt-get install -y stockfish)")
    uniform = MCTSPlayer(None, 2, name="uniform", evaluator=UniformEvaluator())
    with StockfishPlayer(skill_level=20, nodes=2000, path=REAL_STOCKFISH) as sf:
        result = play_match(sf, uniform, 2, OPENINGS[:1], max_plies=120)
        assert sf.budget["engine"].startswith("Stockfish") and sf.budget["nodes"] == 2000
    # full-strength Stockfish against a rules-only search: it should not lose a game
    assert result.losses == 0 and result.n_games == 2
    assert any(g.termination == "checkmate" for g in result.games)


# ---------------------------------------------------------------------------------------------------------------
# STS

STS_EPD = """\
1kr5/3n4/q3p2p/p2n2p1/PppB1P2/5BP1/1P2Q2P/3R2K1 w - - bm f5; id "STS(v1.0) Undermine.001"; c0 "f5=10, Be5+=2, Bf2=3";
1n5k/3q3p/pp1p2pB/5r2/1PP1Qp2/P6P/6P1/2R3K1 w - - bm c5; id "STS(v2.2) Open Files.001"; c0 "c4c5=100, b4b5=50";
4k3/8/8/8/8/8/4P3/4K3 w - - bm e4; id "STS(v2.2) Open Files.002";
4k3/8/8/8/8/8/4P3/4K3 w - - id "broken.001"; c0 "Qh7=10";
"""


@pytest.mark.unit
def test_sts_scoring_on_hand_made_suite(tmp_path: Path) -> None:
    path = tmp_path / "mini.epd"
    path.write_text(STS_EPD)
    report = ReadReport(str(path))
    positions = read_sts(path, report)
    assert len(positions) == 3 and report.skipped == 1 and report.read == 3
    assert "mini.epd:4" in str(report.errors[0]) and "Qh7" in str(report.errors[0])
    assert [p.number for p in positions] == [1, 2, 2] and positions[1].theme == "Open Files"
    assert theme_of("WAC.001") == (0, "WAC")
    m = chess.Move.from_uci
    # listed best (1), listed lesser (normalised: Bf2 = 3/10, b5 = 50/100), unlisted (0)
    assert positions[0].score(m("d4f2")) == pytest.approx(0.3)
    assert positions[1].score(m("b4b5")) == pytest.approx(0.5)
    score = score_moves(positions, [m("f4f5"), m("b4b5"), m("e2e3")], model="x")
    assert score.score == pytest.approx(1.5) and score.best == 1
    assert score.themes["STS1"]["percent"] == pytest.approx(100.0)
    assert score.themes["STS2"]["score"] == pytest.approx(0.5) and score.themes["STS2"]["positions"] == 2
    assert score.percent == pytest.approx(50.0)
    assert score_moves(positions, [m("g1h1"), m("c1c2"), m("e1d1")]).score == 0.0
    for sims in (0, 2):
        result = run_sts(tiny_net(0), positions, sims, model="tiny")
        assert result.positions == 3 and 0.0 <= result.score <= 3.0
        assert all(chess.Move.from_uci(u) in p.board().legal_moves
                   for u, p in zip(result.moves, positions, strict=True))


@pytest.mark.integration
def test_sts_cli(series: Series, tmp_path: Path) -> None:
    path = tmp_path / "mini.epd"
    path.write_text(STS_EPD)
    app = typer.Typer()
    register(app)
    out = tmp_path / "sts.json"
    res = runner.invoke(app, ["sts", "--suite", str(path), "--series", str(series.directory), "--checkpoints",
                              "c0,c2", "--sims", "0", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert [m["model"] for m in data["models"]] == ["c0", "c2"] and data["skipped"] == 1
    res = runner.invoke(app, ["sts", "--suite", str(path)])
    assert res.exit_code == 2 and "exactly one" in res.output


# ---------------------------------------------------------------------------------------------------------------
# Ladder


@pytest.mark.integration
def test_ladder_resumes_and_writes_ladder_json(series: Series, tmp_path: Path, fake_engine: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "arena"
    config = LadderConfig(games=2, simulations=1, max_plies=16, stockfish_elo=(1350,), stockfish_movetime=0.01,
                          stockfish_path=str(fake_engine))
    real = ladder_mod.play_match
    calls: list[tuple[str, str]] = []

    def killed_after_one(a, b, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append((a.name, b.name))
        return real(a, b, *args, **kwargs)

    monkeypatch.setattr(ladder_mod, "play_match", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        Ladder(series, out, config, openings=OPENINGS).run()
    assert list(load_results(out / "results.json")) == [
        "c0@sims=1 vs c1@sims=1 games=2 max_plies=16"]

    def counting(a, b, *args, **kwargs):
        calls.append((a.name, b.name))
        return real(a, b, *args, **kwargs)

    calls.clear()
    monkeypatch.setattr(ladder_mod, "play_match", counting)
    ladder = Ladder(series, out, config, openings=OPENINGS)
    result = ladder.run()
    assert ("c0", "c1") not in calls and ("c1", "c2") in calls  # the finished pairing was not replayed
    assert len(ladder.played) == len(calls) == len(result["pairs"]) - 1
    assert [c["name"] for c in result["checkpoints"]] == ["c0", "c1", "c2"]
    assert result["checkpoints"][0]["elo"] == 0.0
    assert {c["architecture"] for c in result["checkpoints"]} == {f"{TINY.blocks}x{TINY.channels}"}
    for row in result["checkpoints"]:
        lo, hi = row["elo_ci"]
        assert lo <= row["elo"] <= hi and row["games"] >= 2
    [vs] = result["vs_stockfish"]
    assert vs["uci_elo"] == 1350 and vs["games"] == 2 and 0.0 <= vs["score"] <= 1.0
    assert vs["checkpoint"] == result["stockfish_chosen_as_strongest"]
    assert result["elo_stockfish_scale"]["anchors"] == {"stockfish-elo1350": 1350.0}
    assert (out / "ladder.png").stat().st_size > 1000 and json.loads((out / "ladder.json").read_text())
    pgn = (out / result["pairs"][0]["pgn"]).read_text()
    assert pgn.count("[Event ") == 2

    calls.clear()
    again = Ladder(series, out, config, openings=OPENINGS)
    again.run()
    assert calls == [] and again.played == []  # everything reused
    again.write_elo(result)
    assert [m.elo for m in Series.open(series.directory)] == [c["elo"] for c in result["checkpoints"]]


@pytest.mark.integration
def test_ladder_keeps_finished_games_of_a_killed_pairing(series: Series, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "arena"
    config = LadderConfig(games=4, simulations=1, max_plies=14, checkpoints=("c0", "c1"))
    real = ladder_mod.play_match
    resumed: list[int] = []

    def killed_after_two_games(*args, on_game, **kwargs):
        stored: list[int] = []

        def store(game):
            on_game(game)
            stored.append(game.index)
            if len(stored) == 2:
                raise KeyboardInterrupt

        return real(*args, on_game=store, **kwargs)

    monkeypatch.setattr(ladder_mod, "play_match", killed_after_two_games)
    with pytest.raises(KeyboardInterrupt):
        Ladder(series, out, config, openings=OPENINGS).run()
    assert len((out / "partial" / "c0_vs_c1.jsonl").read_text().splitlines()) == 2

    def counting(*args, done, **kwargs):
        resumed.append(len(done))
        return real(*args, done=done, **kwargs)

    monkeypatch.setattr(ladder_mod, "play_match", counting)
    result = Ladder(series, out, config, openings=OPENINGS).run()
    assert resumed == [2] and result["pairs"][0]["games"] == 4
    assert not (out / "partial").exists()


@pytest.mark.integration
def test_ladder_merges_parts_and_reuses_pairings_in_either_order(series: Series, tmp_path: Path, fake_engine: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts played apart (one with the players the other way round, one at another budget) make one ladder with
    nothing replayed: the reversed pairing enters the fit from the other side, the other budget is listed unfitted."""
    base = LadderConfig(games=2, simulations=1, max_plies=12, first_vs_strongest=False)
    parts = {"a": replace(base, checkpoints=("c0", "c1")), "b": replace(base, checkpoints=("c1", "c2")),
             "c": replace(base, checkpoints=("c0", "c2")),
             "d": replace(base, simulations=2, checkpoints=("c2",), stockfish_elo=(1350,), stockfish_vs=("c2",),
                          stockfish_movetime=0.01, stockfish_path=str(fake_engine))}
    for name, cfg in parts.items():
        Ladder(series, tmp_path / name, cfg, openings=OPENINGS).run()
    c0_c2 = load_results(tmp_path / "c" / "results.json")["c0@sims=1 vs c2@sims=1 games=2 max_plies=12"]

    def no_games(*args, **kwargs):
        raise AssertionError("a merged pairing was played again")

    monkeypatch.setattr(ladder_mod, "play_match", no_games)
    out = tmp_path / "merged"
    merged = Ladder(series, out, replace(base, pairs=("c2:c0",), merge=tuple(str(tmp_path / n) for n in parts)),
                    openings=OPENINGS)
    assert merged.merged == 4
    result = merged.run()
    assert merged.played == [] and [(r["a"], r["b"]) for r in result["pairs"]] == [("c0", "c1"), ("c1", "c2"),
                                                                                   ("c2", "c0")]
    flipped = result["pairs"][2]
    assert (flipped["wins"], flipped["draws"], flipped["losses"]) == (c0_c2.losses, c0_c2.draws, c0_c2.wins)
    assert flipped["score"] == pytest.approx(1 - c0_c2.score) and (out / flipped["pgn"]).is_file()
    [sf] = result["vs_stockfish"]
    assert sf["checkpoint"] == "c2" and sf["sims"] == 2 and sf["fitted"] is False and sf["uci_elo"] == 1350
    assert result["stockfish_played_by"] is None and list(result["settings"]["pairs"]) == ["c2:c0"]
    assert len(load_results(out / "results.json")) == 4  # the merged pairings are kept with this ladder
    with pytest.raises(RuntimeError, match="no result for c2 vs stockfish-elo1350"):  # other budget: not in this fit
        merged._fit([("c0", "c1"), ("c2", "stockfish-elo1350")], {"c0": 0.0})
    for bad, message in (("c0:c9", "pair c0:c9"), ("c0", "as 'A:B'"), ("c1:c1", "as 'A:B'"),
                         ("stockfish-elo1350:maia-1100", "pair stockfish-elo1350")):
        with pytest.raises(ValueError, match=message):
            Ladder(series, tmp_path / "bad", replace(base, pairs=(bad,), stockfish_elo=(1350,)), openings=OPENINGS)
    with pytest.raises(ValueError, match="no arena results to merge"):
        Ladder(series, tmp_path / "bad", replace(base, merge=(str(tmp_path / "missing"),)), openings=OPENINGS)


@pytest.mark.integration
def test_arena_cli(series: Series, tmp_path: Path, fake_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ladder_mod, "bundled_openings", lambda: OPENINGS)
    app = typer.Typer()
    register(app)
    out = tmp_path / "arena"
    res = runner.invoke(app, ["arena", "--series", str(series.directory), "--checkpoints", "c0,c2", "--games", "2",
                              "--sims", "1", "--max-plies", "10", "--stockfish-elo", "1350",
                              "--stockfish-movetime", "0.01", "--stockfish", str(fake_engine), "--out", str(out),
                              "--write-elo"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "ladder.json").read_text())
    assert [c["name"] for c in data["checkpoints"]] == ["c0", "c2"]
    assert data["settings"]["stockfish_elo"] == [1350] and data["budgets"]["stockfish"]["movetime"] == 0.01
    assert Series.open(series.directory).meta("c0").elo == 0.0
    res = runner.invoke(app, ["arena", "--series", str(series.directory), "--checkpoints", "c0,c2", "--games", "2",
                              "--sims", "1", "--max-plies", "10", "--pair", "c2:c0", "--merge", str(out),
                              "--out", str(tmp_path / "again")])
    assert res.exit_code == 0, res.output
    assert "pairings merged from" in res.output and "0 pairings played" in res.output
    assert "(not in the fit)" in " ".join(res.output.split())  # c2 against Stockfish: merged, no level given
    res = runner.invoke(app, ["arena", "--series", str(series.directory), "--merge", str(tmp_path / "none")])
    assert res.exit_code == 2 and "no arena results to merge" in res.output
    res = runner.invoke(app, ["arena", "--series", str(series.directory), "--checkpoints", "c9"])
    assert res.exit_code == 2 and "c9" in res.output


@pytest.mark.integration
def test_ladder_plays_maia_levels_with_their_own_simulations(series: Series, tmp_path: Path) -> None:
    """`vs_maia` rows: the strongest checkpoint against lc0-format 'Maia' networks, with sims on both sides; each
    checkpoint row carries its held-out value MSE."""
    from alphazero_concepts.nn.lc0 import Lc0Config, Lc0Net, save_lc0

    maia_dir = tmp_path / "maia"
    maia_dir.mkdir()
    torch.manual_seed(0)
    config = Lc0Config(blocks=1, channels=8, se=True, se_channels=2, policy_head="classical", policy_channels=4,
                       value_channels=2, value_hidden=8, wdl=True)
    for rating in (1100, 1900):
        save_lc0(maia_dir / f"maia-{rating}.pb.gz", Lc0Net(config).eval())
    series.entries[-1].extra["value_mse"] = 0.123
    series.write_manifest()
    cfg = LadderConfig(games=2, simulations=2, max_plies=12, maia=("maia-1100", "maia-1900"), maia_simulations=3,
                       maia_dir=str(maia_dir), checkpoints=("c1", "c2"))
    result = Ladder(series, tmp_path / "arena", cfg, openings=OPENINGS).run()
    rows = result["vs_maia"]
    assert [r["maia"] for r in rows] == ["maia-1100", "maia-1900"]
    for r in rows:
        assert r["games"] == 2 and r["sims"] == 2 and r["maia_sims"] == 3 and 0 <= r["score"] <= 1
        assert r["checkpoint"] == result["stockfish_chosen_as_strongest"]
    assert [c.get("value_mse") for c in result["checkpoints"]] == [None, 0.123]
    with pytest.raises(ValueError, match="no Maia weights for maia-1500"):
        Ladder(series, tmp_path / "arena2", replace(cfg, maia=("maia-1500",)), openings=OPENINGS)


def test_queen_up_positions_are_legal_and_a_queen_up() -> None:
    from alphazero_concepts.arena.value_check import queen_up_boards

    boards = queen_up_boards()
    assert len(boards) >= 80
    for b in boards:
        assert b.is_valid() and not b.move_stack and not b.is_check()
        assert len(b.pieces(chess.QUEEN, b.turn)) == len(b.pieces(chess.QUEEN, not b.turn)) + 1
    turns = [b.turn for b in boards]
    assert min(turns.count(chess.WHITE), turns.count(chess.BLACK)) >= 40


@pytest.mark.integration
def test_value_check_cli_scores_through_the_uci_engine(series: Series, tmp_path: Path) -> None:
    """`azc value-check`: every queen-up position scored by the project's UCI engine, per colour, with the JSON."""
    from alphazero_concepts.cli import app

    out = tmp_path / "vc.json"
    result = CliRunner().invoke(app, ["value-check", "--model", f"{series.directory}:c1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["model"] == "c1" and data["nodes"] == 1
    assert {k: v["positions"] for k, v in data["summary"].items()} == {
        "white": sum(chess.Board(p["fen"]).turn for p in data["positions"]),
        "black": sum(not chess.Board(p["fen"]).turn for p in data["positions"])}
    assert all(isinstance(p["cp"], int) for p in data["positions"])
    ahead = sum(p["cp"] > 0 for p in data["positions"] if chess.Board(p["fen"]).turn)
    assert data["summary"]["white"]["ahead"] == ahead
