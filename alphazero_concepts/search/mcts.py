"""Batched PUCT Monte-Carlo tree search over many trees at once, with the tree work compiled.

All trees step together: each step selects one leaf per tree (or several with virtual loss), evaluates every
pending leaf in a single network call, expands and backs up. Self-play of many games and the analysis of many
roots therefore cost one batched network call per step instead of one call per leaf.

The trees are flat arrays (`tree.py`) and the chess rules a numba port of python-chess's (`rules.py`): one
compiled call selects a leaf in every tree (creating each new node: its position by a move made on a copy of its
parent's two rows, its legal moves, repetitions and terminal value), one gathers the network input of the new
leaves (their 8-step history read along the tree path, then from the root's game), and one expands and backs up.
Python handles only what crosses the `Evaluator` boundary and the cache of evaluations. This is the reference
search (`mcts_reference.py`) made fast, not a different one: the same moves in the same order, the same
arithmetic, the same draw rules and the same arrays sent to the evaluator, so both give the same visits.

Perspective: every value is from the side to move's view at the node it belongs to. A node keeps per-child `N`
(visits) and `W` (summed values) from *its own* side to move's view, so `Q = W / N` is what the player choosing
among the children maximises. Backing up a leaf value v (leaf's side to move) adds −v to the edge into the leaf,
+v to the edge above it, and so on (the sign flips every ply).

Terminal positions are scored by rule: checkmate −1 for the side to move; stalemate, insufficient material, the
fifty-move rule and threefold repetition (counting the root's own game history) 0.
"""

from __future__ import annotations

import functools
import gc
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import chess
import numpy as np

from alphazero_concepts.chess.encoding import HISTORY_STEPS, PositionArrays, _board_history, legal_move_indices
from alphazero_concepts.chess.formats import BoardFormat, get_format
from alphazero_concepts.search import rules
from alphazero_concepts.search import tree as T
from alphazero_concepts.search.common import (
    Evaluator,
    MCTSConfig,
    MoveIndexer,
    NetEvaluator,
    SearchNode,
    SearchResult,
    UniformEvaluator,
    legal_softmax,
    softmax,
)
from alphazero_concepts.search.mcts_reference import ReferenceMCTS

__all__ = [
    "MCTS",
    "Evaluator",
    "MCTSConfig",
    "NetEvaluator",
    "Node",
    "ReferenceMCTS",
    "SearchNode",
    "SearchResult",
    "TreeNode",
    "UniformEvaluator",
    "legal_softmax",
    "policy_table",
    "softmax",
]

_KEY_DTYPE = np.dtype((np.void, T.KEY_WORDS * 8))  # a cache key: the bytes of one row of `keys`


@functools.lru_cache(maxsize=8)
def policy_table(fmt: BoardFormat) -> np.ndarray:
    """(2, 4096, 6) int64 policy indices of a format: [side to move (0 Black, 1 White), from · 64 + to, slot]
    with slot 0 a plain move, 1 castling (the king's two-square move), 2–5 a promotion to that piece; -1 where the
    format has no index. Built once per format by asking its own `move_to_index`, so the compiled search uses the
    indices the format defines (AlphaZero's, lc0's king-takes-rook castling)."""
    table = np.full((2, 4096, 6), -1, dtype=np.int64)
    castling = chess.Board("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1")
    for turn in chess.COLORS:
        empty = chess.Board(None)
        empty.turn = castling.turn = turn
        for frm in range(64):
            for to in range(64):
                if frm != to:
                    table[int(turn), frm * 64 + to, 0] = _index_or_none(fmt, chess.Move(frm, to), empty)
                if chess.square_rank(frm) == (6 if turn else 1) and chess.square_rank(to) == (7 if turn else 0) \
                        and abs(chess.square_file(frm) - chess.square_file(to)) <= 1:
                    for piece in (chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN):
                        table[int(turn), frm * 64 + to, piece] = _index_or_none(fmt, chess.Move(frm, to, piece), empty)
        king = chess.E1 if turn else chess.E8
        for to in (king + 2, king - 2):
            table[int(turn), king * 64 + to, 1] = _index_or_none(fmt, chess.Move(king, to), castling)
    return table


def _index_or_none(fmt: BoardFormat, move: chess.Move, board: chess.Board) -> int:
    try:
        return fmt.move_to_index(move, board)
    except ValueError:
        return -1


