"""The pipeline's shape: its stages in run order (`STAGE_LIST`) and its config, one TOML table per stage.

`PipelineConfig` is the whole of a run's parameters; RUN/config.toml is its TOML form (`config_toml`), written at
every run. Each stage reads its own section (see `Stage.section` in `stages/base.py`), and its hash depends on
that section only, so changing a parameter re-runs exactly the stages it affects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tomllib

from alphazero_concepts.core.config import DictConfig, Range, check_fields
from alphazero_concepts.core.files import atomic_write_bytes
from alphazero_concepts.filters.funnel import KEPT_RULES
from alphazero_concepts.filters.novelty import NoveltyConfig
from alphazero_concepts.filters.rundir import ORDERS
from alphazero_concepts.filters.teachability import TeachConfig
from alphazero_concepts.search.rollouts import RolloutConfig
from alphazero_concepts.search.roots import RootConfig
from alphazero_concepts.stages import collect, mine, novelty, puzzles, report, rollouts, roots, static, teachability
from alphazero_concepts.stages.base import PipelineError, Stage

PIPELINE_ORDERS = ORDERS


@dataclass(frozen=True)
class RunSettings(DictConfig):
    """Run-level settings every stage depends on."""

    model: str = "teacher"  # checkpoint, series directory, DIR:NAME or bundled series (strongest = teacher)
    weaker: str = ""  # root-selection model; "" = the series' checkpoint before the teacher
    seed: Annotated[int, Range(0)] = 0
    device: str = "cpu"
    threads: Annotated[int, Range(0)] = 0  # torch CPU threads; 0 = leave torch's default

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class RootsStage(DictConfig):
    """`search.roots.RootConfig` (without the seed: `run.seed`)."""

    games: Annotated[int, Range(1)] = 64
    max_plies: Annotated[int, Range(1)] = 100
    skip_plies: Annotated[int, Range(0)] = 4
    sample_plies: Annotated[int, Range(0)] = 12
    temperature: Annotated[float, Range(0)] = 1.0
    max_roots: Annotated[int, Range(1)] = 300

    def __post_init__(self) -> None:
        check_fields(self)

    def root_config(self, seed: int) -> RootConfig:
        """The search's `RootConfig` (the run's seed added)."""
        return RootConfig(games=self.games, max_plies=self.max_plies, skip_plies=self.skip_plies,
                          sample_plies=self.sample_plies, temperature=self.temperature, max_roots=self.max_roots,
                          seed=seed)


@dataclass(frozen=True)
class RolloutsStage(DictConfig):
    """`search.rollouts.RolloutConfig`; `max_branch` < 0 means the default max(0, T − 5)."""

    length: Annotated[int, Range(1)] = 10
    max_branch: Annotated[int, Range(-1)] = -1
    value_gap: Annotated[float, Range(0)] = 0.20
    visit_gap: Annotated[float, Range(0)] = 0.10
    max_subpar: Annotated[int, Range(1)] = 5
    simulations: Annotated[int, Range(1)] = 200

    def __post_init__(self) -> None:
        check_fields(self)

    def rollout_config(self) -> RolloutConfig:
        """The search's `RolloutConfig` (`max_branch` < 0 → None, its default)."""
        return RolloutConfig(length=self.length, max_branch=None if self.max_branch < 0 else self.max_branch,
                             value_gap=self.value_gap, visit_gap=self.visit_gap, max_subpar=self.max_subpar,
                             simulations=self.simulations)


@dataclass(frozen=True)
class CollectStage(DictConfig):
    batch_size: Annotated[int, Range(1)] = 256

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class MineStage(DictConfig):
    layers: tuple[str, ...] = ("block3", "block5")
    player: str = "one"  # "one" (states where the root's side is to move) or "both"

    def __post_init__(self) -> None:
        check_fields(self)  # a bare string is refused, not split into letters
        if not self.layers:
            raise ValueError("mine.layers must name at least one layer")
        if self.player not in ("one", "both"):
            raise ValueError(f"mine.player must be 'one' or 'both', got {self.player!r}")


