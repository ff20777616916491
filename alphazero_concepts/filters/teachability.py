"""Teachability (METHOD.md §4): can a weaker checkpoint learn the concept from the teacher's moves on its prototypes?

For a concept vector v at layer l:

1. **Prototypes.** From a pool of the teacher's self-play positions, the top `top_fraction` (2.5%) by v · z_l
   (`top_prototypes`). For dynamic concepts the paper takes the pool positions whose own rollouts satisfy the
   concept's constraints; that costs a full rollout (chosen + sub-par lines) per candidate, so the default uses
   the top-by-v·z rule for every concept (an approximation, recorded as `prototype_rule: "top"`), and the exact
   rule is available (`prototype_rule="rollouts"`, `rollout_prototypes`): the top `rollout_candidates` × the
   prototype count by v · z are rolled out, and those whose chosen line scores above every sub-par line at every
   compared state (v · (z+_t − z−_{t,j}) > 0) are the prototypes.
2. **Split** 80/20 into train and test prototypes (seeded per concept).
3. **Student.** The latest checkpoint before the teacher in the series whose top-1 agreement with the teacher
   on the prototypes is below `max_student_agreement` (0.2): it does not already know the concept. None such →
   the concept is "already known" (a result, not an error).
4. **Teach** a deep copy of the student (checkpoints on disk are never touched) by minimising
   KL(π_teacher ‖ π_student) over the train prototypes with Adam (lr 1e-4, 5 epochs, batch 32). π is the raw
   policy softmax over the legal moves. Batch-norm statistics stay frozen (eval mode): a few hundred positions
   would otherwise overwrite running statistics learned from millions.
5. **Baseline.** The same student, the same number of steps on the same number of random pool positions
   (any pool position but the concept's test prototypes).
6. **Metric.** Top-1 agreement with the teacher (raw policy) on the test prototypes; the 2×2 table crosses
   train {concept, random} with eval {concept test, random test} (plus the untrained student). The lift is
   agreement(concept-trained) − agreement(random-trained) on the concept test set, with a paired bootstrap 95%
   interval over test positions. Kept when the interval's lower bound exceeds `threshold` (default 0.05).
7. **Control.** A random vector with the same number of non-zeros gets its own prototypes and lift
   (`random_sparse_vector`); its interval should contain 0.

Functions here take arrays, networks and samples and return dataclasses; the run-directory stage that reads
concepts and writes `teachability.jsonl` is `alphazero_concepts.filters.stages`.
"""

from __future__ import annotations

import copy
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated

import numpy as np
import torch
from torch import nn

from alphazero_concepts.concepts.samples import PositionSample, forward, legal_argmax
from alphazero_concepts.core.config import DictConfig, Range, check_fields
from alphazero_concepts.nn.network import HookedNet
from alphazero_concepts.search.mcts import legal_softmax

ALREADY_KNOWN = "already known"
TOO_FEW = "too few prototypes"
OK = "ok"


