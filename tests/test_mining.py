"""Concept mining: constraints hold on return, answers are sparse, planted directions are recovered."""

from __future__ import annotations

import numpy as np
import pytest

from alphazero_concepts.concepts.mining import (
    ConceptMiner,
    MiningError,
    dynamic_pairs,
    dynamic_steps,
    find_concept_vector,
    mine_dynamic,
    pair_accuracy,
    sample_pairs,
    solve_margin_problem,
)

pytestmark = pytest.mark.unit


def planted(d: int = 256, k: int = 8, n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-negative (ReLU-like) latents; the concept holds where a sparse planted direction scores high."""
    rng = np.random.default_rng(seed)
    w = np.zeros(d)
    w[rng.choice(d, k, replace=False)] = rng.choice([-1.0, 1.0], k) * rng.uniform(0.5, 2.0, k)
    z = np.maximum(rng.standard_normal((n, d)), 0.0)
    s = z @ w
    return z[s > np.quantile(s, 0.7)], z[s < np.quantile(s, 0.3)], w


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_static_concept_satisfies_its_constraints_and_is_sparse() -> None:
    zp, zn, _ = planted()
    sol = find_concept_vector(zp, zn, pairs=150, seed=1)
    assert sol.status == "optimal" and not sol.used_slack
    assert sol.violated == 0
    i, j = sample_pairs(len(zp), len(zn), 150, np.random.default_rng(1))
    assert np.all((zp[i] - zn[j]) @ sol.vector >= 1.0 - 1e-5)
    assert sol.nonzeros <= 150  # an L1 vertex solution has at most one non-zero per active constraint
    assert sol.sparsity > 0.4


def test_sampled_pairs_are_distinct_and_use_every_example_evenly() -> None:
    rng = np.random.default_rng(0)
    i, j = sample_pairs(300, 120, 600, rng)
    assert len(i) == 600 and len(set(zip(i.tolist(), j.tolist(), strict=True))) == 600
    assert np.bincount(i, minlength=300).min() >= 1 and np.bincount(i, minlength=300).max() <= 3
    assert np.bincount(j, minlength=120).min() >= 4 and np.bincount(j, minlength=120).max() <= 6
    i, j = sample_pairs(4, 3, 100, rng)  # fewer pairs than asked for: all of them
    assert len(i) == 12 and len(set(zip(i.tolist(), j.tolist(), strict=True))) == 12
    with pytest.raises(MiningError, match="at least one"):
        sample_pairs(0, 3, 10, rng)


def test_static_concept_recovers_a_planted_direction() -> None:
    zp, zn, w = planted(seed=3)
    miner = ConceptMiner(pairs=200, seed=0).fit(zp, zn)
    assert cosine(miner.vector_, w) >= 0.9
    assert miner.score(zp, zn) > 0.97


def test_dynamic_concept_recovers_a_planted_direction() -> None:
    rng = np.random.default_rng(5)
    d, steps = 128, 11
    support = rng.choice(d, 4, replace=False)
    w = np.zeros(d)
    w[support] = 1.0
    chosen = np.maximum(rng.standard_normal((steps, d)), 0)
    subpar, branches = [], []
    for j in range(8):
        branch = j % 4
        line = chosen + rng.standard_normal((steps, d)) * 0.05  # symmetric noise: separates nothing
        line[: branch + 1] = chosen[: branch + 1]  # shared up to the branch
        for t in range(branch + 1, steps):
            # after the branch the chosen line is ahead on one concept unit (each unit is needed somewhere)
            line[t, support[(t + j) % 4]] -= 0.5
        subpar.append(line)
        branches.append(branch)
    sol = mine_dynamic(chosen, subpar, branches, player="both")
    assert sol.violated == 0 and not sol.used_slack
    diffs = dynamic_pairs(chosen, subpar, branches, player="both")
    assert np.all(diffs @ sol.vector >= 1 - 1e-5)
    assert cosine(sol.vector, w) >= 0.9


def test_dynamic_steps_skip_shared_states_and_alternate_for_one_player() -> None:
    # one player: only states where the root's side is to move (even t), whatever the branch's parity
    assert dynamic_steps(11, 0, "one") == [2, 4, 6, 8, 10]
    assert dynamic_steps(11, 1, "one") == [2, 4, 6, 8, 10]
    assert dynamic_steps(11, 2, "one") == [4, 6, 8, 10]
    assert dynamic_steps(2, 0, "one") == []
    assert dynamic_steps(11, 3, "both") == [4, 5, 6, 7, 8, 9, 10]
    with pytest.raises(MiningError, match="player"):
        dynamic_steps(11, 0, "white")


def test_prophylactic_flips_the_constraint_sign() -> None:
    rng = np.random.default_rng(0)
    chosen, line = rng.random((6, 16)), rng.random((6, 16))
    assert np.allclose(dynamic_pairs(chosen, [line], [0], prophylactic=True),
                       -dynamic_pairs(chosen, [line], [0]))


def test_zero_margin_and_trivial_answers_are_refused() -> None:
    zp, zn, _ = planted(d=32, n=60)
    with pytest.raises(MiningError, match="margin"):
        find_concept_vector(zp, zn, margin=0.0)
    same = zp[:6]
    with pytest.raises(MiningError, match="v = 0"):
        find_concept_vector(same, same, pairs=None)  # every difference is zero: nothing to separate


def test_infeasible_pairs_fall_back_to_slack_and_say_so() -> None:
    rng = np.random.default_rng(2)
    d = 8
    z = rng.random((4, d))
    # pair (a, b) and the reversed pair (b, a): no v satisfies both with a positive margin
    diffs = np.stack([z[0] - z[1], z[1] - z[0], z[2] - z[3]])
    sol = solve_margin_problem(diffs, slack_penalty=10.0)
    assert sol.used_slack and sol.slack_total > 0.5 and sol.violated >= 1
    with pytest.raises(MiningError, match="slack is not allowed"):
        solve_margin_problem(diffs, allow_slack=False)


def test_malformed_inputs_get_clear_errors() -> None:
    with pytest.raises(MiningError, match="dimension"):
        find_concept_vector(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(MiningError, match="NaN"):
        find_concept_vector(np.full((3, 4), np.nan), np.ones((3, 4)))
    with pytest.raises(MiningError, match="at least one"):
        find_concept_vector(np.ones((0, 4)), np.ones((3, 4)))
    with pytest.raises(MiningError, match="branch depth"):
        dynamic_pairs(np.ones((4, 3)), [np.ones((4, 3))], [5])


def test_pair_accuracy_counts_pairs_exactly() -> None:
    rng = np.random.default_rng(1)
    zp, zn, v = rng.random((7, 5)), rng.random((9, 5)), rng.standard_normal(5)
    brute = np.mean([[float(a @ v > b @ v) + 0.5 * float(a @ v == b @ v) for b in zn] for a in zp])
    assert pair_accuracy(v, zp, zn) == pytest.approx(brute)


@pytest.mark.unit
@pytest.mark.parametrize("slack", [False, True])
def test_the_lp_path_and_cvxpy_agree_and_inactive_coordinates_stay_zero(slack: bool) -> None:
    from alphazero_concepts.concepts.mining import solve_margin_problem

    rng = np.random.default_rng(3)
    diffs = rng.standard_normal((30, 60))
    diffs[:, 40:] = 0.0  # coordinates no constraint touches (dead ReLU units)
    if slack:
        diffs = np.vstack([diffs, -diffs[:1]])  # contradicts row 0: the hard problem is infeasible
    lp = solve_margin_problem(diffs, solver="highs-lp")
    conic = solve_margin_problem(diffs, solver="CLARABEL")
    assert lp.used_slack == conic.used_slack == slack
    assert lp.objective + 10 * lp.slack_total == pytest.approx(conic.objective + 10 * conic.slack_total, rel=1e-4)
    assert not lp.vector[40:].any() and lp.extra["active_dims"] == 40
    if not slack:
        assert (diffs @ lp.vector >= 1 - 1e-6).all()


@pytest.mark.unit
@pytest.mark.parametrize("slack", [False, True])
def test_column_generation_reaches_the_full_lps_optimum(slack: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Few constraints, many coordinates: the LP is solved on working sets of columns, priced by the duals."""
    import alphazero_concepts.concepts.mining as mining

    rng = np.random.default_rng(5)
    diffs = np.maximum(rng.standard_normal((12, 3000)) - 0.8, 0) - np.maximum(rng.standard_normal((12, 3000)) - 0.8, 0)
    if slack:
        diffs = np.vstack([diffs, -diffs[:1]])
    widths: list[int] = []
    solve = mining._solve_split_lp

    def spy(d: np.ndarray, *args: object, **kwargs: object) -> tuple:
        widths.append(d.shape[1])
        return solve(d, *args, **kwargs)

    monkeypatch.setattr(mining, "_solve_split_lp", spy)
    lp = mining.solve_margin_problem(diffs)
    active = lp.extra["active_dims"]
    # the hard problem is solved on working sets only; when it is infeasible there, the whole hard problem
    # decides (once), and the slack problem is back on working sets
    assert max(widths[-1:] if slack else widths) < active and widths.count(active) == int(slack)
    monkeypatch.setattr(mining, "_solve_split_lp", solve)
    conic = mining.solve_margin_problem(diffs, solver="CLARABEL")
    assert lp.used_slack == conic.used_slack == slack
    assert lp.objective + 10 * lp.slack_total == pytest.approx(conic.objective + 10 * conic.slack_total, rel=1e-4)
    if not slack:
        assert (diffs @ lp.vector >= 1 - 1e-6).all()


def test_static_validation_chooses_its_layer_on_validation_and_reports_test() -> None:
    """The best layer is chosen on a validation split, never on the split whose accuracy is reported."""
    import torch

    from alphazero_concepts.concepts.validation import ValidationConfig, choose_layer, piece_concepts
    from alphazero_concepts.nn.network import AZNet, NetConfig

    planted = {"stem": {"val_pair_accuracy": 0.9, "test_pair_accuracy": 0.7},
               "block0": {"val_pair_accuracy": 0.8, "test_pair_accuracy": 0.99}}
    assert choose_layer(planted) == "stem"  # the test split's favourite is not picked
    torch.manual_seed(0)
    net = AZNet(NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)).eval()
    result = piece_concepts(net, ValidationConfig(positions=300, layers=("stem", "block0"), pairs=80))
    split = result["split"]
    assert split["train"] + split["validation"] + split["test"] == result["positions"]
    assert min(split.values()) > 30
    for concept in result["concepts"].values():
        layers = concept["layers"]
        assert concept["best_layer"] == max(layers, key=lambda k: layers[k]["val_pair_accuracy"])
        assert concept["best_acc"] == layers[concept["best_layer"]]["test_pair_accuracy"]
