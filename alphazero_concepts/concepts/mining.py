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
from typing import TYPE_CHECKING

import cvxpy as cp
import numpy as np
from scipy import sparse
from scipy.optimize import linprog

if TYPE_CHECKING:
    from alphazero_concepts.nn.network import HookedNet
    from alphazero_concepts.search.rollouts import Rollout


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
    """Indices (i, j) of distinct (z+_i, z−_j) pairs: all of them when there are at most `n_pairs`.

    Otherwise the pairs are spread evenly over the examples: every positive and every negative is used
    ⌊n_pairs/n⌋ or ⌈n_pairs/n⌉ times (one random permutation after another, paired in order). Pairs drawn at
    random from the n+ × n− grid would leave about 40% of the positives unused at n_pairs = n+ (and a concept
    vector learns nothing about the examples it never sees): on the bundled teacher's piece concepts the even
    spread raised held-out pair accuracy by 1–2 points at the same number of pairs.
    """
    if n_plus < 1 or n_minus < 1:
        raise MiningError(f"need at least one positive and one negative example (got {n_plus} and {n_minus})")
    total = n_plus * n_minus
    if n_pairs is None or total <= n_pairs:
        flat = np.arange(total)
        return flat // n_minus, flat % n_minus
    chosen: set[int] = set()
    pos = np.empty(0, dtype=np.int64)
    neg = np.empty(0, dtype=np.int64)
    while len(chosen) < n_pairs:  # a repeated pair (rare) is dropped and the next permutations fill its place
        while len(pos) < n_pairs:
            pos = np.concatenate([pos, rng.permutation(n_plus)])
        while len(neg) < n_pairs:
            neg = np.concatenate([neg, rng.permutation(n_minus)])
        for a, b in zip(pos[:n_pairs], neg[:n_pairs], strict=True):
            if len(chosen) == n_pairs:
                break
            chosen.add(int(a) * n_minus + int(b))
        pos, neg = pos[n_pairs:], neg[n_pairs:]
    flat = np.sort(np.fromiter(chosen, dtype=np.int64))
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


#: Solvers: "auto" (the fastest that works here: HiGHS on the split LP), "highs-lp", or any installed cvxpy solver.
DEFAULT_SOLVER = "auto"


def solve_margin_problem(diffs: np.ndarray, *, margin: float = 1.0, slack_penalty: float = 10.0,
                         allow_slack: bool = True, solver: str | None = None, zero_tol: float = 1e-7
                         ) -> ConceptSolution:
    """min ||v||_1 s.t. diffs @ v ≥ margin (with slack if infeasible). Rows of `diffs` are z+ − z−.

    Coordinates whose column of `diffs` is zero in every constraint cannot help any constraint and only add to
    the norm, so they are fixed at 0 up front (post-ReLU latents have many). The reduced problem goes to
    `solver`: "auto"/"highs-lp" solve the equivalent linear programme min 1·(v⁺ + v⁻) s.t. D(v⁺ − v⁻) ≥ margin,
    v± ≥ 0 with HiGHS (scipy), several times faster than cvxpy's conic path at d = 4096; any cvxpy solver name
    ("CLARABEL", "HIGHS", "SCS", …) solves the cvxpy formulation instead (the tests check both agree).
    """
    diffs = _as_matrix(diffs, "diffs")
    if margin <= 0:
        raise MiningError(f"margin must be > 0 (got {margin}): without it v = 0 is a trivial optimum")
    n, d = diffs.shape
    start = time.perf_counter()
    solver_name = (solver or DEFAULT_SOLVER)
    if n == 0:
        raise MiningError("no constraints: at least one (z+, z−) pair is needed")
    keep = np.flatnonzero(np.abs(diffs).max(axis=0) > 0)
    reduced = diffs[:, keep]
    if keep.size == 0:
        raise MiningError("every coordinate is identical between the two sides: no direction can separate them")
    solve = _solve_lp if solver_name.lower() in ("auto", "highs-lp") else _solve_cvxpy
    status, w, slack_total = solve(reduced, margin, None, solver_name)
    used_slack = False
    if w is None:
        if not allow_slack:
            raise MiningError(f"the margin problem is {status} and slack is not allowed")
        status, w, slack_total = solve(reduced, margin, slack_penalty, solver_name)
        used_slack = True
        if w is None:
            raise MiningError(f"the slack problem is {status}: no concept vector")
    vec = np.zeros(d)
    vec[keep] = w
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
        extra={"active_dims": int(keep.size)},
    )


