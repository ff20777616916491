"""Tests for the batched PUCT search: mates, terminal rules, value signs, determinism, batching, caching."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

import chess
import numpy as np
import pytest
import torch

from alphazero_concepts.chess.encoding import PositionArrays, boards_to_arrays, encode, move_to_index
from alphazero_concepts.nn.network import AZNet, NetConfig, predict
from alphazero_concepts.search.mcts import (
    MCTS,
    MCTSConfig,
    NetEvaluator,
    Node,
    SearchResult,
    UniformEvaluator,
    legal_softmax,
)

pytestmark = pytest.mark.unit

BACK_RANK_MATE_IN_ONE = "6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1"  # Ra8#
# Rd8+ Rxd8 Qxd8#: the rook must go first (the queen is behind it), Black's only reply is Rxd8
MATE_IN_TWO = "2r3k1/5ppp/8/8/8/8/3R1PPP/3Q2K1 w - - 0 1"
FOOLS_MATE = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"
STALEMATE = "7k/5Q2/6K1/8/8/8/8/8 b - - 0 1"


# ---------------------------------------------------------------------------------------------------------------
# Test evaluators


def uniform_priors(legal: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.full(len(idx), 1.0 / max(1, len(idx))) for idx in legal]


class SideEvaluator:
    """Uniform priors; value `white_value` where White is to move and −`white_value` where Black is (side-to-move
    view), so every position is worth `white_value` to White."""

    def __init__(self, white_value: float) -> None:
        self.white_value = white_value

    def evaluate(self, arrays: PositionArrays, legal: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        return uniform_priors(legal), np.where(arrays.turn, self.white_value, -self.white_value)


class HashEvaluator:
    """Pseudo-random priors and values that depend only on the evaluated input (a hash of its arrays)."""

    def __init__(self) -> None:
        self.positions = 0

    def evaluate(self, arrays: PositionArrays, legal: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        priors, values = [], []
        for i, idx in enumerate(legal):
            key = b"".join(
                (arrays.bitboards[i].tobytes(), arrays.repetitions[i].tobytes(), arrays.turn[i].tobytes(),
                 arrays.castling[i].tobytes(), arrays.halfmove[i].tobytes())
            )  # fmt: skip
            rng = np.random.default_rng(zlib.crc32(key))
            weights = rng.random(4672)[idx] + 0.05
            priors.append(weights / weights.sum())
            values.append(rng.uniform(-0.9, 0.9))
        self.positions += len(legal)
        return priors, np.array(values)


class RecordingEvaluator:
    """Uniform priors and value 0; keeps every batch of arrays it was asked about."""

    def __init__(self) -> None:
        self.batches: list[PositionArrays] = []

    def evaluate(self, arrays: PositionArrays, legal: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        self.batches.append(arrays)
        return uniform_priors(legal), np.zeros(len(legal))


def played(*sans: str, start: str = chess.STARTING_FEN) -> chess.Board:
    board = chess.Board(start)
    for san in sans:
        board.push_san(san)
    return board


def random_boards(n: int, seed: int) -> list[chess.Board]:
    """`n` positions, with their histories, from one seeded random game each."""
    rng = np.random.default_rng(seed)
    boards = []
    while len(boards) < n:
        board = chess.Board()
        for _ in range(int(rng.integers(4, 40))):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(moves[int(rng.integers(len(moves)))])
        if not board.is_game_over():
            boards.append(board)
    return boards


def child_of(result: SearchResult, uci: str) -> tuple[int, Node | None]:
    a = result.moves.index(chess.Move.from_uci(uci))
    return a, result.root.children[a]


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        if child is not None:
            yield from walk(child)


def mates_in_one(board: chess.Board) -> list[chess.Move]:
    out = []
    for move in board.legal_moves:
        board.push(move)
        if board.is_checkmate():
            out.append(move)
        board.pop()
    return out


def forces_mate_next(board: chess.Board, move: chess.Move) -> bool:
    """After `move`, every reply allows a mate in one."""
    board.push(move)
    try:
        if board.is_checkmate():
            return True
        replies = list(board.legal_moves)
        if not replies:
            return False
        for reply in replies:
            board.push(reply)
            ok = bool(mates_in_one(board))
            board.pop()
            if not ok:
                return False
        return True
    finally:
        board.pop()


# ---------------------------------------------------------------------------------------------------------------
# Mates and terminal roots


@pytest.mark.parametrize("colour", ["white", "black"])
def test_finds_mate_in_one(colour: str) -> None:
    board = chess.Board(BACK_RANK_MATE_IN_ONE)
    if colour == "black":
        board = board.mirror()
    (mate,) = mates_in_one(board)  # the position has exactly one mate
    result = MCTS(UniformEvaluator(), MCTSConfig(simulations=300)).search([board])[0]
    a = result.moves.index(mate)
    assert result.best_move() == mate
    assert result.q[a] == 1.0
    assert result.root.children[a].terminal_value == -1.0  # the mated side to move
    assert result.root_value > 0.5
    assert result.pv == [mate]
    assert result.visits.sum() == 300


@pytest.mark.parametrize("colour", ["white", "black"])
def test_finds_mate_in_two(colour: str) -> None:
    board = chess.Board(MATE_IN_TWO)
    if colour == "black":
        board = board.mirror()
    assert not mates_in_one(board)
    winning = [m for m in board.legal_moves if forces_mate_next(board, m)]
    assert len(winning) == 1  # brute force: a unique first move
    key = winning[0]
    # A flat value (0) with first-play-urgency reduction keeps revisiting the first children tried; without it every
    # unvisited child looks as good as a visited draw, so the search spreads out and finds the sacrifice.
    result = MCTS(UniformEvaluator(), MCTSConfig(simulations=2000, fpu_reduction=0.0)).search([board])[0]
    a = result.moves.index(key)
    assert result.best_move() == key
    assert result.q[a] > 0.9
    assert result.root_value > 0.5
    board.push(key)
    (reply,) = board.legal_moves
    board.push(reply)
    assert result.pv[:3] == [key, reply, *mates_in_one(board)]


@pytest.mark.parametrize(("fen", "value"), [(FOOLS_MATE, -1.0), (STALEMATE, 0.0)])
def test_terminal_roots_return_the_rule_value_without_search(fen: str, value: float) -> None:
    evaluator = RecordingEvaluator()
    search = MCTS(evaluator, MCTSConfig(simulations=50))
    result = search.search([chess.Board(fen)])[0]
    assert result.moves == [] and result.visits.size == 0 and result.pv == []
    assert result.root_value == value and result.nn_value == value
    assert result.best_move() is None
    assert evaluator.batches == [] and search.calls == 0


def test_an_insufficient_material_root_is_a_draw() -> None:
    board = chess.Board("8/8/4k3/8/8/3K4/8/8 w - - 0 1")
    result = MCTS(UniformEvaluator(0.7), MCTSConfig(simulations=20)).search([board])[0]
    assert result.root_value == 0.0 and result.visits.sum() == 0 and result.pv == []


# ---------------------------------------------------------------------------------------------------------------
# Value signs


@pytest.mark.parametrize(("board", "root_white"), [(chess.Board(), True), (played("e4"), False)])
def test_values_are_backed_up_from_each_nodes_side_to_move(board: chess.Board, root_white: bool) -> None:
    """Every position is worth +0.5 to White. A node's Q is from its own side to move's view, so White's nodes
    see +0.5 for each child and Black's nodes see −0.5, at every depth."""
    result = MCTS(SideEvaluator(0.5), MCTSConfig(simulations=200)).search([board])[0]
    for_root = 0.5 if root_white else -0.5
    assert result.nn_value == for_root
    assert result.root_value == pytest.approx(for_root)
    visited = result.visits > 0
    assert visited.sum() >= 5
    np.testing.assert_array_equal(result.q[visited], for_root)  # depth 1: the root's view
    depth2 = 0
    for child in result.root.children:
        if child is None or child.n_total == 0:
            continue
        q = child.q()
        np.testing.assert_array_equal(q[child.N > 0], -for_root)  # depth 2: the child's side to move
        assert child.value() == pytest.approx(-for_root)
        depth2 += 1
    assert depth2 >= 3