def _decode(mv: int) -> chess.Move:
    return chess.Move(mv & 63, (mv >> 6) & 63, ((mv >> 12) & 7) or None)


class TreeNode:
    """A node of a compiled search (see `SearchNode`): a view into the search's arrays, read when asked.

    Unexpanded nodes have empty statistics and no children, as in the reference search. `board` is rebuilt from
    the node's position (without a move stack)."""

    __slots__ = ("_search", "id")

    def __init__(self, search: _Search, node: int) -> None:
        self._search = search
        self.id = node

    def _edges(self) -> slice:
        nint = self._search.store.nint
        start = int(nint[self.id, T.E0])
        return slice(start, start + int(nint[self.id, T.NE]))

    def _stat(self, column: np.ndarray) -> np.ndarray:
        if not self.expanded:
            return np.empty(0)
        return column[self._edges()].copy()

    @property
    def moves(self) -> list[chess.Move]:
        return [_decode(int(m)) for m in self._search.store.emove[self._edges()]]

    @property
    def index(self) -> np.ndarray:
        """Policy indices of `moves` in the evaluator's format."""
        return self._search.store.epidx[self._edges()].astype(np.int64)

    @property
    def N(self) -> np.ndarray:
        return self._stat(self._search.store.eN)

    @property
    def W(self) -> np.ndarray:
        return self._stat(self._search.store.eW)

    @property
    def P(self) -> np.ndarray:
        return self._stat(self._search.store.eP)

    @property
    def Q(self) -> np.ndarray:
        """W / N, or the first-play-urgency value where N = 0."""
        return self._stat(self._search.store.eQ)

    @property
    def children(self) -> list[TreeNode | None]:
        if not self.expanded:
            return []
        return [TreeNode(self._search, int(c)) if c >= 0 else None
                for c in self._search.store.echild[self._edges()]]

    @property
    def parent(self) -> TreeNode | None:
        parent = int(self._search.store.nint[self.id, T.PARENT])
        return TreeNode(self._search, parent) if parent >= 0 else None

    @property
    def expanded(self) -> bool:
        return bool(self._search.store.nint[self.id, T.EXPANDED])

    @property
    def n_total(self) -> float:
        return float(self._search.store.nflt[self.id, T.NTOTAL])

    @property
    def nn_value(self) -> float:
        return float(self._search.store.nflt[self.id, T.NNV])

    @property
    def terminal_value(self) -> float | None:
        store = self._search.store
        return float(store.nflt[self.id, T.TVAL]) if store.nint[self.id, T.TERMINAL] else None

    @property
    def reps(self) -> int:
        """Earlier occurrences of this position (capped at 2), as the network's repetition planes count them."""
        return int(self._search.store.nint[self.id, T.REPS])

    @property
    def depth(self) -> int:
        return int(self._search.store.nint[self.id, T.DEPTH])

    @property
    def halfmove(self) -> int:
        return int(self._search.store.ninfo[self.id, rules.HALFMOVE])

    @property
    def board(self) -> chess.Board:
        store = self._search.store
        return rules.rows_board(store.nbb[self.id], store.ninfo[self.id])

    def q(self) -> np.ndarray:
        """Mean value of each child from this node's side to move (NaN where unvisited)."""
        n, w = self.N, self.W
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, w / n, np.nan)

    def value(self) -> float:
        """Value estimate of this position for its side to move: mean of the backed-up values, else the net's."""
        terminal = self.terminal_value
        if terminal is not None:
            return terminal
        if self.n_total > 0:
            return float((self.W.sum() + self.nn_value) / (self.N.sum() + 1))
        return self.nn_value

    def __repr__(self) -> str:
        return f"TreeNode({self.id}, moves={int(self._search.store.nint[self.id, T.NE])}, n={self.n_total:g})"


Node = TreeNode  # the node type of `MCTS` results


@dataclass
class _Batch:
    """Leaves of one search step on their way through the network: prepared, evaluated, finished."""

    pending: np.ndarray  # leaf nodes to back up, in selection order (a leaf may repeat: virtual loss)
    unique: np.ndarray  # distinct leaves
    legal_start: np.ndarray  # leaf i's moves are legal[legal_start[i]:legal_start[i + 1]]
    keys: list[bytes]
    evals: list[tuple[np.ndarray, float] | None]  # (priors, value) of each leaf: from the cache, or after the call
    todo: list[int]  # leaves the network evaluates (no evaluation in the cache)
    arrays: PositionArrays | None
    legal: list[np.ndarray]
    evaluated: tuple[list[np.ndarray], np.ndarray] | None = None


