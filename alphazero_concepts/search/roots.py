"""Root positions: where the teacher and a weaker checkpoint choose different moves (METHOD.md §2).

Games of the teacher against itself are played from opening lines, all games stepping together in the batched
game driver (`search.games`: one batched network call per ply); early plies sample the teacher's policy with a
temperature for diversity, later plies play its best move. Every position after the opening is shown to the
weaker network too; where their chosen moves differ the position becomes a root, recorded with why (both moves
and both probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources

import chess
import numpy as np

from alphazero_concepts.nn.network import HookedNet, predict
from alphazero_concepts.search.games import play_batched
from alphazero_concepts.search.mcts import legal_softmax


@dataclass(frozen=True)
class RootConfig:
    games: int = 64
    max_plies: int = 100  # game length cap (plies after the opening line)
    skip_plies: int = 4  # plies after the opening line that are never roots (still book-like)
    sample_plies: int = 12  # plies sampled from the teacher's policy (then its best move)
    temperature: float = 1.0
    max_roots: int | None = None
    seed: int = 0


@dataclass
class Root:
    """A position (start FEN + moves, so history is kept) where the two networks disagree."""

    start_fen: str
    moves: list[str]
    fen: str
    teacher_move: str
    weaker_move: str
    teacher_prob: float
    weaker_prob: float
    game: int
    ply: int
    opening: str

    @property
    def reason(self) -> str:
        return (f"teacher plays {self.teacher_move} (p={self.teacher_prob:.2f}), weaker plays {self.weaker_move} "
                f"(p={self.weaker_prob:.2f})")

    def board(self) -> chess.Board:
        board = chess.Board(self.start_fen)
        for uci in self.moves:
            board.push_uci(uci)
        return board

    def to_dict(self) -> dict:
        return {**asdict(self), "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict) -> Root:
        return cls(**{k: v for k, v in d.items() if k != "reason"})


def bundled_openings() -> list[tuple[str, chess.Board]]:
    """(ECO code, board after the line) for the package's opening list."""
    text = resources.files("alphazero_concepts").joinpath("data/openings.txt").read_text()
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        eco, *sans = line.split()
        board = chess.Board()
        for san in sans:
            board.push_san(san)
        out.append((eco, board))
    return out


def _policy(net: HookedNet, boards: Sequence[chess.Board]) -> tuple[list[list[chess.Move]], list[np.ndarray]]:
    fmt = net.format
    logits, _ = predict(net, fmt.encode(boards))
    legal = [fmt.legal_move_indices(b) for b in boards]
    return [m for m, _ in legal], legal_softmax(logits, [ix for _, ix in legal])


def find_roots(teacher: HookedNet, weaker: HookedNet, config: RootConfig | None = None,
               openings: Sequence[tuple[str, chess.Board]] | None = None) -> list[Root]:
    """Play `config.games` teacher games from the openings (cycled) and return the disagreement positions."""
    config = config or RootConfig()
    openings = list(openings or bundled_openings())
    rng = np.random.default_rng(config.seed)
    games = [(g, openings[g % len(openings)]) for g in range(config.games)]
    boards = [board.copy() for _, (_, board) in games]
    start_plies = [len(b.move_stack) for b in boards]
    roots: list[Root] = []
    ply = 0  # steps played: every game starts together, so this is each live game's ply after its opening

    def choose(live: list[int]) -> list[chess.Move]:
        """The teacher's move in every live game (one batched call), noting where the weaker network differs."""
        moves_t, probs_t = _policy(teacher, [boards[i] for i in live])
        candidates = [i for i in live if ply >= config.skip_plies]
        weaker_choice: dict[int, tuple[chess.Move, float]] = {}
        if candidates:
            moves_w, probs_w = _policy(weaker, [boards[i] for i in candidates])
            for i, mv, pr in zip(candidates, moves_w, probs_w, strict=True):
                weaker_choice[i] = (mv[int(np.argmax(pr))], float(pr.max()))
        chosen = []
        for i, mv, pr in zip(live, moves_t, probs_t, strict=True):
            board = boards[i]
            best = int(np.argmax(pr))
            if i in weaker_choice and weaker_choice[i][0] != mv[best]:
                w_move, w_prob = weaker_choice[i]
                roots.append(Root(board.root().fen(), [m.uci() for m in board.move_stack], board.fen(),
                                  mv[best].uci(), w_move.uci(), float(pr[best]), w_prob, i,
                                  len(board.move_stack) - start_plies[i], games[i][1][0]))
            if ply < config.sample_plies and config.temperature > 0:
                p = pr ** (1.0 / config.temperature)
                choice = int(rng.choice(len(mv), p=p / p.sum()))
            else:
                choice = best
            chosen.append(mv[choice])
        return chosen

    def after_step(steps: int) -> bool:
        nonlocal ply
        ply = steps
        return ply >= config.max_plies or (config.max_roots is not None and len(roots) >= config.max_roots)

    if config.max_plies > 0:
        play_batched(range(config.games), choose, play=lambda i, move: boards[i].push(move),
                     end=lambda i: True if boards[i].is_game_over(claim_draw=True) else None,
                     end_at_start=lambda i: True if boards[i].is_game_over() else None, after_step=after_step)
    return roots[: config.max_roots] if config.max_roots is not None else roots
