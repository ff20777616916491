"""Probes per layer and per checkpoint: what is linearly (or non-linearly) decodable, where, and when in training.

McGrath et al. (2022) and Gurnee & Tegmark (2024): for each layer of each checkpoint, fit a probe from the layer's
activations to a target and report its held-out score. Continuous targets: `RidgeCV` over log-spaced alphas on
standardised features and standardised targets (leave-one-out alpha choice, one decomposition for all targets that
share rows); binary targets: `LogisticRegressionCV` (stratified 3-fold over a C grid). Metrics: R² and Spearman's ρ,
or accuracy beside chance (the share of the training majority class in the test set) and balanced accuracy.

Two splits, the same for every checkpoint and layer so their scores compare:

* ``random``: a seeded random test share of the positions;
* ``block``: whole groups (an opening family, a game, a material class) are held out; no position of a held-out
  group is ever trained on, so the score measures generalisation to unseen kinds of positions.

Features: each layer's activations flattened (``flat``, the default: the probe sees every square and channel:
C·64 features); ``pool2`` (2×2 average pooling of the squares: C·16 features, 4× fewer; it keeps coarse location and
makes the ridge decomposition d×d instead of n×n, which is what `--quick` uses); ``pool`` (per-channel mean and max
over the 64 squares: 2·C features, loses where things are) or ``pca`` (top `pca_dim` principal components, fitted on
the training rows of each split only). Non-spatial layers (value.fc1 …) are always used as they are.

Also: an MLP probe (one hidden layer of `mlp_hidden` units, sklearn `MLPRegressor`/`MLPClassifier` trained with
L-BFGS and a fixed L2 penalty `mlp_alpha` on standardised inputs; one network per target) at chosen layers for the
linear-vs-nonlinear comparison, and L1 probes (`LassoCV` / L1-logistic) reporting how many features they use.
"""

from __future__ import annotations

import inspect
import json
import time
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self

import chess
import numpy as np
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LassoCV, LogisticRegressionCV, RidgeCV
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from alphazero_concepts.core.config import DictConfig
from alphazero_concepts.core.files import atomic_write_bytes
from alphazero_concepts.nn.network import HookedNet
from alphazero_concepts.probing.targets import Kind, Target, compute_targets, piece_counts

ProbeModel = Literal["linear", "mlp", "l1"]
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-1, 5, 13))
DEFAULT_CS: tuple[float, ...] = tuple(float(c) for c in np.logspace(-5, 0, 6))  # standardised features want small C
FEATURES = ("flat", "pool2", "pool", "pca")
BLOCKS = ("", "game", "opening", "material")
RESULTS = "results.jsonl"
CONFIG = "probe_config.json"


class ProbeError(ValueError):
    """A probe that cannot be fitted (one class only, too few rows) or a results directory that cannot be resumed."""


# ------------------------------------------------------------------------------------------------------------
# One probe


def _logistic_cv(cs: Sequence[float], cv: StratifiedKFold, max_iter: int, l1: bool, seed: int) -> LogisticRegressionCV:
    """LogisticRegressionCV with an L2 (or L1) penalty, across the sklearn versions' spellings of it."""
    params = inspect.signature(LogisticRegressionCV).parameters
    kw: dict = {"Cs": list(cs), "cv": cv, "max_iter": max_iter, "scoring": "accuracy", "random_state": seed}
    if "use_legacy_attributes" in params:
        kw["use_legacy_attributes"] = False
    new_style = params["penalty"].default == "deprecated"
    if l1:
        kw["solver"] = "liblinear"
        kw.update({"l1_ratios": (1.0,)} if new_style else {"penalty": "l1"})
    elif new_style:
        kw["l1_ratios"] = (0.0,)
    return LogisticRegressionCV(**kw)


