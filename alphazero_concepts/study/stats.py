"""Study statistics: solve rates per participant and concept, transfer over the control, paired tests.

Definitions (all rates over the puzzles *assigned* in a phase, so a puzzle left when time ran out, or passed,
counts as not solved — the paper's "solved when the player finds the machine's move"):

* phase 1 rate: the train puzzles of the taught concepts (before teaching);
* phase 3 taught rate: the unseen test puzzles of the taught concepts (after teaching);
* phase 3 control rate: the test puzzles of the control concepts (never taught, seen only in phase 3);
* **gain** = phase 3 taught − phase 1 (the paper's comparison; confounded by practice and priming);
* **transfer** = phase 3 taught − phase 3 control (same phase, same session: what teaching added).

Only phases that are over count (a participant still in phase 3 has a phase-1 rate but no phase-3 rates yet), so
the live results page never shows a partial phase as a low solve rate.

Across participants (paired, one difference each, participants who finished only): mean and median difference,
a percentile bootstrap CI of the mean (seeded numpy), the exact two-sided sign test (binomial, zeros dropped) and
the Wilcoxon signed-rank test, exact for any n via a dynamic programme over (doubled, tie-averaged) ranks —
so no scipy is needed and ties do not force a normal approximation. The paper's four grandmasters
(METHOD.md §5) are analysed the same way for comparison; with n = 4 even four gains out of four give p = 0.125.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["PAPER", "ConceptResult", "Paired", "ParticipantResult", "SignTest", "StudyResults", "Wilcoxon",
           "analyse", "bootstrap_mean_ci", "figures", "paired", "paper_results", "sign_test", "wilcoxon_signed_rank"]

#: Schut et al. (PNAS 2025), phase 1 → phase 3 solve rates of the four grandmasters (no control group).
PAPER: dict[str, Any] = {
    "source": "Schut et al., Bridging the Human-AI Knowledge Gap (PNAS 2025), study with 4 grandmasters",
    "participants": [("GM 1", 0.00, 0.42), ("GM 2", 0.33, 0.58), ("GM 3", 0.25, 0.42), ("GM 4", 0.38, 0.44)],
}


@dataclass(frozen=True)
class SignTest:
    n: int          # non-zero differences
    positive: int
    negative: int
    zeros: int
    p_value: float  # two-sided, exact binomial(n, 1/2)


@dataclass(frozen=True)
class Wilcoxon:
    n: int              # non-zero differences
    w_plus: float       # sum of ranks of positive differences
    p_value: float      # two-sided, exact
    ties: bool


@dataclass(frozen=True)
class Paired:
    """One paired comparison across participants (after − before)."""

    label: str
    n: int
    mean_before: float
    mean_after: float
    mean_diff: float
    median_diff: float
    ci_low: float
    ci_high: float
    ci_level: float
    sign: SignTest
    wilcoxon: Wilcoxon
    diffs: tuple[float, ...] = ()


def _clean(diffs: Iterable[float]) -> list[float]:
    # Round away floating noise (0.1 + 0.2 - 0.3) so equal rates compare equal and ties are found.
    return [round(float(d), 12) for d in diffs]


def sign_test(diffs: Iterable[float]) -> SignTest:
    """Exact two-sided sign test of median 0; zero differences are dropped."""
    d = _clean(diffs)
    pos, neg = sum(x > 0 for x in d), sum(x < 0 for x in d)
    n = pos + neg
    if n == 0:
        return SignTest(0, 0, 0, len(d), 1.0)
    k = min(pos, neg)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return SignTest(n=n, positive=pos, negative=neg, zeros=len(d) - n, p_value=min(1.0, 2 * tail))


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties given the average of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def wilcoxon_signed_rank(diffs: Iterable[float]) -> Wilcoxon:
    """Exact two-sided Wilcoxon signed-rank test (zeros dropped, ties averaged).

    The null distribution of W+ is computed by a dynamic programme over the actual ranks (doubled to integers),
    which is exact with ties too and costs O(n · Σranks)."""
    d = [x for x in _clean(diffs) if x != 0]
    n = len(d)
    if n == 0:
        return Wilcoxon(0, 0.0, 1.0, False)
    ranks = _ranks([abs(x) for x in d])
    ties = len(set(abs(x) for x in d)) < n
    r2 = [round(2 * r) for r in ranks]
    w2 = sum(r for r, x in zip(r2, d, strict=True) if x > 0)
    total = sum(r2)
    counts = [0] * (total + 1)
    counts[0] = 1
    for r in r2:
        for s in range(total, r - 1, -1):
            counts[s] += counts[s - r]
    all_ = 2 ** n
    lower = sum(counts[: w2 + 1]) / all_
    upper = sum(counts[w2:]) / all_
    return Wilcoxon(n=n, w_plus=w2 / 2, p_value=min(1.0, 2 * min(lower, upper)), ties=ties)


def bootstrap_mean_ci(values: Sequence[float], *, n_boot: int = 10_000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (resampling participants), seeded; (nan, nan) for no data."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def paired(label: str, after: Sequence[float], before: Sequence[float], *, seed: int = 0,
           n_boot: int = 10_000) -> Paired:
    """Compare `after` with `before`, one pair per participant."""
    if len(after) != len(before):
        raise ValueError(f"paired data of unequal length: {len(after)} vs {len(before)}")
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    lo, hi = bootstrap_mean_ci(diffs, seed=seed, n_boot=n_boot)
    nan = math.nan
    return Paired(label=label, n=len(diffs), mean_before=float(np.mean(before)) if before else nan,
                  mean_after=float(np.mean(after)) if after else nan,
                  mean_diff=float(np.mean(diffs)) if diffs else nan,
                  median_diff=float(np.median(diffs)) if diffs else nan, ci_low=lo, ci_high=hi, ci_level=0.95,
                  sign=sign_test(diffs), wilcoxon=wilcoxon_signed_rank(diffs), diffs=tuple(diffs))


@dataclass
class Count:
    solved: int = 0
    total: int = 0
    answered: int = 0

    @property
    def rate(self) -> float | None:
        return self.solved / self.total if self.total else None

    def add(self, answered: bool, correct: bool) -> None:
        self.total += 1
        self.answered += int(answered)
        self.solved += int(correct)


@dataclass
class ParticipantResult:
    participant_id: int
    name: str
    finished: bool
    phase1: Count = field(default_factory=Count)
    phase3_taught: Count = field(default_factory=Count)
    phase3_control: Count = field(default_factory=Count)

    @property
    def gain(self) -> float | None:
        a, b = self.phase3_taught.rate, self.phase1.rate
        return None if a is None or b is None else a - b

    @property
    def transfer(self) -> float | None:
        a, b = self.phase3_taught.rate, self.phase3_control.rate
        return None if a is None or b is None else a - b


@dataclass
class ConceptResult:
    concept: str
    label: str
    phase1: Count = field(default_factory=Count)
    phase3_taught: Count = field(default_factory=Count)
    phase3_control: Count = field(default_factory=Count)

    @property
    def transfer(self) -> float | None:
        a, b = self.phase3_taught.rate, self.phase3_control.rate
        return None if a is None or b is None else a - b


@dataclass
class StudyResults:
    participants: list[ParticipantResult]
    concepts: list[ConceptResult]
    gain: Paired | None
    transfer: Paired | None
    paper: Paired
    seed: int

    def to_dict(self) -> dict[str, Any]:
        def count(c: Count) -> dict[str, Any]:
            return {"solved": c.solved, "answered": c.answered, "total": c.total, "rate": c.rate}

        return {
            "definitions": {"rate": "solved / assigned puzzles of the phase (unanswered = not solved)",
                            "gain": "phase 3 taught rate - phase 1 rate",
                            "transfer": "phase 3 taught rate - phase 3 control rate"},
            "participants": [{"id": p.participant_id, "name": p.name, "finished": p.finished,
                              "phase1": count(p.phase1), "phase3_taught": count(p.phase3_taught),
                              "phase3_control": count(p.phase3_control), "gain": p.gain, "transfer": p.transfer}
                             for p in self.participants],
            "concepts": [{"concept": c.concept, "label": c.label, "phase1": count(c.phase1),
                          "phase3_taught": count(c.phase3_taught), "phase3_control": count(c.phase3_control),
                          "transfer": c.transfer} for c in self.concepts],
            "paired": {"gain": None if self.gain is None else asdict(self.gain),
                       "transfer": None if self.transfer is None else asdict(self.transfer)},
            "paper": {"source": PAPER["source"], "gain": asdict(self.paper),
                      "participants": [{"name": n, "phase1": a, "phase3": b} for n, a, b in PAPER["participants"]]},
            "bootstrap_seed": self.seed,
        }


def paper_results(*, seed: int = 0) -> Paired:
    """The paper's four grandmasters, phase 3 vs phase 1, through the same tests."""
    before = [b for _, b, _ in PAPER["participants"]]
    after = [a for _, _, a in PAPER["participants"]]
    return paired("paper: phase 3 - phase 1", after, before, seed=seed)