# ---------------------------------------------------------------------------------------------------------------
# Determinism and batching


def test_same_seed_same_search_with_root_noise() -> None:
    config = MCTSConfig(simulations=120, add_noise=True)

    def run(seed: int) -> SearchResult:
        return MCTS(UniformEvaluator(), config, rng=np.random.default_rng(seed)).search([chess.Board()])[0]

    first, again = run(42), run(42)
    np.testing.assert_array_equal(first.visits, again.visits)
    np.testing.assert_array_equal(first.priors, again.priors)
    assert first.pv == again.pv
    assert not np.allclose(first.priors, 1 / 20)  # the noise was added
    others = [run(seed) for seed in (1, 2, 3)]
    assert all(not np.array_equal(o.priors, first.priors) for o in others)
    assert any(not np.array_equal(o.visits, first.visits) for o in others)


def test_batched_search_equals_one_by_one() -> None:
    boards = random_boards(8, seed=3)
    assert len({b.fen() for b in boards}) == 8
    config = MCTSConfig(simulations=60)
    together = MCTS(HashEvaluator(), config).search(boards)
    for board, batched in zip(boards, together, strict=True):
        alone = MCTS(HashEvaluator(), config).search([board])[0]
        assert batched.moves == alone.moves
        np.testing.assert_array_equal(batched.visits, alone.visits)
        assert batched.pv == alone.pv
        np.testing.assert_array_equal(batched.q, alone.q)
        assert batched.root_value == alone.root_value
        assert batched.visits.sum() == 60


