"""Positions for probing that need no data files: short seeded games from the bundled opening lines.

`sample_positions` plays games from the package's opening list (``data/openings.txt``, 26 ECO lines). A share
`policy_share` of the games samples its moves from a network's policy (temperature 1, all such games stepping
together: one batched network call per ply); the others play random legal moves, preferring captures half the
time so that material balances spread out (random games are cheap and give targets a wide range; policy games
give positions closer to the ones the network was trained on). Every `every`-th ply after the opening line is kept
(with its move history, so the network's history planes are real), and `positions` of them are drawn at random
(seeded) from all the games played. Each position carries group labels for the block
hold-out: ``game`` (game number), ``opening`` (ECO family letter A–E of its opening line) and ``material``
(`material_class`).
"""

from __future__ import annotations

from dataclasses import dataclass

import chess
import numpy as np

from alphazero_concepts.core.config import DictConfig
from alphazero_concepts.nn.network import HookedNet, predict
from alphazero_concepts.probing.probes import material_class
from alphazero_concepts.search.mcts import legal_softmax
from alphazero_concepts.search.roots import bundled_openings


@dataclass(frozen=True)
class SampleConfig(DictConfig):
    positions: int = 1000
    every: int = 3  # keep every k-th ply after the opening line
    max_plies: int = 90  # plies played after the opening line
    temperature: float = 1.0  # for the policy-sampled games
    capture_bias: float = 0.5  # random games: chance of picking among captures when there are any
    policy_share: float = 0.5  # share of games whose moves are sampled from the network (needs a network)
    wave: int = 64  # at most this many games played side by side
    seed: int = 0

    def __post_init__(self) -> None:
        if self.positions < 1 or self.every < 1 or self.max_plies < 1 or self.wave < 1:
            raise ValueError("SampleConfig: positions, every, max_plies and wave must be ≥ 1")
        if not 0 <= self.policy_share <= 1:
            raise ValueError(f"SampleConfig.policy_share must be in [0, 1], got {self.policy_share}")

    def by_policy(self, game: int) -> bool:
        """Whether game `game` samples the network's policy (spread evenly: share s → games where ⌊(g+1)s⌋ > ⌊gs⌋)."""
        return int((game + 1) * self.policy_share) > int(game * self.policy_share)


def _policy_moves(net: HookedNet, boards: list[chess.Board], rng: np.random.Generator, temperature: float
                  ) -> list[chess.Move]:
    fmt = net.format
    logits, _ = predict(net, fmt.encode(boards))
    legal = [fmt.legal_move_indices(b) for b in boards]
    out = []
    for (moves, _), p in zip(legal, legal_softmax(logits, [ix for _, ix in legal]), strict=True):
        p = p ** (1.0 / temperature)
        out.append(moves[int(rng.choice(len(moves), p=p / p.sum()))])
    return out


def _random_move(board: chess.Board, rng: np.random.Generator, capture_bias: float) -> chess.Move:
    moves = list(board.legal_moves)
    captures = [m for m in moves if board.is_capture(m)]
    pool = captures if captures and rng.random() < capture_bias else moves
    return pool[int(rng.integers(len(pool)))]


def sample_positions(config: SampleConfig | None = None, net: HookedNet | None = None
                     ) -> tuple[list[chess.Board], dict[str, list[str]]]:
    """(`config.positions` boards, {"game"|"opening"|"material": one label per board}); seeded, deterministic.

    Without `net` (or with `policy_share` 0) every game plays random moves (with the capture preference).
    """
    config = config or SampleConfig()
    rng = np.random.default_rng(config.seed)
    openings = bundled_openings()
    boards: list[chess.Board] = []
    games: list[str] = []
    families: list[str] = []
    g0 = 0
    per_game = max(1, config.max_plies // config.every)
    wave = min(config.wave, max(8, -(-2 * config.positions // per_game)))  # about twice the games needed
    while len(boards) < config.positions:
        ids = list(range(g0, g0 + wave))
        g0 += wave
        live = {g: openings[g % len(openings)][1].copy() for g in ids}
        kept: dict[int, list[chess.Board]] = {g: [] for g in ids}
        for ply in range(1, config.max_plies + 1):
            playing = [g for g in ids if g in live]
            if not playing:
                break
            by_policy = [g for g in playing if net is not None and config.by_policy(g)]
            moves = dict(zip(by_policy, _policy_moves(net, [live[g] for g in by_policy], rng, config.temperature),
                             strict=True)) if by_policy and net is not None else {}
            for g in playing:
                board = live[g]
                board.push(moves[g] if g in moves else _random_move(board, rng, config.capture_bias))
                if board.is_game_over():  # (claim_draw=True is slow: it tries every legal move)
                    del live[g]
                elif ply % config.every == 0:
                    kept[g].append(board.copy())
        for g in ids:
            boards += kept[g]
            games += [f"g{g:04d}"] * len(kept[g])
            families += [openings[g % len(openings)][0][0]] * len(kept[g])
    # a seeded sample of all the positions played (not the first n), so that a small n still spans many games,
    # openings and plies
    keep = np.sort(rng.choice(len(boards), size=config.positions, replace=False))
    boards = [boards[i] for i in keep]
    return boards, {"game": [games[i] for i in keep], "opening": [families[i] for i in keep],
                    "material": material_class(boards)}
