"""Sparse concept vectors by convex optimisation (METHOD.md §1–2).

A concept at a layer is a vector v; its score on a position is v · z. Mining solves

    minimise ||v||_1   subject to   v · z+ ≥ v · z− + margin   for every constrained pair (z+, z−)

written as one matrix constraint D v ≥ margin with D = Z+[i] − Z−[j] (never a Python loop over pairs). The margin
fixes the scale: without it, v = 0 is optimal, and a solver returns exactly that, so a non-positive margin and a
(near-)zero answer are refused. When the pairs contradict each other (e.g. identical latents on both sides), the
hard problem is infeasible; the slack version

    minimise ||v||_1 + C · Σ ξ   subject to   D v ≥ margin − ξ,  ξ ≥ 0

is solved instead and the result says so (`used_slack`, `slack_total`, `violated`).

Static concepts compare labelled positions (Z+ where the concept holds, Z− where it does not) over sub-sampled
pairs; dynamic concepts compare the states of the search's chosen line with those of sub-par lines at the same
depth (`dynamic_pairs`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import cvxpy as cp
import numpy as np


class MiningError(ValueError):
    """A mining problem that cannot give a meaningful concept (bad shapes, zero margin, trivial answer)."""


@dataclass
class ConceptSolution:
    """A mined vector and how it was obtained."""

    vector: np.ndarray
    status: str  # the solver's status ("optimal", "optimal_inaccurate", …)
    solver: str
    used_slack: bool
    slack_total: float
    violated: int  # constraints with v·(z+ − z−) < margin − 1e-6
    n_constraints: int
    nonzeros: int
    objective: float
    solve_time_s: float
    margin: float
    extra: dict = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        """Share of zero entries of the vector (1 = all zero)."""
        return 1.0 - self.nonzeros / max(1, self.vector.size)

    def to_record(self) -> dict:
        """JSON-ready summary (without the vector itself)."""
        out = asdict(self)
        out.pop("vector")
        out["sparsity"] = self.sparsity
        out["dim"] = int(self.vector.size)
        return out


def sample_pairs(n_plus: int, n_minus: int, n_pairs: int | None, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) of distinct (z+_i, z−_j) pairs: all of them when there are at most `n_pairs`."""
    if n_plus < 1 or n_minus < 1:
        raise MiningError(f"need at least one positive and one negative example (got {n_plus} and {n_minus})")
    total = n_plus * n_minus
    if n_pairs is None or total <= n_pairs:
        flat = np.arange(total)
    else:
        flat = np.sort(rng.choice(total, size=n_pairs, replace=False))
    return flat // n_minus, flat % n_minus