def test_the_root_is_evaluated_on_the_same_arrays_as_encode() -> None:
    """The network sees at the root (and its first child) what `encode` gives for the same board and history."""
    boards = [
        played("Nf3", "Nf6", "Ng1", "Ng8", "Nf3", "Nf6", "Ng1", "Ng8", "e4"),  # repetitions before a pawn move
        played("Nf3", "Nf6", "Ng1", "Ng8", "Nf3", "Nf6", "Ng1"),
        played("e4", "e5", "Nf3", "Nc6", "Bb5", "a6", "Bxc6", "dxc6", "O-O"),
        # an en-passant right no legal capture uses does not make a new position (python-chess's rule)
        played("d5", "Ka6", "Kf8", "Ka5", "Ke8", start="4k3/3p4/8/K3P2r/8/8/8/8 b - - 0 1"),
        *random_boards(3, seed=8),
    ]
    evaluator = RecordingEvaluator()
    MCTS(evaluator, MCTSConfig(simulations=1)).search(boards)
    roots, children = evaluator.batches
    expected_children = []
    for board in boards:
        child = board.copy()
        child.push(next(iter(board.legal_moves)))  # uniform priors: the first move is tried first
        expected_children.append(child)
    for got, boards_ in ((roots, boards), (children, expected_children)):
        want = boards_to_arrays(boards_)
        np.testing.assert_array_equal(got.bitboards, want.bitboards)
        np.testing.assert_array_equal(got.repetitions, want.repetitions)
        np.testing.assert_array_equal(got.turn, want.turn)
        np.testing.assert_array_equal(got.castling, want.castling)
        np.testing.assert_array_equal(got.ply, want.ply)
        np.testing.assert_array_equal(got.halfmove, want.halfmove)


# ---------------------------------------------------------------------------------------------------------------
# Draw rules


