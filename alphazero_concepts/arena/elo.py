"""Elo ratings from pairwise match results: a Bradley–Terry (logistic) maximum-likelihood fit with intervals.

Model: player i scores ``E = 1 / (1 + 10^(-(r_i - r_j) / 400))`` against j; a draw counts as half a win and half a
loss, so a pairing's likelihood is ``E^s (1 - E)^(n - s)`` with s the points scored in n games. Ratings are
identified only up to a shift, so some players are *anchors* with fixed ratings: the series' first checkpoint at 0,
or Stockfish levels at their UCI_Elo. Every other player must be connected to an anchor through played games.

Perfect scores (40–0) make the maximum-likelihood rating infinite; `virtual_draws` (default 1) adds that many
drawn games to every pairing that was played, which keeps such ratings finite (a 40–0 pairing → about 760 Elo) and
moves ratings of ordinary pairings by a few Elo at most.

Intervals: `fit_elo` gives ±z·SE from the inverse Fisher information (the Hessian of the negative log-likelihood
at the optimum, with the anchors held fixed). Counting draws as half-points treats each game as a Bernoulli trial,
which overstates the variance of a drawish result, so these intervals are slightly conservative. `bootstrap_elo`
resamples games within each pairing instead (percentile intervals).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

K = math.log(10.0) / 400.0  # logistic slope per Elo point


@dataclass(frozen=True)
class PairResult:
    """Games of `a` against `b`: wins, draws and losses from a's view."""

    a: str
    b: str
    wins: float
    draws: float
    losses: float

    def __post_init__(self) -> None:
        if self.a == self.b:
            raise ValueError(f"a player cannot play itself ({self.a!r})")
        if min(self.wins, self.draws, self.losses) < 0:
            raise ValueError(f"negative counts in {self}")

    @property
    def games(self) -> float:
        return self.wins + self.draws + self.losses

    @property
    def score(self) -> float:
        """a's points per game in [0, 1]."""
        return (self.wins + 0.5 * self.draws) / self.games if self.games else float("nan")


@dataclass(frozen=True)
class EloFit:
    """Fitted ratings with intervals. `anchors` were held fixed (their interval is the point)."""

    ratings: dict[str, float]
    ci: dict[str, tuple[float, float]]
    anchors: dict[str, float]
    games: dict[str, float]
    method: str
    confidence: float = 0.95
    se: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"method": self.method, "confidence": self.confidence, "anchors": dict(self.anchors),
                "players": [{"name": p, "elo": self.ratings[p], "elo_ci": list(self.ci[p]), "games": self.games[p]}
                            for p in self.ratings]}


def expected_score(diff: float) -> float:
    """Expected score of a player `diff` Elo above its opponent."""
    return 1.0 / (1.0 + 10.0 ** (-diff / 400.0))


def elo_difference(score: float) -> float:
    """The Elo difference that predicts `score` in (0, 1) (±inf at 1 and 0)."""
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"score must be in [0, 1], got {score}")
    if score in (0.0, 1.0):
        return math.copysign(math.inf, score - 0.5)
    return -400.0 * math.log10(1.0 / score - 1.0)


def _players(results: Sequence[PairResult], anchors: Mapping[str, float]) -> list[str]:
    seen: dict[str, None] = {}
    for r in results:
        seen.setdefault(r.a)
        seen.setdefault(r.b)
    missing = [a for a in anchors if a not in seen]
    if missing:
        raise ValueError(f"anchor(s) {missing} played no games")
    return list(seen)


def _unconnected(players: list[str], results: Sequence[PairResult], anchors: Mapping[str, float]) -> list[str]:
    """Players with no chain of played games to an anchor (their rating would be undetermined)."""
    neighbours: dict[str, set[str]] = {p: set() for p in players}
    for r in results:
        if r.games > 0:
            neighbours[r.a].add(r.b)
            neighbours[r.b].add(r.a)
    reached, stack = set(anchors), list(anchors)
    while stack:
        for q in neighbours[stack.pop()] - reached:
            reached.add(q)
            stack.append(q)
    return [p for p in players if p not in reached]


def _matrices(players: list[str], results: Iterable[PairResult], virtual_draws: float) -> tuple[np.ndarray, ...]:
    """S[i, j] = points i scored against j, N[i, j] = games between i and j (symmetric)."""
    idx = {p: i for i, p in enumerate(players)}
    n = len(players)
    s, g = np.zeros((n, n)), np.zeros((n, n))
    for r in results:
        i, j = idx[r.a], idx[r.b]
        s[i, j] += r.wins + 0.5 * r.draws
        s[j, i] += r.losses + 0.5 * r.draws
        g[i, j] += r.games
        g[j, i] += r.games
    played = g > 0
    s = s + 0.5 * virtual_draws * played
    g = g + virtual_draws * played
    return s, g


