"""What both search cores share: the configuration, the evaluator protocol and evaluators, and the result type.

Perspective: every value here is from the side to move's view at the node it belongs to (+1: the side to move
wins). `SearchResult` values and Q are from the root's side to move's view.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import chess
import numpy as np

from alphazero_concepts.chess.encoding import PositionArrays
from alphazero_concepts.nn.network import AZNet, check_precision, predict


@dataclass(frozen=True)
class MCTSConfig:
    """Search parameters (AlphaZero's PUCT with its c(s) schedule)."""

    simulations: int = 100
    c_init: float = 1.25
    c_base: float = 19652.0
    fpu_reduction: float = 0.2  # an unvisited child's Q = the parent's network value − this
    dirichlet_alpha: float = 0.3
    dirichlet_epsilon: float = 0.25
    add_noise: bool = False  # Dirichlet noise at the root (self-play)
    leaves_per_tree: int = 1  # >1 batches several leaves of one tree per step, with virtual loss
    virtual_loss: float = 1.0
    repetition_draw: int = 3  # a position occurring this many times is a draw (3 = the rule)
    cache_size: int = 200_000  # evaluations kept, keyed by the exact network input
    # with at least this many trees, two half-batches are in flight: one half's network call runs in a worker
    # thread while the other half selects, expands and backs up (0 = never). Meant for accelerators, where the
    # network call leaves the CPU idle; search twice as many trees so each half still fills a batch. Off by
    # default: on CPU the network call fills the cores, the compiled tree work left to hide is about 1% of a step,
    # and overlap measured 0.97–1.03× the plain search (`azc bench`, `mcts_overlap_speedup`).
    overlap_min_trees: int = 0

    def __post_init__(self) -> None:
        if self.simulations < 1:
            raise ValueError(f"simulations must be ≥ 1, got {self.simulations}")
        if self.leaves_per_tree < 1:
            raise ValueError(f"leaves_per_tree must be ≥ 1, got {self.leaves_per_tree}")
        if self.repetition_draw not in (2, 3):
            raise ValueError("repetition_draw must be 2 or 3")

    def to_dict(self) -> dict:
        return asdict(self)


MoveIndexer = Callable[[chess.Board], tuple[list[chess.Move], np.ndarray]]


class Evaluator(Protocol):
    """Priors over the legal moves and values (side to move's view, in [-1, 1]) of a batch of positions."""

    def evaluate(self, arrays: PositionArrays, legal: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        ...


class SearchNode(Protocol):
    """A node of a finished search, as both cores expose it: one position, its legal moves and the statistics of
    its children (from this node's side to move). Unexpanded nodes have empty statistics and no children."""

    @property
    def moves(self) -> list[chess.Move]: ...

    @property
    def index(self) -> np.ndarray: ...  # policy indices of `moves`

    @property
    def N(self) -> np.ndarray: ...

    @property
    def W(self) -> np.ndarray: ...

    @property
    def P(self) -> np.ndarray: ...

    @property
    def Q(self) -> np.ndarray: ...

    @property
    def children(self) -> Sequence[SearchNode | None]: ...

    @property
    def expanded(self) -> bool: ...

    @property
    def n_total(self) -> float: ...

    @property
    def nn_value(self) -> float: ...

    @property
    def terminal_value(self) -> float | None: ...

    def q(self) -> np.ndarray: ...

    def value(self) -> float: ...


@dataclass
class SearchResult:
    """Root statistics of one search. Values and Q are from the root's side to move's view."""

    board: chess.Board
    moves: list[chess.Move]
    visits: np.ndarray
    q: np.ndarray
    priors: np.ndarray
    root_value: float
    nn_value: float
    pv: list[chess.Move]
    root: SearchNode = field(repr=False)

    @property
    def terminal(self) -> bool:
        """The root is over by rule (mate, stalemate, insufficient material, fifty moves, repetition): no search ran,
        every move has 0 visits."""
        return self.root.terminal_value is not None

    def best_move(self) -> chess.Move | None:
        """Most-visited move (ties: higher prior)."""
        if not self.moves:
            return None
        order = np.lexsort((-self.priors, -self.visits))
        return self.moves[int(order[0])]

    def policy(self, temperature: float = 1.0) -> np.ndarray:
        """Visit distribution over `moves` sharpened by 1/temperature (temperature 0 → one-hot best)."""
        if not self.moves:
            return np.empty(0)
        if temperature <= 1e-6:
            out = np.zeros(len(self.moves))
            out[self.moves.index(self.best_move())] = 1.0
            return out
        v = self.visits.astype(np.float64) ** (1.0 / temperature)
        return v / v.sum() if v.sum() > 0 else np.full(len(v), 1.0 / len(v))

    def ranked(self) -> list[tuple[chess.Move, int, float, float]]:
        """(move, visits, Q, prior) sorted by visits, best first."""
        order = np.lexsort((-self.priors, -self.visits))
        return [(self.moves[i], int(self.visits[i]), float(self.q[i]), float(self.priors[i])) for i in order]

    def to_dict(self) -> dict:
        return {
            "fen": self.board.fen(),
            "root_value": self.root_value,
            "nn_value": self.nn_value,
            "pv": [m.uci() for m in self.pv],
            "moves": [
                {"uci": m.uci(), "visits": n, "q": None if math.isnan(q) else q, "prior": p}
                for m, n, q, p in self.ranked()
            ],
        }


def principal_variation(root: SearchNode) -> list[chess.Move]:
    """The most-visited path from `root` (ties: higher prior), down to the first unvisited node."""
    pv: list[chess.Move] = []
    node: SearchNode | None = root
    while node is not None and node.expanded and node.n_total > 0:
        a = int(np.lexsort((-node.P, -node.N))[0])
        pv.append(node.moves[a])
        node = node.children[a]
    return pv


class NetEvaluator:
    """Evaluates positions with a network: encodes with the network's format, softmax over legal moves.
    `precision` "bf16": the network under bfloat16 autocast (`nn.network.precision_context`)."""

    def __init__(self, net: AZNet, batch_size: int = 1024, precision: str = "fp32") -> None:
        self.net = net
        self.format = net.format
        self.batch_size = batch_size
        self.precision = check_precision(precision)  # "bf16": bfloat16 autocast

    def evaluate(self, arrays: PositionArrays, legal: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        planes = self.format.arrays_to_planes(arrays)
        logits, values = predict(self.net, planes, self.batch_size, self.precision)
        return legal_softmax(logits, legal), values


class UniformEvaluator:
    """Uniform priors and a constant value: search driven by the rules alone (tests, baselines, the null evaluator
    that measures the tree work alone). The prior arrays are shared and read-only, one per number of moves."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = value
        self._priors: dict[int, np.ndarray] = {}

    def evaluate(self, arrays: PositionArrays, legal: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        return [self._uniform(len(idx)) for idx in legal], np.full(len(legal), self.value)

    def _uniform(self, n: int) -> np.ndarray:
        priors = self._priors.get(n)
        if priors is None:
            priors = self._priors[n] = np.full(n, 1.0 / max(1, n))
            priors.flags.writeable = False
        return priors


def legal_softmax(logits: np.ndarray, legal: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Softmax of each row's logits restricted to its legal indices, for all rows in a few numpy calls."""
    sizes = np.fromiter((len(ix) for ix in legal), dtype=np.int64, count=len(legal))
    if sizes.sum() == 0:
        return [np.empty(0) for _ in legal]
    rows = np.repeat(np.arange(len(legal)), sizes)
    flat = logits[rows, np.concatenate([np.asarray(ix, dtype=np.int64) for ix in legal])].astype(np.float64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nonempty = sizes > 0
    peak = np.zeros(len(legal))
    peak[nonempty] = np.maximum.reduceat(flat, starts[nonempty])
    e = np.exp(flat - np.repeat(peak, sizes))
    total = np.zeros(len(legal))
    total[nonempty] = np.add.reduceat(e, starts[nonempty])
    e /= np.repeat(np.where(total > 0, total, 1.0), sizes)
    return np.split(e, np.cumsum(sizes)[:-1])


def softmax(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x.astype(np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()