def test_threefold_repetition_counts_the_roots_game_history() -> None:
    # the start position occurred at plies 0 and 4; Black's Ng8 would make it three times
    board = played("Nf3", "Nf6", "Ng1", "Ng8", "Nf3", "Nf6", "Ng1")
    evaluator = SideEvaluator(-0.9)  # every position is worth +0.9 to Black, the root's side to move
    result = MCTS(evaluator, MCTSConfig(simulations=400)).search([board])[0]
    a, child = child_of(result, "f6g8")
    assert result.visits[a] > 0 and child is not None
    assert child.terminal_value == 0.0
    assert result.q[a] == 0.0  # a draw, not the evaluator's +0.9
    others = (result.visits > 0) & (np.arange(len(result.moves)) != a)
    assert others.any()
    np.testing.assert_allclose(result.q[others], 0.9, rtol=0, atol=1e-12)

    # with only one earlier occurrence the same move is not a draw...
    once = played("Nf3", "Nf6", "Ng1")
    result = MCTS(evaluator, MCTSConfig(simulations=400)).search([once])[0]
    a, child = child_of(result, "f6g8")
    assert child is not None and child.terminal_value is None
    assert result.q[a] == pytest.approx(0.9, abs=1e-12)
    # ...unless a single repetition is made to count
    result = MCTS(evaluator, MCTSConfig(simulations=400, repetition_draw=2)).search([once])[0]
    a, child = child_of(result, "f6g8")
    assert child is not None and child.terminal_value == 0.0 and result.q[a] == 0.0


def test_a_threefold_repetition_root_is_a_draw() -> None:
    board = played("Nf3", "Nf6", "Ng1", "Ng8", "Nf3", "Nf6", "Ng1", "Ng8")
    assert board.can_claim_threefold_repetition()
    result = MCTS(UniformEvaluator(0.8), MCTSConfig(simulations=20)).search([board])[0]
    assert result.root_value == 0.0 and result.visits.sum() == 0


