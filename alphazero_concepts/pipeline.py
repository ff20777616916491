"""The end-to-end pipeline over one run directory, resumable stage by stage (DESIGN.md "Data flows one way").

    roots → rollouts → collect → mine → teachability → novelty → puzzles → report

Every stage reads the artifacts of the stages before it from the run directory and writes its own:

    RUN/config.toml                  the whole `PipelineConfig` (copied in at every run)
    RUN/roots.jsonl                  roots: positions where the teacher and a weaker checkpoint disagree
    RUN/rollouts.jsonl               rollouts: chosen and sub-par lines per root (rollouts.partial/ while running)
    RUN/activations/                 collect: activations of every rollout state at the mined layers (+ lines.json)
    RUN/concepts/                    mine: concepts.jsonl + vectors.npz (partial/ holds finished roots while running)
    RUN/teachability.jsonl, pool.npz teachability (filters package)
    RUN/novelty_basis/, novelty.jsonl, funnel.json, prototypes.jsonl, kept.json   novelty + funnel + kept concepts
    RUN/puzzles/                     puzzles: puzzles.json + report.json (puzzles package) and the exports
    RUN/report.html, RUN/figures/    report (`alphazero_concepts.report`)
    RUN/stages/<stage>.json          done-marker: the stage's hash, its config hash, its dependencies' hashes

A stage's hash is the sha256 of its own config section, the run-level settings (model, seed) with the teacher's
file hash, and the hashes of the stages it reads: change a parameter and that stage and everything downstream
re-run; the stages before it are skipped. `from_stage` forces a stage and all later ones. A stage writes
`RUN/stages/<stage>.started.json` with its hash before it starts; a killed stage found with the same hash is
resumed (rollouts resume by chunk of roots, activations by batch, mining by root, the filters by concept, the
puzzle search by chunk); otherwise its artifacts are removed first. Every artifact is written atomically or
appended record by record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import tomllib

from alphazero_concepts.config_check import Range, check_fields
from alphazero_concepts.filters.novelty import NoveltyConfig
from alphazero_concepts.filters.teachability import TeachConfig
from alphazero_concepts.nn.checkpoints import atomic_write_bytes
from alphazero_concepts.nn.network import DictConfig

STAGES = ("roots", "rollouts", "collect", "mine", "teachability", "novelty", "puzzles", "report")
DEPENDS: dict[str, tuple[str, ...]] = {
    "roots": (), "rollouts": ("roots",), "collect": ("rollouts",), "mine": ("rollouts",),
    "teachability": ("mine",), "novelty": ("teachability",), "puzzles": ("novelty",),
    "report": ("collect", "novelty", "puzzles"),
}
ARTIFACTS: dict[str, tuple[str, ...]] = {
    "roots": ("roots.jsonl",),
    "rollouts": ("rollouts.jsonl", "rollouts.partial"),
    "collect": ("activations",),
    "mine": ("concepts",),
    "teachability": ("teachability.jsonl", "teachability_config.json", "pool.npz", "pool_top1.npz"),
    "novelty": ("novelty_basis", "novelty.jsonl", "funnel.json", "prototypes.jsonl", "kept.json",
                "figures/novelty_spectrum.png", "figures/funnel.png", "figures/controls.png"),
    "puzzles": ("puzzles",),
    "report": ("report.html", "static_concepts.json"),
}
NOVELTY_SCORES = ("novelty_basis", "novelty.jsonl", "figures/novelty_spectrum.png")
KEPT_RULES = ("funnel", "specific", "teachable", "solved")
PIPELINE_ORDERS = ("teachability-first", "novelty-first", "independent")
ROLLOUT_CHUNK = 8  # roots searched together, saved together (the unit of resuming) in RUN/rollouts.partial/

Progress = Callable[[str, int, int | None], None]
Log = Callable[[str], None]


class PipelineError(ValueError):
    """A run that cannot go on (bad config, missing input); the message names the file or field."""


# --------------------------------------------------------------------------------------------------------------
# Configuration


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
    alone), "teachable" (ignore novelty) or "solved" (every solved concept: a demonstration of the later stages,
    said so in the report).
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
    # found, else the latest checkpoint before the teacher trained on human games only (stage "supervised"; the
    # earliest earlier one when none is); "maia" = the ladder or an error; else a checkpoint name or model path
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
            # to show the later stages, and the report and summary say so. `configs/bundled-300.toml` is the
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


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_config(config: PipelineConfig, stage: str) -> dict:
    """The part of the config a stage's result depends on (its hash input besides the upstream hashes)."""
    run = {"model": config.run.model, "seed": config.run.seed}
    parts = {
        "roots": {"run": {**run, "weaker": config.run.weaker}, "roots": config.roots.to_dict()},
        "rollouts": {"run": run, "rollouts": config.rollouts.to_dict()},
        "collect": {"run": run, "layers": list(config.mine.layers)},
        "mine": {"run": run, "mine": config.mine.to_dict()},
        "teachability": {"run": run, "teachability": config.teachability.to_dict(), "order": config.filters.order,
                         # novelty-first: the teachability stage scores novelty first (only novel concepts are taught)
                         **({"novelty": config.novelty.to_dict(), "human_pgn": config.filters.human_pgn}
                            if config.filters.order == "novelty-first" else {})},
        "novelty": {"run": run, "novelty": config.novelty.to_dict(), "filters": config.filters.to_dict()},
        "puzzles": {"run": run, "puzzles": config.puzzles.to_dict()},
        "report": {"report": config.report.to_dict()},
    }
    return parts[stage]