class LayerProbe:
    """An estimator from one layer's activations X (n, d) to a target y: ``LayerProbe(...).fit(X, y).score(X, y)``.

    `kind` is the target's ("continuous": y (n,) or (n, k), several targets fitted at once; "binary": y (n,) of 0/1).
    `model`: "linear" (RidgeCV / LogisticRegressionCV), "l1" (LassoCV / L1-logistic: sparse, `nonzeros_` tells how
    sparse) or "mlp" (one hidden layer of `hidden` units). Features and continuous targets are standardised on the
    training rows. `score` is R² (mean over targets) or accuracy, as sklearn's; `metrics` gives every number.
    """

    def __init__(self, kind: Kind = "continuous", model: ProbeModel = "linear", *,
                 alphas: Sequence[float] = DEFAULT_ALPHAS, cs: Sequence[float] = DEFAULT_CS, hidden: int = 64,
                 mlp_alpha: float = 10.0, cv: int = 3, max_iter: int = 300, seed: int = 0) -> None:
        if kind not in ("continuous", "binary"):
            raise ValueError(f"kind must be 'continuous' or 'binary', got {kind!r}")
        if model not in ("linear", "mlp", "l1"):
            raise ValueError(f"model must be 'linear', 'mlp' or 'l1', got {model!r}")
        self.kind, self.model = kind, model
        self.alphas, self.cs, self.hidden, self.mlp_alpha = alphas, cs, hidden, mlp_alpha
        self.cv, self.max_iter, self.seed = cv, max_iter, seed

    # -- fitting -------------------------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64)
        if len(X) != len(y):
            raise ProbeError(f"X has {len(X)} rows, y has {len(y)}")
        self.scaler_ = StandardScaler().fit(X)
        xs = self.scaler_.transform(X)
        self.dim_ = X.shape[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if self.kind == "continuous":
                self._fit_continuous(xs, y)
            else:
                self._fit_binary(xs, y)
        return self

    def _fit_continuous(self, xs: np.ndarray, y: np.ndarray) -> None:
        self.multi_ = y.ndim == 2
        y2 = y.reshape(len(y), -1)
        self.y_mean_ = y2.mean(axis=0)
        std = y2.std(axis=0)
        self.y_std_ = np.where(std > 0, std, 1.0)
        ys = (y2 - self.y_mean_) / self.y_std_
        n, d = xs.shape
        if self.model == "linear":
            mode = "eigen" if n <= d else "svd"  # one n×n or d×d decomposition serves every alpha and target
            est = RidgeCV(alphas=list(self.alphas), alpha_per_target=ys.shape[1] > 1, gcv_mode=mode).fit(xs, ys)
            self.estimators_ = [est]
            self.alpha_ = np.atleast_1d(est.alpha_).astype(float)
            self.nonzeros_ = np.full(ys.shape[1], d)
        elif self.model == "l1":
            self.estimators_ = []
            for j in range(ys.shape[1]):
                top = float(np.abs(xs.T @ ys[:, j]).max() / n) or 1.0
                grid = np.logspace(np.log10(top) - 3, np.log10(top), 8)
                est = LassoCV(alphas=grid, cv=KFold(self.cv, shuffle=True, random_state=self.seed),
                              max_iter=self.max_iter * 10).fit(xs, ys[:, j])
                self.estimators_.append(est)
            self.alpha_ = np.array([e.alpha_ for e in self.estimators_], dtype=float)
            self.nonzeros_ = np.array([int(np.count_nonzero(e.coef_)) for e in self.estimators_])
        else:  # one small network per target column (a shared hidden layer would let targets compete for units)
            self.estimators_ = [self._mlp(MLPRegressor).fit(xs, ys[:, j]) for j in range(ys.shape[1])]
            self.alpha_ = np.full(ys.shape[1], self.mlp_alpha)
            self.nonzeros_ = np.full(ys.shape[1], d)

    def _mlp(self, cls: type) -> MLPRegressor | MLPClassifier:
        # L-BFGS with a firm L2 penalty: on a few thousand rows it beats Adam with early stopping by a wide margin
        return cls(hidden_layer_sizes=(self.hidden,), solver="lbfgs", alpha=self.mlp_alpha, max_iter=self.max_iter,
                   random_state=self.seed)

    def _fit_binary(self, xs: np.ndarray, y: np.ndarray) -> None:
        if y.ndim != 1:
            raise ProbeError("binary targets are fitted one at a time (y must be 1-D)")
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) != 2:
            raise ProbeError(f"binary target has {len(classes)} class(es) in the training rows; need 2")
        self.multi_ = False
        self.majority_ = float(classes[np.argmax(counts)])
        if self.model == "mlp":
            self.estimators_ = [self._mlp(MLPClassifier).fit(xs, y)]
            self.alpha_ = np.array([self.mlp_alpha])
            self.nonzeros_ = np.array([xs.shape[1]])
            return
        folds = max(2, min(self.cv, int(counts.min())))
        cv = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
        est = _logistic_cv(self.cs, cv, self.max_iter, self.model == "l1", self.seed).fit(xs, y)
        self.estimators_ = [est]
        self.alpha_ = np.array([1.0 / float(np.ravel(est.C_)[0])])
        self.nonzeros_ = np.array([int(np.count_nonzero(est.coef_))])

    # -- using ---------------------------------------------------------------------------------------------------
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Continuous: predictions in the target's units ((n,) or (n, k) as fitted); binary: 0/1 labels."""
        xs = self.scaler_.transform(np.asarray(X, dtype=np.float32))
        if self.kind == "binary":
            return self.estimators_[0].predict(xs).astype(np.float64)
        if len(self.estimators_) > 1 or self.model != "linear":
            ys = np.stack([e.predict(xs) for e in self.estimators_], axis=1)
        else:
            ys = np.asarray(self.estimators_[0].predict(xs)).reshape(len(xs), -1)
        y = ys * self.y_std_ + self.y_mean_
        return y if self.multi_ else y[:, 0]

    def metrics(self, X: np.ndarray, y: np.ndarray) -> list[dict[str, float]]:
        """One dict per target column: r2, spearman (continuous) or accuracy, chance, balanced_accuracy (binary)."""
        y = np.asarray(y, dtype=np.float64)
        pred = self.predict(X)
        if self.kind == "binary":
            chance = float(np.mean(y == self.majority_)) if len(y) else float("nan")
            return [{"accuracy": float(np.mean(pred == y)), "chance": chance,
                     "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if len(np.unique(y)) > 1
                     else float("nan")}]
        y2, p2 = y.reshape(len(y), -1), pred.reshape(len(y), -1)
        out = []
        for j in range(y2.shape[1]):
            constant = np.ptp(y2[:, j]) == 0 or np.ptp(p2[:, j]) == 0
            rho = float("nan") if constant else float(spearmanr(y2[:, j], p2[:, j]).statistic)
            out.append({"r2": float(r2_score(y2[:, j], p2[:, j])) if len(y2) > 1 else float("nan"),
                        "spearman": rho})
        return out

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """R² (mean over target columns) for continuous targets, accuracy for binary ones."""
        m = self.metrics(X, y)
        key = "accuracy" if self.kind == "binary" else "r2"
        return float(np.mean([row[key] for row in m]))


