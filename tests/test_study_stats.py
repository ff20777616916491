"""Study statistics: exact tests against brute force (and scipy where it is installed), bootstrap, results."""

from __future__ import annotations

import itertools
import math

import pytest

from alphazero_concepts.study.stats import (
    PAPER,
    analyse,
    bootstrap_mean_ci,
    figures,
    paper_results,
    sign_test,
    wilcoxon_signed_rank,
)

pytestmark = pytest.mark.unit


def brute_wilcoxon(diffs: list[float]) -> float:
    """Two-sided p by enumerating all 2^n sign flips of the (tie-averaged) ranks."""
    d = [x for x in diffs if x != 0]
    a = sorted(abs(x) for x in d)
    rank = {v: (a.index(v) + 1 + len(a) - a[::-1].index(v)) / 2 for v in a}
    ranks = [rank[abs(x)] for x in d]
    w = sum(r for r, x in zip(ranks, d, strict=True) if x > 0)
    sums = [sum(r for r, s in zip(ranks, signs, strict=True) if s)
            for signs in itertools.product([0, 1], repeat=len(d))]
    lo = sum(s <= w + 1e-9 for s in sums) / len(sums)
    hi = sum(s >= w - 1e-9 for s in sums) / len(sums)
    return min(1.0, 2 * min(lo, hi))


def test_sign_test_exact_values() -> None:
    assert sign_test([0.42, 0.25, 0.17, 0.06]).p_value == pytest.approx(0.125)
    r = sign_test([1, 1, 1, -1, 0, 0, 1, 1, 1, 1])
    assert (r.n, r.positive, r.negative, r.zeros) == (8, 7, 1, 2)
    assert r.p_value == pytest.approx(2 * (1 + 8) / 256)
    assert sign_test([0, 0]).p_value == 1.0 and sign_test([]).n == 0
    assert sign_test([1, -1]).p_value == 1.0


@pytest.mark.parametrize("diffs", [
    [0.42, 0.25, 0.17, 0.06],
    [0.3, -0.1, 0.2, 0.5, -0.05, 0.15, 0.25],
    [0.1, 0.1, -0.1, 0.2, 0.2, 0.3, 0, -0.2],            # ties and a zero
    [1 / 3, 2 / 3 - 1 / 3, 0.5, -0.25, 0.125, 0.75, -0.6, 0.9, 0.05],  # float noise must still tie
])
def test_wilcoxon_matches_brute_force(diffs) -> None:
    assert wilcoxon_signed_rank(diffs).p_value == pytest.approx(brute_wilcoxon(diffs), abs=1e-12)


def test_wilcoxon_matches_scipy_without_ties() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for diffs in ([0.42, 0.25, 0.17, 0.06], [0.3, -0.1, 0.2, 0.5, -0.05, 0.15, 0.25, -0.35, 0.45, 0.01]):
        ours = wilcoxon_signed_rank(diffs)
        ref = scipy_stats.wilcoxon(diffs, method="exact")
        assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        assert not ours.ties
    for k, n in ((7, 8), (3, 12), (10, 10)):
        assert sign_test([1] * k + [-1] * (n - k)).p_value == pytest.approx(scipy_stats.binomtest(k, n).pvalue)


def test_bootstrap_is_seeded_and_sensible() -> None:
    x = [0.1, 0.3, 0.2, 0.5, 0.4, 0.0, 0.25]
    a, b = bootstrap_mean_ci(x, seed=1), bootstrap_mean_ci(x, seed=1)
    assert a == b and a != bootstrap_mean_ci(x, seed=2)
    lo, hi = a
    assert lo < sum(x) / len(x) < hi and lo >= 0.0 and hi <= 0.5
    lo99, hi99 = bootstrap_mean_ci(x, seed=1, level=0.99)
    assert lo99 <= lo and hi99 >= hi
    assert bootstrap_mean_ci([0.3], seed=0) == (pytest.approx(0.3), pytest.approx(0.3))
    assert all(math.isnan(v) for v in bootstrap_mean_ci([], seed=0))