def analyse(trials: Iterable[Mapping[str, Any]], *, seed: int = 0, n_boot: int = 10_000) -> StudyResults:
    """Results from trial rows (`Store.trial_rows`): one per assigned solving puzzle, answered or not.

    Each row needs participant_id, participant_name, participant_phase (the participant's current phase, 4 =
    finished), phase (1 or 3), concept, concept_label, condition ('taught' | 'control'), answered, correct.
    Rows of a phase the participant has not finished are skipped."""
    people: dict[int, ParticipantResult] = {}
    concepts: dict[str, ConceptResult] = {}
    for t in trials:
        pid = int(t["participant_id"])
        p = people.setdefault(pid, ParticipantResult(pid, str(t["participant_name"]),
                                                     finished=int(t["participant_phase"]) >= 4))
        c = concepts.setdefault(t["concept"], ConceptResult(t["concept"], str(t.get("concept_label") or t["concept"])))
        if int(t["participant_phase"]) <= int(t["phase"]):
            continue  # that phase is not over yet: its rate would be partial
        answered, correct = bool(t["answered"]), bool(t["correct"])
        if int(t["phase"]) == 1:
            p.phase1.add(answered, correct)
            c.phase1.add(answered, correct)
        elif t["condition"] == "taught":
            p.phase3_taught.add(answered, correct)
            c.phase3_taught.add(answered, correct)
        elif t["condition"] == "control":
            p.phase3_control.add(answered, correct)
            c.phase3_control.add(answered, correct)
    done = [p for p in people.values() if p.finished]
    with_gain = [p for p in done if p.gain is not None]
    with_transfer = [p for p in done if p.transfer is not None]
    gain = paired("phase 3 taught - phase 1", [p.phase3_taught.rate for p in with_gain],
                  [p.phase1.rate for p in with_gain], seed=seed, n_boot=n_boot) if with_gain else None
    transfer = paired("phase 3 taught - phase 3 control", [p.phase3_taught.rate for p in with_transfer],
                      [p.phase3_control.rate for p in with_transfer], seed=seed, n_boot=n_boot) if with_transfer \
        else None
    return StudyResults(participants=sorted(people.values(), key=lambda p: p.participant_id),
                        concepts=sorted(concepts.values(), key=lambda c: c.concept), gain=gain, transfer=transfer,
                        paper=paper_results(seed=seed), seed=seed)


