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


class _At:
    """A path inside the directory object it is read from: `RunDir(run).roots` is RUN/roots.jsonl."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, obj: _Dir | None, owner: type | None = None) -> Path:
        if obj is None:
            raise AttributeError("a path of a directory instance")
        return obj.root.joinpath(*self.parts)


@dataclass(frozen=True)
class _Dir:
    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    def __truediv__(self, rel: str) -> Path:
        return self.root / rel


class RunDir(_Dir):
    """The paths of one run directory (nothing is created or read here: stages ask, then read or write)."""

    config = _At(CONFIG)
    roots = _At(ROOTS)
    rollouts = _At(ROLLOUTS)
    rollouts_partial = _At(ROLLOUTS_PARTIAL)
    activations = _At(ACTIVATIONS)
    lines = _At(ACTIVATIONS, LINES)
    concepts = _At(CONCEPTS_DIR)  # the concept set's directory (concepts.jsonl + vectors.npz)
    mine_partial = _At(CONCEPTS_DIR, PARTIAL)
    teachability = _At(TEACHABILITY)
    teachability_config = _At(TEACHABILITY_CONFIG)
    pool = _At(POOL)
    pool_top1 = _At(POOL_TOP1)
    novelty_basis = _At(NOVELTY_BASIS)
    novelty = _At(NOVELTY)
    funnel = _At(FUNNEL)
    prototypes = _At(PROTOTYPES)
    kept = _At(KEPT)
    figures = _At(FIGURES)
    puzzles = _At(PUZZLES_DIR)  # the puzzle stage's directory (its files: `PuzzleDir`)
    report = _At(REPORT)
    static_concepts = _At(STATIC_CONCEPTS)
    stages = _At(STAGES_DIR)

    def figure(self, name: str) -> Path:
        """RUN/figures/<name> (the named figures: NOVELTY_SPECTRUM, FUNNEL_FIGURE, CONTROLS_FIGURE)."""
        return self.figures / name

    def concept_kind(self, kind: str) -> Path:
        """RUN/concepts/<kind>/: the concept set of another concept kind (read with the mined ones)."""
        return self.concepts / kind

    def marker(self, stage: str, *, started: bool = False) -> Path:
        """RUN/stages/<stage>.json (done) or <stage>.started.json (running, with the stage's hash)."""
        return self.stages / f"{stage}{'.started' if started else ''}.json"

    def concept_dirs(self) -> list[Path]:
        """Directories holding a concepts.jsonl: RUN itself, RUN/concepts, RUN/concepts/<kind or layer>/ (in order)."""
        out = []
        for jsonl in [self.root / CONCEPTS, self.concepts / CONCEPTS, *sorted(self.concepts.glob(f"*/{CONCEPTS}"))]:
            if jsonl.is_file():
                out.append(jsonl.parent)
        return out


class PuzzleDir(_Dir):
    """The files of the puzzle stage's directory (RUN/puzzles/, or any --out of `azc puzzles build`)."""

    state = _At(PUZZLE_STATE)
    candidates = _At(PUZZLE_CANDIDATES)
    engine = _At(PUZZLE_ENGINE)
    config = _At(PUZZLE_CONFIG)
    puzzles = _At(PUZZLES)
    report = _At(PUZZLES_REPORT)
    summary = _At(PUZZLES_SUMMARY)
    export = _At(EXPORT)