def stage_hashes(config: PipelineConfig, model_id: str = "") -> dict[str, dict]:
    """{stage: {"hash", "config_hash", "deps": {stage: hash}}}: the hash chain of the whole run."""
    out: dict[str, dict] = {}
    for stage in STAGES:
        config_hash = _hash({"stage": stage, "config": stage_config(config, stage), "model_id": model_id})
        deps = {d: out[d]["hash"] for d in DEPENDS[stage]}
        out[stage] = {"hash": _hash({"config": config_hash, "deps": deps}), "config_hash": config_hash,
                      "deps": deps}
    return out


# --------------------------------------------------------------------------------------------------------------
# Run state


@dataclass
class StageResult:
    stage: str
    status: str  # "done", "skipped" (finished before with the same hash)
    seconds: float
    summary: dict


def _marker(run: Path, stage: str, started: bool = False) -> Path:
    return run / "stages" / f"{stage}{'.started' if started else ''}.json"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def stage_status(run: str | Path, config: PipelineConfig, model_id: str) -> dict[str, str]:
    """Per stage: "done" (finished with the current hash), "stale" (finished with another), "partial", "todo"."""
    run = Path(run)
    hashes = stage_hashes(config, model_id)
    out = {}
    for stage in STAGES:
        done = _read_json(_marker(run, stage))
        started = _read_json(_marker(run, stage, started=True))
        if done and done.get("hash") == hashes[stage]["hash"]:
            out[stage] = "done"
        elif started and started.get("hash") == hashes[stage]["hash"]:
            out[stage] = "partial"
        elif done:
            out[stage] = "stale"
        else:
            out[stage] = "todo"
    return out


def stage_artifacts(stage: str, order: str) -> tuple[str, ...]:
    """What a (re)run of `stage` clears first, under the filter `order`.

    Under "novelty-first" the teachability stage scores novelty itself (it trains students only for novel
    concepts), so it clears everything downstream of those scores, and the novelty stage keeps them.
    """
    if order == "novelty-first" and stage == "teachability":
        return (*ARTIFACTS["teachability"], *ARTIFACTS["novelty"])
    if order == "novelty-first" and stage == "novelty":
        return tuple(a for a in ARTIFACTS["novelty"] if a not in NOVELTY_SCORES)
    return ARTIFACTS[stage]


def _clear(run: Path, stage: str, config: PipelineConfig) -> None:
    for rel in stage_artifacts(stage, config.filters.order):
        path = run / rel
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