# ------------------------------------------------------------------------------------------------------------
# Splits


@dataclass(frozen=True)
class Split:
    """Row indices of a train/test split; `held_out` names the groups of a block split (none for a random one)."""

    name: str
    train: np.ndarray
    test: np.ndarray
    held_out: tuple[str, ...] = ()


def random_split(n: int, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """A seeded random split: round(n · test_fraction) test rows (at least one), the rest train."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    k = min(n - 1, max(1, round(n * test_fraction)))
    return Split("random", np.sort(perm[k:]), np.sort(perm[:k]))


def block_split(groups: Sequence[Hashable], test_fraction: float = 0.2, seed: int = 0,
                held_out: Sequence[Hashable] | None = None) -> Split:
    """Hold out whole groups: `held_out` ones, or seeded-random groups until ≥ test_fraction of the rows.

    No row of a held-out group is in `train`; at least one group stays in training.
    """
    labels = np.array([str(g) for g in groups])
    names, sizes = np.unique(labels, return_counts=True)
    if len(names) < 2:
        raise ProbeError(f"block split needs at least 2 groups, got {len(names)}")
    if held_out is None:
        order = np.random.default_rng(seed).permutation(len(names))
        chosen: list[str] = []
        total = 0
        for i in order[:-1]:
            chosen.append(str(names[i]))
            total += int(sizes[i])
            if total >= test_fraction * len(labels):
                break
    else:
        chosen = [str(g) for g in held_out]
        unknown = set(chosen) - set(names.tolist())
        if unknown:
            raise ProbeError(f"held-out groups {sorted(unknown)} do not occur (groups: {', '.join(names[:20])})")
        if set(chosen) >= set(names.tolist()):
            raise ProbeError("cannot hold out every group")
    test_mask = np.isin(labels, chosen)
    return Split("block", np.flatnonzero(~test_mask), np.flatnonzero(test_mask), tuple(sorted(chosen)))


def material_class(boards: Sequence[chess.Board]) -> list[str]:
    """Game phase by non-pawn material of both sides (N, B 3; R 5; Q 9; 62 at the start)."""
    own, opp = piece_counts(boards)
    weights = np.array([0, 3, 3, 5, 9, 0])
    total = (own + opp) @ weights
    return ["opening" if t >= 50 else "middlegame" if t >= 26 else "endgame" for t in total]


# ------------------------------------------------------------------------------------------------------------
# Activations and features


def layer_activations(net: HookedNet, planes: np.ndarray, layers: Sequence[str], *, batch_size: int = 256,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """{layer: (N, d) float32} of encoded `planes` (`HookedNet.latents`); ProbeError naming an unknown layer."""
    unknown = [name for name in layers if name not in net.layer_names]
    if unknown:
        raise ProbeError(f"unknown layers {unknown}; the network has: {', '.join(net.layer_names)}")
    net.eval()
    return net.latents(planes, layers, batch_size, progress=progress)


def reduce_features(x: np.ndarray, mode: str, shape: tuple[int, ...], train: np.ndarray, *, pca_dim: int = 256,
                    seed: int = 0) -> np.ndarray:
    """Features of a layer for probing: ``flat`` (as is), ``pool2`` (2×2 average pooling of a spatial layer),
    ``pool`` (mean and max per channel over the squares) or ``pca`` (principal components fitted on the `train`
    rows only, so no test leakage). `shape` is one position's activation shape (C, 8, 8) or (D,)."""
    if mode == "flat":
        return x
    if mode == "pool2":
        if len(shape) != 3 or shape[1] % 2 or shape[2] % 2:
            return x
        c, h, w = shape
        return x.reshape(len(x), c, h // 2, 2, w // 2, 2).mean(axis=(3, 5)).reshape(len(x), -1)
    if mode == "pool":
        if len(shape) != 3:
            return x
        grid = x.reshape(len(x), shape[0], -1)
        return np.concatenate([grid.mean(axis=2), grid.max(axis=2)], axis=1)
    if mode == "pca":
        k = min(pca_dim, len(train) - 1, x.shape[1])
        if k >= x.shape[1]:
            return x
        pca = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit(x[train])
        return pca.transform(x).astype(np.float32)
    raise ValueError(f"features must be one of {FEATURES}, got {mode!r}")


# ------------------------------------------------------------------------------------------------------------
# Many probes


@dataclass(frozen=True)
class ProbeConfig(DictConfig):
    """What `run_probes` fits. Empty `layers`: every layer of the network. `block`: the group kind held out by the
    block split ("" for none). MLP probes run at `mlp_layers` (random split only), for the checkpoints in
    `mlp_checkpoints` (empty: all) and the targets in `mlp_targets` (empty: all). `l1`: add L1 probes.
    `threads`: BLAS threads during the fits (None: the library's default)."""

    layers: tuple[str, ...] = ()
    features: str = "flat"
    pca_dim: int = 256
    test_fraction: float = 0.2
    block: str = "game"
    seed: int = 0
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    cs: tuple[float, ...] = DEFAULT_CS
    mlp_layers: tuple[str, ...] = ()
    mlp_checkpoints: tuple[str, ...] = ()
    mlp_targets: tuple[str, ...] = ()
    mlp_hidden: int = 64
    mlp_alpha: float = 10.0
    l1: bool = False
    batch_size: int = 256
    max_iter: int = 300
    min_rows: int = 20
    threads: int | None = 1  # BLAS threads for the fits; OpenBLAS threads spin-wait, so 1 is fastest on a busy box

    def __post_init__(self) -> None:
        for name in ("layers", "alphas", "cs", "mlp_layers", "mlp_checkpoints", "mlp_targets"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.features not in FEATURES:
            raise ValueError(f"ProbeConfig.features must be one of {FEATURES}, got {self.features!r}")
        if self.block not in BLOCKS:
            raise ValueError(f"ProbeConfig.block must be one of {BLOCKS}, got {self.block!r}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"ProbeConfig.test_fraction must be in (0, 1), got {self.test_fraction}")


NetSource = HookedNet | Callable[[], HookedNet]


@dataclass
class _Fit:
    """One probe fit request: targets sharing a kind and a row mask, fitted together where the model allows."""

    kind: Kind
    names: list[str]
    mask: np.ndarray = field(repr=False)


def _fit_groups(values: Mapping[str, np.ndarray], kinds: Mapping[str, Kind]) -> list[_Fit]:
    """Continuous targets with the same defined rows share one fit (one decomposition); binary ones fit alone."""
    groups: dict[bytes, _Fit] = {}
    fits: list[_Fit] = []
    for name, v in values.items():
        mask = ~np.isnan(v)
        if kinds[name] == "binary":
            fits.append(_Fit("binary", [name], mask))
            continue
        key = mask.tobytes()
        if key not in groups:
            groups[key] = _Fit("continuous", [], mask)
            fits.append(groups[key])
        groups[key].names.append(name)
    return fits


def probe_layer(x: np.ndarray, values: Mapping[str, np.ndarray], kinds: Mapping[str, Kind],
                splits: Sequence[Split], config: ProbeConfig, *, shape: tuple[int, ...] = (),
                models: Sequence[ProbeModel] = ("linear",)) -> list[dict]:
    """Rows of scores of every target × split × model at one layer (activations `x`, one row per position)."""
    rows: list[dict] = []
    fits = _fit_groups(values, kinds)
    for split in splits:
        feats = reduce_features(x, config.features, shape, split.train, pca_dim=config.pca_dim, seed=config.seed)
        for model in models:
            if model == "mlp" and split.name != "random":
                continue
            for job in fits:
                fit = job
                if model == "mlp" and config.mlp_targets:
                    names = [n for n in job.names if n in config.mlp_targets]
                    if not names:
                        continue
                    fit = _Fit(job.kind, names, job.mask)
                train = split.train[fit.mask[split.train]]
                test = split.test[fit.mask[split.test]]
                base = {"split": split.name, "probe": model, "kind": fit.kind, "n_train": len(train),
                        "n_test": len(test), "dim": int(feats.shape[1])}
                y = np.stack([values[n] for n in fit.names], axis=1)
                if fit.kind == "binary":
                    y = y[:, 0]
                problem = None
                if len(train) < config.min_rows or len(test) < 2:
                    problem = f"too few rows (train {len(train)}, test {len(test)}; need {config.min_rows} and 2)"
                probe = LayerProbe(fit.kind, model, alphas=config.alphas, cs=config.cs, hidden=config.mlp_hidden,
                                   mlp_alpha=config.mlp_alpha, max_iter=config.max_iter, seed=config.seed)
                start = time.perf_counter()
                if problem is None:
                    try:
                        probe.fit(feats[train], y[train])
                    except ProbeError as exc:
                        problem = str(exc)
                if problem is not None:
                    rows += [{**base, "target": n, "skipped": problem} for n in fit.names]
                    continue
                fit_s = (time.perf_counter() - start) / len(fit.names)
                test_m = probe.metrics(feats[test], y[test])
                train_score = probe.metrics(feats[train], y[train])
                key = "accuracy" if fit.kind == "binary" else "r2"
                for j, name in enumerate(fit.names):
                    rows.append(_clean({**base, "target": name, **test_m[j], "train_score": train_score[j][key],
                                        "alpha": float(probe.alpha_[j]), "nonzeros": int(probe.nonzeros_[j]),
                                        "fit_s": fit_s, "held_out": list(split.held_out)}))
    return rows


def _clean(row: dict) -> dict:
    """NaN → None, so rows are strict JSON."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}


def _load_done(out: Path, config_record: dict) -> tuple[list[dict], set[tuple[str, str]]]:
    """Rows already written to `out` (for resuming) and their (checkpoint, layer) keys; error on another config."""
    cfg_path, res_path = out / CONFIG, out / RESULTS
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        if old != json.loads(json.dumps(config_record)):
            raise ProbeError(f"{cfg_path}: a probe run with other settings, positions or targets; use a new --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cfg_path, (json.dumps(config_record, indent=2) + "\n").encode())
        res_path.unlink(missing_ok=True)
    rows: list[dict] = []
    if res_path.is_file():
        with open(res_path) as fh:
            for line in fh:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a torn last line from a killed run: that layer is redone
    # keep only complete (checkpoint, layer) batches: each batch ends with a marker row
    done = {(r["checkpoint"], r["layer"]) for r in rows if r.get("batch_end")}
    kept = [r for r in rows if (r["checkpoint"], r["layer"]) in done and not r.get("batch_end")]
    with open(res_path, "w") as fh:  # rewrite without a torn tail, so appends start clean
        for r in kept:
            fh.write(json.dumps(r) + "\n")
        for key in sorted(done):
            fh.write(json.dumps({"checkpoint": key[0], "layer": key[1], "batch_end": True}) + "\n")
    return kept, done


def run_probes(networks: Mapping[str, NetSource], boards: Sequence[chess.Board], targets: Sequence[Target],
               config: ProbeConfig | None = None, *, groups: Sequence[Hashable] | None = None,
               out: str | Path | None = None, progress: Callable[[str, int, int], None] | None = None,
               values: Mapping[str, np.ndarray] | None = None) -> list[dict]:
    """Probe every layer of every network (checkpoints in training order) for every target; a tidy list of rows.

    `networks` maps checkpoint names to networks or to loaders (called one at a time, so a long series is never
    all in memory). `groups` (one label per board) enables the block split. With `out`, the config goes to
    ``probe_config.json`` and rows to ``results.jsonl`` per finished (checkpoint, layer): a killed run, rerun with
    the same arguments, continues where it stopped. `progress(label, done, total)` is called per layer.

    Each row: checkpoint, checkpoint_index, layer, layer_index, target, kind, probe, split, n_train, n_test, dim,
    r2 + spearman or accuracy + chance + balanced_accuracy, train_score, alpha, nonzeros, fit_s, held_out
    (or ``skipped`` with the reason).
    """
    config = config or ProbeConfig()
    with threadpool_limits(limits=config.threads, user_api="blas"):
        return _run_probes(networks, boards, targets, config, groups, out, progress, values)


def _run_probes(networks: Mapping[str, NetSource], boards: Sequence[chess.Board], targets: Sequence[Target],
                config: ProbeConfig, groups: Sequence[Hashable] | None, out: str | Path | None,
                progress: Callable[[str, int, int], None] | None, values: Mapping[str, np.ndarray] | None
                ) -> list[dict]:
    if values is None:
        values = compute_targets(boards, targets)
    kinds = {t.name: t.kind for t in targets}
    n = len(boards)
    splits = [random_split(n, config.test_fraction, config.seed)]
    if groups is not None and config.block:
        if len(groups) != n:
            raise ProbeError(f"{len(groups)} group labels for {n} positions")
        splits.append(block_split(groups, config.test_fraction, config.seed))
    rows: list[dict] = []
    done: set[tuple[str, str]] = set()
    res_path = None
    if out is not None:
        out = Path(out)
        record = {"config": config.to_dict(), "checkpoints": list(networks), "targets": sorted(kinds),
                  "positions": n, "fens": _fingerprint([b.fen() for b in boards])}
        rows, done = _load_done(out, record)
        res_path = out / RESULTS
    planes_by_format: dict[str, np.ndarray] = {}
    names = list(networks)
    for ci, name in enumerate(names):
        if config.layers and all((name, layer) in done for layer in config.layers):
            continue  # finished in an earlier run: not even loaded
        source = networks[name]
        net = source if isinstance(source, HookedNet) else source()
        layers = list(config.layers) or list(net.layer_names)
        pending = [layer for layer in layers if (name, layer) not in done]
        if not pending:
            continue
        fmt = net.format
        if fmt.name not in planes_by_format:  # the same positions for every checkpoint: encode once per format
            planes_by_format[fmt.name] = fmt.encode(list(boards))
        acts = layer_activations(net, planes_by_format[fmt.name], pending, batch_size=config.batch_size)
        for layer in pending:
            models: list[ProbeModel] = ["linear"]
            if layer in config.mlp_layers and (not config.mlp_checkpoints or name in config.mlp_checkpoints):
                models.append("mlp")
            if config.l1:
                models.append("l1")
            shape = tuple(net.layer_shape(layer))  # type: ignore[attr-defined]
            new = probe_layer(acts.pop(layer), values, kinds, splits, config, shape=shape, models=models)
            li = net.layer_names.index(layer)
            new = [{"checkpoint": name, "checkpoint_index": ci, "layer": layer, "layer_index": li, **r} for r in new]
            rows += new
            if res_path is not None:
                with open(res_path, "a") as fh:
                    for r in new:
                        fh.write(json.dumps(r) + "\n")
                    fh.write(json.dumps({"checkpoint": name, "layer": layer, "batch_end": True}) + "\n")
            if progress:
                progress(f"{name} {layer}", layers.index(layer) + 1, len(layers))
    order = {name: i for i, name in enumerate(names)}
    rows.sort(key=lambda r: (order.get(r["checkpoint"], 0), r["layer_index"]))
    return rows


def _fingerprint(items: Sequence[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for item in items:
        h.update(item.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------------------
# Reading results


def score_of(row: Mapping) -> float:
    """A row's headline score: R² for continuous targets, balanced accuracy for binary ones (0.5 = chance whatever
    the class balance, so a rare label cannot look good by always saying no); NaN when skipped or undefined."""
    value = row.get("balanced_accuracy" if row.get("kind") == "binary" else "r2")
    return float("nan") if value is None else float(value)


def score_table(rows: Sequence[Mapping], target: str, *, probe: str = "linear", split: str = "random"
                ) -> dict[str, dict[str, float]]:
    """{checkpoint: {layer: score}} for one target, probe model and split, in row order."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.get("target") == target and r.get("probe") == probe and r.get("split") == split:
            out.setdefault(r["checkpoint"], {})[r["layer"]] = score_of(r)
    return out


def best_layer(rows: Sequence[Mapping], target: str, checkpoint: str, *, probe: str = "linear",
               split: str = "random") -> tuple[str | None, float]:
    """(layer, score) with the highest score of `target` at `checkpoint` ((None, nan) when there is none)."""
    scores = {k: v for k, v in score_table(rows, target, probe=probe, split=split).get(checkpoint, {}).items()
              if v == v}
    if not scores:
        return None, float("nan")
    layer = max(scores, key=lambda k: scores[k])
    return layer, scores[layer]
