"""A rough puzzle rating: an *estimate* from how likely a human-trained model is to play the answer.

No person has played these puzzles, so there is no measured rating. The estimate is

    rating = 1500 − 500 · log10(p / 0.1),   clamped to [600, 2800] and rounded to 10,

with p the probability that the human model plays the answer (`human_policy_prob`), or, when no human model was
used, the teacher's own raw policy prior for it (how obvious the move is before search; recorded as the source).
So a move humans play half the time rates ≈ 1150, one in 10 ≈ 1500, one in 100 ≈ 2000, one in 1000 ≈ 2500.
The rating deviation is a fixed `RATING_DEVIATION` = 500, Lichess's way of saying "barely known". Treat it as an
ordering of the set (easy → hard for humans), not as a calibrated Elo.
"""

from __future__ import annotations

import math

__all__ = ["RATING_DEVIATION", "RATING_FORMULA", "estimate_rating"]

RATING_DEVIATION = 500
RATING_FORMULA = "1500 - 500*log10(p/0.1), clamped to [600, 2800], rounded to 10 (estimate, not measured)"
_MIN, _MAX, _FLOOR_P = 600, 2800, 1e-6


def estimate_rating(p: float) -> int:
    """The rating estimate for a move played with probability `p` (see the module docstring)."""
    if not math.isfinite(p):
        raise ValueError(f"probability must be finite, got {p}")
    value = 1500.0 - 500.0 * math.log10(max(p, _FLOOR_P) / 0.1)
    return int(round(min(_MAX, max(_MIN, value)) / 10.0) * 10)
