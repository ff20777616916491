"""`azc validate`: checks that the mining machinery finds what is known to be there (METHOD.md §1).

- planted: a sparse direction planted in synthetic ReLU-like latents is recovered (cosine).
- piece concepts: "the side to move has its queen", "the opponent has its queen", "the side to move has the
  bishop pair" are mined per layer from the network's own activations on positions of the bundled master games
  and scored on held-out pairs (60/20/20 split: the best layer is chosen on the validation split and its accuracy
  reported on the test split); `piece_concept_best_acc` is the mean over concepts of that test accuracy
  (paper: ≈ 99%). `static_concept_scores` is that split-mine-score step for any labels; `azc static`
  (`probing.static_series`) runs it for every checkpoint of a series, with STS themes as well.
- dynamic: per-root dynamic problems from real rollouts at the widest mined layer; solve time, and the speed-up
  of the project's solver path over rebuilding a fresh cvxpy problem with default settings for every concept.
- speed (per pair): the matrix-constraint formulation against one cvxpy constraint object per pair.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import chess
import cvxpy as cp
import numpy as np

from alphazero_concepts.concepts.activations import latents
from alphazero_concepts.concepts.mining import (
    ConceptMiner,
    dynamic_pairs,
    find_concept_vector,
    mine_dynamic,
    sample_pairs,
)
from alphazero_concepts.concepts.samples import bundled_human_games, load_sample
from alphazero_concepts.nn.network import HookedNet
from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator
from alphazero_concepts.search.rollouts import RolloutConfig, rollouts
from alphazero_concepts.search.roots import bundled_openings


@dataclass(frozen=True)
class ValidationConfig:
    positions: int = 3000
    layers: tuple[str, ...] = ("stem", "block2", "block5")
    pairs: int = 800
    speed_dim: int = 256
    speed_pairs: int = 300
    dynamic_roots: int = 3
    dynamic_length: int = 6
    dynamic_simulations: int = 48
    seed: int = 0

    @classmethod
    def for_mode(cls, quick: bool, net: HookedNet) -> ValidationConfig:
        blocks = [n for n in net.layer_names if n.startswith("block") and "." not in n]
        layers = ("stem", blocks[len(blocks) // 2], blocks[-1]) if blocks else ("stem",)
        if quick:
            return cls(layers=layers)
        return cls(positions=6000, layers=("stem", *blocks), pairs=1500, dynamic_roots=10, dynamic_length=10,
                   dynamic_simulations=200)


def planted_cosine(seed: int = 0, d: int = 512, k: int = 10, n: int = 400) -> float:
    rng = np.random.default_rng(seed)
    w = np.zeros(d)
    w[rng.choice(d, k, replace=False)] = rng.standard_normal(k)
    z = np.maximum(rng.standard_normal((n, d)), 0.0)
    s = z @ w
    sol = find_concept_vector(z[s > np.quantile(s, 0.7)], z[s < np.quantile(s, 0.3)], pairs=200, seed=seed)
    return float(sol.vector @ w / np.linalg.norm(sol.vector) / np.linalg.norm(w))


PIECE_CONCEPTS: dict[str, Callable[[chess.Board], bool]] = {
    "side to move has its queen": lambda b: bool(b.pieces_mask(chess.QUEEN, b.turn)),
    "opponent has its queen": lambda b: bool(b.pieces_mask(chess.QUEEN, not b.turn)),
    "side to move has the bishop pair": lambda b: len(b.pieces(chess.BISHOP, b.turn)) >= 2,
}


def game_positions(n: int, seed: int) -> list[chess.Board]:
    """Positions from the bundled master games (after the first 10 plies, with their history), seeded: the kind
    of position the teacher learned from. (Random-move games are off its distribution: on them the same check
    scored 0.88 instead of 0.94 at 3,000 positions and 800 pairs.)"""
    sample = load_sample(bundled_human_games(), n, min_ply=10, seed=seed)
    return [sample.board(i) for i in range(len(sample))]


def choose_layer(layers: dict[str, dict]) -> str:
    """The layer with the best validation pair accuracy (ties: the earlier layer). The test split is not looked at,
    so the accuracy reported for the chosen layer is an unbiased held-out estimate."""
    return max(layers, key=lambda k: layers[k]["val_pair_accuracy"])


def split_masks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) boolean masks over `n` positions: 60/20/20 by one seeded uniform draw per
    position, so the same `seed` and `n` give the same split for every layer, concept and checkpoint (the cells of
    a layer × checkpoint table then compare)."""
    u = np.random.default_rng(seed).random(n)
    test, val = u < 0.2, (u >= 0.2) & (u < 0.4)
    return ~test & ~val, val, test