class Context:
    """What the stages share: the run directory, the config, lazily loaded networks, progress and log."""

    def __init__(self, run: Path, config: PipelineConfig, progress: Progress, log: Log) -> None:
        self.run = run
        self.config = config
        self.progress = progress
        self.log = log
        self._teacher: tuple | None = None

    @property
    def teacher(self):
        if self._teacher is None:
            from alphazero_concepts.nn.loading import load_network
            from alphazero_concepts.nn.network import resolve_device

            self._teacher = load_network(self.config.run.model, resolve_device(self.config.run.device))
        return self._teacher

    @property
    def net(self):
        return self.teacher[0]

    @property
    def meta(self):
        return self.teacher[1]

    @property
    def model_id(self) -> str:
        return str((self.meta.extra or {}).get("sha256") or self.meta.name)

    def series(self):
        """The teacher's series (students and the root-selection model come from it); None for a single file."""
        from alphazero_concepts.nn.checkpoints import CheckpointError
        from alphazero_concepts.nn.loading import resolve_series

        spec = self.config.run.model
        if ":" in spec and not Path(spec).exists():
            spec = spec.rsplit(":", 1)[0]
        elif Path(spec).is_file():
            return None
        try:
            return resolve_series(spec)
        except CheckpointError:
            return None

    def earlier_checkpoints(self) -> list[str]:
        series = self.series()
        if series is None:
            return []
        names = series.names
        return names[: names.index(self.meta.name)] if self.meta.name in names else []


def run_pipeline(config: PipelineConfig, run: str | Path, *, from_stage: str | None = None,
                 until: str | None = None, progress: Progress | None = None, log: Log = print
                 ) -> list[StageResult]:
    """Run every stage not yet done with the current config (see the module notes); returns what each did."""
    import torch

    if from_stage is not None and from_stage not in STAGES:
        raise PipelineError(f"unknown stage {from_stage!r}; stages: {', '.join(STAGES)}")
    if until is not None and until not in STAGES:
        raise PipelineError(f"unknown stage {until!r}; stages: {', '.join(STAGES)}")
    run = Path(run)
    if run.exists() and not run.is_dir():
        raise PipelineError(f"{run}: exists and is not a directory (the run directory)")
    _check_input_files(config)
    if config.run.threads > 0:
        torch.set_num_threads(config.run.threads)
    ctx = Context(run, config, progress or (lambda stage, done, total: None), log)
    hashes = stage_hashes(config, ctx.model_id)  # loads the teacher: a bad run.model fails before anything is written
    run.mkdir(parents=True, exist_ok=True)
    (run / "stages").mkdir(exist_ok=True)
    save_config(config, run / "config.toml")
    forced = set(STAGES[STAGES.index(from_stage):]) if from_stage else set()
    last = STAGES.index(until) if until else len(STAGES) - 1
    results: list[StageResult] = []
    for stage in STAGES[: last + 1]:
        h = hashes[stage]
        done = _read_json(_marker(run, stage))
        if stage not in forced and done and done.get("hash") == h["hash"]:
            results.append(StageResult(stage, "skipped", 0.0, done.get("summary", {})))
            ctx.progress(stage, 1, 1)
            continue
        started = _read_json(_marker(run, stage, started=True))
        resume = stage not in forced and started is not None and started.get("hash") == h["hash"]
        _marker(run, stage).unlink(missing_ok=True)
        if not resume:
            _clear(run, stage, config)
            _write_json(_marker(run, stage, started=True), {"stage": stage, **h, "started": time.time()})
        else:
            log(f"{stage}: resuming a stage that was stopped")
        t0 = time.perf_counter()
        try:
            summary = STAGE_FUNCS[stage](ctx)
        except (ValueError, OSError):
            # A stage that failed on its input (InputError, PipelineError, StageError, CheckpointError, an
            # unreadable file …) is not progress: without its marker the next run clears its artifacts and starts
            # it afresh, so nothing computed from the bad input is reused. A killed or interrupted stage keeps the
            # marker and resumes.
            _marker(run, stage, started=True).unlink(missing_ok=True)
            raise
        seconds = time.perf_counter() - t0
        _write_json(_marker(run, stage), {"stage": stage, **h, "finished": time.time(), "seconds": seconds,
                                          "summary": summary})
        _marker(run, stage, started=True).unlink(missing_ok=True)
        results.append(StageResult(stage, "done", seconds, summary))
    return results


