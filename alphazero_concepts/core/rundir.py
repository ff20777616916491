"""`RunDir`: every artifact path of a run directory, and the only module that spells their file names.

    RUN/config.toml                    the whole pipeline config (copied in at every run)
    RUN/roots.jsonl                    roots: positions where the teacher and a weaker checkpoint disagree
    RUN/rollouts.jsonl                 rollouts: chosen and sub-par lines per root (rollouts.partial/ while running)
    RUN/activations/ (+ lines.json)    collect: activations of every rollout state at the mined layers
    RUN/concepts/concepts.jsonl + vectors.npz   mine: the concept set (partial/ holds finished roots while running)
    RUN/teachability.jsonl, teachability_config.json, pool.npz, pool_top1.npz   teachability
    RUN/novelty_basis/, novelty.jsonl, funnel.json, prototypes.jsonl, kept.json    novelty, funnel, kept concepts
    RUN/puzzles/                       puzzles: candidates, checks, puzzles.json, summary.json, export/
    RUN/report.html, static_concepts.json, figures/   the report
    RUN/stages/<stage>.json            done-markers (<stage>.started.json while a stage runs)

Commands that write one artifact anywhere (`azc mine --out DIR`, `azc rollouts --out FILE`) use the same names
through the module constants. A concept directory may also sit at the run's top level or hold one directory per
layer (`concept_dirs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.toml"
ROOTS = "roots.jsonl"
ROLLOUTS = "rollouts.jsonl"
ROLLOUTS_PARTIAL = "rollouts.partial"
ACTIVATIONS = "activations"
LINES = "lines.json"
CONCEPTS_DIR = "concepts"
CONCEPTS = "concepts.jsonl"
VECTORS = "vectors.npz"
PARTIAL = "partial"
TEACHABILITY = "teachability.jsonl"
TEACHABILITY_CONFIG = "teachability_config.json"
POOL = "pool.npz"
POOL_TOP1 = "pool_top1.npz"
NOVELTY_BASIS = "novelty_basis"
NOVELTY = "novelty.jsonl"
FUNNEL = "funnel.json"
PROTOTYPES = "prototypes.jsonl"
KEPT = "kept.json"
FIGURES = "figures"
NOVELTY_SPECTRUM = "novelty_spectrum.png"
FUNNEL_FIGURE = "funnel.png"
CONTROLS_FIGURE = "controls.png"
PUZZLES_DIR = "puzzles"
PUZZLES = "puzzles.json"
PUZZLES_SUMMARY = "summary.json"
PUZZLES_REPORT = "report.json"
PUZZLE_CANDIDATES = "candidates.jsonl"
PUZZLE_ENGINE = "engine.jsonl"
PUZZLE_STATE = "state.json"
PUZZLE_CONFIG = "config.json"
EXPORT = "export"
REPORT = "report.html"
STATIC_CONCEPTS = "static_concepts.json"
STAGES_DIR = "stages"
SHARDS = "shards"
DISTRIBUTED = "distributed.json"


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (nothing is created or read here: stages ask, then read or write)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    def __truediv__(self, rel: str) -> Path:
        return self.root / rel

    # --- stages, in run order
    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def roots(self) -> Path:
        return self.root / ROOTS

    @property
    def rollouts(self) -> Path:
        return self.root / ROLLOUTS

    @property
    def rollouts_partial(self) -> Path:
        return self.root / ROLLOUTS_PARTIAL

    @property
    def activations(self) -> Path:
        return self.root / ACTIVATIONS

    @property
    def lines(self) -> Path:
        return self.activations / LINES

    @property
    def concepts(self) -> Path:
        """The concept set's directory (concepts.jsonl + vectors.npz)."""
        return self.root / CONCEPTS_DIR

    def concept_kind(self, kind: str) -> Path:
        """RUN/concepts/<kind>/: the concept set of another concept kind (read with the mined ones)."""
        return self.concepts / kind

    @property
    def mine_partial(self) -> Path:
        return self.concepts / PARTIAL

    @property
    def teachability(self) -> Path:
        return self.root / TEACHABILITY

    @property
    def teachability_config(self) -> Path:
        return self.root / TEACHABILITY_CONFIG

    @property
    def pool(self) -> Path:
        return self.root / POOL

    @property
    def pool_top1(self) -> Path:
        return self.root / POOL_TOP1

    @property
    def novelty_basis(self) -> Path:
        return self.root / NOVELTY_BASIS

    @property
    def novelty(self) -> Path:
        return self.root / NOVELTY

    @property
    def funnel(self) -> Path:
        return self.root / FUNNEL

    @property
    def prototypes(self) -> Path:
        return self.root / PROTOTYPES

    @property
    def kept(self) -> Path:
        return self.root / KEPT

    @property
    def figures(self) -> Path:
        return self.root / FIGURES

    def figure(self, name: str) -> Path:
        """RUN/figures/<name> (the named figures: NOVELTY_SPECTRUM, FUNNEL_FIGURE, CONTROLS_FIGURE)."""
        return self.figures / name

    @property
    def puzzles(self) -> Path:
        """The puzzle stage's directory (see `PuzzleDir` for its files)."""
        return self.root / PUZZLES_DIR

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def static_concepts(self) -> Path:
        return self.root / STATIC_CONCEPTS

    # --- run state
    @property
    def stages(self) -> Path:
        return self.root / STAGES_DIR

    def marker(self, stage: str, *, started: bool = False) -> Path:
        """RUN/stages/<stage>.json (done) or <stage>.started.json (running, with the stage's hash)."""
        return self.stages / f"{stage}{'.started' if started else ''}.json"

    def concept_dirs(self) -> list[Path]:
        """Directories holding a concepts.jsonl: RUN itself, RUN/concepts, RUN/concepts/<layer>/ (in that order)."""
        out = []
        for jsonl in [self.root / CONCEPTS, self.concepts / CONCEPTS, *sorted(self.concepts.glob(f"*/{CONCEPTS}"))]:
            if jsonl.is_file():
                out.append(jsonl.parent)
        return out


@dataclass(frozen=True)
class PuzzleDir:
    """The files of the puzzle stage's directory (RUN/puzzles/, or any --out of `azc puzzles build`)."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / PUZZLE_STATE

    @property
    def candidates(self) -> Path:
        return self.root / PUZZLE_CANDIDATES

    @property
    def engine(self) -> Path:
        return self.root / PUZZLE_ENGINE

    @property
    def config(self) -> Path:
        return self.root / PUZZLE_CONFIG

    @property
    def puzzles(self) -> Path:
        return self.root / PUZZLES

    @property
    def report(self) -> Path:
        return self.root / PUZZLES_REPORT

    @property
    def summary(self) -> Path:
        return self.root / PUZZLES_SUMMARY

    @property
    def export(self) -> Path:
        return self.root / EXPORT
