"""The study protocol (METHOD.md §5) as pure functions: who is taught which concepts, and in which order.

Each participant gets taught concepts T and control concepts C (disjoint):

* phase 1 — solve the ``train`` puzzles of T;
* phase 2 — review the same puzzles with the machine's line and the concept shown;
* phase 3 — solve the ``test`` puzzles of T ∪ C, mixed. Control concepts' lines are never shown, so phase 3's
  control solve rate is the baseline that the taught solve rate is compared with (the paper had no control).

Orders are drawn from one `random.Random(seed)` per participant, and the seed is stored with the participant,
so a plan can be re-derived and audited; the store also records the plan itself, so a later change to this
module never changes a running study.

Assignments: explicit lists, a random split with a recorded seed, or `complement` — the mirror image of an
earlier participant's split, so that pairs of participants counterbalance concepts (each concept is taught to
one and is a control for the other; this makes per-concept transfer estimable).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from alphazero_concepts.core.puzzleset import PuzzleSet

__all__ = ["Assignment", "AssignmentError", "SessionPlan", "choose_assignment", "complement", "condition_of",
           "eligible_concepts", "explicit_assignment", "new_seed", "plan_session", "random_assignment", "split_list"]


class AssignmentError(ValueError):
    """Taught/control concepts that the puzzle set cannot support (unknown, overlapping or without puzzles)."""


@dataclass(frozen=True)
class Assignment:
    """Taught and control concept ids for one participant, and the seed that drew them (None when explicit)."""

    taught: tuple[str, ...]
    control: tuple[str, ...]
    seed: int | None = None


@dataclass(frozen=True)
class SessionPlan:
    """Puzzle ids per phase, in the order they are shown. ``phases[2] == phases[1]`` (the review)."""

    phases: dict[int, tuple[str, ...]]
    seed: int


def new_seed() -> int:
    """A fresh 32-bit seed (recorded, so that any draw can be replayed)."""
    return secrets.randbits(32)


def _check(puzzle_set: PuzzleSet, taught: Sequence[str], control: Sequence[str]) -> None:
    counts = puzzle_set.counts()
    if not taught:
        raise AssignmentError("at least one taught concept is needed")
    for group, concepts in (("taught", taught), ("control", control)):
        if len(set(concepts)) != len(concepts):
            raise AssignmentError(f"{group} concepts repeat: {list(concepts)}")
        for c in concepts:
            if c not in counts:
                raise AssignmentError(f"unknown {group} concept {c!r}; the puzzle set has {sorted(counts)}")
            if group == "taught" and counts[c]["train"] == 0:
                raise AssignmentError(f"taught concept {c!r} has no train puzzles (phases 1-2 would be empty)")
            if counts[c]["test"] == 0:
                raise AssignmentError(f"{group} concept {c!r} has no test puzzles (phase 3 needs them)")
    both = set(taught) & set(control)
    if both:
        raise AssignmentError(f"concepts cannot be both taught and control: {sorted(both)}")


def explicit_assignment(puzzle_set: PuzzleSet, taught: Sequence[str], control: Sequence[str]) -> Assignment:
    """Use the organiser's lists as given (checked against the puzzle set)."""
    taught, control = tuple(taught), tuple(control)
    _check(puzzle_set, taught, control)
    return Assignment(taught=taught, control=control, seed=None)


def eligible_concepts(puzzle_set: PuzzleSet) -> list[str]:
    """Concepts that can be either taught or control: they have both train and test puzzles."""
    return [c for c, n in puzzle_set.counts().items() if n["train"] > 0 and n["test"] > 0]


def random_assignment(puzzle_set: PuzzleSet, *, n_taught: int | None = None, n_control: int | None = None,
                      seed: int | None = None) -> Assignment:
    """Split the eligible concepts at random: the first `n_taught` of a seeded shuffle are taught, the next
    `n_control` control. Defaults: half taught (rounded up), the rest control."""
    seed = new_seed() if seed is None else int(seed)
    concepts = eligible_concepts(puzzle_set)
    if len(concepts) < 2:
        raise AssignmentError(f"a random split needs at least 2 concepts with train and test puzzles, "
                              f"the set has {len(concepts)}")
    n_taught = (len(concepts) + 1) // 2 if n_taught is None else n_taught
    n_control = len(concepts) - n_taught if n_control is None else n_control
    if n_taught < 1 or n_control < 0 or n_taught + n_control > len(concepts):
        raise AssignmentError(f"cannot pick {n_taught} taught + {n_control} control from {len(concepts)} concepts")
    order = sorted(concepts)
    random.Random(seed).shuffle(order)
    taught = tuple(sorted(order[:n_taught]))
    control = tuple(sorted(order[n_taught:n_taught + n_control]))
    _check(puzzle_set, taught, control)
    return Assignment(taught=taught, control=control, seed=seed)


def complement(puzzle_set: PuzzleSet, other: Assignment) -> Assignment:
    """The mirror image of `other`: its control concepts are taught and its taught ones are control."""
    a = Assignment(taught=other.control, control=other.taught, seed=other.seed)
    _check(puzzle_set, a.taught, a.control)
    return a


def plan_session(puzzle_set: PuzzleSet, assignment: Assignment, seed: int) -> SessionPlan:
    """Phase orders for one participant, drawn from `random.Random(seed)`.

    Phase 1 (and so phase 2) is shuffled too, so that no two participants meet concepts in the same order;
    phase 3 mixes taught and control test puzzles in one shuffled list."""
    rng = random.Random(seed)
    taught, control = frozenset(assignment.taught), frozenset(assignment.control)
    p1 = [p.id for p in puzzle_set.select(taught, "train")]
    rng.shuffle(p1)
    p3 = [p.id for p in puzzle_set.select(taught | control, "test")]
    rng.shuffle(p3)
    return SessionPlan(phases={1: tuple(p1), 2: tuple(p1), 3: tuple(p3)}, seed=seed)


def choose_assignment(puzzle_set: PuzzleSet, mode: str, *, previous: Sequence[Assignment] = (),
                      taught: Sequence[str] | None = None, control: Sequence[str] | None = None,
                      n_taught: int | None = None, n_control: int | None = None, seed: int) -> Assignment:
    """The organiser's choice for a new participant.

    ``explicit`` (or any `taught` given): the lists as given. ``random``: a seeded random split. ``balanced``:
    when an odd number of participants exist, the mirror image of the last one's (`previous[-1]`), else a random
    split — so consecutive pairs counterbalance every concept."""
    if mode == "explicit" or taught is not None:
        return explicit_assignment(puzzle_set, taught or [], control or [])
    if mode == "balanced" and len(previous) % 2 == 1:
        try:
            return complement(puzzle_set, previous[-1])
        except AssignmentError:
            pass  # the previous split cannot be mirrored (e.g. it had no control): draw a fresh one
    elif mode not in ("balanced", "random"):
        raise AssignmentError(f"mode must be balanced, random or explicit, got {mode!r}")
    return random_assignment(puzzle_set, n_taught=n_taught, n_control=n_control, seed=seed)


def condition_of(concept: str, assignment: Assignment) -> str:
    """'taught' or 'control' (or 'unassigned' for a concept the participant never meets)."""
    if concept in assignment.taught:
        return "taught"
    if concept in assignment.control:
        return "control"
    return "unassigned"


def split_list(text: str | Iterable[str] | None) -> list[str]:
    """'a, b,c' or ['a', 'b'] → ['a', 'b', 'c'] (blank entries dropped)."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    return [s.strip() for s in items if s and s.strip()]