class MCTS:
    """Batched PUCT search. `search(boards)` runs one tree per board, all stepping together."""

    def __init__(self, evaluator: Evaluator, config: MCTSConfig | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.evaluator = evaluator
        # policy indices of the legal moves in the evaluator's format (AlphaZero's 4672 unless it says otherwise)
        fmt = getattr(evaluator, "format", None)
        self.format: BoardFormat = fmt if fmt is not None else get_format("alphazero")
        self.move_indices: MoveIndexer = fmt.legal_move_indices if fmt is not None else legal_move_indices
        self.config = config or MCTSConfig()
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._cache: OrderedDict[bytes, tuple[np.ndarray, float]] = OrderedDict()
        self._reference: ReferenceMCTS | None = None
        self.evaluations = 0  # positions sent to the evaluator
        self.calls = 0  # evaluator calls

    def search(self, boards: Sequence[chess.Board], simulations: int | None = None,
               should_stop: Callable[[], bool] | None = None,
               on_step: Callable[[Callable[[], list[SearchResult]]], None] | None = None) -> list[SearchResult]:
        """Search every board (with its move history) for `simulations` simulations each.

        `should_stop` is polled once per step (one leaf per tree): when it returns True the search ends early and
        returns what it has (UCI `stop`, time limits). At least one step always runs. `on_step`, when given, is
        called after every step (before `should_stop`) with a function that builds the current results on demand
        (nothing is built unless it is called): progress reports such as UCI `info` lines during a long search.
        Boards the compiled rules do not cover (Chess960, not one king a side) are searched by `ReferenceMCTS`.
        """
        sims = simulations or self.config.simulations
        if not boards:
            return []
        if not all(rules.supported(b) for b in boards):
            return self._reference_search(boards, sims, should_stop, on_step)
        # The cache and each step's batch make many small container objects; the cyclic garbage collector would
        # re-scan the whole heap over and over meanwhile (a tenth of the search's time). Pause it during the search.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return _Search(self, boards, sims).run(should_stop, on_step)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _reference_search(self, boards: Sequence[chess.Board], sims: int,
                          should_stop: Callable[[], bool] | None,
                          on_step: Callable[[Callable[[], list[SearchResult]]], None] | None) -> list[SearchResult]:
        if self._reference is None:
            self._reference = ReferenceMCTS(self.evaluator, self.config, self.rng)
        ref = self._reference
        evaluations, calls = ref.evaluations, ref.calls
        try:
            return ref.search(boards, sims, should_stop, on_step)
        finally:
            self.evaluations += ref.evaluations - evaluations
            self.calls += ref.calls - calls