def _check_input_files(config: PipelineConfig) -> None:
    """The files the config names exist (checked before any stage runs, not hours later at the stage)."""
    for key, value in (("filters.human_pgn", config.filters.human_pgn),
                       ("report.validation_json", config.report.validation_json)):
        if value and not Path(value).is_file():
            what = "is a directory" if Path(value).is_dir() else "no such file"
            raise PipelineError(f"{key} = {value!r}: {what}")


# --------------------------------------------------------------------------------------------------------------
# Stages


def _write_jsonl(path: Path, records: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in records).encode())


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _rollout_items(run: Path) -> list:
    from alphazero_concepts.search.rollouts import Rollout

    return [Rollout.from_dict(d) for d in _read_jsonl(run / "rollouts.jsonl")]


def _stage_roots(ctx: Context) -> dict:
    from alphazero_concepts.nn.loading import load_network
    from alphazero_concepts.search.roots import RootConfig, find_roots

    cfg = ctx.config
    weaker = cfg.run.weaker
    if not weaker:
        earlier = ctx.earlier_checkpoints()
        series = ctx.series()
        if not earlier or series is None:
            raise PipelineError(f"run.model = {cfg.run.model!r}: no earlier checkpoint to select roots with; "
                                "set run.weaker in the config")
        weaker = f"{series.directory}:{earlier[-1]}"
    weak_net, weak_meta = load_network(weaker, ctx.net.device)
    rc = cfg.roots
    ctx.progress("roots", 0, 1)
    found = find_roots(ctx.net, weak_net, RootConfig(games=rc.games, max_plies=rc.max_plies,
                                                     skip_plies=rc.skip_plies, sample_plies=rc.sample_plies,
                                                     temperature=rc.temperature, max_roots=rc.max_roots,
                                                     seed=cfg.run.seed))
    if not found:  # nothing for the later stages: fail rather than run them on an empty file
        raise PipelineError(f"roots: {ctx.meta.name} and {weak_meta.name} chose the same move in every position of "
                            f"{rc.games} games; no roots (raise roots.games or pick another run.weaker)")
    _write_jsonl(ctx.run / "roots.jsonl", [{**r.to_dict(), "teacher": ctx.meta.name, "weaker": weak_meta.name}
                                           for r in found])
    ctx.progress("roots", 1, 1)
    return {"roots": len(found), "games": rc.games, "teacher": ctx.meta.name, "weaker": weak_meta.name}


def _stage_rollouts(ctx: Context) -> dict:
    from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator
    from alphazero_concepts.search.rollouts import Rollout, RolloutConfig, rollouts
    from alphazero_concepts.search.roots import Root

    rc = ctx.config.rollouts
    found = [Root.from_dict({k: v for k, v in d.items() if k not in ("teacher", "weaker")})
             for d in _read_jsonl(ctx.run / "roots.jsonl")]
    config = RolloutConfig(length=rc.length, max_branch=None if rc.max_branch < 0 else rc.max_branch,
                           value_gap=rc.value_gap, visit_gap=rc.visit_gap, max_subpar=rc.max_subpar,
                           simulations=rc.simulations)
    partial = ctx.run / "rollouts.partial"
    partial.mkdir(exist_ok=True)
    out: list[Rollout] = []
    ctx.progress("rollouts", 0, len(found))
    for lo in range(0, len(found), ROLLOUT_CHUNK):
        path = partial / f"roots{lo:06d}.jsonl"
        if not path.is_file():  # each chunk has its own seed: a resumed run equals an uninterrupted one
            mcts = MCTS(NetEvaluator(ctx.net), MCTSConfig(simulations=rc.simulations),
                        rng=np.random.default_rng([ctx.config.run.seed, lo]))
            part = rollouts(mcts, [r.board() for r in found[lo:lo + ROLLOUT_CHUNK]], config)
            for k, item in enumerate(part):
                item.root_index = lo + k
            _write_jsonl(path, [r.to_dict() for r in part])
        out.extend(Rollout.from_dict(d) for d in _read_jsonl(path))
        ctx.progress("rollouts", len(out), len(found))
    _write_jsonl(ctx.run / "rollouts.jsonl", [r.to_dict() for r in out])
    shutil.rmtree(partial)
    return {"roots": len(out), "subpar_lines": sum(len(r.subpar) for r in out),
            "roots_without_subpar": sum(not r.subpar for r in out)}