def static_concept_scores(z_by_layer: Mapping[str, np.ndarray], labels_by_concept: Mapping[str, np.ndarray],
                          pairs: int | None, seed: int, *,
                          progress: Callable[[str, str], None] | None = None) -> dict[str, dict]:
    """Mine each static concept at each layer and score it on held-out pairs: the one implementation behind
    `piece_concepts` (`azc validate`) and the layer × checkpoint table of `azc static`.

    `z_by_layer`: {layer: (N, d) activations}, `labels_by_concept`: {concept: (N,) booleans}, rows in the same
    order. Positions are split 60/20/20 by `split_masks(N, seed)`; a `ConceptMiner(pairs, seed)` is fitted on the
    training positives against the training negatives, and pair accuracy (share of (z+, z−) pairs ranked right) is
    measured on the validation and test splits. The best layer is chosen on validation (`choose_layer`) and its
    test accuracy is `best_acc`. `progress(concept, layer)` after each fit.

    Returns {concept: {"positive_share", "layers": {layer: {"val_pair_accuracy", "test_pair_accuracy",
    "nonzeros", "dim", "solve_time_s", "status"}}, "best_layer", "best_acc"}}.
    """
    n = len(next(iter(labels_by_concept.values()))) if labels_by_concept else 0
    train, val, test = split_masks(n, seed)
    concepts = {}
    for name, raw in labels_by_concept.items():
        labels = np.asarray(raw, dtype=bool)
        if labels.shape != (n,):
            raise ValueError(f"concept {name!r}: {labels.shape[0]} labels for {n} positions")
        layers = {}
        for layer, z in z_by_layer.items():
            miner = ConceptMiner(pairs=pairs, seed=seed).fit(z[labels & train], z[~labels & train])
            layers[layer] = {"val_pair_accuracy": miner.score(z[labels & val], z[~labels & val]),
                             "test_pair_accuracy": miner.score(z[labels & test], z[~labels & test]),
                             "nonzeros": miner.solution_.nonzeros, "dim": z.shape[1],
                             "solve_time_s": miner.solution_.solve_time_s, "status": miner.solution_.status}
            if progress is not None:
                progress(name, layer)
        best = choose_layer(layers)
        concepts[name] = {"positive_share": float(labels.mean()), "layers": layers, "best_layer": best,
                          "best_acc": layers[best]["test_pair_accuracy"]}
    return concepts


def piece_labels(boards: Sequence[chess.Board]) -> dict[str, np.ndarray]:
    """{piece concept: (N,) booleans} of `PIECE_CONCEPTS` on `boards`."""
    return {name: np.array([label(b) for b in boards], dtype=bool) for name, label in PIECE_CONCEPTS.items()}


def piece_concepts(net: HookedNet, config: ValidationConfig) -> dict:
    """Pair accuracy of each piece concept at each layer on three disjoint splits of the positions: mined on 60%,
    the best layer chosen on a 20% validation split, its accuracy reported on the remaining 20% test split; the
    mean over concepts of that test accuracy is `best_acc`."""
    boards = game_positions(config.positions, config.seed)
    z_by_layer = net.latents(boards, config.layers, batch_size=max(1, len(boards)))  # one pass
    concepts = static_concept_scores(z_by_layer, piece_labels(boards), config.pairs, config.seed)
    train, val, test = split_masks(len(boards), config.seed)
    return {"concepts": concepts, "positions": len(boards), "pairs": config.pairs,
            "split": {"train": int(train.sum()), "validation": int(val.sum()), "test": int(test.sum())},
            "best_acc": float(np.mean([c["best_acc"] for c in concepts.values()]))}


