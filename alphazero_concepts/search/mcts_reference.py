"""The reference search: batched PUCT over many trees, one Python object (and one python-chess board) per node.

Kept as the specification that the compiled core (`mcts.py`) is tested against: the same visits, values, network
inputs and draw rules on the same positions. `mcts.MCTS` also hands it the boards the compiled rules do not cover
(Chess960, positions without exactly one king a side).

All trees step together: each step selects one leaf per tree (or several with virtual loss), evaluates every
pending leaf in a single network call, expands and backs up. Self-play of many games and the analysis of many
roots therefore cost one batched network call per step instead of one call per leaf.

Perspective: every value in this module is from the side to move's view at the node it belongs to. A node keeps
per-child arrays `N` (visits) and `W` (summed values) from *its own* side to move's view, so `Q = W / N` is what the
player choosing among the children maximises. Backing up a leaf value v (leaf's side to move) adds −v to the
edge into the leaf, +v to the edge above it, and so on (the sign flips every ply).

Terminal positions are scored by rule: checkmate −1 for the side to move; stalemate, insufficient material, the
fifty-move rule and threefold repetition (counting the root's own game history) 0.
"""

from __future__ import annotations

import gc
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import chess
import numpy as np

from alphazero_concepts.chess.encoding import (
    HISTORY_STEPS,
    PositionArrays,
    _board_history,
    board_bitboards,
    castling_bits,
    legal_move_indices,
)
from alphazero_concepts.search.common import (
    Evaluator,
    MCTSConfig,
    MoveIndexer,
    SearchResult,
    principal_variation,
)

_EMPTY = (0,) * 12


class Node:
    """A search-tree node: one position, its legal moves and per-child statistics (side to move's view)."""

    __slots__ = (
        "N",
        "P",
        "Q",
        "W",
        "board",
        "children",
        "depth",
        "expanded",
        "halfmove",
        "hist",
        "index",
        "key",
        "moves",
        "n_total",
        "nn_value",
        "parent",
        "rep_hist",
        "reps",
        "snap",
        "terminal_value",
    )

    def __init__(self, board: chess.Board, parent: Node | None, depth: int,
                 move_indices: MoveIndexer = legal_move_indices) -> None:
        self.board = board
        self.parent = parent
        self.depth = depth
        self.key = board._transposition_key()
        self.snap = board_bitboards(board)
        self.halfmove = board.halfmove_clock
        self.moves, self.index = move_indices(board)
        self.reps = 0
        # the network's history input: this position and the 7 before it (zeros before the game's start)
        self.hist: tuple[tuple[int, ...], ...] = ()
        self.rep_hist: tuple[int, ...] = ()
        self.terminal_value: float | None = None
        self.expanded = False
        self.nn_value = 0.0
        self.n_total = 0
        self.children: list[Node | None] = []
        self.P = self.N = self.W = self.Q = np.empty(0)

    def q(self) -> np.ndarray:
        """Mean value of each child from this node's side to move (NaN where unvisited)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.N > 0, self.W / self.N, np.nan)

    def value(self) -> float:
        """Value estimate of this position for its side to move: mean of the backed-up values, else the net's."""
        if self.terminal_value is not None:
            return self.terminal_value
        if self.n_total > 0:
            return float((self.W.sum() + self.nn_value) / (self.N.sum() + 1))
        return self.nn_value


class _Tree:
    """One root with its game history (for repetitions and history planes)."""

    def __init__(self, board: chess.Board, repetition_draw: int = 3,
                 move_indices: MoveIndexer = legal_move_indices) -> None:
        self.move_indices = move_indices
        self.root_board = board
        b = board.copy(stack=True)
        keys: list[object] = []
        while len(keys) < board.halfmove_clock and b.move_stack:
            b.pop()
            keys.append(b._transposition_key())
        self.history_keys = keys  # positions before the root within its fifty-move window, most recent first
        snaps, reps = _board_history(board)
        pad = HISTORY_STEPS - len(snaps)
        self.root = Node(board.copy(stack=False), None, 0, move_indices)
        self.root.reps = reps[0]
        self.root.hist = (*snaps, *([_EMPTY] * pad))
        self.root.rep_hist = (*reps, *([0] * pad))
        _set_terminal(self.root, self.history_keys.count(self.root.key), repetition_draw)