def trials(pid: int, name: str, finished: bool, p1: list[int], p3t: list[int], p3c: list[int],
           concepts=("a", "b")) -> list[dict]:
    rows = []
    for phase, cond, results in ((1, "taught", p1), (3, "taught", p3t), (3, "control", p3c)):
        for i, r in enumerate(results):
            concept = concepts[0] if cond == "taught" else concepts[1]
            rows.append({"participant_id": pid, "participant_name": name, "participant_phase": 4 if finished else 3,
                         "phase": phase, "puzzle_id": f"{pid}-{phase}-{cond}-{i}", "concept": concept,
                         "concept_label": concept.upper(), "condition": cond, "answered": r >= 0,
                         "correct": r == 1})
    return rows


def test_analyse_rates_gain_and_transfer() -> None:
    rows = (trials(1, "Ann", True, [0, 0, 1, 0], [1, 1, 0, 1], [0, 1, 0, 0], ("a", "b"))
            + trials(2, "Bob", True, [1, 0, -1, 0], [1, 0, 1, 1], [1, 0, 0, 0], ("b", "a"))
            + trials(3, "Cat", True, [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], ("a", "b"))
            + trials(4, "Dan", False, [1, 1, 1, 1], [0, 0, 0, 0], [], ("b", "a")))  # unfinished
    res = analyse(rows, seed=0, n_boot=2000)
    ann, bob, _cat, dan = res.participants
    assert ann.phase1.rate == 0.25 and ann.phase3_taught.rate == 0.75 and ann.phase3_control.rate == 0.25
    assert ann.gain == pytest.approx(0.5) and ann.transfer == pytest.approx(0.5)
    assert bob.phase1.answered == 3 and bob.phase1.total == 4 and bob.phase1.rate == 0.25  # unanswered = unsolved
    assert not dan.finished and dan.transfer is None
    assert dan.phase1.rate == 1.0 and dan.phase3_taught.total == 0  # phase 3 still running: not counted yet
    # Paired statistics only use finished participants.
    assert res.gain.n == 3 and res.transfer.n == 3
    assert res.gain.diffs == pytest.approx((0.5, 0.5, 0.25))
    assert res.transfer.mean_diff == pytest.approx((0.5 + 0.5 + 0.25) / 3)
    assert res.gain.sign.p_value == pytest.approx(0.25)
    # Per concept: concept "a" is taught to Ann and Cat, control for Bob.
    a = next(c for c in res.concepts if c.concept == "a")
    assert a.label == "A"
    assert (a.phase3_taught.solved, a.phase3_taught.total) == (4, 8)
    assert (a.phase3_control.solved, a.phase3_control.total) == (1, 4)
    assert a.transfer == pytest.approx(0.5 - 0.25)
    d = res.to_dict()
    assert d["paired"]["gain"]["n"] == 3 and d["participants"][0]["name"] == "Ann"
    assert d["paper"]["gain"]["mean_diff"] == pytest.approx(0.225)


def test_paper_numbers_through_the_same_tests() -> None:
    p = paper_results(seed=0)
    assert [x for _, x, _ in PAPER["participants"]] == [0.0, 0.33, 0.25, 0.38]
    assert p.n == 4 and p.mean_diff == pytest.approx((0.42 + 0.25 + 0.17 + 0.06) / 4)
    assert p.sign.positive == 4 and p.sign.p_value == pytest.approx(0.125)
    assert p.wilcoxon.p_value == pytest.approx(0.125)  # all four up, n = 4: not significant at 0.05
    assert 0 < p.ci_low < p.mean_diff < p.ci_high


def test_figures_are_png_and_survive_empty_data() -> None:
    rows = trials(1, "Ann", True, [0, 1], [1, 1], [0, 1]) + trials(2, "<b>x</b>", False, [1], [], [])
    for res in (analyse(rows, n_boot=200), analyse([], n_boot=200)):
        pngs = figures(res)
        assert set(pngs) == {"solve_rates", "concepts"}
        assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000 for png in pngs.values())