class _Search:
    """One `MCTS.search` call: the trees' arrays and the steps over them."""

    def __init__(self, mcts: MCTS, boards: Sequence[chess.Board], sims: int) -> None:
        cfg = mcts.config
        self.mcts, self.config, self.boards, self.sims = mcts, cfg, list(boards), sims
        self.ptable = policy_table(mcts.format)
        self.params = np.zeros(6, dtype=np.float64)
        self.params[[T.C_INIT, T.C_BASE, T.FPU, T.VL, T.REP_DRAW, T.LPT]] = (
            cfg.c_init, cfg.c_base, cfg.fpu_reduction, cfg.virtual_loss, cfg.repetition_draw, cfg.leaves_per_tree)
        n = len(self.boards)
        nodes = n * (min(sims, 4096) + 1)  # a simulation adds at most one node; longer searches grow the arrays
        self.store = T.TreeStore(n, nodes, 40 * nodes + rules.MAX_MOVES * n)
        self.stamp = 0

    # ----------------------------------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool] | None,
            on_step: Callable[[Callable[[], list[SearchResult]]], None] | None) -> list[SearchResult]:
        live = self._plant()
        if len(live):  # root priors and value (noise added here)
            self._finish(self._evaluate(self._prepare(self.store.troot[live])), roots=True)

        def report() -> bool:
            if on_step is not None:
                on_step(self.results)
            return should_stop is not None and should_stop()

        if 0 < self.config.overlap_min_trees <= len(live):
            self._overlapped(live, report)
        else:
            while len(live):
                self._finish(self._evaluate(self._prepare(self._select(live))))
                live = live[self.store.tdone[live] < self.sims]
                if report():
                    break
        return self.results()

    def _plant(self) -> np.ndarray:
        """Root nodes with their game history; returns the trees whose root is not over by rule."""
        store = self.store
        n = len(self.boards)
        rbb = np.zeros((n, rules.BB_FIELDS), dtype=np.uint64)
        rinfo = np.zeros((n, rules.INFO_FIELDS), dtype=np.int64)
        root_reps = np.zeros(n, dtype=np.int64)
        history: list[np.ndarray] = []
        for t, board in enumerate(self.boards):
            rbb[t], rinfo[t] = rules.board_rows(board)
            snaps, reps = _board_history(board)
            store.thist[t, : len(snaps)] = snaps
            store.threps[t, : len(reps)] = reps
            root_reps[t] = reps[0]
            # positions before the root within its fifty-move window, most recent first
            stack = board._stack
            rows = T.history_key_rows(stack[len(stack) - min(board.halfmove_clock, len(stack)) :][::-1])
            store.gspan[t] = (sum(len(h) for h in history), len(rows))
            history.append(rows)
        store.gkeys = np.concatenate(history) if history else store.gkeys
        store.reserve(n, n * rules.MAX_MOVES)
        T.init_roots(rbb, rinfo, root_reps, store.nodes, store.edges, store.trees, store.counts, self.ptable,
                     self.params)
        return np.flatnonzero(store.nint[store.troot, T.TERMINAL] == 0)

    def _select(self, live: np.ndarray) -> np.ndarray:
        """One step's selections in the trees `live`; returns the pending leaves."""
        lpt = self.config.leaves_per_tree
        self.store.reserve(len(live) * lpt, len(live) * lpt * rules.MAX_MOVES)
        pending = np.empty(len(live) * lpt, dtype=np.int64)
        n = T.select_leaves(live, self.sims, self.store.nodes, self.store.edges, self.store.trees, self.store.counts,
                            self.ptable, self.params, pending)
        return pending[:n]

    def _prepare(self, pending: np.ndarray) -> _Batch:
        """The network input of the distinct leaves not in the cache (cached evaluations are taken now: the cache
        may evict them before the batch is finished)."""
        m = len(pending)
        unique = np.empty(m, dtype=np.int64)
        bitboards = np.empty((m, HISTORY_STEPS, 12), dtype=np.uint64)
        repetitions = np.empty((m, HISTORY_STEPS), dtype=np.int8)
        turn = np.empty(m, dtype=bool)
        castling = np.empty((m, 4), dtype=bool)
        ply = np.empty(m, dtype=np.int32)
        halfmove = np.empty(m, dtype=np.int32)
        keys = np.empty((m, T.KEY_WORDS), dtype=np.uint64)
        legal_start = np.empty(m + 1, dtype=np.int64)
        legal = np.empty(m * rules.MAX_MOVES, dtype=np.int64)
        self.stamp += 1
        u = T.gather_leaves(pending, self.stamp, self.store.nodes, self.store.edges, self.store.trees, unique,
                            bitboards, repetitions, turn, castling, ply, halfmove, keys, legal_start, legal)
        key_list: list[bytes] = keys[:u].view(_KEY_DTYPE).ravel().tolist()  # one bytes object per row
        get = self.mcts._cache.get
        evals = [get(key) for key in key_list]
        todo = [i for i, hit in enumerate(evals) if hit is None]
        arrays = None
        if todo:
            rows = slice(0, u) if len(todo) == u else np.array(todo)
            arrays = PositionArrays(bitboards[rows], repetitions[rows], turn[rows], castling[rows], ply[rows],
                                    halfmove[rows])
        starts = legal_start[: u + 1].tolist()
        return _Batch(pending, unique[:u], legal_start[: u + 1], key_list, evals, todo, arrays,
                      [legal[starts[i] : starts[i + 1]] for i in todo])

    def _evaluate(self, batch: _Batch) -> _Batch:
        """The network call of a batch (runs in the worker thread when trees overlap)."""
        if batch.arrays is not None:
            batch.evaluated = self.mcts.evaluator.evaluate(batch.arrays, batch.legal)
        return batch

    def _finish(self, batch: _Batch, roots: bool = False) -> None:
        """Cache the new evaluations, expand the leaves and back their values up (roots: add the noise)."""
        mcts, cfg = self.mcts, self.config
        evals = batch.evals
        if batch.evaluated is not None:
            priors, values = batch.evaluated
            mcts.calls += 1
            mcts.evaluations += len(batch.todo)
            cache, keys = mcts._cache, batch.keys
            for j, (i, value) in enumerate(zip(batch.todo, np.asarray(values).tolist(), strict=True)):
                evals[i] = cache[keys[i]] = (priors[j], float(value))
            while len(cache) > cfg.cache_size:
                cache.popitem(last=False)
        parts = [e[0] for e in evals]  # type: ignore[index]
        if roots and cfg.add_noise:
            parts = [self._noisy(p) for p in parts]
        flat = np.concatenate(parts).astype(np.float64, copy=False) if parts else np.empty(0)
        if len(flat) != batch.legal_start[-1]:
            raise ValueError(f"the evaluator returned {len(flat)} priors for {batch.legal_start[-1]} legal moves")
        value = np.array([e[1] for e in evals], dtype=np.float64)  # type: ignore[index]
        T.finish_leaves(batch.unique, flat, batch.legal_start, value, batch.pending, self.store.nodes,
                        self.store.edges, self.params)

    def _noisy(self, priors: np.ndarray) -> np.ndarray:
        """Root priors mixed with Dirichlet noise, as the reference mixes them (same draws from the same rng)."""
        p = priors.astype(np.float64)
        if len(p) == 0:
            return p
        cfg = self.config
        noise = self.mcts.rng.dirichlet([cfg.dirichlet_alpha] * len(p))
        return (1 - cfg.dirichlet_epsilon) * p + cfg.dirichlet_epsilon * noise

    def _overlapped(self, live: np.ndarray, report: Callable[[], bool]) -> None:
        """Two halves of the trees take turns: one half's network call runs in a worker thread (torch and the
        compiled steps release the GIL) while this thread selects and expands in the other half. Each tree still
        does select → evaluate → expand → back up, one step after another, so every tree's search is the same as
        without overlap."""
        from concurrent.futures import Future, ThreadPoolExecutor

        half = (len(live) + 1) // 2
        groups = [live[:half], live[half:]]
        in_flight: list[Future[_Batch] | None] = [None, None]
        done, sims = self.store.tdone, self.sims
        g, rounds = 0, 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcts-eval") as worker:
            while True:
                other = 1 - g
                if g == 0 and rounds > 0 and report():  # a step of every tree has been selected since the last
                    for future in in_flight:
                        if future is not None:
                            self._finish(future.result())
                    return
                groups[g] = groups[g][done[groups[g]] < sims]
                batch = self._prepare(self._select(groups[g])) if len(groups[g]) else None
                if in_flight[other] is not None:
                    self._finish(in_flight[other].result())  # type: ignore[union-attr]
                    in_flight[other] = None
                if batch is not None:
                    in_flight[g] = worker.submit(self._evaluate, batch)
                elif in_flight == [None, None] and all((done[grp] >= sims).all() for grp in groups):
                    return
                rounds += g
                g = other

    # ----------------------------------------------------------------------------------------------------------
    def results(self) -> list[SearchResult]:
        """The current statistics of every tree (principal variations read by one compiled call)."""
        store = self.store
        lines = np.zeros((len(self.boards), store.counts[T.MAX_DEPTH] + 1), dtype=np.int32)
        lengths = T.principal_variations(store.troot, store.nodes, store.edges, lines)
        return [self._result(t, [_decode(int(m)) for m in lines[t, : lengths[t]]]) for t in range(len(self.boards))]

    def _result(self, t: int, pv: list[chess.Move]) -> SearchResult:
        store = self.store
        node = int(store.troot[t])
        root = TreeNode(self, node)
        board = self.boards[t].copy(stack=True)
        edges = root._edges()
        moves = [_decode(int(m)) for m in store.emove[edges]]
        if not store.nint[node, T.EXPANDED]:
            empty = np.zeros(len(moves))
            value = float(store.nflt[node, T.TVAL]) if store.nint[node, T.TERMINAL] else 0.0
            return SearchResult(board, moves, empty.astype(int), np.full(len(moves), np.nan), empty, value, value,
                                [], root)
        n, w, nn_value = store.eN[edges].copy(), store.eW[edges].copy(), float(store.nflt[node, T.NNV])
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.where(n > 0, w / n, np.nan)
        value = float((w.sum() + nn_value) / (n.sum() + 1)) if store.nflt[node, T.NTOTAL] > 0 else nn_value
        return SearchResult(board, moves, n.astype(int), q, store.eP[edges].copy(), value, nn_value, pv, root)
