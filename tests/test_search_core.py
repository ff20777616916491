"""The compiled search core against its references: python-chess for the rules, `ReferenceMCTS` for the search.

The compiled core is the reference search made fast, so these tests ask for equality, not closeness: the same legal
moves in the same order, the same boards after a move, the same repetition keys, the same trees (visits, values,
priors, terminal values, repetition counts at every node) and the same arrays sent to the evaluator.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence

import chess
import numpy as np
import pytest

from alphazero_concepts.chess.encoding import PositionArrays
from alphazero_concepts.chess.formats import BoardFormat, get_format
from alphazero_concepts.search import rules
from alphazero_concepts.search import tree as T
from alphazero_concepts.search.mcts import (
    MCTS,
    MCTSConfig,
    ReferenceMCTS,
    SearchNode,
    SearchResult,
    TreeNode,
    UniformEvaluator,
)
from alphazero_concepts.search.mcts_reference import Node as ReferenceNode

pytestmark = pytest.mark.unit


def played(*sans: str, start: str = chess.STARTING_FEN) -> chess.Board:
    board = chess.Board(start)
    for san in sans:
        board.push_san(san)
    return board


def random_game_boards(n: int, seed: int, start: str = chess.STARTING_FEN, max_plies: int = 80) -> list[chess.Board]:
    """`n` positions with their histories, each from its own seeded random game (captures and promotions
    favoured, so that games reach endings, promotions and en passant)."""
    rng = random.Random(seed)
    boards = []
    while len(boards) < n:
        board = chess.Board(start)
        for _ in range(rng.randint(2, max_plies)):
            moves = list(board.legal_moves)
            if not moves:
                break
            sharp = [m for m in moves if board.is_capture(m) or m.promotion]
            board.push(rng.choice(sharp) if sharp and rng.random() < 0.4 else rng.choice(moves))
        if not board.is_game_over():
            boards.append(board)
    return boards


# Positions with every rule the search must get right, each with the history that makes it.
SPECIAL = {
    "start": chess.Board(),
    "castling both ways": chess.Board("r3k2r/pppq1ppp/2n2n2/2bpp3/2BPP1b1/2N2N2/PPPQ1PPP/R3K2R w KQkq - 4 8"),
    "castling through an attacked square": chess.Board("r3k2r/8/8/8/2b5/8/8/R3K2R w KQkq - 0 1"),
    "castling rights that FEN says but the rooks do not": chess.Board("4k2r/8/8/8/8/8/8/4K2R w KQkq - 0 1"),
    "en passant": played("e4", "a6", "e5", "d5"),
    "en passant pinned on the rank": played("d5", start="4k3/3p4/8/K3P2r/8/8/8/8 b - - 0 1"),
    "en passant evading check": played("d5", start="4k3/3p4/8/4P3/2K5/8/8/8 b - - 0 1"),
    "promotions": chess.Board("1n5k/P7/8/8/8/8/6Kp/8 w - - 0 1"),
    "black promotes": chess.Board("8/8/8/8/8/k7/1p4K1/2N5 b - - 0 1"),
    "in check": chess.Board("rnbqkbnr/ppp2ppp/8/1B1pp3/4P3/8/PPPP1PPP/RNBQK1NR b KQkq - 1 3"),
    "double check": chess.Board("4k3/8/8/8/8/5n2/8/r3K3 w - - 0 1"),
    "repetition in the tree": played("Nf3", "Nf6", "Ng1", "Ng8", "Nf3", "Nf6", "Ng1"),
    "repetition once before": played("Nf3", "Nf6", "Ng1"),
    "threefold root": played("Nf3", "Nf6", "Ng1", "Ng8", "Nf3", "Nf6", "Ng1", "Ng8"),
    "fifty moves next ply": chess.Board("4k3/8/8/8/8/8/4P3/R3K3 w - - 99 80"),
    "fifty moves in two plies": chess.Board("4k3/8/8/8/8/8/4P3/R3K3 w - - 98 80"),
    "fifty-move root": chess.Board("4k3/8/8/8/8/8/4P3/R3K3 w - - 100 80"),
    "mate in one": chess.Board("6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1"),
    "mate in one beats fifty moves": chess.Board("6k1/5ppp/8/8/8/8/8/R5K1 w - - 99 80"),
    "mate in two": chess.Board("2r3k1/5ppp/8/8/8/8/3R1PPP/3Q2K1 w - - 0 1"),
    "checkmated root": chess.Board("rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"),
    "stalemated root": chess.Board("7k/5Q2/6K1/8/8/8/8/8 b - - 0 1"),
    "stalemate in one": chess.Board("7k/8/6K1/8/8/8/8/5Q2 w - - 0 1"),
    "insufficient material root": chess.Board("8/8/4k3/8/8/3K4/3N4/8 w - - 0 1"),
    "capture to insufficient material": chess.Board("8/8/4k3/8/3r4/3K4/8/8 w - - 0 1"),
    "bishops of one colour": chess.Board("8/8/4k3/2b5/8/3K4/4B3/8 w - - 0 1"),
}


# ---------------------------------------------------------------------------------------------------------------
# Evaluators


class HashEvaluator:
    """Pseudo-random priors and values that depend only on the evaluated input; records every call."""

    def __init__(self, fmt: BoardFormat | None = None) -> None:
        if fmt is not None:
            self.format = fmt
        self.batches: list[tuple[PositionArrays, list[np.ndarray]]] = []

    def evaluate(self, arrays: PositionArrays, legal: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        self.batches.append((arrays, [np.array(ix) for ix in legal]))
        priors, values = [], []
        for i, idx in enumerate(legal):
            key = b"".join((arrays.bitboards[i].tobytes(), arrays.repetitions[i].tobytes(), arrays.turn[i].tobytes(),
                            arrays.castling[i].tobytes(), arrays.halfmove[i].tobytes(), arrays.ply[i].tobytes()))
            rng = np.random.default_rng(zlib.crc32(key))
            weights = rng.random(4672)[idx] + 0.05
            priors.append(weights / weights.sum())
            values.append(rng.uniform(-0.9, 0.9))
        return priors, np.array(values)


# ---------------------------------------------------------------------------------------------------------------
# Comparisons


def assert_same_tree(ref: SearchNode, new: SearchNode, where: str = "root") -> int:
    """Every node of the two trees equal; returns how many nodes were compared."""
    assert new.moves == ref.moves, where
    np.testing.assert_array_equal(new.index, ref.index, err_msg=where)
    assert new.expanded == ref.expanded, where
    assert new.terminal_value == ref.terminal_value, where
    assert new.reps == ref.reps, where  # type: ignore[attr-defined]
    assert new.halfmove == ref.halfmove, where  # type: ignore[attr-defined]
    for name in ("N", "W", "Q", "P"):
        np.testing.assert_array_equal(getattr(new, name), getattr(ref, name), err_msg=f"{where}: {name}")
    assert new.n_total == ref.n_total and new.nn_value == ref.nn_value, where
    assert (new.board.fen() == ref.board.fen()), where  # type: ignore[attr-defined]
    count = 1
    ref_children, new_children = ref.children, new.children
    assert len(new_children) == len(ref_children), where
    for move, r, n in zip(ref.moves if ref_children else [], ref_children, new_children, strict=True):
        assert (r is None) == (n is None), f"{where} {move}"
        if r is not None and n is not None:
            count += assert_same_tree(r, n, f"{where} {move}")
    return count


def assert_same_results(ref: Sequence[SearchResult], new: Sequence[SearchResult]) -> int:
    nodes = 0
    for r, n in zip(ref, new, strict=True):
        assert n.board.fen() == r.board.fen() and n.board.move_stack == r.board.move_stack
        assert n.moves == r.moves
        np.testing.assert_array_equal(n.visits, r.visits)
        np.testing.assert_array_equal(n.q, r.q)
        np.testing.assert_array_equal(n.priors, r.priors)
        assert n.root_value == r.root_value and n.nn_value == r.nn_value
        assert n.pv == r.pv and n.terminal == r.terminal and n.best_move() == r.best_move()
        assert isinstance(n.root, TreeNode) and isinstance(r.root, ReferenceNode)
        nodes += assert_same_tree(r.root, n.root)
    return nodes


def assert_same_batches(ref: HashEvaluator, new: HashEvaluator) -> None:
    assert len(new.batches) == len(ref.batches)
    for (ra, rl), (na, nl) in zip(ref.batches, new.batches, strict=True):
        for name in ("bitboards", "repetitions", "turn", "castling", "ply", "halfmove"):
            r, n = getattr(ra, name), getattr(na, name)
            assert n.dtype == r.dtype and n.shape == r.shape, name
            np.testing.assert_array_equal(n, r, err_msg=name)
        assert len(nl) == len(rl)
        for r, n in zip(rl, nl, strict=True):
            assert n.dtype == r.dtype
            np.testing.assert_array_equal(n, r)


def both(boards: Sequence[chess.Board], config: MCTSConfig, fmt: BoardFormat | None = None,
         searches: int = 1) -> tuple[HashEvaluator, HashEvaluator, int]:
    """Search `boards` with both cores (`searches` times on the same search object: its cache carries over) and
    check that everything is equal; returns the evaluators and the number of tree nodes compared."""
    ref_eval, new_eval = HashEvaluator(fmt), HashEvaluator(fmt)
    ref = ReferenceMCTS(ref_eval, config, rng=np.random.default_rng(7))
    new = MCTS(new_eval, config, rng=np.random.default_rng(7))
    nodes = 0
    for _ in range(searches):
        nodes += assert_same_results(ref.search(boards), new.search(boards))
        assert (new.evaluations, new.calls) == (ref.evaluations, ref.calls)
    assert_same_batches(ref_eval, new_eval)
    return ref_eval, new_eval, nodes


# ---------------------------------------------------------------------------------------------------------------
# The rules


def _decode(mv: int) -> chess.Move:
    return chess.Move(mv & 63, (mv >> 6) & 63, ((mv >> 12) & 7) or None)


def test_compiled_rules_equal_python_chess_move_for_move() -> None:
    """Legal moves (same order), check, the board after every move, the repetition key's en-passant square and
    insufficient material, along random games and the special positions."""
    out = np.empty(rules.MAX_MOVES, dtype=np.int32)
    scratch = np.empty(rules.MAX_MOVES, dtype=np.int32)
    rng = random.Random(1)
    starts = [b.copy() for b in SPECIAL.values()] + [chess.Board() for _ in range(24)]
    positions = 0
    for board in starts:
        for _ in range(150):
            bb, info = rules.board_rows(board)
            n, in_check = rules.legal_moves(bb, info, out, scratch)
            expected = list(board.legal_moves)
            assert [_decode(int(m)) for m in out[:n]] == expected, board.fen()
            assert in_check == board.is_check(), board.fen()
            ep_key = board._transposition_key()[-1]
            assert rules.legal_ep_square(bb, info, out, n) == (-1 if ep_key is None else ep_key), board.fen()
            assert rules.is_insufficient_material(bb) == board.is_insufficient_material(), board.fen()
            positions += 1
            if not expected:
                break
            sharp = [m for m in expected if board.is_capture(m) or m.promotion or board.is_castling(m)]
            move = rng.choice(sharp) if sharp and rng.random() < 0.5 else rng.choice(expected)
            after_bb, after_info = bb.copy(), info.copy()
            rules.push(after_bb, after_info, int(out[expected.index(move)]))
            board.push(move)
            want_bb, want_info = rules.board_rows(board)
            np.testing.assert_array_equal(after_bb, want_bb, err_msg=board.fen())
            np.testing.assert_array_equal(after_info, want_info, err_msg=board.fen())
            assert rules.rows_board(after_bb, after_info).fen(en_passant="fen") == board.fen(en_passant="fen")
    assert positions > 3000


def test_history_key_rows_equal_the_transposition_keys_of_the_game() -> None:
    """The positions before a root, read from python-chess's saved states, are keyed as `_transposition_key` keys
    the boards that popping the moves gives back (castling cleaned, en passant only when capturable)."""
    boards = [*random_game_boards(30, seed=2, max_plies=60),
              *random_game_boards(10, seed=3, start="r3k2r/pppppppp/8/8/8/8/PPPPPPPP/R3K2R w KQkq - 0 1"),
              *random_game_boards(10, seed=4, start="4k2r/pppp1ppp/8/8/8/8/PPP1PPPP/4K2R w KQkq - 0 1")]
    for board in boards:
        rows = T.history_key_rows(board._stack[::-1])
        popped = board.copy()
        for row in rows:
            popped.pop()
            key = popped._transposition_key()
            ep = 0 if key[10] is None else key[10] + 1
            assert [int(x) for x in row] == [*key[:8], key[9], int(key[8]), ep]


def test_unsupported_boards_are_searched_by_the_reference() -> None:
    board = chess.Board.from_chess960_pos(100)
    assert not rules.supported(board) and rules.supported(chess.Board())
    evaluator = HashEvaluator()
    search = MCTS(evaluator, MCTSConfig(simulations=20))
    result = search.search([board, chess.Board()])
    assert isinstance(result[0].root, ReferenceNode) and result[0].visits.sum() == 20
    expected = ReferenceMCTS(HashEvaluator(), MCTSConfig(simulations=20)).search([board, chess.Board()])
    assert [r.pv for r in result] == [r.pv for r in expected]
    assert search.calls == len(evaluator.batches) > 0 and search.evaluations > 0


# ---------------------------------------------------------------------------------------------------------------
# The search


@pytest.mark.parametrize("name", list(SPECIAL))
def test_special_positions_search_the_same_tree(name: str) -> None:
    both([SPECIAL[name]], MCTSConfig(simulations=80))


@pytest.mark.parametrize(
    "config",
    [
        MCTSConfig(simulations=60),
        MCTSConfig(simulations=60, fpu_reduction=0.0, c_init=2.5),
        MCTSConfig(simulations=61, leaves_per_tree=4),
        MCTSConfig(simulations=40, repetition_draw=2),
        MCTSConfig(simulations=40, add_noise=True),
        MCTSConfig(simulations=45, overlap_min_trees=2, leaves_per_tree=2),
        MCTSConfig(simulations=40, cache_size=50),
    ],
    ids=["default", "no-fpu", "virtual-loss", "repetition-2", "noise", "overlap", "small-cache"],
)
def test_many_trees_search_the_same_trees_as_the_reference(config: MCTSConfig) -> None:
    """Many roots at once (random positions with histories, every special position, a root twice), the search run
    twice on one object so the second run hits the cache: same trees, same evaluator calls and inputs."""
    boards = [*random_game_boards(12, seed=5), *SPECIAL.values(), SPECIAL["en passant"]]
    _, new_eval, nodes = both(boards, config, searches=2)
    assert nodes > len(boards) * 10
    assert len(new_eval.batches) > 1


def test_the_lc0_format_gets_its_own_policy_indices() -> None:
    boards = [*random_game_boards(6, seed=6), SPECIAL["castling both ways"], SPECIAL["promotions"],
              SPECIAL["black promotes"], SPECIAL["en passant"]]
    lc0 = get_format("lc0")
    _, new_eval, _ = both(boards, MCTSConfig(simulations=30), fmt=lc0)
    _, legal = new_eval.batches[0]
    for board, idx in zip(boards, legal, strict=True):
        np.testing.assert_array_equal(idx, lc0.legal_move_indices(board)[1])


def test_should_stop_and_on_step_see_what_the_reference_sees() -> None:
    boards = random_game_boards(5, seed=7)
    seen: dict[str, list[list[int]]] = {"ref": [], "new": []}

    def run(core: type, key: str) -> list[SearchResult]:
        steps = {"n": 0}

        def stop() -> bool:
            steps["n"] += 1
            return steps["n"] >= 9

        def on_step(snapshot: Callable[[], list[SearchResult]]) -> None:
            seen[key].append([int(r.visits.sum()) for r in snapshot()])

        return core(HashEvaluator(), MCTSConfig(simulations=10_000)).search(boards, should_stop=stop, on_step=on_step)

    ref, new = run(ReferenceMCTS, "ref"), run(MCTS, "new")
    assert seen["new"] == seen["ref"] and seen["new"][-1] == [9] * 5
    assert_same_results(ref, new)


def test_tree_nodes_read_the_search_arrays() -> None:
    board = SPECIAL["mate in one"]
    result = MCTS(UniformEvaluator(), MCTSConfig(simulations=300)).search([board])[0]
    root = result.root
    assert isinstance(root, TreeNode) and root.parent is None and root.depth == 0
    a = result.moves.index(chess.Move.from_uci("a1a8"))
    mate = root.children[a]
    assert mate is not None and mate.terminal_value == -1.0 and mate.moves == [] and mate.children == []
    assert mate.parent is not None and mate.parent.id == root.id and mate.depth == 1
    assert mate.board.is_checkmate() and mate.N.size == 0
    assert root.value() == result.root_value
    assert "TreeNode" in repr(root)
