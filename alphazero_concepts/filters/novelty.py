"""Novelty (METHOD.md §3): is a concept vector better explained by the machine's latent space than by the human one?

Stack the layer-l latents of N human positions as Z_h and of N of the teacher's self-play positions as Z_a
(N × d, equal N; uncentred, as in the paper). Their right singular vectors, ordered by singular value, are the
columns of U_h and U_a. For the first k of them

    s_k(v) = min_β ||v − U_h[:k] β||² − min_γ ||v − U_a[:k] γ||²  =  ||U_a[:k]ᵀ v||² − ||U_h[:k]ᵀ v||²

(orthonormal columns), reported divided by ||v||², so s_k ∈ [−1, 1] and does not change when v is scaled. A
concept is novel when s_k > 0 for every k of the grid: powers of two 1, 2, 4, … up to the smaller of the two
bases' sizes (each basis keeps min(rank, max_components) vectors).

Numerical rank (the paper's "number of non-zero singular values": layer 19, human 7,857 < machine 8,269):
σ_i counts when σ_i > tol, with tol = σ_max · max(n, d) · ε_float32 by default — numpy's `matrix_rank` rule
at the precision the network computes in (ε_float32 = 1.19e-7) — or tol = rtol · σ_max when `rank_rtol` is
given.

SVD ("auto"): when min(n, d) ≤ `exact_limit`, exact through the eigendecomposition of the smaller Gram matrix
in float64 ("gram": ZZᵀ = U Σ² Uᵀ, V = Zᵀ U Σ⁻¹ for the σ above the tolerance; the tail's absolute error is
about √ε_float64 · σ_max, far below the tolerance), else "randomized": the spectrum from the Gram matrix's
eigenvalues and the top `max_components` right singular vectors from `torch.svd_lowrank`. "svd" is a plain
LAPACK SVD in float64 (slowest). All of it runs in torch, so `torch.set_num_threads` governs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from alphazero_concepts.core.config import DictConfig, Range, check_fields
from alphazero_concepts.core.files import read_npz, write_npz
from alphazero_concepts.plotting import pyplot, save_figure

EPS_FLOAT32 = float(np.finfo(np.float32).eps)
BASIS_VERSION = 1


@dataclass(frozen=True)
class NoveltyConfig(DictConfig):
    """Parameters of the human and machine bases."""

    positions: Annotated[int, Range(2)] = 4000  # N per side (the paper: 17,184)
    human_min_ply: Annotated[int, Range(0)] = 10  # book plies skipped in human games (self-play: skip_plies)
    max_games: Annotated[int, Range(1)] | None = None  # human games read at most (None: the whole file)
    max_components: Annotated[int, Range(1)] = 2048  # basis vectors kept per side and layer
    method: str = "auto"  # "auto", "gram", "svd" or "randomized"
    exact_limit: Annotated[int, Range(1)] = 8192
    rank_rtol: Annotated[float, Range(0, low_open=True)] | None = None  # None: σ_max · max(n, d) · ε_float32
    seed: Annotated[int, Range(0)] = 0

    def __post_init__(self) -> None:
        check_fields(self)  # types and ranges from the annotations
        if self.method not in ("auto", "gram", "svd", "randomized"):
            raise ValueError(f"NoveltyConfig.method must be auto, gram, svd or randomized, got {self.method!r}")
        if self.positions < 2 or self.max_components < 1:
            raise ValueError("NoveltyConfig.positions must be ≥ 2 and max_components ≥ 1")


def rank_tolerance(sigma_max: float, shape: tuple[int, int], rtol: float | None = None) -> tuple[float, str]:
    """The singular-value threshold of the numerical rank and the rule that gave it (see the module notes)."""
    if rtol is not None:
        return rtol * sigma_max, f"sigma > {rtol:g} * sigma_max"
    return sigma_max * max(shape) * EPS_FLOAT32, "sigma > sigma_max * max(n, d) * eps_float32"


@dataclass
class Spectrum:
    """Right singular vectors (columns of `basis`, best first), all singular values, and the numerical rank."""

    basis: np.ndarray  # (d, k) float32, orthonormal columns, k = min(rank, max_components)
    singular_values: np.ndarray  # (min(n, d),) descending
    rank: int
    tolerance: float
    rule: str
    method: str


def right_singular_basis(z: np.ndarray, *, max_components: int = 2048, method: str = "auto",
                         exact_limit: int = 8192, rank_rtol: float | None = None, seed: int = 0) -> Spectrum:
    """SVD of one stacked latent matrix (n × d): basis, spectrum and numerical rank (see the module notes)."""
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or min(z.shape) < 1:
        raise ValueError(f"latents must be a non-empty (n, d) matrix, got shape {z.shape}")
    if method not in ("auto", "gram", "svd", "randomized"):
        raise ValueError(f"method must be auto, gram, svd or randomized, got {method!r}")
    n, d = z.shape
    if method == "auto":
        method = "gram" if min(n, d) <= exact_limit else "randomized"
    z64 = torch.from_numpy(z).double()
    if method == "svd":
        _, s, vh = torch.linalg.svd(z64, full_matrices=False)
        tol, rule = rank_tolerance(float(s[0]), (n, d), rank_rtol)
        rank = int((s > tol).sum())
        basis = vh[: min(rank, max_components)].T
    else:
        small_is_n = n <= d
        gram = z64 @ z64.T if small_is_n else z64.T @ z64
        if method == "gram":
            evals, evecs = torch.linalg.eigh(gram)
            evals, evecs = evals.flip(0), evecs.flip(1)
        else:
            evals, evecs = torch.linalg.eigvalsh(gram).flip(0), None
        s = evals.clamp_min(0.0).sqrt()
        tol, rule = rank_tolerance(float(s[0]), (n, d), rank_rtol)
        rank = int((s > tol).sum())
        k = min(rank, max_components)
        if evecs is None:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                _, _, v = torch.svd_lowrank(z64, q=min(min(n, d), k + 10), niter=4)
            basis = v[:, :k]
        elif small_is_n:  # right singular vectors from the left ones: v_i = Zᵀ u_i / σ_i (σ_i > tol > 0)
            basis = (z64.T @ evecs[:, :k]) / s[:k]
        else:
            basis = evecs[:, :k]
    return Spectrum(np.ascontiguousarray(basis.numpy(), dtype=np.float32), s.numpy(), rank, float(tol), rule,
                    method)


def k_grid(size: int) -> list[int]:
    """Powers of two 1, 2, 4, … up to `size` (the grid of s_k)."""
    out, k = [], 1
    while k <= size:
        out.append(k)
        k *= 2
    return out


@dataclass
class NoveltyScore:
    """s_k(v) / ||v||² over the k grid; novel when every value is > 0."""

    ks: list[int]
    scores: list[float]

    @property
    def novel(self) -> bool:
        return bool(self.scores) and all(s > 0 for s in self.scores)

    @property
    def min_score(self) -> float:
        return float(min(self.scores)) if self.scores else float("nan")

    def to_record(self) -> dict:
        return {"ks": self.ks, "scores": self.scores, "novel": self.novel, "min_score": self.min_score}


def novelty_scores(vectors: np.ndarray, human: np.ndarray, machine: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """s_k(v) / ||v||² for each row v of `vectors` (m, d) and each k: an (m, len(ks)) array.

    `human` and `machine` are (d, K) bases with orthonormal columns (best first); ks must be ≤ both K.
    """
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    ks = list(ks)
    if not ks:
        return np.zeros((len(v), 0))
    kmax = max(ks)
    if kmax > human.shape[1] or kmax > machine.shape[1]:
        raise ValueError(f"k = {kmax} exceeds a basis (human {human.shape[1]}, machine {machine.shape[1]} vectors)")
    if v.shape[1] != human.shape[0] or v.shape[1] != machine.shape[0]:
        raise ValueError(f"vectors have dimension {v.shape[1]}, the bases {human.shape[0]} and {machine.shape[0]}")
    norm2 = np.sum(v * v, axis=1)
    if np.any(norm2 == 0):
        raise ValueError("a zero vector has no novelty score")
    vt = torch.from_numpy(v)
    cum_h = torch.cumsum((vt @ torch.from_numpy(human[:, :kmax]).double()) ** 2, dim=1).numpy()
    cum_a = torch.cumsum((vt @ torch.from_numpy(machine[:, :kmax]).double()) ** 2, dim=1).numpy()
    idx = np.array(ks) - 1
    return (cum_a[:, idx] - cum_h[:, idx]) / norm2[:, None]


@dataclass
class NoveltyBasis:
    """Human and machine bases of one layer, with their spectra and ranks; saved as `.npz` and reused."""

    layer: str
    human: np.ndarray
    machine: np.ndarray
    sv_human: np.ndarray
    sv_machine: np.ndarray
    rank_human: int
    rank_machine: int
    n: int
    tolerance: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.human.shape[0])

    def ks(self) -> list[int]:
        """The k grid: powers of two up to the smaller basis."""
        return k_grid(min(self.human.shape[1], self.machine.shape[1]))

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """(m, len(ks)) normalised s_k of each row of `vectors`."""
        return novelty_scores(vectors, self.human, self.machine, self.ks())

    def score(self, vector: np.ndarray) -> NoveltyScore:
        ks = self.ks()
        return NoveltyScore(ks, [float(x) for x in novelty_scores(vector, self.human, self.machine, ks)[0]])

    def summary(self) -> dict:
        return {"layer": self.layer, "dim": self.dim, "n": self.n, "rank_human": self.rank_human,
                "rank_machine": self.rank_machine, "kept_human": int(self.human.shape[1]),
                "kept_machine": int(self.machine.shape[1]), "tolerance": self.tolerance, **self.meta}

    def save(self, path: str | Path) -> Path:
        """Write the basis atomically (float32 bases, float64 spectra, JSON header)."""
        header = {"version": BASIS_VERSION, "layer": self.layer, "rank_human": self.rank_human,
                  "rank_machine": self.rank_machine, "n": self.n, "tolerance": self.tolerance, "meta": self.meta}
        return write_npz(path, header, {"human": self.human.astype(np.float32),
                                        "machine": self.machine.astype(np.float32),
                                        "sv_human": self.sv_human, "sv_machine": self.sv_machine})

    @classmethod
    def load(cls, path: str | Path) -> NoveltyBasis:
        path = Path(path)
        try:
            header, parts = read_npz(path, ("human", "machine", "sv_human", "sv_machine"))
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a novelty basis ({type(exc).__name__}: {exc})") from exc
        if header.get("version") != BASIS_VERSION:
            raise ValueError(f"{path}: basis version {header.get('version')!r}, this code reads {BASIS_VERSION}")
        return cls(header["layer"], parts["human"], parts["machine"], parts["sv_human"], parts["sv_machine"],
                   int(header["rank_human"]), int(header["rank_machine"]), int(header["n"]),
                   header.get("tolerance", {}), header.get("meta", {}))


def build_basis(z_human: np.ndarray, z_machine: np.ndarray, layer: str, config: NoveltyConfig | None = None,
                meta: dict | None = None) -> NoveltyBasis:
    """Bases of one layer from equal-size human and machine latent matrices (rows are positions)."""
    config = config or NoveltyConfig()
    if len(z_human) != len(z_machine):
        raise ValueError(f"equal sample sizes required: {len(z_human)} human vs {len(z_machine)} machine rows")
    kw = {"max_components": config.max_components, "method": config.method, "exact_limit": config.exact_limit,
          "rank_rtol": config.rank_rtol, "seed": config.seed}
    h = right_singular_basis(z_human, **kw)
    a = right_singular_basis(z_machine, **kw)
    tolerance = {"rule": h.rule, "human": h.tolerance, "machine": a.tolerance, "method": h.method}
    return NoveltyBasis(layer, h.basis, a.basis, h.singular_values, a.singular_values, h.rank, a.rank,
                        len(z_human), tolerance, dict(meta or {}))


def spectrum_figure(bases: Sequence[NoveltyBasis], path: str | Path) -> Path:
    """Singular values (normalised by the largest) of human and machine latents, one panel per layer."""
    plt = pyplot()

    n = max(1, len(bases))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, b in zip(axes[0], bases, strict=False):
        for sv, rank, label, colour in ((b.sv_human, b.rank_human, "human", "tab:blue"),
                                        (b.sv_machine, b.rank_machine, "machine", "tab:red")):
            s = np.asarray(sv, dtype=np.float64)
            s = s / s[0] if s.size and s[0] > 0 else s
            ax.semilogy(np.arange(1, len(s) + 1), np.clip(s, 1e-12, None), color=colour,
                        label=f"{label} (rank {rank:,})")
            ax.axvline(rank, color=colour, ls=":", lw=1)
        tol = b.tolerance.get("human", 0.0) / max(float(b.sv_human[0]), 1e-30) if len(b.sv_human) else 0.0
        ax.axhline(tol, color="grey", ls="--", lw=0.8, label="rank tolerance")
        ax.set_title(f"{b.layer} (d = {b.dim:,}, n = {b.n:,})")
        ax.set_xlabel("index i")
        ax.set_ylabel("σ_i / σ_1")
        ax.legend(fontsize=7)
    return save_figure(fig, path)