@dataclass(frozen=True)
class TeachConfig(DictConfig):
    """Parameters of the teachability filter (defaults: the paper's where it gives them, METHOD.md §4)."""

    pool_size: Annotated[int, Range(1)] = 30_000
    top_fraction: float = 0.025
    test_fraction: float = 0.2
    max_student_agreement: Annotated[float, Range(0)] = 0.2  # > 1: any student
    epochs: int = 5
    lr: float = 1e-4
    batch_size: int = 32
    threshold: float = 0.05
    bootstrap: Annotated[int, Range(1)] = 2000
    ci: float = 0.95
    min_prototypes: Annotated[int, Range(1)] = 10
    random_test_min: Annotated[int, Range(0)] = 100
    prototype_rule: str = "top"
    score: str = "dot"  # prototypes ranked by v·z ("dot", the paper's) or by v·z / ‖z‖ ("cosine")
    rollout_candidates: Annotated[int, Range(1)] = 4
    rollout_length: Annotated[int, Range(1)] = 5
    rollout_simulations: Annotated[int, Range(1)] = 64
    rollout_subpar: Annotated[int, Range(1)] = 3
    random_controls: int = 8  # random-vector controls per layer: the ceiling of the "specific" kept rule
    shared_baseline: bool = True  # one random-trained student per (student, size, seed), shared by the concepts
    student_seeds: int = 3  # training seeds of the students; the lift's interval resamples seeds and positions
    seed: Annotated[int, Range(0)] = 0

    def __post_init__(self) -> None:
        check_fields(self)  # types (and the bounds annotated above) before the rules below
        if not 0 < self.top_fraction <= 1:
            raise ValueError(f"TeachConfig.top_fraction must be in (0, 1], got {self.top_fraction}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"TeachConfig.test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.prototype_rule not in ("top", "rollouts"):
            raise ValueError(f"TeachConfig.prototype_rule must be 'top' or 'rollouts', got {self.prototype_rule!r}")
        if self.score not in ("dot", "cosine"):
            raise ValueError(f"TeachConfig.score must be 'dot' or 'cosine', got {self.score!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("TeachConfig.epochs and batch_size must be ≥ 1 and lr > 0")
        if not 0 < self.ci < 1:
            raise ValueError(f"TeachConfig.ci must be in (0, 1), got {self.ci}")
        if self.student_seeds < 1 or self.random_controls < 0:
            raise ValueError("TeachConfig.student_seeds must be ≥ 1 and random_controls ≥ 0")


# --------------------------------------------------------------------------------------------------------------
# Prototypes, splits, student selection


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the `k` highest scores, best first (ties broken by row, deterministic)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.lexsort((np.arange(len(scores)), -scores))[: max(0, k)]


def prototype_count(n: int, fraction: float) -> int:
    """⌈fraction · n⌉ (at least 1), rounded so that 0.025 · 30,000 is exactly 750."""
    return max(1, math.ceil(round(fraction * n, 9)))


def top_prototypes(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Rows of the top ⌈fraction · n⌉ scores, best first (ties broken by row, deterministic)."""
    return top_rows(scores, prototype_count(len(scores), fraction))


def split_rows(rows: np.ndarray, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random (train, test) split of `rows`, at least one row in each when there are two or more."""
    rows = rng.permutation(np.asarray(rows, dtype=np.int64))
    n_test = min(len(rows) - 1, max(1, round(test_fraction * len(rows))))
    return np.sort(rows[n_test:]), np.sort(rows[:n_test])


def select_student(agreements: Sequence[tuple[str, float]], max_agreement: float = 0.2) -> str | None:
    """The latest checkpoint (agreements are in series order, earliest first) whose agreement is < max_agreement.

    None when every earlier checkpoint already agrees with the teacher that often: the concept is already known.
    """
    for name, value in reversed(list(agreements)):
        if value < max_agreement:
            return name
    return None


def concept_seed(seed: int, concept_id: str) -> np.random.Generator:
    """A generator seeded by (seed, a stable hash of the concept id): splits do not depend on processing order."""
    return np.random.default_rng([seed, zlib.crc32(concept_id.encode())])


def random_sparse_vector(dim: int, nonzeros: int, rng: np.random.Generator) -> np.ndarray:
    """A control vector: `nonzeros` standard-normal entries at random coordinates, zeros elsewhere."""
    v = np.zeros(dim, dtype=np.float32)
    support = rng.choice(dim, size=max(1, min(dim, nonzeros)), replace=False)
    v[support] = rng.standard_normal(len(support))
    return v


# --------------------------------------------------------------------------------------------------------------
# The pool and its predictions


class Pool:
    """Prototype pool: a position sample, the teacher, and the earlier checkpoints (students).

    Top-1 moves (policy index of the raw policy's best legal move) are computed on demand per checkpoint and
    row and cached, so the student rule costs one forward pass over the prototypes per candidate student.
    `students` are (name, network or a zero-argument loader) in series order, earliest first.
    """

    def __init__(self, sample: PositionSample, teacher: HookedNet,
                 students: Sequence[tuple[str, HookedNet | Callable[[], HookedNet]]], batch_size: int = 512) -> None:
        self.sample = sample
        self.teacher = teacher
        self.student_names = [name for name, _ in students]
        self._students = dict(students)
        self._nets: dict[str, HookedNet] = {}
        self.batch_size = batch_size
        self.legal = sample.legal(teacher.format)
        self.cache: dict[str, np.ndarray] = {}  # name → (N,) top-1 index, −2 = not computed

    def __len__(self) -> int:
        return len(self.sample)

    def net(self, name: str) -> HookedNet:
        """The network of checkpoint `name` ("teacher" for the teacher), loaded once."""
        if name == "teacher":
            return self.teacher
        if name not in self._nets:
            item = self._students[name]
            self._nets[name] = item if isinstance(item, nn.Module) else item()
            if self._nets[name].format.name != self.teacher.format.name:
                raise ValueError(f"student {name} reads format {self._nets[name].format.name!r}, the teacher "
                                 f"{self.teacher.format.name!r}: top-1 moves are not comparable")
        return self._nets[name]

    def set_top1(self, name: str, rows: np.ndarray, values: np.ndarray) -> None:
        """Record top-1 moves computed elsewhere (e.g. the teacher's, during the scoring pass)."""
        arr = self.cache.setdefault(name, np.full(len(self), -2, dtype=np.int64))
        arr[np.asarray(rows, dtype=np.int64)] = values

    def top1(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Top-1 policy index of checkpoint `name` ("teacher" allowed) at `rows`."""
        rows = np.asarray(rows, dtype=np.int64)
        arr = self.cache.setdefault(name, np.full(len(self), -2, dtype=np.int64))
        todo = rows[arr[rows] == -2]
        if len(todo):
            todo = np.unique(todo)
            for chunk, logits, _ in forward(self.net(name), self.sample, rows=todo, batch_size=self.batch_size):
                arr[chunk] = legal_argmax(logits, [self.legal[i] for i in chunk])
        return arr[rows]

    def agreement(self, name: str, rows: np.ndarray) -> float:
        """Share of `rows` where checkpoint `name` plays the teacher's top-1 move."""
        if len(rows) == 0:
            return float("nan")
        return float(np.mean(self.top1(name, rows) == self.top1("teacher", rows)))


# --------------------------------------------------------------------------------------------------------------
# Teaching


@dataclass
class Targets:
    """Training data for distillation: planes, legal policy indices and the teacher's probabilities over them."""

    planes: np.ndarray
    legal: list[np.ndarray]
    probs: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.planes)


def teacher_targets(pool: Pool, rows: np.ndarray) -> Targets:
    """The teacher's policy (softmax over legal moves) at `rows` of the pool."""
    rows = np.asarray(rows, dtype=np.int64)
    planes, legal, probs = [], [], []
    for chunk, logits, _ in forward(pool.teacher, pool.sample, rows=rows, batch_size=pool.batch_size):
        ix = [pool.legal[i] for i in chunk]
        planes.append(pool.sample.planes(pool.teacher.format, chunk))
        legal.extend(ix)
        probs.extend(legal_softmax(logits, ix))
    fmt = pool.teacher.format
    shape = (0, fmt.input_planes, 8, 8)
    return Targets(np.concatenate(planes) if planes else np.zeros(shape, np.float32), legal, probs)


def _dense(targets: Targets, rows: np.ndarray, policy_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.zeros((len(rows), policy_size), dtype=torch.bool)
    target = torch.zeros((len(rows), policy_size), dtype=torch.float32)
    for j, i in enumerate(rows):
        ix = torch.from_numpy(np.asarray(targets.legal[i], dtype=np.int64))
        mask[j, ix] = True
        target[j, ix] = torch.from_numpy(np.asarray(targets.probs[i], dtype=np.float32))
    return mask, target


def kl_loss(logits: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(target ‖ softmax of `logits` over the legal moves `mask`)."""
    logp = torch.log_softmax(logits.float().masked_fill(~mask, -1e9), dim=1)
    log_t = torch.log(target.clamp_min(1e-12))
    return torch.where(target > 0, target * (log_t - logp), torch.zeros_like(logp)).sum(dim=1).mean()


def distill(student: HookedNet, targets: Targets, *, epochs: int = 5, lr: float = 1e-4, batch_size: int = 32,
            seed: int = 0) -> tuple[HookedNet, dict]:
    """Teach a deep copy of `student` the teacher's policy on `targets` (KL, Adam); the original is untouched.

    Returns the trained copy and {steps, first_loss, last_loss}. Batch norm stays in eval mode (frozen).
    """
    net = copy.deepcopy(student)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    size = net.format.policy_size
    device = net.device
    losses: list[float] = []
    n = len(targets)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen).numpy()
            for lo in range(0, n, batch_size):
                rows = order[lo:lo + batch_size]
                mask, target = _dense(targets, rows, size)
                x = torch.from_numpy(targets.planes[rows]).to(device)
                logits, _ = net(x)
                loss = kl_loss(logits, mask.to(device), target.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.item()))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, {"steps": len(losses), "first_loss": losses[0] if losses else float("nan"),
                 "last_loss": float(np.mean(losses[-max(1, n // batch_size):])) if losses else float("nan")}


def agreement_vector(net: HookedNet, pool: Pool, rows: np.ndarray) -> np.ndarray:
    """Per row: does `net` (a trained copy, not cached) play the teacher's top-1 move?"""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return np.zeros(0, dtype=bool)
    moves = [legal_argmax(logits, [pool.legal[i] for i in chunk])
             for chunk, logits, _ in forward(net, pool.sample, rows=rows, batch_size=pool.batch_size)]
    return np.concatenate(moves) == pool.top1("teacher", rows)


def bootstrap_diff_ci(a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, ci: float = 0.95,
                      rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Percentile interval of mean(a) − mean(b) under a paired bootstrap over positions (rows of a and b)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"paired samples of equal, non-zero length required (got {len(a)} and {len(b)})")
    rng = rng or np.random.default_rng(0)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    diffs = a[idx].mean(axis=1) - b[idx].mean(axis=1)
    lo, hi = np.quantile(diffs, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)


def bootstrap_seeded_diff_ci(a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, ci: float = 0.95,
                             rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Percentile interval of mean(a) − mean(b) for (seeds, positions) arrays: each replicate resamples the
    training seeds and, paired across seeds and arms, the positions, so the interval carries the students'
    seed-to-seed variation as well as the test set's. One seed: `bootstrap_diff_ci`."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape or a.shape[1] == 0:
        raise ValueError(f"paired (seeds, positions) arrays of equal, non-empty shape required ({a.shape}, {b.shape})")
    if a.shape[0] == 1:
        return bootstrap_diff_ci(a[0], b[0], n_boot=n_boot, ci=ci, rng=rng)
    rng = rng or np.random.default_rng(0)
    n_seeds, n = a.shape
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    idx = rng.integers(0, n, size=(n_boot, n))
    diff = a - b  # (S, n)
    per_seed = diff[seeds[:, :, None], idx[:, None, :]].mean(axis=2)  # (n_boot, S)
    lo, hi = np.quantile(per_seed.mean(axis=1), [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)


def student_seeds(first: int, n: int) -> list[int]:
    """The training seeds of a concept's students: the first one drawn from its own generator, then fixed
    offsets (so one seed gives exactly the single-seed run)."""
    return [(first + 7919 * k) % 2**31 for k in range(n)]


# --------------------------------------------------------------------------------------------------------------
# One concept


@dataclass
class TeachResult:
    """Teachability of one concept (or control): the student, the 2×2 table, the lift and its interval."""

    id: str
    layer: str = ""
    kind: str = "concept"  # "concept", "control" (random vector) or "planted"
    status: str = OK  # "ok", "already known", "too few prototypes"
    student: str | None = None
    student_rule: str = "latest under threshold"
    agreements: dict[str, float] = field(default_factory=dict)
    n_prototypes: int = 0
    n_train: int = 0
    n_test: int = 0
    n_random_test: int = 0
    steps: int = 0
    table: dict[str, dict[str, float]] = field(default_factory=dict)
    lift: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))
    threshold: float = 0.05
    kept: bool = False
    prototype_rule: str = "top"
    seconds: float = 0.0
    prototype_rows: list[int] = field(default_factory=list)  # pool rows, in the order given (best first)
    prototype_scores: list[float] = field(default_factory=list)  # the concept's score of each prototype row
    train_rows: list[int] = field(default_factory=list)  # the prototypes the student was taught
    test_rows: list[int] = field(default_factory=list)  # the held-out prototypes it was tested on
    extra: dict = field(default_factory=dict)

    def to_record(self) -> dict:
        out = asdict(self)
        out["ci"] = list(self.ci)
        return out


def teach_rows(pool: Pool, prototypes: np.ndarray, config: TeachConfig, *, concept_id: str, layer: str = "",
               kind: str = "concept", student: str | None = None,
               baselines: dict[tuple[str, int], tuple[HookedNet, np.ndarray]] | None = None) -> TeachResult:
    """Teachability of the concept whose prototypes are `prototypes` (pool rows): steps 2–6 of the module notes.

    `student` forces a checkpoint (controls, validation); otherwise the student rule picks one. `baselines`, a
    dict kept across concepts, shares the random-trained student between concepts with the same student and
    training size (`TeachConfig.shared_baseline`): half the training cost, the comparison unchanged.
    """
    start = time.perf_counter()
    prototypes = np.asarray(prototypes, dtype=np.int64)
    result = TeachResult(id=concept_id, layer=layer, kind=kind, n_prototypes=len(prototypes),
                         threshold=config.threshold, prototype_rule=config.prototype_rule,
                         prototype_rows=[int(r) for r in prototypes])
    if len(prototypes) < max(2, config.min_prototypes):
        result.status = TOO_FEW
        return result
    result.agreements = {name: pool.agreement(name, prototypes) for name in pool.student_names}
    chosen = select_student(list(result.agreements.items()), config.max_student_agreement)
    if student is not None:
        result.student_rule = "forced" if student != chosen else result.student_rule
        chosen = student
    if chosen is None:
        result.status = ALREADY_KNOWN
        result.seconds = time.perf_counter() - start
        return result
    result.student = chosen
    rng = concept_seed(config.seed, concept_id)
    train, test = split_rows(prototypes, config.test_fraction, rng)
    result.test_rows = [int(r) for r in test]
    # random baseline: as many random pool positions as train prototypes (concept test rows excluded; the pool's
    # own share of concept positions may be drawn, as in any random sample); the random test set is disjoint
    # from every training row and from the concept test rows
    base = pool.net(chosen)
    seeds = student_seeds(int(rng.integers(2**31)), config.student_seeds)
    kw = {"epochs": config.epochs, "lr": config.lr, "batch_size": config.batch_size}
    if baselines is None:
        rand_train = np.sort(rng.choice(np.setdiff1d(np.arange(len(pool)), test), size=len(train), replace=False))
        on_random = [distill(base, teacher_targets(pool, rand_train), **kw, seed=s)[0] for s in seeds]
    else:
        # one random-trained student per (student, training size, seed), shared by every concept: a seeded sample,
        # the same whichever concept asks first; the concept's test positions it holds are left out of the test
        # set (they would favour the baseline)
        on_random, shared_seeds = [], student_seeds(config.seed, len(seeds))
        for k in range(len(seeds)):
            key = (chosen, len(train), k)
            if key not in baselines:
                rng_base = np.random.default_rng([config.seed, len(train), *chosen.encode()])
                sample = np.sort(rng_base.choice(len(pool), size=len(train), replace=False))
                baselines[key] = (distill(base, teacher_targets(pool, sample), **kw, seed=shared_seeds[k])[0],
                                  sample)
            on_random.append(baselines[key][0])
            rand_train = baselines[key][1]
        test = np.setdiff1d(test, rand_train)
        result.test_rows = [int(r) for r in test]
    rest = np.setdiff1d(np.arange(len(pool)), np.concatenate([test, train, rand_train]))
    n_rand_test = min(max(len(test), config.random_test_min), len(rest))
    rand_test = np.sort(rng.choice(rest, size=n_rand_test, replace=False))
    taught = [distill(base, teacher_targets(pool, train), **kw, seed=s) for s in seeds]
    on_concept, stats = [t[0] for t in taught], taught[0][1]
    evals = {"concept_test": test, "random_test": rand_test}
    agree = {"before": {k: (pool.top1(chosen, r) == pool.top1("teacher", r))[None, :] for k, r in evals.items()},
             "concept": {k: np.stack([agreement_vector(n, pool, r) for n in on_concept]) for k, r in evals.items()},
             "random": {k: np.stack([agreement_vector(n, pool, r) for n in on_random]) for k, r in evals.items()}}
    result.table = {trained: {k: float(np.mean(v)) if v.size else float("nan") for k, v in row.items()}
                    for trained, row in agree.items()}
    a, b = agree["concept"]["concept_test"], agree["random"]["concept_test"]
    result.lift = float(np.mean(a) - np.mean(b))
    result.ci = bootstrap_seeded_diff_ci(a, b, n_boot=config.bootstrap, ci=config.ci, rng=rng)
    result.kept = bool(result.ci[0] > config.threshold)
    result.n_train, result.n_test, result.n_random_test = len(train), len(test), len(rand_test)
    result.train_rows = [int(r) for r in train]
    result.steps = stats["steps"]
    result.extra = {"first_loss": stats["first_loss"], "last_loss": stats["last_loss"], "seeds": seeds,
                    "seed_lifts": [float(np.mean(a[k]) - np.mean(b[k])) for k in range(len(seeds))]}
    result.seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------------------------------------------
# Scores over the pool, and the exact (rollout) prototype rule for dynamic concepts


def pool_scores(pool: Pool, vectors: dict[str, np.ndarray], batch_size: int = 512, *, score: str = "dot"
                ) -> dict[str, np.ndarray]:
    """v · z_l over the whole pool for vectors grouped by layer ({layer: (m, d)} → {layer: (N, m)}).

    `score="cosine"` divides by ‖z_l‖: the ranking then no longer favours positions whose activations are large
    in every direction (with "dot", the top positions of many different vectors are the same high-norm ones).
    One teacher pass computes every layer at once; the teacher's top-1 moves are recorded on the way.
    """
    layers = list(vectors)
    out: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    mats = {name: np.asarray(v, dtype=np.float32).reshape(-1, np.asarray(v).shape[-1]).T for name, v in
            vectors.items()}
    for chunk, logits, acts in forward(pool.teacher, pool.sample, layers, batch_size=batch_size):
        pool.set_top1("teacher", chunk, legal_argmax(logits, [pool.legal[i] for i in chunk]))
        for name in layers:
            dots = acts[name] @ mats[name]
            if score == "cosine":
                dots = dots / np.maximum(np.linalg.norm(acts[name], axis=1, keepdims=True), 1e-12)
            out[name].append(dots)
    return {name: np.concatenate(parts) for name, parts in out.items()}


def rollout_prototypes(pool: Pool, vector: np.ndarray, layer: str, scores: np.ndarray, config: TeachConfig, *,
                       player: str = "one", prophylactic: bool = False, cache: dict | None = None) -> np.ndarray:
    """The exact dynamic rule: candidates (top by v · z) whose own rollouts satisfy the concept's constraints.

    A candidate is a prototype when its chosen line scores above every sub-par line at every compared state
    (the sign of Eq. 5's constraints; the margin only fixed the scale of v). Rollouts are cached per pool row in
    `cache` (they do not depend on the concept), so concepts that share candidates share the search cost.
    """
    from alphazero_concepts.concepts.activations import latents
    from alphazero_concepts.concepts.mining import MiningError, dynamic_pairs
    from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator
    from alphazero_concepts.search.rollouts import RolloutConfig, rollouts

    cache = cache if cache is not None else {}
    n_target = prototype_count(len(pool), config.top_fraction)
    candidates = top_rows(scores, config.rollout_candidates * n_target)
    todo = [int(r) for r in candidates if int(r) not in cache]
    if todo:
        rcfg = RolloutConfig(length=config.rollout_length, max_branch=max(0, config.rollout_length - 5),
                             max_subpar=config.rollout_subpar, simulations=config.rollout_simulations)
        mcts = MCTS(NetEvaluator(pool.teacher), MCTSConfig(simulations=config.rollout_simulations))
        for row, ro in zip(todo, rollouts(mcts, [pool.sample.board(r) for r in todo], rcfg), strict=True):
            cache[row] = ro
    keep = []
    v = np.asarray(vector, dtype=np.float64)
    for row in candidates:
        ro = cache[int(row)]
        if not ro.subpar:
            continue
        z = [latents(pool.teacher, ro.boards(line), layer) for line in [ro.chosen, *ro.subpar]]
        try:
            diffs = dynamic_pairs(z[0], z[1:], [ln.branch for ln in ro.subpar], player=player,
                                  prophylactic=prophylactic)
        except MiningError:
            continue
        if np.all(diffs @ v > 0):
            keep.append(int(row))
        if len(keep) >= n_target:
            break
    return np.array(keep, dtype=np.int64)