def _stage_collect(ctx: Context) -> dict:
    """Activations of every rollout state at the mined layers; lines.json maps each line to its store rows."""
    from alphazero_concepts.concepts.activations import collect

    items = _rollout_items(ctx.run)
    boards, lines = [], []
    for r in items:
        entry = {"root": r.root_index, "chosen": [], "subpar": []}
        for j, line in enumerate([r.chosen, *r.subpar]):
            bs = r.boards(line)
            rows = list(range(len(boards), len(boards) + len(bs)))
            boards.extend(bs)
            if j == 0:
                entry["chosen"] = rows
            else:
                entry["subpar"].append({"rows": rows, "branch": line.branch})
        lines.append(entry)
    out = ctx.run / "activations"
    layers = list(ctx.config.mine.layers)
    _check_layers(ctx, layers)
    store = collect(ctx.net, boards, layers, out, batch_size=ctx.config.collect.batch_size, model_id=ctx.model_id,
                    progress=lambda d, t: ctx.progress("collect", d, t))
    _write_json(out / "lines.json", {"layers": layers, "roots": lines})
    return {"positions": store.n, "layers": layers}


def _check_layers(ctx: Context, layers: list[str]) -> None:
    unknown = [x for x in layers if x not in ctx.net.layer_names]
    if unknown:
        raise PipelineError(f"mine.layers: unknown layers {unknown}; the network has: "
                            f"{', '.join(ctx.net.layer_names)}")


def _stage_mine(ctx: Context) -> dict:
    """One dynamic concept per root and layer (`concepts.mining.mine_rollout`); resumable per root."""
    from alphazero_concepts.concepts.mining import mine_rollout

    items = _rollout_items(ctx.run)
    layers = list(ctx.config.mine.layers)
    _check_layers(ctx, layers)
    out = ctx.run / "concepts"
    partial = out / "partial"
    partial.mkdir(parents=True, exist_ok=True)
    sha = (ctx.meta.extra or {}).get("sha256")
    ctx.progress("mine", 0, len(items))
    for done, r in enumerate(items, 1):
        stem = partial / f"root{r.root_index:05d}"
        if not stem.with_suffix(".json").is_file():
            records, vectors = [], {}
            for layer in layers:
                rec, vec = mine_rollout(ctx.net, r, layer, player=ctx.config.mine.player, model=ctx.meta.name,
                                        model_sha256=sha)
                records.append(rec)
                if vec is not None:
                    vectors[rec["id"]] = vec
            import io

            buf = io.BytesIO()
            np.savez(buf, **vectors)
            atomic_write_bytes(stem.with_suffix(".npz"), buf.getvalue())
            _write_json(stem.with_suffix(".json"), records)  # written last: its presence marks the root done
        ctx.progress("mine", done, len(items))
    records, vectors = [], {}
    for r in items:
        stem = partial / f"root{r.root_index:05d}"
        records.extend(json.loads(stem.with_suffix(".json").read_text()))
        with np.load(stem.with_suffix(".npz")) as data:
            vectors.update({k: np.asarray(data[k], dtype=np.float32) for k in data.files})
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **vectors)
    atomic_write_bytes(out / "vectors.npz", buf.getvalue())
    _write_jsonl(out / "concepts.jsonl", records)
    return {"roots": len(items), "mined": len(records), "solved": len(vectors), "layers": layers}


def _students(ctx: Context):
    from alphazero_concepts.filters.stages import series_students

    series = ctx.series()
    return [] if series is None else series_students(series, ctx.meta, str(ctx.net.device))