def _set_terminal(node: Node, reps: int, repetition_draw: int) -> None:
    board = node.board
    if not node.moves:
        node.terminal_value = -1.0 if board.is_check() else 0.0
    elif board.is_insufficient_material() or node.halfmove >= 100 or reps >= repetition_draw - 1:
        node.terminal_value = 0.0


@dataclass
class _Batch:
    """Leaves of one search step on their way through the network: prepared, evaluated, finished."""

    pending: list[tuple[_Tree, Node, list[tuple[Node, int]]]]  # (tree, leaf, path) to back up
    items: list[tuple[_Tree, Node]]  # distinct leaves
    keys: list[tuple]
    known: dict[int, tuple[np.ndarray, float]]  # item → evaluation found in the cache
    todo: list[int]  # items the network evaluates
    arrays: PositionArrays | None
    evaluated: tuple[list[np.ndarray], np.ndarray] | None = None


class ReferenceMCTS:
    """Batched PUCT search with Python objects per node. `search(boards)` runs one tree per board, all stepping
    together."""

    def __init__(self, evaluator: Evaluator, config: MCTSConfig | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.evaluator = evaluator
        # policy indices of the legal moves in the evaluator's format (AlphaZero's 4672 unless it says otherwise)
        fmt = getattr(evaluator, "format", None)
        self.move_indices: MoveIndexer = fmt.legal_move_indices if fmt is not None else legal_move_indices
        self.config = config or MCTSConfig()
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._cache: OrderedDict[tuple, tuple[np.ndarray, float]] = OrderedDict()
        self.evaluations = 0  # positions sent to the evaluator
        self.calls = 0  # evaluator calls

    # ----------------------------------------------------------------------------------------------------------
    def search(self, boards: Sequence[chess.Board], simulations: int | None = None,
               should_stop: Callable[[], bool] | None = None,
               on_step: Callable[[Callable[[], list[SearchResult]]], None] | None = None) -> list[SearchResult]:
        """Search every board (with its move history) for `simulations` simulations each.

        `should_stop` is polled once per step (one leaf per tree): when it returns True the search ends early and
        returns what it has (UCI `stop`, time limits). At least one step always runs. `on_step`, when given, is
        called after every step (before `should_stop`) with a function that builds the current results on demand
        (nothing is built unless it is called): progress reports such as UCI `info` lines during a long search.
        """
        sims = simulations or self.config.simulations
        # Trees are many small linked objects: the cyclic garbage collector would re-scan them over and over
        # while they grow (a large share of search time). Pause it during the search; it runs again afterwards.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._search(boards, sims, should_stop, on_step)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _search(self, boards: Sequence[chess.Board], sims: int,
                should_stop: Callable[[], bool] | None = None,
                on_step: Callable[[Callable[[], list[SearchResult]]], None] | None = None) -> list[SearchResult]:
        trees = [_Tree(b, self.config.repetition_draw, self.move_indices) for b in boards]
        live = [t for t in trees if t.root.terminal_value is None]
        self._expand([(t, t.root) for t in live])  # root priors and value (noise added here)
        done = {id(t): 0 for t in live}

        def report() -> bool:
            if on_step is not None:
                on_step(lambda: [self._result(t) for t in trees])
            return should_stop is not None and should_stop()

        if 0 < self.config.overlap_min_trees <= len(live):
            self._overlapped(live, done, sims, report)
        else:
            while live:
                self._finish(self._evaluate(self._prepare(self._select_step(live, done, sims))))
                live = [t for t in live if done[id(t)] < sims]
                if report():
                    break
        return [self._result(t) for t in trees]

    def _overlapped(self, live: list[_Tree], done: dict[int, int], sims: int, report: Callable[[], bool]) -> None:
        """Two halves of the trees take turns: one half's network call runs in a worker thread (torch releases
        the GIL) while this thread selects and expands in the other half. Each tree still does select → evaluate
        → expand → back up, one step after another, so every tree's search is the same as without overlap."""
        from concurrent.futures import Future, ThreadPoolExecutor

        half = (len(live) + 1) // 2
        groups = [live[:half], live[half:]]
        in_flight: list[Future[_Batch] | None] = [None, None]
        g, rounds = 0, 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcts-eval") as worker:
            while True:
                other = 1 - g
                if g == 0 and rounds > 0 and report():  # a step of every tree has been selected since the last
                    for future in in_flight:
                        if future is not None:
                            self._finish(future.result())
                    return
                groups[g] = [t for t in groups[g] if done[id(t)] < sims]
                batch = self._prepare(self._select_step(groups[g], done, sims)) if groups[g] else None
                if in_flight[other] is not None:
                    self._finish(in_flight[other].result())  # type: ignore[union-attr]
                    in_flight[other] = None
                if batch is not None:
                    in_flight[g] = worker.submit(self._evaluate, batch)
                elif in_flight == [None, None] and all(done[id(t)] >= sims for grp in groups for t in grp):
                    return
                rounds += g
                g = other

    def _select_step(self, live: Sequence[_Tree], done: dict[int, int], sims: int
                     ) -> list[tuple[_Tree, Node, list[tuple[Node, int]]]]:
        """One leaf per tree (or `leaves_per_tree`, with virtual loss); terminal leaves are backed up at once."""
        pending: list[tuple[_Tree, Node, list[tuple[Node, int]]]] = []
        for tree in live:
            for _ in range(min(self.config.leaves_per_tree, sims - done[id(tree)])):
                path, leaf = self._select(tree)
                done[id(tree)] += 1
                if leaf.terminal_value is not None:
                    self._backup(path, leaf.terminal_value, undo_virtual=False)
                else:
                    if self.config.leaves_per_tree > 1:
                        self._apply_virtual_loss(path)
                    pending.append((tree, leaf, path))
        return pending

    # ----------------------------------------------------------------------------------------------------------
    def _select(self, tree: _Tree) -> tuple[list[tuple[Node, int]], Node]:
        cfg = self.config
        node = tree.root
        path: list[tuple[Node, int]] = []
        while node.expanded and node.terminal_value is None:
            parent_visits = node.n_total + 1
            c = math.log((1 + parent_visits + cfg.c_base) / cfg.c_base) + cfg.c_init
            # node.Q holds W/N, or the first-play-urgency value where N = 0 (kept up to date by backup)
            a = int(np.argmax(node.Q + (c * math.sqrt(parent_visits)) * node.P / (1.0 + node.N)))
            child = node.children[a]
            if child is None:
                child = self._make_child(tree, node, a)
            path.append((node, a))
            node = child
        return path, node

    def _make_child(self, tree: _Tree, node: Node, a: int) -> Node:
        board = node.board.copy(stack=False)
        board.push(node.moves[a])
        child = Node(board, node, node.depth + 1, tree.move_indices)
        # repetitions: earlier occurrences within the fifty-move window, in the tree and then the game
        count, anc, steps = 0, node, 1
        while anc is not None and steps <= child.halfmove:
            if anc.key == child.key:
                count += 1
            anc = anc.parent
            steps += 1
        if steps <= child.halfmove:
            count += tree.history_keys[: child.halfmove - steps + 1].count(child.key)
        child.reps = min(2, count)
        child.hist = (child.snap, *node.hist[: HISTORY_STEPS - 1])
        child.rep_hist = (child.reps, *node.rep_hist[: HISTORY_STEPS - 1])
        _set_terminal(child, count, self.config.repetition_draw)
        node.children[a] = child
        return child

    def _apply_virtual_loss(self, path: list[tuple[Node, int]]) -> None:
        vl = self.config.virtual_loss
        for node, a in path:
            node.N[a] += vl
            node.W[a] -= vl
            node.n_total += vl
            node.Q[a] = node.W[a] / node.N[a]

    def _backup(self, path: list[tuple[Node, int]], value: float, undo_virtual: bool) -> None:
        vl = self.config.virtual_loss if undo_virtual else 0.0
        v = value
        for node, a in reversed(path):
            v = -v
            node.N[a] += 1 - vl
            node.W[a] += v + vl
            node.n_total += 1 - vl
            n = node.N[a]
            node.Q[a] = node.W[a] / n if n > 0 else node.nn_value - self.config.fpu_reduction

    # ----------------------------------------------------------------------------------------------------------
    def leaf_arrays(self, items: Sequence[tuple[_Tree, Node]]) -> PositionArrays:
        """History arrays of leaves: steps from the node's ancestors, then from the root's game history."""
        nodes = [node for _, node in items]
        boards = [node.board for node in nodes]
        n = len(nodes)
        return PositionArrays(
            bitboards=np.array([node.hist for node in nodes], dtype=np.uint64).reshape(n, HISTORY_STEPS, 12),
            repetitions=np.array([node.rep_hist for node in nodes], dtype=np.int8).reshape(n, HISTORY_STEPS),
            turn=np.fromiter((b.turn == chess.WHITE for b in boards), dtype=bool, count=n),
            castling=np.array([castling_bits(b) for b in boards], dtype=bool).reshape(n, 4),
            ply=np.fromiter((2 * (b.fullmove_number - 1) + (b.turn == chess.BLACK) for b in boards), np.int32, n),
            halfmove=np.fromiter((node.halfmove for node in nodes), dtype=np.int32, count=n),
        )

    def _expand(self, items: Sequence[tuple[_Tree, Node]]) -> None:
        """Evaluate and expand `items` now (the roots)."""
        self._finish(self._evaluate(self._prepare([(tree, node, []) for tree, node in items])))

    def _prepare(self, pending: Sequence[tuple[_Tree, Node, list[tuple[Node, int]]]]) -> _Batch:
        """The network input of the leaves not in the cache (cached evaluations are taken now: the cache may
        evict them before the batch is finished)."""
        unique: dict[int, tuple[_Tree, Node]] = {}
        for tree, leaf, _ in pending:
            unique.setdefault(id(leaf), (tree, leaf))
        items = list(unique.values())
        # exact network input: history bitboards and repetitions, side to move, castling, en passant, counters
        keys = [(node.key, node.hist, node.rep_hist, node.halfmove, node.board.fullmove_number) for _, node in items]
        known = {i: self._cache[k] for i, k in enumerate(keys) if k in self._cache}
        todo = [i for i in range(len(items)) if i not in known]
        arrays = self.leaf_arrays([items[i] for i in todo]) if todo else None
        return _Batch(list(pending), items, keys, known, todo, arrays)

    def _evaluate(self, batch: _Batch) -> _Batch:
        """The network call of a batch (runs in the worker thread when trees overlap)."""
        if batch.arrays is not None:
            batch.evaluated = self.evaluator.evaluate(batch.arrays, [batch.items[i][1].index for i in batch.todo])
        return batch

    def _finish(self, batch: _Batch) -> None:
        """Cache the new evaluations, expand the leaves and back their values up."""
        evals = dict(batch.known)
        if batch.evaluated is not None:
            priors, values = batch.evaluated
            self.calls += 1
            self.evaluations += len(batch.todo)
            for j, i in enumerate(batch.todo):
                evals[i] = self._cache[batch.keys[i]] = (priors[j], float(values[j]))
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)
        for i, (_tree, node) in enumerate(batch.items):
            if not node.expanded:  # a leaf reached twice in one step (virtual loss) is expanded once
                self._set_expanded(node, *evals[i])
        for _, leaf, path in batch.pending:
            self._backup(path, leaf.nn_value, undo_virtual=self.config.leaves_per_tree > 1)

    def _set_expanded(self, node: Node, priors: np.ndarray, value: float) -> None:
        node.P = priors.astype(np.float64)
        if node.parent is None and self.config.add_noise and len(node.moves) > 0:
            noise = self.rng.dirichlet([self.config.dirichlet_alpha] * len(node.moves))
            node.P = (1 - self.config.dirichlet_epsilon) * node.P + self.config.dirichlet_epsilon * noise
        node.N = np.zeros(len(node.moves))
        node.W = np.zeros(len(node.moves))
        node.Q = np.full(len(node.moves), value - self.config.fpu_reduction)
        node.children = [None] * len(node.moves)
        node.nn_value = value
        node.expanded = True

    def _result(self, tree: _Tree) -> SearchResult:
        root = tree.root
        board = tree.root_board.copy(stack=True)
        if not root.expanded:
            empty = np.zeros(len(root.moves))
            value = root.terminal_value if root.terminal_value is not None else 0.0
            return SearchResult(board, list(root.moves), empty.astype(int), np.full(len(root.moves), np.nan),
                                empty, value, value, [], root)
        return SearchResult(board, list(root.moves), root.N.astype(int), root.q(), root.P.copy(), root.value(),
                            root.nn_value, principal_variation(root), root)
