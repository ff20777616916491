"""The UCI engine: protocol pieces in process (planted evaluators), and the real engine process driven by
python-chess's `chess.engine` (analysis with MultiPV, a game under movetime, stop during go infinite, garbage)."""

from __future__ import annotations

import io
import itertools
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import chess
import chess.engine
import numpy as np
import pytest
import torch

from alphazero_concepts.chess.encoding import PositionArrays
from alphazero_concepts.nn.checkpoints import CheckpointMeta, save_checkpoint
from alphazero_concepts.nn.network import AZNet, NetConfig
from alphazero_concepts.play.uci import (
    GoLimits,
    UciEngine,
    parse_go,
    serve,
    time_budget_s,
    value_to_cp,
    value_to_wdl,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)
MATE_IN_ONE_WHITE = "6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1"  # Ra8#
MATE_IN_ONE_BLACK = "r5k1/8/8/8/8/8/5PPP/6K1 b - - 0 1"  # Ra1#, the same position mirrored
# White is a queen and a rook up, with either side to move
WHITE_AHEAD_W = "4k3/8/8/8/8/8/PPPP4/RQ2K3 w - - 0 1"
WHITE_AHEAD_B = "4k3/8/8/8/8/8/PPPP4/RQ2K3 b - - 0 1"


# ---------------------------------------------------------------------------------------------------------------
# Networks and evaluators with known answers


def tiny_net(seed: int = 0) -> AZNet:
    torch.manual_seed(seed)
    return AZNet(TINY).eval()


def white_wins_net() -> AZNet:
    """A tiny AZNet whose value is +0.995 when White is to move and −0.995 when Black is (side to move's view):
    every position is planted as won for White. Uniform policy. The colour plane (112) is routed through the
    stem, an identity residual block and the value head; batch norms are at their identity initialisation."""
    net = AZNet(TINY)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()
        net.stem_conv.weight[0, 112, 1, 1] = 1.0  # channel 0 = colour (1 White to move, 0 Black)
        net.value_conv.weight[0, 0, 0, 0] = 1.0
        net.value_fc1.weight[0, :64] = 1.0 / 64
        net.value_fc2.weight[0, 0] = 6.0
        net.value_fc2.bias[0] = -3.0  # tanh(6·colour − 3) = ±0.995
    return net.eval()