def test_repetitions_combine_the_tree_path_and_the_game_history() -> None:
    """Root after 1.Nf3 Nf6 2.Ng1 (start position seen once, at ply 0). Along the knight shuffle in the tree the
    start position returns at depth 1 (second time) and depth 5 (third time: a draw)."""
    shuffle = ("f6g8", "g1f3", "g8f6", "f3g1", "f6g8")
    board = played("Nf3", "Nf6", "Ng1")
    # priors almost all on the shuffling knight moves (an index means the same move for both colours)
    white = chess.Board()
    favoured = {move_to_index(chess.Move.from_uci(u), white) for u in ("g1f3", "f3g1")}

    class ShuffleEvaluator:
        def evaluate(self, arrays: PositionArrays, legal: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
            priors = []
            for idx in legal:
                w = np.array([1000.0 if i in favoured else 1.0 for i in idx])
                priors.append(w / w.sum())
            return priors, np.zeros(len(legal))

    result = MCTS(ShuffleEvaluator(), MCTSConfig(simulations=200)).search([board])[0]
    node = result.root
    expected_reps = [1, 1, 1, 1, 2]
    for depth, (uci, reps) in enumerate(zip(shuffle, expected_reps, strict=True), start=1):
        a = node.moves.index(chess.Move.from_uci(uci))
        child = node.children[a]
        assert child is not None, f"the search did not reach depth {depth}"
        assert child.reps == reps, depth
        if depth < len(shuffle):
            assert child.terminal_value is None, depth
            node = child
        else:
            assert child.terminal_value == 0.0
            assert node.N[a] > 0 and node.W[a] == 0.0


def test_fifty_move_rule_makes_quiet_moves_draws() -> None:
    board = chess.Board("4k3/8/8/8/8/8/4P3/R3K3 w - - 99 80")
    result = MCTS(SideEvaluator(0.9), MCTSConfig(simulations=300)).search([board])[0]
    checked = {"pawn": 0, "quiet": 0}
    for a, move in enumerate(result.moves):
        child = result.root.children[a]
        if child is None:
            continue
        if board.piece_type_at(move.from_square) == chess.PAWN:
            assert child.terminal_value is None and child.halfmove == 0
            assert result.q[a] == pytest.approx(0.9, abs=1e-12)
            checked["pawn"] += 1
        else:
            assert child.terminal_value == 0.0 and child.halfmove == 100
            assert result.q[a] == 0.0
            checked["quiet"] += 1
    assert checked["pawn"] == 2 and checked["quiet"] >= 5
    assert board.piece_type_at(result.best_move().from_square) == chess.PAWN


def test_checkmate_beats_the_fifty_move_rule() -> None:
    board = chess.Board(BACK_RANK_MATE_IN_ONE.replace("0 1", "99 80"))
    result = MCTS(UniformEvaluator(), MCTSConfig(simulations=100)).search([board])[0]
    a, child = child_of(result, "a1a8")
    assert child is not None and child.terminal_value == -1.0 and result.q[a] == 1.0
    _, quiet = child_of(result, "g1h1")
    assert quiet is None or quiet.terminal_value == 0.0


# ---------------------------------------------------------------------------------------------------------------
# Virtual loss and the cache


def test_virtual_loss_leaves_consistent_statistics() -> None:
    boards = random_boards(3, seed=5)
    config = MCTSConfig(simulations=203, leaves_per_tree=4)
    results = MCTS(HashEvaluator(), config).search(boards)
    for result in results:
        assert result.visits.sum() == 203
        for node in walk(result.root):
            if not node.expanded:
                continue
            assert np.all(node.N >= 0)
            np.testing.assert_array_equal(node.N, np.round(node.N))  # no fractional virtual visits left
            assert node.n_total == node.N.sum()
            assert np.all(np.abs(node.W) <= node.N + 1e-9)
            seen = node.N > 0
            np.testing.assert_allclose(node.Q[seen], node.W[seen] / node.N[seen])
            np.testing.assert_allclose(node.Q[~seen], node.nn_value - config.fpu_reduction)
            for a, child in enumerate(node.children):
                if child is not None and child.expanded:
                    assert child.n_total <= node.N[a] - 1  # one visit expanded the child, the rest went below


def test_the_cache_saves_evaluations_on_a_repeated_search() -> None:
    evaluator = HashEvaluator()
    search = MCTS(evaluator, MCTSConfig(simulations=80))
    board = random_boards(1, seed=9)[0]
    first = search.search([board])[0]
    calls, positions = search.calls, evaluator.positions
    assert positions == search.evaluations > 0
    second = search.search([board])[0]
    assert search.calls - calls < calls
    assert evaluator.positions - positions < positions
    np.testing.assert_array_equal(first.visits, second.visits)
    assert first.pv == second.pv


# ---------------------------------------------------------------------------------------------------------------
# The network evaluator


def test_net_evaluator_priors_are_a_softmax_over_legal_moves() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = AZNet(NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)).eval()
    boards = [chess.Board(), played("e4", "c5", "Nf3")]
    results = MCTS(NetEvaluator(net), MCTSConfig(simulations=16)).search(boards)
    logits, values = predict(net, encode(boards))
    for i, (board, result) in enumerate(zip(boards, results, strict=True)):
        assert len(result.priors) == board.legal_moves.count()
        assert result.priors.sum() == pytest.approx(1.0)
        assert np.all(result.priors > 0)
        assert result.visits.sum() == 16
        idx = np.array([move_to_index(m, board) for m in result.moves])
        expected = np.exp(logits[i, idx] - logits[i, idx].max())
        np.testing.assert_allclose(result.priors, expected / expected.sum(), rtol=1e-5)
        assert result.nn_value == pytest.approx(float(values[i]), abs=1e-6)
        assert -1 <= result.nn_value <= 1


