"""The human side of a puzzle: how likely people of a given strength are to find its answer.

By default the models of human play are the Maia ladder (lc0 networks trained on Lichess games of one rating band
each, maia-1100 … maia-1900, found by `engines.locate_maia_dir`); without them, the latest human-games-only
checkpoint of the teacher's series, or any model the user names. Each model reads the puzzle position with its
full game history (the eight history steps the networks were trained with), not the position alone.

Per puzzle: `maia_probs` = the raw-policy probability (no search) of the answer at each level; the puzzle is
*machine-only* when no level plays the answer with probability ≥ `HUMAN_THRESHOLD` (0.1: a move a player of that
band would play about one time in ten), and its *difficulty* is the lowest level that does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import chess
from torch import nn

from alphazero_concepts.engines import MAIA_LEVELS, locate_maia_dir
from alphazero_concepts.puzzles.candidates import Candidate
from alphazero_concepts.puzzles.checks import human_policy_probs

HUMAN_THRESHOLD = 0.1

HumanModels = Mapping[str, nn.Module]  # name → model, weakest first


def maia_ladder_paths(directory: str | Path | None = None) -> dict[str, Path]:
    """{"maia-1100": path, …} of the Maia files found (weakest first); empty when there are none."""
    folder = locate_maia_dir(directory)
    if folder is None:
        return {}
    return {name: folder / f"{name}.pb.gz" for name in MAIA_LEVELS if (folder / f"{name}.pb.gz").is_file()}


def ladder_probs(models: HumanModels, candidates: Sequence[Candidate], batch_size: int = 256
                 ) -> dict[str, dict[str, float]]:
    """{candidate id: {model name: probability of the answer}} with each position's full history."""
    boards = [c.board_with_history() for c in candidates]
    answers = [chess.Move.from_uci(c.answer) for c in candidates]
    out: dict[str, dict[str, float]] = {c.id: {} for c in candidates}
    for name, net in models.items():
        for c, p in zip(candidates, human_policy_probs(net, boards, answers, batch_size), strict=True):
            out[c.id][name] = p
    return out


def difficulty(probs: Mapping[str, float], threshold: float = HUMAN_THRESHOLD) -> str | None:
    """The weakest model (in the mapping's order) that plays the answer with probability ≥ `threshold`; None
    when none does (a machine-only puzzle)."""
    return next((name for name, p in probs.items() if p >= threshold), None)


def load_maia_ladder(device: str | object = "cpu", directory: str | Path | None = None) -> dict[str, nn.Module]:
    """{name: network} of every Maia level found (weakest first); empty when none is."""
    from alphazero_concepts.nn.lc0 import load_lc0

    return {name: load_lc0(path, device)[0] for name, path in maia_ladder_paths(directory).items()}
