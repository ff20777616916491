"""Chosen and sub-par lines from a root (METHOD.md §2), all roots and lines searched together in batches.

The chosen line X+ = (x+_0 … x+_T) follows the most-visited move of a search at every ply. A sub-par line leaves
it at a ply j ≤ T̃ onto a move that is clearly worse — its Q is at least `value_gap` below the best move's, or its
visit count at least `visit_gap` (as a share) below the best's — and then follows the most-visited move again.
Every state records its FEN, the search's value (side to move's view), the move played with its visits and Q.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import chess

from alphazero_concepts.search.mcts import MCTS, SearchResult


@dataclass(frozen=True)
class RolloutConfig:
    """Parameters of the rollouts (paper: T = 5 or 10, branch depth ≤ T − 5, gap 0.20 in value or 10% in visits)."""

    length: int = 10  # T: plies of the chosen line
    max_branch: int | None = None  # T̃: deepest branching ply (default max(0, T − 5))
    value_gap: float = 0.20
    visit_gap: float = 0.10
    max_subpar: int = 5  # J: sub-par lines per root
    simulations: int = 200

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"length must be ≥ 1, got {self.length}")
        if not 0 <= self.visit_gap < 1:
            raise ValueError(f"visit_gap must be in [0, 1), got {self.visit_gap}")

    @property
    def branch_limit(self) -> int:
        return self.max_branch if self.max_branch is not None else max(0, self.length - 5)


@dataclass
class LineStep:
    """One state of a line and the move played from it."""

    fen: str
    value: float  # search value of this state, side to move's view
    move: str | None = None  # UCI of the move played (None at the line's end)
    san: str | None = None
    visits: int = 0
    q: float | None = None


@dataclass
class Line:
    """A line of states x_0 … x_k from the root (x_0 is the root itself)."""

    steps: list[LineStep] = field(default_factory=list)
    branch: int | None = None  # ply where a sub-par line left the chosen line
    branch_reason: str = ""

    @property
    def moves(self) -> list[str]:
        return [s.move for s in self.steps if s.move is not None]


@dataclass
class Rollout:
    """A root with its chosen line and sub-par lines; the root keeps its game history (start FEN + moves)."""

    start_fen: str
    history: list[str]
    chosen: Line
    subpar: list[Line]
    root_index: int = 0

    def root_board(self) -> chess.Board:
        board = chess.Board(self.start_fen)
        for uci in self.history:
            board.push_uci(uci)
        return board

    def boards(self, line: Line) -> list[chess.Board]:
        """Boards (with full history) of every state of `line`."""
        board = self.root_board()
        out = [board.copy()]
        for uci in line.moves:
            board.push_uci(uci)
            out.append(board.copy())
        return out[: len(line.steps)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Rollout:
        def line(x: dict) -> Line:
            return Line([LineStep(**s) for s in x["steps"]], x.get("branch"), x.get("branch_reason", ""))

        return cls(d["start_fen"], list(d["history"]), line(d["chosen"]), [line(x) for x in d["subpar"]],
                   d.get("root_index", 0))


def subpar_moves(result: SearchResult, config: RolloutConfig) -> list[tuple[chess.Move, str]]:
    """Moves of a search that qualify as sub-par, best-visited first, with the reason."""
    best = result.best_move()
    if best is None:
        return []
    b = result.moves.index(best)
    q_best, n_best = float(result.q[b]), int(result.visits[b])
    out = []
    for i in sorted(range(len(result.moves)), key=lambda k: -int(result.visits[k])):
        if i == b or result.visits[i] == 0 or math.isnan(result.q[i]):
            continue
        reasons = []
        if result.q[i] <= q_best - config.value_gap:
            reasons.append(f"Q {result.q[i]:+.3f} ≤ best {q_best:+.3f} − {config.value_gap}")
        if result.visits[i] <= (1 - config.visit_gap) * n_best:
            reasons.append(f"visits {int(result.visits[i])} ≤ {1 - config.visit_gap:.2f} × {n_best}")
        if reasons:
            out.append((result.moves[i], "; ".join(reasons)))
    return out


def _step(board: chess.Board, result: SearchResult) -> LineStep:
    """The state `board` and the move its search chose; a state over by rule (drawn by repetition or the fifty-move
    rule, mate, stalemate) ends its line: no move."""
    best = None if result.terminal else result.best_move()
    if best is None:
        return LineStep(board.fen(), result.root_value)
    i = result.moves.index(best)
    q = float(result.q[i])
    return LineStep(board.fen(), result.root_value, best.uci(), board.san(best), int(result.visits[i]),
                    None if math.isnan(q) else q)


def _follow(mcts: MCTS, starts: list[tuple[chess.Board, Line]], plies: list[int], simulations: int) -> None:
    """Extend every (board, line) by following the most-visited move for `plies[k]` more states, in batches."""
    active = [(b.copy(), line, n) for (b, line), n in zip(starts, plies, strict=True)]
    while active:
        boards = [b for b, _, _ in active]
        results = mcts.search(boards, simulations)
        nxt = []
        for (board, line, left), result in zip(active, results, strict=True):
            step = _step(board, result)
            line.steps.append(step)
            if left > 1 and step.move is not None:
                board.push_uci(step.move)
                nxt.append((board, line, left - 1))
        active = nxt


def rollouts(mcts: MCTS, roots: Sequence[chess.Board], config: RolloutConfig | None = None) -> list[Rollout]:
    """Chosen and sub-par lines for every root (each root keeps its move history)."""
    config = config or RolloutConfig()
    out = [Rollout(r.root().fen(), [m.uci() for m in r.move_stack], Line(), [], k) for k, r in enumerate(roots)]
    # chosen lines: T + 1 states, searched together; keep each state's search for the branch choice
    searches: list[list[SearchResult]] = [[] for _ in roots]
    boards = [r.copy() for r in roots]
    active = list(range(len(roots)))
    for _ply in range(config.length + 1):
        if not active:
            break
        results = mcts.search([boards[k] for k in active], config.simulations)
        nxt = []
        for k, result in zip(active, results, strict=True):
            step = _step(boards[k], result)
            out[k].chosen.steps.append(step)
            searches[k].append(result)
            if step.move is not None and len(out[k].chosen.steps) <= config.length:
                boards[k].push_uci(step.move)
                nxt.append(k)
        active = nxt
    # sub-par lines: branch at ply j ≤ T̃, then follow the best move up to the chosen line's length
    starts: list[tuple[chess.Board, Line]] = []
    plies: list[int] = []
    for k, rollout in enumerate(out):
        n_states = len(rollout.chosen.steps)
        candidates = []
        for j in range(min(config.branch_limit + 1, n_states - 1)):
            if searches[k][j].terminal:
                break
            for move, reason in subpar_moves(searches[k][j], config):
                candidates.append((j, move, reason))
        candidates.sort(key=lambda c: c[0])  # earliest branches first: the longest comparisons
        chosen_boards = rollout.boards(rollout.chosen)
        for j, move, reason in candidates[: config.max_subpar]:
            line = Line(steps=[LineStep(**asdict(s)) for s in rollout.chosen.steps[:j]], branch=j,
                        branch_reason=reason)
            board = chosen_boards[j].copy()
            result = searches[k][j]
            i = result.moves.index(move)
            q = float(result.q[i])
            line.steps.append(LineStep(board.fen(), result.root_value, move.uci(), board.san(move),
                                       int(result.visits[i]), None if math.isnan(q) else q))
            board.push(move)
            rollout.subpar.append(line)
            starts.append((board, line))  # a finished game still gets its terminal state and value
            plies.append(max(1, n_states - (j + 1)))
    if starts:
        _follow(mcts, starts, plies, config.simulations)
    return out