def _as_matrix(z: np.ndarray, name: str) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[None, :]
    if z.ndim != 2:
        raise MiningError(f"{name} must be a (n, d) array of latents, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise MiningError(f"{name} contains NaN or infinite values")
    return z


def solve_margin_problem(diffs: np.ndarray, *, margin: float = 1.0, slack_penalty: float = 10.0,
                         allow_slack: bool = True, solver: str | None = None, zero_tol: float = 1e-7
                         ) -> ConceptSolution:
    """min ||v||_1 s.t. diffs @ v ≥ margin (with slack if infeasible). Rows of `diffs` are z+ − z−."""
    diffs = _as_matrix(diffs, "diffs")
    if margin <= 0:
        raise MiningError(f"margin must be > 0 (got {margin}): without it v = 0 is a trivial optimum")
    n, d = diffs.shape
    start = time.perf_counter()
    v = cp.Variable(d)
    used_slack = False
    solver_name = solver or "CLARABEL"
    hard = cp.Problem(cp.Minimize(cp.norm1(v)), [diffs @ v >= margin])
    status = _solve(hard, solver_name)
    slack_total = 0.0
    if status not in ("optimal", "optimal_inaccurate") or v.value is None:
        if not allow_slack:
            raise MiningError(f"the margin problem is {status} and slack is not allowed")
        xi = cp.Variable(n, nonneg=True)
        soft = cp.Problem(cp.Minimize(cp.norm1(v) + slack_penalty * cp.sum(xi)), [diffs @ v >= margin - xi])
        status = _solve(soft, solver_name)
        used_slack = True
        if v.value is None:
            raise MiningError(f"the slack problem is {status}: no concept vector")
        slack_total = float(np.sum(xi.value))
    vec = np.asarray(v.value, dtype=np.float64)
    scale = np.abs(vec).max() if vec.size else 0.0
    if scale <= zero_tol:
        raise MiningError("the solver returned v = 0 (trivial solution refused): the pairs carry no signal "
                          "that the margin can separate at this slack penalty")
    vec = np.where(np.abs(vec) > 1e-6 * scale, vec, 0.0)  # interior-point solvers leave tiny non-zeros
    margins = diffs @ vec
    return ConceptSolution(
        vector=vec, status=status, solver=solver_name, used_slack=used_slack, slack_total=slack_total,
        violated=int(np.sum(margins < margin - 1e-6 * max(1.0, margin))), n_constraints=n,
        nonzeros=int(np.count_nonzero(vec)), objective=float(np.abs(vec).sum()),
        solve_time_s=time.perf_counter() - start, margin=margin,
    )


def _solve(problem: cp.Problem, solver: str) -> str:
    try:
        problem.solve(solver=solver)
    except cp.error.SolverError as exc:
        return f"solver_error: {exc}"
    return str(problem.status)


def find_concept_vector(z_plus: np.ndarray, z_minus: np.ndarray, *, margin: float = 1.0,
                        pairs: int | None = 300, slack_penalty: float = 10.0, allow_slack: bool = True,
                        solver: str | None = None, seed: int = 0) -> ConceptSolution:
    """Static concept: v with v·z+ ≥ v·z− + margin over (sub-sampled) pairs of positive and negative latents."""
    zp, zn = _as_matrix(z_plus, "z_plus"), _as_matrix(z_minus, "z_minus")
    if zp.shape[1] != zn.shape[1]:
        raise MiningError(f"z_plus and z_minus differ in dimension: {zp.shape[1]} vs {zn.shape[1]}")
    i, j = sample_pairs(len(zp), len(zn), pairs, np.random.default_rng(seed))
    sol = solve_margin_problem(zp[i] - zn[j], margin=margin, slack_penalty=slack_penalty,
                               allow_slack=allow_slack, solver=solver)
    sol.extra.update({"kind": "static", "n_plus": len(zp), "n_minus": len(zn), "seed": seed})
    return sol


def dynamic_steps(n_steps: int, branch: int, player: str) -> list[int]:
    """Steps t of a line compared with a sub-par line that left it at ply `branch`.

    Before the branch both lines share their states (nothing to compare). A concept of one player ("one") uses
    every other state from the first differing one — the states where the same side is to move, since the side
    to move flips each ply; a concept of both players ("both") uses every state after the branch.
    """
    if player not in ("one", "both"):
        raise MiningError(f"player must be 'one' or 'both', got {player!r}")
    first = branch + 1  # the state after the branch move is the first that differs
    step = 2 if player == "one" else 1
    return list(range(first, n_steps, step))


def dynamic_pairs(chosen: np.ndarray, subpar: Sequence[np.ndarray], branches: Sequence[int], *,
                  player: str = "one", prophylactic: bool = False) -> np.ndarray:
    """Difference rows z+_t − z−_{t,j} of a root's chosen line against its sub-par lines (Eq. 5).

    chosen: (T+1, d) latents of the chosen line's states x+_0 … x+_T; subpar[j]: (T_j+1, d) latents of sub-par
    line j, which left the chosen line at ply branches[j]. Prophylactic concepts flip the sign (the chosen line
    avoids the rise).
    """
    chosen = _as_matrix(chosen, "chosen")
    if len(subpar) != len(branches):
        raise MiningError(f"{len(subpar)} sub-par lines but {len(branches)} branch depths")
    rows = []
    for line, branch in zip(subpar, branches, strict=True):
        line = _as_matrix(line, "subpar line")
        if line.shape[1] != chosen.shape[1]:
            raise MiningError(f"sub-par latents have dimension {line.shape[1]}, chosen line {chosen.shape[1]}")
        if not 0 <= branch < len(chosen) - 1:
            raise MiningError(f"branch depth {branch} outside the chosen line (length {len(chosen)})")
        steps = [t for t in dynamic_steps(len(chosen), branch, player) if t < len(line)]
        if steps:
            rows.append(chosen[steps] - line[steps])
    if not rows:
        raise MiningError("no comparable states: every sub-par line ends at its branch")
    diffs = np.concatenate(rows)
    return -diffs if prophylactic else diffs


def mine_dynamic(chosen: np.ndarray, subpar: Sequence[np.ndarray], branches: Sequence[int], *,
                 player: str = "one", prophylactic: bool = False, margin: float = 1.0,
                 slack_penalty: float = 10.0, solver: str | None = None) -> ConceptSolution:
    """Dynamic concept of one root: the chosen line scores higher than every sub-par line, state by state."""
    diffs = dynamic_pairs(chosen, subpar, branches, player=player, prophylactic=prophylactic)
    sol = solve_margin_problem(diffs, margin=margin, slack_penalty=slack_penalty, solver=solver)
    sol.extra.update({"kind": "dynamic", "player": player, "prophylactic": prophylactic,
                      "sub_par_lines": len(subpar)})
    return sol


def pair_accuracy(v: np.ndarray, z_plus: np.ndarray, z_minus: np.ndarray) -> float:
    """Share of all (z+, z−) pairs with v·z+ > v·z− (ties count half), computed by sorting, not pair loops."""
    sp = _as_matrix(z_plus, "z_plus") @ v
    sn = np.sort(_as_matrix(z_minus, "z_minus") @ v)
    below = np.searchsorted(sn, sp, side="left")
    ties = np.searchsorted(sn, sp, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(sp) * len(sn)))


class ConceptMiner:
    """scikit-learn-style estimator: `fit(Z+, Z−)` mines a static concept, `score(Z+, Z−)` gives pair accuracy."""

    def __init__(self, margin: float = 1.0, pairs: int | None = 300, slack_penalty: float = 10.0,
                 solver: str | None = None, seed: int = 0) -> None:
        self.margin = margin
        self.pairs = pairs
        self.slack_penalty = slack_penalty
        self.solver = solver
        self.seed = seed

    def fit(self, z_plus: np.ndarray, z_minus: np.ndarray) -> ConceptMiner:
        self.solution_ = find_concept_vector(z_plus, z_minus, margin=self.margin, pairs=self.pairs,
                                             slack_penalty=self.slack_penalty, solver=self.solver, seed=self.seed)
        self.vector_ = self.solution_.vector
        return self

    def decision_function(self, z: np.ndarray) -> np.ndarray:
        """Concept score v·z of each latent."""
        return _as_matrix(z, "z") @ self.vector_

    def score(self, z_plus: np.ndarray, z_minus: np.ndarray) -> float:
        return pair_accuracy(self.vector_, z_plus, z_minus)