def _stage_teachability(ctx: Context) -> dict:
    from alphazero_concepts.filters.samples import SelfPlayConfig
    from alphazero_concepts.filters.stages import obtain_pool, teachability_stage

    tc = ctx.config.teachability
    students = _students(ctx)
    if not students:
        ctx.log("teachability: the series has no checkpoint before the teacher; every concept is 'already known'")
    selfplay = SelfPlayConfig(positions=tc.pool_size, seed=tc.seed)
    # the pool is made here even when no concept needs teaching: the novelty stage's machine sample is the pool
    obtain_pool(ctx.run, ctx.net, size=tc.pool_size, selfplay=selfplay, seed=tc.seed, log=ctx.log,
                progress=lambda d, t: ctx.progress("teachability", d, t))
    if ctx.config.filters.order == "novelty-first":  # only the novel concepts are taught: score novelty now
        _novelty_scores(ctx)
    summary = teachability_stage(ctx.run, ctx.net, students, tc, teacher_meta=ctx.meta, selfplay=selfplay,
                                 order=ctx.config.filters.order, log=ctx.log,
                                 progress=lambda d, t: ctx.progress("teachability", d, t))
    if not summary.get("scored_now"):
        ctx.progress("teachability", 1, 1)
    (ctx.run / "teachability.jsonl").touch()  # exists even when nothing was scored (the novelty stage reads it)
    return {**summary, "students": [name for name, _ in students]}


def _novelty_scores(ctx: Context) -> dict:
    """Human/machine bases at the mined layers (built once, then reused) and the novelty scores of the concepts."""
    from alphazero_concepts.filters.rundir import BASIS_DIR, FIGURES, POOL
    from alphazero_concepts.filters.samples import PositionSample, bundled_human_games, load_sample
    from alphazero_concepts.filters.stages import novelty_basis_stage, novelty_stage

    cfg = ctx.config
    nc = cfg.novelty
    layers = list(cfg.mine.layers)
    human_path = Path(cfg.filters.human_pgn) if cfg.filters.human_pgn else bundled_human_games()
    human = load_sample(human_path, nc.positions, min_ply=nc.human_min_ply, seed=nc.seed, max_games=nc.max_games)
    machine = PositionSample.load(ctx.run / POOL)
    if len(machine) > nc.positions:
        rng = np.random.default_rng(nc.seed)
        machine = machine.subset(np.sort(rng.choice(len(machine), nc.positions, replace=False)))
    ctx.progress("novelty", 1, 4)
    novelty_basis_stage(ctx.net, human, machine, layers, ctx.run / BASIS_DIR, nc, model_id=ctx.model_id,
                        figure=ctx.run / FIGURES / "novelty_spectrum.png", log=ctx.log)
    ctx.progress("novelty", 2, 4)
    return novelty_stage(ctx.run, order=cfg.filters.order, log=ctx.log)


def _stage_novelty(ctx: Context) -> dict:
    """Novelty scores (see `_novelty_scores`), the funnel, and the kept concepts' prototypes."""
    from alphazero_concepts.filters.stages import funnel_stage

    cfg = ctx.config
    ctx.progress("novelty", 0, 4)
    summary = _novelty_scores(ctx)
    funnel = funnel_stage(ctx.run, order=cfg.filters.order)
    ctx.progress("novelty", 3, 4)
    kept = write_prototypes(ctx)
    ctx.progress("novelty", 4, 4)
    return {**summary, "funnel_total": funnel["total"], "kept": len(kept), "kept_rule": cfg.filters.kept_rule}


def kept_concepts(run: str | Path, kept_rule: str = "funnel") -> list[str]:
    """Ids of the kept concepts under `kept_rule` (see `FiltersStage`), in concept order."""
    from alphazero_concepts.filters.funnel import beats_controls, control_ceilings
    from alphazero_concepts.filters.rundir import NOVELTY, TEACHABILITY, load_concepts, read_results

    if kept_rule not in KEPT_RULES:
        raise PipelineError(f"kept rule must be one of {', '.join(KEPT_RULES)}, got {kept_rule!r}")
    run = Path(run)
    teach = read_results(run / TEACHABILITY)
    nov = read_results(run / NOVELTY)
    ceilings = control_ceilings(teach)
    out = []
    for c in load_concepts(run):
        if not c.solved:
            continue
        teachable = bool(teach.get(c.id, {}).get("kept"))
        funnel = teachable and bool(nov.get(c.id, {}).get("novel"))
        passes = {"solved": True, "teachable": teachable, "funnel": funnel,
                  "specific": funnel and beats_controls(teach.get(c.id), ceilings)}
        if passes[kept_rule]:
            out.append(c.id)
    return out