@dataclass(frozen=True)
class FiltersStage(DictConfig):
    """Filter order and which concepts count as kept.

    order: "teachability-first" (the paper's: novelty scores only the teachable concepts), "novelty-first" (the
    teachability stage scores novelty first and trains students only for the novel concepts: the same kept set,
    since each filter scores a concept on its own, at a fraction of the cost, as novelty is cheap and teaching is
    not) or "independent" (both filters score every solved concept).
    kept_rule: "specific" (the default: teachable and novel as in the paper, and the lift's lower bound above the
    largest random-vector control lift at the concept's layer — teachable beyond what a random direction teaches;
    needs `teachability.random_controls` ≥ 1, 8 by default), "funnel" (teachable and novel: the paper's rule
    alone), "teachable" (ignore novelty), "novel" (ignore teachability: novelty must have scored every solved
    concept, so order "novelty-first" or "independent") or "solved" (every solved concept: a demonstration of the
    later stages, said so in the report).
    """

    order: str = "teachability-first"
    kept_rule: str = "specific"
    human_pgn: str = ""  # "" = the package's bundled master games
    max_prototypes: Annotated[int, Range(1)] = 24  # prototype positions per kept concept written to prototypes.jsonl

    def __post_init__(self) -> None:
        check_fields(self)
        if self.order not in PIPELINE_ORDERS:
            raise ValueError(f"filters.order must be one of {', '.join(PIPELINE_ORDERS)}, got {self.order!r}")
        if self.kept_rule not in KEPT_RULES:
            raise ValueError(f"filters.kept_rule must be one of {', '.join(KEPT_RULES)}, got {self.kept_rule!r}")


@dataclass(frozen=True)
class PuzzlesStage(DictConfig):
    """`puzzles.SolveConfig` + the main `puzzles.PuzzleChecks` thresholds; engine "auto" uses Stockfish if found."""

    simulations: Annotated[int, Range(1)] = 800
    engine: str = "auto"  # "auto", "on" or "off"
    engine_depth: Annotated[int, Range(1)] = 16
    max_cp_loss: Annotated[int, Range(0)] = 150
    # "passing": Stockfish checks only candidates the network's checks pass; "all"
    engine_scope: Literal["passing", "all"] = "passing"
    min_visit_share: Annotated[float, Range(0, 1)] = 0.5
    min_q_gap: Annotated[float, Range(-2, 2)] = 0.05  # Q values lie in [−1, 1]; −2 turns the check off
    min_puzzles_per_concept: Annotated[int, Range(1)] = 4
    human: bool = True  # record human_policy_prob (the probability that a model of human play plays the answer)
    # that model: "" = the Maia ladder (maia-1100 … maia-1900, `engines.locate_maia_dir`) when its weights are
    # found, else `nn.loading.human_model_spec`: the latest checkpoint before the teacher trained on human games
    # only, or the bundled `human` series for a series of machine play only; "maia" = the ladder or an error;
    # else a checkpoint name or model path
    human_model: str = ""
    formats: tuple[str, ...] = ("pgn", "epd", "csv", "json", "html")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.engine not in ("auto", "on", "off"):
            raise ValueError(f"puzzles.engine must be auto, on or off, got {self.engine!r}")