class SideEvaluator:
    """Uniform priors; every position worth `white_value` to White (side to move's view: sign by turn)."""

    def __init__(self, white_value: float) -> None:
        self.white_value = white_value

    def evaluate(self, arrays: PositionArrays, legal: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        return [np.full(len(i), 1.0 / max(1, len(i))) for i in legal], np.where(arrays.turn, 1, -1) * self.white_value


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("uci_nets")
    return {
        "tiny": save_checkpoint(directory / "tiny.pt", tiny_net(), CheckpointMeta(name="tiny")),
        "white": save_checkpoint(directory / "white.pt", white_wins_net(), CheckpointMeta(name="white-wins")),
    }


def engine_command(checkpoint: Path) -> list[str]:
    return [sys.executable, "-m", "alphazero_concepts.play.uci", "--model", str(checkpoint)]


@pytest.fixture(scope="module")
def engine(checkpoints: dict[str, Path]) -> Iterator[chess.engine.SimpleEngine]:
    eng = chess.engine.SimpleEngine.popen_uci(engine_command(checkpoints["tiny"]), cwd=str(ROOT), timeout=60)
    try:
        yield eng
    finally:
        eng.quit()


# ---------------------------------------------------------------------------------------------------------------
# In process: pure pieces and the protocol with planted evaluators


@pytest.mark.unit
def test_value_mappings_are_monotone_and_odd() -> None:
    qs = np.linspace(-1, 1, 41)
    cps = [value_to_cp(q) for q in qs]
    assert all(b > a for a, b in itertools.pairwise(cps))
    assert value_to_cp(0.0) == 0 and value_to_cp(0.5) == -value_to_cp(-0.5) == 111
    for q in (-1.0, -0.3, 0.0, 0.6, 1.0):
        w, d, loss = value_to_wdl(q)
        assert w + d + loss == 1000 and min(w, d, loss) >= 0
        assert abs((w + d / 2) / 1000 - (1 + q) / 2) < 1e-3  # the expected score matches the value


@pytest.mark.unit
def test_parse_go_and_time_budget() -> None:
    board = chess.Board()
    tokens = "wtime 60000 btime 30000 winc 1000 binc 0 searchmoves e2e4 d2d4 nodes x"
    limits, problems = parse_go(tokens.split(" "), board)
    assert (limits.wtime, limits.btime, limits.winc) == (60000, 30000, 1000)
    assert limits.searchmoves == [chess.Move.from_uci("e2e4"), chess.Move.from_uci("d2d4")]
    assert limits.nodes is None and any("nodes" in p for p in problems)
    white = time_budget_s(limits, chess.WHITE, 50)
    black = time_budget_s(limits, chess.BLACK, 50)
    assert white == pytest.approx((60000 / 30 + 750) / 1000)
    assert black == pytest.approx(1.0) and white > black
    assert time_budget_s(GoLimits(movetime=500), chess.WHITE, 50) == pytest.approx(0.45)
    assert time_budget_s(GoLimits(wtime=100), chess.WHITE, 50) <= 0.025  # never most of a short clock
    assert time_budget_s(GoLimits(wtime=1000, movetime=10), chess.WHITE, 50) == pytest.approx(0.005)
    assert time_budget_s(GoLimits(infinite=True, movetime=100), chess.WHITE, 0) is None
    assert time_budget_s(GoLimits(nodes=10), chess.WHITE, 0) is None
    assert parse_go(["infinite"], board)[0].waits_for_stop
    assert parse_go(["searchmoves", "e2e5"], board)[1]  # an illegal move is reported, not fatal


class Lines:
    """Collects engine output; `wait_for(prefix)` blocks until such a line arrived."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, line: str) -> None:
        with self.cond:
            self.lines.append(line)
            self.cond.notify_all()

    def wait_for(self, prefix: str, timeout: float = 10.0) -> str:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                hits = [x for x in self.lines if x.startswith(prefix)]
                if hits:
                    return hits[-1]
                left = end - time.monotonic()
                assert left > 0, f"no {prefix!r} line in {self.lines}"
                self.cond.wait(left)


def in_process(white_value: float = 0.0) -> tuple[UciEngine, Lines]:
    out = Lines()
    return UciEngine(out, evaluator=SideEvaluator(white_value)), out


def scores(lines: list[str]) -> list[int]:
    return [int(x.split(" score cp ")[1].split()[0]) for x in lines if " score cp " in x]


@pytest.mark.unit
@pytest.mark.parametrize("fen", [WHITE_AHEAD_W, WHITE_AHEAD_B])
def test_score_is_from_the_side_to_move(fen: str) -> None:
    eng, out = in_process(white_value=0.8)
    for line in (f"position fen {fen}", "go nodes 60"):
        assert eng.handle(line)
    eng.wait(10)
    out.wait_for("bestmove")
    cps = scores(out.lines)
    assert cps
    sign = 1 if chess.Board(fen).turn == chess.WHITE else -1
    assert all(sign * cp > 100 for cp in cps), out.lines


@pytest.mark.unit
def test_protocol_errors_are_reported_and_state_kept() -> None:
    eng, out = in_process()
    assert eng.handle("position startpos moves e2e4")
    before = eng.board.fen()
    bad = ["position startpos moves e7e4", "position fen not a fen", "position fen 8/8/8/8/8/8/8/8 w - - 0 1",
           "setoption name NoSuchOption value 3", "setoption name MultiPV value 0", "setoption name MultiPV value x",
           "setoption name Temperature value -1", "setoption", "position", "flurb", "go nodes -5 depth x"]
    for line in bad:
        assert eng.handle(line)
    eng.wait(10)
    assert eng.board.fen() == before
    errors = [x for x in out.lines if x.startswith("info string error:")]
    assert len(errors) >= len(bad), out.lines
    assert eng.options["MultiPV"] == 1 and eng.options["Temperature"] == "0"
    assert out.wait_for("bestmove").split()[1] in {m.uci() for m in eng.board.legal_moves}
    assert eng.handle("setoption name multipv value 3")  # option names are case-insensitive
    assert eng.options["MultiPV"] == 3
    assert not eng.handle("quit")


@pytest.mark.unit
def test_infinite_waits_for_stop_and_multipv_lines() -> None:
    eng, out = in_process()
    eng.handle("setoption name MultiPV value 3")
    eng.handle("setoption name UCI_ShowWDL value true")
    eng.handle("go infinite")
    time.sleep(0.3)
    assert eng.searching and not any(x.startswith("bestmove") for x in out.lines)
    eng.handle("isready")  # answered during the search
    assert "readyok" in out.lines
    eng.handle("stop")
    assert not eng.searching
    best = out.wait_for("bestmove").split()[1]
    assert chess.Move.from_uci(best) in chess.Board().legal_moves
    final = [x for x in out.lines if x.startswith("info depth")][-3:]
    assert [x.split(" multipv ")[1].split()[0] for x in final] == ["1", "2", "3"]
    assert all(" wdl " in x for x in final)


@pytest.mark.unit
def test_game_over_and_single_move() -> None:
    eng, out = in_process()
    eng.handle("position fen 7k/5Q2/6K1/8/8/8/8/8 b - - 0 1")  # stalemate
    eng.handle("go nodes 10")
    eng.wait(10)
    assert out.wait_for("bestmove") == "bestmove (none)"
    eng.handle("position fen k7/8/8/8/8/2K5/8/1R6 b - - 0 1")  # Ka7 is Black's only move
    eng.handle("go wtime 600000 btime 600000")
    start = time.monotonic()
    eng.wait(10)
    assert out.lines[-1] == "bestmove a8a7"
    assert time.monotonic() - start < 2  # played at once, not after the budget of a long clock


@pytest.mark.unit
def test_bad_model_is_reported_and_can_be_fixed(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = Lines()
    eng = UciEngine(out, model=str(tmp_path / "missing.pt"), load_now=False)
    eng.handle("isready")
    assert out.lines[-1] == "readyok" and "missing.pt" in out.lines[-2]
    eng.handle("go nodes 3")
    eng.wait(10)
    assert out.lines[-1] == "bestmove 0000"  # no network: no move, and the GUI is told why
    eng.handle(f"setoption name Model value {checkpoints['tiny']}")
    eng.handle("go nodes 3")
    eng.wait(10)
    assert chess.Move.from_uci(out.lines[-1].split()[1]) in chess.Board().legal_moves
    assert any(x.startswith("info string loaded tiny") for x in out.lines)


# ---------------------------------------------------------------------------------------------------------------
# The engine process through python-chess


@pytest.mark.integration
def test_analyse_with_nodes_and_multipv(engine: chess.engine.SimpleEngine) -> None:
    board = chess.Board()
    board.push_san("e4")
    infos = engine.analyse(board, chess.engine.Limit(nodes=40), multipv=2)
    assert len(infos) == 2
    assert [info["multipv"] for info in infos] == [1, 2]
    assert infos[0]["pv"][0] != infos[1]["pv"][0]
    for info in infos:
        assert info["pv"][0] in board.legal_moves
        assert info["nodes"] == 40
        assert "score" in info and "depth" in info and "nps" in info


@pytest.mark.integration
def test_mate_in_one_is_found_and_scored_for_the_mover(engine: chess.engine.SimpleEngine) -> None:
    for fen, mate in ((MATE_IN_ONE_WHITE, "a1a8"), (MATE_IN_ONE_BLACK, "a8a1")):
        board = chess.Board(fen)
        info = engine.analyse(board, chess.engine.Limit(nodes=300))
        assert info["pv"][0] == chess.Move.from_uci(mate)
        assert info["score"].relative == chess.engine.Mate(1)
        assert (info["score"].white().score(mate_score=10_000) > 0) == (board.turn == chess.WHITE)


@pytest.mark.integration
def test_plays_a_complete_game_against_itself(engine: chess.engine.SimpleEngine) -> None:
    # a short game: it ends by mate (g8=Q# or g8=R#: the search sees it at once) or by the ply cap
    for start, cap, movetime in (("k7/6P1/1K6/8/8/8/8/8 w - - 0 1", 20, 1.0), (chess.STARTING_FEN, 6, 0.05)):
        board = chess.Board(start)
        while not board.is_game_over() and board.ply() < cap:
            result = engine.play(board, chess.engine.Limit(time=movetime))
            assert result.move in board.legal_moves
            board.push(result.move)
        if start != chess.STARTING_FEN:
            assert board.is_checkmate() and board.result() == "1-0"
        else:
            assert board.ply() == cap


@pytest.mark.integration
def test_stop_during_go_infinite(engine: chess.engine.SimpleEngine) -> None:
    board = chess.Board()
    with engine.analysis(board) as analysis:
        start = time.monotonic()
        time.sleep(1.5)
        analysis.stop()
        best = analysis.wait()
    assert time.monotonic() - start < 10
    assert best.move in board.legal_moves
    assert analysis.info.get("nodes", 0) >= 1


@pytest.mark.integration
def test_score_sign_follows_side_to_move_with_planted_net(engine: chess.engine.SimpleEngine,
                                                           checkpoints: dict[str, Path]) -> None:
    engine.configure({"Model": str(checkpoints["white"])})  # switched through the Model option
    try:
        for fen in (WHITE_AHEAD_W, WHITE_AHEAD_B):
            board = chess.Board(fen)
            info = engine.analyse(board, chess.engine.Limit(nodes=30))
            assert info["score"].white().score() > 500, info  # the planted net: White is winning
            mover = info["score"].relative.score()
            assert (mover > 0) == (board.turn == chess.WHITE), info
    finally:
        engine.configure({"Model": str(checkpoints["tiny"])})


GARBAGE = (b"\xff\xfe\x00garbage \x80\x81 !!!\n" b"position fen \n" b"setoption name\n" b"position fen 8/8 w\n"
           + b"x" * 5000 + b"\n" + b"position startpos moves e2e4 zz99\n")


@pytest.mark.integration
def test_process_survives_raw_garbage(engine: chess.engine.SimpleEngine) -> None:
    protocol = engine.protocol
    pipe = protocol.transport.get_pipe_transport(0)  # the engine's stdin: raw bytes, not even UTF-8
    protocol.loop.call_soon_threadsafe(pipe.write, GARBAGE)
    engine.ping()  # isready → readyok
    board = chess.Board()
    info = engine.analyse(board, chess.engine.Limit(nodes=5))
    assert info["pv"][0] in board.legal_moves


@pytest.mark.integration
def test_serve_loop_reports_garbage_and_keeps_serving(checkpoints: dict[str, Path]) -> None:
    stdin = io.BytesIO(b"uci\n" + GARBAGE + b"isready\ngo nodes banana nodes 3 \xff\nisready\n")
    stdout = io.StringIO()
    serve(stdin, stdout, model=str(checkpoints["tiny"]))  # ends at the end of input, after the search
    lines = stdout.getvalue().splitlines()
    assert lines.count("readyok") == 2 and "uciok" in lines
    assert sum(x.startswith("info string error:") for x in lines) >= 5, lines
    assert any("banana" in x for x in lines) and any("\ufffd" in x for x in lines)  # bad bytes shown, not fatal
    best = [x for x in lines if x.startswith("bestmove")]
    assert len(best) == 1 and chess.Move.from_uci(best[0].split()[1]) in chess.Board().legal_moves
    assert "info depth" in "\n".join(lines) and " nodes 3 " in [x for x in lines if x.startswith("info depth")][-1]