def test_legal_softmax_equals_a_per_row_softmax() -> None:
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((5, 4672)) * 3).astype(np.float32)
    logits[3] += 1000.0  # large logits stay finite
    legal = [rng.choice(4672, size=k, replace=False) for k in (20, 1, 0, 35, 7)]
    out = legal_softmax(logits, legal)
    assert len(out) == 5
    for row, idx, got in zip(logits, legal, out, strict=True):
        assert got.shape == (len(idx),)
        if len(idx) == 0:
            continue
        x = row[idx].astype(np.float64)
        want = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert got.sum() == pytest.approx(1.0)
    assert legal_softmax(logits[:2], [np.empty(0, np.int64)] * 2)[0].size == 0


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="simulations"):
        MCTSConfig(simulations=0)
    with pytest.raises(ValueError, match="leaves_per_tree"):
        MCTSConfig(leaves_per_tree=0)
    with pytest.raises(ValueError, match="repetition_draw"):
        MCTSConfig(repetition_draw=4)


@pytest.mark.unit
def test_should_stop_ends_the_search_early_with_consistent_counts() -> None:
    steps = {"n": 0}

    def stop_after_ten() -> bool:
        steps["n"] += 1
        return steps["n"] >= 10

    boards = [chess.Board(), chess.Board("r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3")]
    results = MCTS(UniformEvaluator(), MCTSConfig(simulations=10_000)).search(boards, should_stop=stop_after_ten)
    for result in results:
        assert result.visits.sum() == 10  # one leaf per tree per step, ten steps
        assert result.best_move() in result.board.legal_moves


# ---------------------------------------------------------------------------------------------------------------
# Overlap: half the trees select while the other half's network call runs


class ThreadRecordingEvaluator(HashEvaluator):
    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def evaluate(self, arrays: PositionArrays, legal: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        import threading

        self.threads.append(threading.current_thread().name)
        return super().evaluate(arrays, legal)


@pytest.mark.parametrize("leaves", [1, 3])
def test_overlapped_search_equals_the_plain_one(leaves: int) -> None:
    boards = [*random_boards(8, seed=11), chess.Board(BACK_RANK_MATE_IN_ONE), chess.Board(MATE_IN_TWO)]
    plain_cfg = MCTSConfig(simulations=57, leaves_per_tree=leaves, overlap_min_trees=0, add_noise=True)
    over_cfg = MCTSConfig(**{**plain_cfg.to_dict(), "overlap_min_trees": 2})
    plain = MCTS(HashEvaluator(), plain_cfg, rng=np.random.default_rng(4)).search(boards)
    evaluator = ThreadRecordingEvaluator()
    over = MCTS(evaluator, over_cfg, rng=np.random.default_rng(4)).search(boards)
    assert any(name.startswith("mcts-eval") for name in evaluator.threads)  # the overlap really ran
    for a, b in zip(plain, over, strict=True):
        np.testing.assert_array_equal(a.visits, b.visits)
        np.testing.assert_array_equal(a.priors, b.priors)
        np.testing.assert_array_equal(a.q, b.q)
        assert a.pv == b.pv
        assert b.visits.sum() == 57
    mate = over[8].moves.index(chess.Move.from_uci("a1a8"))  # a terminal leaf, backed up without the network
    assert over[8].visits[mate] == 0 or over[8].q[mate] == 1.0


def test_overlapped_search_stops_with_every_tree_at_the_same_step() -> None:
    steps = {"n": 0}

    def stop_after_seven() -> bool:
        steps["n"] += 1
        return steps["n"] >= 7

    boards = random_boards(5, seed=12)
    config = MCTSConfig(simulations=10_000, overlap_min_trees=2)
    results = MCTS(HashEvaluator(), config).search(boards, should_stop=stop_after_seven)
    assert [int(r.visits.sum()) for r in results] == [7] * 5