@dataclass(frozen=True)
class ReportStage(DictConfig):
    title: str = "alphazero-concepts run"
    validation_json: str = ""  # `azc validate --json` output; "" = compute a small static-concept check
    static_positions: Annotated[int, Range(1)] = 160
    static_pairs: Annotated[int, Range(1)] = 80
    boards_per_card: Annotated[int, Range(1)] = 4
    max_cards: Annotated[int, Range(0)] = 12

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class PipelineConfig(DictConfig):
    """Every parameter of a run, one TOML file (`[run]`, `[roots]`, `[rollouts]`, … one table per stage)."""

    run: RunSettings = field(default_factory=RunSettings)
    roots: RootsStage = field(default_factory=RootsStage)
    rollouts: RolloutsStage = field(default_factory=RolloutsStage)
    collect: CollectStage = field(default_factory=CollectStage)
    mine: MineStage = field(default_factory=MineStage)
    teachability: TeachConfig = field(default_factory=TeachConfig)
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
    filters: FiltersStage = field(default_factory=FiltersStage)
    puzzles: PuzzlesStage = field(default_factory=PuzzlesStage)
    report: ReportStage = field(default_factory=ReportStage)

    def __post_init__(self) -> None:
        if self.filters.kept_rule == "specific" and self.teachability.random_controls < 1:
            raise ValueError("filters.kept_rule = \"specific\" compares each concept with the random-vector "
                             "controls of its layer: set teachability.random_controls ≥ 1 (several, for a ceiling "
                             "worth the name)")
        if self.filters.kept_rule == "novel" and self.filters.order == "teachability-first":
            raise ValueError("filters.kept_rule = \"novel\" needs novelty scores of every solved concept: set "
                             "filters.order to \"novelty-first\" or \"independent\" (teachability-first scores "
                             "novelty only for the teachable ones)")

    @classmethod
    def from_dict(cls, data: dict) -> PipelineConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown config tables {sorted(unknown)} (known: {', '.join(known)})")
        parts = {}
        for name, f in known.items():
            sub_cls = type(f.default_factory())  # type: ignore[misc]
            table = data.get(name, {})
            if not isinstance(table, dict):
                raise ValueError(f"{name} = {repr(table)[:60]}: expected a table [{name}] of settings")
            try:
                parts[name] = sub_cls.from_dict(dict(table))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"[{name}]: {exc}") from exc
        return cls(**parts)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name).to_dict() for f in dataclasses.fields(self)}

    @classmethod
    def quickstart(cls) -> PipelineConfig:
        """Small defaults: the whole method on the bundled series in a few minutes on 2 CPU cores."""
        return cls(
            roots=RootsStage(games=12, max_plies=60, max_roots=12),
            rollouts=RolloutsStage(length=5, max_subpar=2, simulations=32),
            mine=MineStage(layers=("block3", "block5")),
            teachability=TeachConfig(pool_size=2000, bootstrap=500, random_controls=1, student_seeds=1),
            novelty=NoveltyConfig(positions=500, max_components=512),
            # Both filters score every concept and the funnel shows their verdicts, but at this size (10
            # test prototypes a concept; one student seed, where the default trains three) teachability has no
            # power: the quickstart keeps every solved concept
            # to show the later stages, and the report and summary say so. `configs/teacher-480.toml` is the
            # real run (the paper's rule).
            filters=FiltersStage(order="independent", kept_rule="solved", max_prototypes=24),
            # a short search and 2 puzzles a concept (the default asks 4) so that a few puzzles come out
            puzzles=PuzzlesStage(simulations=160, engine_depth=10, min_puzzles_per_concept=2),
            report=ReportStage(title="azc quickstart", static_positions=160, static_pairs=80),
        )


def _strip_none(obj: Any) -> Any:
    """TOML has no null: None values are left out (they read back as the field's default, which is None)."""
    if isinstance(obj, dict):
        return {k: _strip_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [_strip_none(v) for v in obj]
    return obj


def config_toml(config: PipelineConfig) -> str:
    import tomli_w

    return tomli_w.dumps(_strip_none(config.to_dict()))


def save_config(config: PipelineConfig, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_bytes(path, config_toml(config).encode())
    return path


def load_config(path: str | Path) -> PipelineConfig:
    """Read a TOML config; PipelineError naming the file (and line, for syntax errors) or the bad field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PipelineError(f"{path}: no such config file") from exc
    except IsADirectoryError as exc:
        raise PipelineError(f"{path}: is a directory, not a config file") from exc
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise PipelineError(f"{path}:{line}: not UTF-8 text (TOML files are UTF-8)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PipelineError(f"{path}: not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise PipelineError(f"{path}: not valid TOML: nested too deeply") from exc
    if not data:  # an empty (or comments-only) file is more likely a mistake than "every default"
        raise PipelineError(f"{path}: no settings in the config (an empty file?); `azc quickstart` writes a complete "
                            "example to RUN/config.toml")
    try:
        return PipelineConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"{path}: {exc}") from exc


# The stages in run order: one module each (see base.py), one config table each above.
STAGE_LIST: tuple[Stage, ...] = (roots.STAGE, rollouts.STAGE, collect.STAGE, mine.STAGE, static.STAGE,
                                 teachability.STAGE, novelty.STAGE, puzzles.STAGE, report.STAGE)