# -- figures -------------------------------------------------------------------------------------------------------
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def figures(results: StudyResults) -> dict[str, bytes]:
    """PNG figures: ``solve_rates`` (per participant, ours beside the paper's) and ``concepts`` (per concept).

    Uses matplotlib's object API (no pyplot), so it never touches a global backend or leaks figures."""
    from matplotlib.figure import Figure

    out: dict[str, bytes] = {}
    fig = Figure(figsize=(9, 3.8))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    xs = [0, 1, 2]
    for p in results.participants:
        ys = [p.phase1.rate, p.phase3_taught.rate, p.phase3_control.rate]
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        if not pts:
            continue
        style = "-o" if p.finished else ":o"
        ax1.plot([x for x, _ in pts[:2]], [y for _, y in pts[:2]], style, alpha=0.8,
                 label=p.name[:20] + ("" if p.finished else " (running)"))
        if len(pts) == 3:
            ax1.plot([2], [pts[2][1]], "s", color=ax1.lines[-1].get_color(), alpha=0.8)
    ax1.set_xticks(xs, ["phase 1", "phase 3\ntaught", "phase 3\ncontrol"])
    ax1.set_ylabel("solve rate")
    ax1.set_ylim(-0.03, 1.03)
    ax1.set_title("this study")
    if ax1.lines:
        ax1.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.22), ncol=3, frameon=False)
    for name, a, b in PAPER["participants"]:
        ax2.plot([0, 1], [a, b], "--o", color="0.45")
        ax2.annotate(name, (1, b), textcoords="offset points", xytext=(4, 0), fontsize=7, color="0.3")
    ax2.set_xticks([0, 1, 2], ["phase 1", "phase 3", "control\n(none)"])
    ax2.set_title("paper (Schut et al.): 4 GMs")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    out["solve_rates"] = _png(fig)

    fig = Figure(figsize=(max(5.0, 0.9 * len(results.concepts) + 2), 3.6))
    ax = fig.subplots()
    width = 0.27
    for k, (attr, label) in enumerate((("phase1", "phase 1 (taught)"), ("phase3_taught", "phase 3 taught"),
                                       ("phase3_control", "phase 3 control"))):
        vals = [getattr(c, attr).rate for c in results.concepts]
        ax.bar([i + (k - 1) * width for i in range(len(vals))], [v if v is not None else 0 for v in vals], width,
               label=label)
    ax.set_xticks(range(len(results.concepts)), [c.label[:18] for c in results.concepts], rotation=30, ha="right",
                  fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("solve rate")
    ax.set_title("per concept")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    out["concepts"] = _png(fig)
    return out