def naive_concept_vector(z_plus: np.ndarray, z_minus: np.ndarray, pairs: tuple[np.ndarray, np.ndarray],
                         margin: float = 1.0) -> np.ndarray:
    """The naive formulation: one cvxpy constraint object per pair (the baseline of the speed check)."""
    v = cp.Variable(z_plus.shape[1])
    constraints = [v @ z_plus[i] >= v @ z_minus[j] + margin for i, j in zip(*pairs, strict=True)]
    cp.Problem(cp.Minimize(cp.norm1(v)), constraints).solve(solver="CLARABEL")
    return np.asarray(v.value)


def mining_speed(config: ValidationConfig) -> dict:
    rng = np.random.default_rng(config.seed)
    z = np.maximum(rng.standard_normal((200, config.speed_dim)), 0)
    zp, zn = z[:100], z[100:]
    pairs = sample_pairs(100, 100, config.speed_pairs, np.random.default_rng(config.seed))
    t0 = time.perf_counter()
    naive = naive_concept_vector(zp, zn, pairs)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = find_concept_vector(zp, zn, pairs=config.speed_pairs, seed=config.seed)
    t_ours = time.perf_counter() - t0
    return {"naive_s": t_naive, "matrix_s": t_ours, "speedup": t_naive / t_ours,
            "same_objective": bool(abs(np.abs(naive).sum() - ours.objective) < 1e-3 * max(1.0, ours.objective))}


def dynamic_solves(net: HookedNet, config: ValidationConfig) -> dict:
    layer = max(config.layers, key=lambda n: int(np.prod(net.layer_shape(n))))
    mcts = MCTS(NetEvaluator(net), MCTSConfig(simulations=config.dynamic_simulations))
    roots = [b for _, b in bundled_openings()[: config.dynamic_roots]]
    rcfg = RolloutConfig(length=config.dynamic_length, max_branch=max(0, config.dynamic_length - 5),
                         max_subpar=3, simulations=config.dynamic_simulations)
    times, naive_times, statuses = [], [], []
    for rollout in rollouts(mcts, roots, rcfg):
        if not rollout.subpar:
            continue
        z = [latents(net, rollout.boards(line), layer) for line in [rollout.chosen, *rollout.subpar]]
        branches = [ln.branch for ln in rollout.subpar]
        sol = mine_dynamic(z[0], z[1:], branches, player="one")
        times.append(sol.solve_time_s)
        diffs = dynamic_pairs(z[0], z[1:], branches, player="one")
        t0 = time.perf_counter()  # the naive way: a fresh cvxpy problem, default solver settings, per concept
        v = cp.Variable(diffs.shape[1])
        cp.Problem(cp.Minimize(cp.norm1(v)), [diffs @ v >= 1.0]).solve()
        naive_times.append(time.perf_counter() - t0)
        statuses.append(sol.status + (" (slack)" if sol.used_slack else ""))
    return {"layer": layer, "dim": int(np.prod(net.layer_shape(layer))), "solves": len(times),
            "median_solve_s": float(np.median(times)) if times else float("nan"), "statuses": statuses,
            "solve_s": times, "naive_fresh_cvxpy_s": naive_times,
            "speedup_vs_fresh_cvxpy": float(sum(naive_times) / sum(times)) if times else float("nan")}


def run_validation(net: HookedNet, config: ValidationConfig, log: Callable[[str], None] = print) -> dict:
    """All checks; returns the JSON-ready result (top-level keys are the contract of `azc validate --json`)."""
    net.eval()
    log("planted direction …")
    cos = planted_cosine(config.seed)
    log("piece concepts per layer …")
    piece = piece_concepts(net, config)
    log("per-pair cvxpy constraints vs one matrix constraint …")
    speed = mining_speed(config)
    log("dynamic concepts from rollouts (and a fresh cvxpy problem per concept, for the speed-up) …")
    dynamic = dynamic_solves(net, config)
    return {
        "planted_cosine": cos,
        "piece_concept_best_acc": piece["best_acc"],
        "mining_speedup_vs_naive": dynamic["speedup_vs_fresh_cvxpy"],
        "dynamic_median_solve_s": dynamic["median_solve_s"],
        "piece_concept": piece,
        "per_pair_constraint_speed": speed,
        "dynamic": dynamic,
        "config": config.__dict__,
    }