def _newton(s: np.ndarray, g: np.ndarray, r0: np.ndarray, free: np.ndarray, max_iter: int = 200
            ) -> tuple[np.ndarray, np.ndarray]:
    """Maximise the log-likelihood over the free ratings; returns (ratings, Hessian of the NLL on free ones)."""
    r = r0.copy()
    h_free = np.zeros((free.sum(), free.sum()))
    for _ in range(max_iter):
        p = 1.0 / (1.0 + 10.0 ** (-(r[:, None] - r[None, :]) / 400.0))
        grad = -K * (s - g * p).sum(axis=1)
        w = K * K * g * p * (1.0 - p)
        hess = -w
        np.fill_diagonal(hess, w.sum(axis=1))
        h_free = hess[np.ix_(free, free)]
        if not free.any():
            break
        step = np.linalg.solve(h_free, grad[free])
        step = np.clip(step, -400.0, 400.0)  # damp the first steps from far away
        r[free] -= step
        if np.max(np.abs(step)) < 1e-7:
            break
    return r, h_free


def _prepare(results: Sequence[PairResult], anchors: Mapping[str, float]
             ) -> tuple[list[str], np.ndarray, np.ndarray]:
    if not anchors:
        raise ValueError("at least one anchor (a player with a fixed rating) is needed")
    players = _players(results, anchors)
    loose = _unconnected(players, results, anchors)
    if loose:
        raise ValueError(f"no games connect {loose} to an anchor ({sorted(anchors)}); their Elo is undetermined")
    free = np.array([p not in anchors for p in players])
    r0 = np.array([anchors.get(p, float(np.mean(list(anchors.values())))) for p in players], dtype=np.float64)
    return players, free, r0


def fit_elo(results: Sequence[PairResult], anchors: Mapping[str, float], *, virtual_draws: float = 1.0,
            confidence: float = 0.95) -> EloFit:
    """Maximum-likelihood Elo of every player, `anchors` fixed; intervals ±z·SE from the Fisher information."""
    players, free, r0 = _prepare(results, anchors)
    s, g = _matrices(players, results, virtual_draws)
    r, h_free = _newton(s, g, r0, free)
    se = np.zeros(len(players))
    if free.any():
        se[free] = np.sqrt(np.clip(np.diag(np.linalg.inv(h_free)), 0.0, None))
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    games = g.sum(axis=1) - virtual_draws * (g > 0).sum(axis=1)
    return EloFit(
        ratings={p: float(r[i]) for i, p in enumerate(players)},
        ci={p: (float(r[i] - z * se[i]), float(r[i] + z * se[i])) for i, p in enumerate(players)},
        anchors=dict(anchors), games={p: float(games[i]) for i, p in enumerate(players)},
        method=f"Bradley-Terry MLE (draws = half points, {virtual_draws:g} virtual draw per pairing); "
               f"{confidence:.0%} CI = ±{z:.2f}·SE from the Fisher information",
        confidence=confidence, se={p: float(se[i]) for i, p in enumerate(players)})


def bootstrap_elo(results: Sequence[PairResult], anchors: Mapping[str, float], *, samples: int = 500, seed: int = 0,
                  virtual_draws: float = 1.0, confidence: float = 0.95) -> EloFit:
    """As `fit_elo`, with percentile intervals from refitting on games resampled within each pairing."""
    point = fit_elo(results, anchors, virtual_draws=virtual_draws, confidence=confidence)
    players, free, r0 = _prepare(results, anchors)
    rng = np.random.default_rng(seed)
    draws = np.empty((samples, len(players)))
    for k in range(samples):
        resampled = []
        for r in results:
            n = round(r.games)
            probs = np.array([r.wins, r.draws, r.losses], dtype=np.float64) / max(r.games, 1e-12)
            w, d, lo = rng.multinomial(n, probs) if n > 0 else (0, 0, 0)
            resampled.append(PairResult(r.a, r.b, float(w), float(d), float(lo)))
        s, g = _matrices(players, resampled, virtual_draws)
        draws[k], _ = _newton(s, g, r0, free)
    alpha = (1.0 - confidence) / 2.0
    lo_q, hi_q = np.quantile(draws, [alpha, 1.0 - alpha], axis=0)
    return EloFit(ratings=point.ratings,
                  ci={p: (float(lo_q[i]), float(hi_q[i])) for i, p in enumerate(players)},
                  anchors=dict(anchors), games=point.games,
                  method=f"Bradley-Terry MLE (draws = half points, {virtual_draws:g} virtual draw per pairing); "
                         f"{confidence:.0%} percentile CI from {samples} bootstrap resamples of games per pairing",
                  confidence=confidence, se={p: float(draws[:, i].std()) for i, p in enumerate(players)})
