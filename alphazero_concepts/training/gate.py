"""The arena gate of self-play: a new network joins the series only if it does not lose to the current best.

After each training iteration the candidate plays `games` games (both colours of each opening, the same
simulations a move on both sides, no noise) against the network that played the iteration's games. It is
accepted when its score is at least `threshold` (default 0.5: it does not lose); the score's 95% interval is
stated with every decision (normal approximation with the trinomial variance of win/draw/loss outcomes).
A rejected candidate is recorded (work directory, `gate.jsonl`), not bundled; self-play goes on with the best
network while training continues from the candidate (AlphaGo Zero's evaluator).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from alphazero_concepts.arena.match import Opening, play_match
from alphazero_concepts.arena.players import MCTSPlayer
from alphazero_concepts.nn.network import HookedNet


@dataclass(frozen=True)
class GateResult:
    """A gate match from the candidate's view and the decision."""

    wins: int
    draws: int
    losses: int
    threshold: float = 0.5

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses

    @property
    def score(self) -> float:
        return (self.wins + 0.5 * self.draws) / self.games if self.games else float("nan")

    @property
    def ci(self) -> tuple[float, float]:
        """95% interval of the score (normal approximation, per-game variance of 1/½/0 outcomes)."""
        n = self.games
        if n == 0:
            return (float("nan"), float("nan"))
        s = self.score
        var = (self.wins * (1 - s) ** 2 + self.draws * (0.5 - s) ** 2 + self.losses * s**2) / n
        half = 1.96 * math.sqrt(var / n)
        return (max(0.0, s - half), min(1.0, s + half))

    @property
    def accepted(self) -> bool:
        return self.games > 0 and self.score >= self.threshold

    def to_dict(self) -> dict:
        return {**asdict(self), "games": self.games, "score": self.score, "ci": list(self.ci),
                "accepted": self.accepted}


def gate_decision(wins: int, draws: int, losses: int, threshold: float = 0.5) -> GateResult:
    """The gate's verdict on a finished match (candidate's wins, draws, losses)."""
    if min(wins, draws, losses) < 0:
        raise ValueError("match counts must be ≥ 0")
    return GateResult(wins, draws, losses, threshold)


def play_gate(candidate: HookedNet, best: HookedNet, games: int, simulations: int, openings: Sequence[Opening],
              *, threshold: float = 0.5, max_plies: int = 300) -> GateResult:
    """Play the gate match candidate vs best and decide."""
    a = MCTSPlayer(candidate, simulations, name="candidate")
    b = MCTSPlayer(best, simulations, name="best")
    match = play_match(a, b, games, openings, max_plies=max_plies, event="azc self-play gate")
    return gate_decision(match.wins, match.draws, match.losses, threshold)