def write_prototypes(ctx: Context) -> list[str]:
    """RUN/prototypes.jsonl for the puzzle stage: each kept concept's prototypes, read back from the rows the
    teachability stage saved (`teachability.jsonl`: `prototype_rows`, `prototype_scores`, `train_rows`,
    `test_rows`), never re-picked: "train" are the positions the student was taught, "test" those it was tested
    on; prototypes that were neither (dropped from a test set shared with the random baseline) are left out.
    A kept concept that was not taught (kept rule "solved") has its saved prototypes split as teaching would have
    split them, and says so (`split_source`).
    """
    from alphazero_concepts.filters.rundir import NOVELTY, POOL, TEACHABILITY, load_concepts, read_results
    from alphazero_concepts.filters.samples import PositionSample
    from alphazero_concepts.filters.teachability import concept_seed, split_rows

    run = ctx.run
    kept = kept_concepts(run, ctx.config.filters.kept_rule)
    teach = read_results(run / TEACHABILITY)
    nov = read_results(run / NOVELTY)
    records = []
    if kept:
        concepts = {c.id: c for c in load_concepts(run)}
        sample = PositionSample.load(run / POOL)
        tc = ctx.config.teachability
        for cid in kept:
            t = teach.get(cid)
            if t is None or not t.get("prototype_rows"):
                ctx.log(f"{cid}: kept but has no saved prototypes (not scored by teachability): no puzzles")
                continue
            if "prototype_scores" not in t or "train_rows" not in t:
                raise PipelineError(f"{run / TEACHABILITY}: {cid} was scored by an older version that did not "
                                    "save its prototype rows; re-run with --from teachability")
            score = dict(zip(t["prototype_rows"], t["prototype_scores"], strict=True))
            if t.get("status") == "ok":
                split = {int(r): "train" for r in t["train_rows"]} | {int(r): "test" for r in t["test_rows"]}
                source = "taught"
            else:
                train, test = split_rows(np.asarray(t["prototype_rows"]), tc.test_fraction,
                                         concept_seed(tc.seed, cid))
                split = {int(r): "train" for r in train} | {int(r): "test" for r in test}
                source = "untaught"
            rows = sorted(split, key=lambda r: -float(score[r]))[: ctx.config.filters.max_prototypes]
            positions = []
            for r in rows:
                b = sample.board(r)
                positions.append({"fen": b.fen(), "split": split[r], "start_fen": b.root().fen(),
                                  "moves": [m.uci() for m in b.move_stack], "score": float(score[r]), "row": r})
            n = nov.get(cid, {})
            records.append({"concept": cid, "label": cid, "layer": concepts[cid].layer, "kept": True,
                            "novelty": _finite(n.get("min_score")), "teachability": _finite(t.get("lift")),
                            "teachability_ci": [_finite(x) for x in t.get("ci") or []] or None,
                            "root": concepts[cid].record.get("root"), "split_source": source,
                            "nonzeros": concepts[cid].nonzeros, "dim": int(concepts[cid].vector.size),
                            "kept_rule": ctx.config.filters.kept_rule, "positions": positions})
    _write_jsonl(run / "prototypes.jsonl", records)
    _write_json(run / "kept.json", {"kept_rule": ctx.config.filters.kept_rule, "concepts": kept})
    return kept