def _solve_lp(diffs: np.ndarray, margin: float, slack_penalty: float | None, _solver: str
              ) -> tuple[str, np.ndarray | None, float]:
    """HiGHS on the split LP, by column generation; with `slack_penalty`, soft constraints D v + ξ ≥ margin.

    An optimal basic solution has at most n non-zero coordinates (n = constraints ≪ d), so most columns never
    matter. The LP is solved on a working set of columns; its duals y ≥ 0 price every other column (column j
    could lower the objective only if |D_jᵀ y| > 1, the dual constraint it would violate); violating columns
    join the set and the LP is solved again, until none is left. The result is an optimum of the full LP (the
    same objective; the tests compare with cvxpy), at a fraction of the cost when d is large.
    """
    n, k = diffs.shape
    if k < max(_COLGEN_COLUMNS_PER_ROW * n, 2 * _COLGEN_MIN_COLUMNS):
        # many constraints: re-solving a growing LP from scratch (scipy's HiGHS has no warm start) costs more
        # than one solve of the whole problem (measured at d = 4096: column generation wins up to n ≈ 60)
        return _solve_split_lp(diffs, margin, slack_penalty)
    # start with the columns that reach each constraint most strongly, then the largest ones overall
    per_row = max(2, _COLGEN_MIN_COLUMNS // (2 * n))
    strongest = np.argpartition(-diffs, min(per_row, k - 1), axis=1)[:, :per_row].ravel()
    overall = np.argsort(-np.abs(diffs).sum(axis=0))[: _COLGEN_MIN_COLUMNS // 2]
    cols = np.unique(np.concatenate([strongest, overall]))
    while True:
        status, w, slack, duals = _solve_split_lp(diffs[:, cols], margin, slack_penalty, with_duals=True)
        if w is None:
            if status != "infeasible" or cols.size == k:
                return status, None, 0.0
            cols = np.arange(k)  # infeasible on the working set only: the whole problem decides
            continue
        price = np.abs(diffs.T @ duals)
        price[cols] = 0.0
        violated = np.flatnonzero(price > 1.0 + 1e-9)
        if violated.size == 0:
            v = np.zeros(k)
            v[cols] = w
            return status, v, slack
        add = violated[np.argsort(-price[violated])[: max(n, _COLGEN_MIN_COLUMNS // 4)]]
        cols = np.union1d(cols, add)


_COLGEN_MIN_COLUMNS = 256
_COLGEN_COLUMNS_PER_ROW = 64


def _solve_split_lp(diffs: np.ndarray, margin: float, slack_penalty: float | None, *, with_duals: bool = False
                    ) -> tuple:
    """One HiGHS solve of min 1·(v⁺ + v⁻) [+ penalty·ξ] s.t. D(v⁺ − v⁻) [+ ξ] ≥ margin, all variables ≥ 0."""
    n, k = diffs.shape
    blocks = [sparse.csr_matrix(-diffs), sparse.csr_matrix(diffs)]
    cost = [np.ones(2 * k)]
    if slack_penalty is not None:
        blocks.append(-sparse.identity(n, format="csr"))
        cost.append(np.full(n, slack_penalty))
    res = linprog(np.concatenate(cost), A_ub=sparse.hstack(blocks, format="csr"), b_ub=np.full(n, -margin),
                  bounds=(0, None), method="highs")
    if res.status != 0 or res.x is None:
        status = {2: "infeasible", 3: "unbounded"}.get(res.status, f"highs status {res.status}")
        return (status, None, 0.0, None) if with_duals else (status, None, 0.0)
    x = res.x
    slack = float(x[2 * k:].sum()) if slack_penalty is not None else 0.0
    if with_duals:
        return "optimal", x[:k] - x[k: 2 * k], slack, -np.asarray(res.ineqlin.marginals)
    return "optimal", x[:k] - x[k: 2 * k], slack


def _solve(problem: cp.Problem, solver: str) -> str:
    try:
        problem.solve(solver=solver)
    except cp.error.SolverError as exc:
        return f"solver_error: {exc}"
    return str(problem.status)


def _solve_cvxpy(diffs: np.ndarray, margin: float, slack_penalty: float | None, solver: str
                 ) -> tuple[str, np.ndarray | None, float]:
    n, k = diffs.shape
    v = cp.Variable(k)
    if slack_penalty is None:
        problem = cp.Problem(cp.Minimize(cp.norm1(v)), [diffs @ v >= margin])
        xi = None
    else:
        xi = cp.Variable(n, nonneg=True)
        problem = cp.Problem(cp.Minimize(cp.norm1(v) + slack_penalty * cp.sum(xi)), [diffs @ v >= margin - xi])
    status = _solve(problem, solver)
    if status not in ("optimal", "optimal_inaccurate") or v.value is None:
        return status, None, 0.0
    return status, np.asarray(v.value, dtype=np.float64), float(np.sum(xi.value)) if xi is not None else 0.0


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
    the states after the branch where the root's side is to move — even t, since x_0 is the root and the side to
    move flips each ply (the paper's z at 2t) — so every compared state is encoded in that player's frame, whatever
    the branch's parity; a concept of both players ("both") uses every state after the branch.
    """
    if player not in ("one", "both"):
        raise MiningError(f"player must be 'one' or 'both', got {player!r}")
    first = branch + 1  # the state after the branch move is the first that differs
    if player == "one":
        return list(range(first + first % 2, n_steps, 2))
    return list(range(first, n_steps))


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


def mine_rollout(net: HookedNet, rollout: Rollout, layer: str, *, player: str = "one", model: str | None = None,
                 model_sha256: str | None = None) -> tuple[dict, np.ndarray | None]:
    """Dynamic concept of one root's rollout at `layer`: the concept record and its float32 vector (or None).

    The record is what `azc mine` writes to concepts.jsonl (id `<layer>/root<NNNNN>`); a root without sub-par
    lines, or whose problem is refused (MiningError), gets a record with that status and no vector. Called only
    through `stages.mine.mine_root` (`azc mine`, the pipeline and the sharded mining), so all give the same concepts.
    """
    from alphazero_concepts.concepts.activations import latents

    cid = f"{layer}/root{rollout.root_index:05d}"
    base = {"id": cid, "layer": layer, "root": rollout.root_index}
    if not rollout.subpar:
        return {**base, "status": "no sub-par lines"}, None
    z = [latents(net, rollout.boards(line), layer) for line in [rollout.chosen, *rollout.subpar]]
    try:
        sol = mine_dynamic(z[0], z[1:], [ln.branch for ln in rollout.subpar], player=player)
    except MiningError as exc:
        return {**base, "status": f"refused: {exc}"}, None
    record = {**base, "root_fen": rollout.chosen.steps[0].fen, "model": model, "model_sha256": model_sha256,
              **sol.to_record()}
    return record, sol.vector.astype(np.float32)


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