def _finite(x: object) -> float | None:
    """A score for JSON: NaN (a concept whose filter did not run, e.g. "already known") becomes null."""
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _stage_puzzles(ctx: Context) -> dict:
    from alphazero_concepts.puzzles.build import build_run
    from alphazero_concepts.puzzles.candidates import SolveConfig
    from alphazero_concepts.puzzles.checks import PuzzleChecks
    from alphazero_concepts.puzzles.engine import EngineUnavailable, find_stockfish
    from alphazero_concepts.puzzles.export import export

    pc = ctx.config.puzzles
    out = ctx.run / "puzzles"
    out.mkdir(parents=True, exist_ok=True)
    if not _read_jsonl(ctx.run / "prototypes.jsonl"):
        summary = {"puzzles": 0, "concepts_in": 0, "note": "no kept concept: no puzzles to build"}
        _write_json(out / "summary.json", summary)
        ctx.progress("puzzles", 1, 1)
        return summary
    engine = pc.engine == "on"
    if pc.engine == "auto":
        try:
            find_stockfish(None)
            engine = True
        except EngineUnavailable:
            ctx.log("puzzles: Stockfish not found, engine cross-check skipped (engine_disagrees = null)")
    checks = PuzzleChecks(engine=engine, engine_depth=pc.engine_depth, max_cp_loss=pc.max_cp_loss,
                          engine_scope=pc.engine_scope,
                          min_visit_share=pc.min_visit_share, min_q_gap=pc.min_q_gap,
                          min_puzzles_per_concept=pc.min_puzzles_per_concept)
    human = human_id = None
    earlier = ctx.earlier_checkpoints()
    series = ctx.series()
    from alphazero_concepts.puzzles.human import load_maia_ladder

    ladder = load_maia_ladder(ctx.net.device) if pc.human and pc.human_model in ("", "maia") else {}
    if pc.human_model == "maia" and not ladder:
        raise PipelineError("puzzles.human_model = \"maia\": no Maia weights found (set AZC_MAIA_DIR)")
    if ladder:
        human, human_id = ladder, "maia ladder: " + ", ".join(ladder)
    elif pc.human and pc.human_model:
        from alphazero_concepts.nn.loading import load_network

        human, human_meta = load_network(pc.human_model if series is None or pc.human_model not in series.names
                                         else f"{series.directory}:{pc.human_model}", ctx.net.device)
        human_id = human_meta.name
    elif pc.human and earlier and series is not None:
        human, human_meta = series.load(series.human_model(ctx.meta.name), ctx.net.device)
        human_id = human_meta.name
    result = build_run(ctx.run, ctx.net, teacher_id=ctx.model_id, checks=checks,
                       solve_config=SolveConfig(simulations=pc.simulations, chunk_size=32), human=human,
                       human_id=human_id, name=f"{ctx.config.report.title} puzzles",
                       model={"teacher_name": ctx.meta.name, "seed": ctx.config.run.seed},
                       progress=lambda stage, d, t: ctx.progress("puzzles", d, t))
    written = {}
    if result.book is not None:
        written = {k: str(v) for k, v in export(result.book, out / "export", pc.formats).items()}
    summary = {**{k: v for k, v in result.report.to_dict().items() if k not in ("rejected", "left_out")},
               "engine": engine, "files": written}
    _write_json(out / "summary.json", summary)
    return summary


def _stage_report(ctx: Context) -> dict:
    from alphazero_concepts.report import write_report

    ctx.progress("report", 0, 1)
    path = write_report(ctx.run, ctx.config, ctx.net, ctx.meta, series=ctx.series(), log=ctx.log)
    ctx.progress("report", 1, 1)
    return {"report": str(path)}


STAGE_FUNCS: dict[str, Callable[[Context], dict]] = {
    "roots": _stage_roots, "rollouts": _stage_rollouts, "collect": _stage_collect, "mine": _stage_mine,
    "teachability": _stage_teachability, "novelty": _stage_novelty, "puzzles": _stage_puzzles,
    "report": _stage_report,
}


def run_summary(run: str | Path) -> dict:
    """Funnel counts, kept concepts, puzzles written and the report's path, from the run directory."""
    run = Path(run)
    funnel = _read_json(run / "funnel.json") or {}
    kept = _read_json(run / "kept.json") or {}
    puzzles = _read_json(run / "puzzles" / "summary.json") or {}
    return {"funnel": funnel.get("total", {}), "stages": funnel.get("stages", []), "kept": kept.get("concepts", []),
            "kept_rule": kept.get("kept_rule"), "puzzles": puzzles.get("puzzles", 0),
            "puzzle_files": puzzles.get("files", {}),
            "report": str(run / "report.html") if (run / "report.html").is_file() else None}
