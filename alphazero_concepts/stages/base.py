"""What a pipeline stage is (`Stage`) and what the stages share while they run (`Context`).

A stage is one module in `alphazero_concepts/stages/` that defines `STAGE`, a `Stage`:

    name      its id ("mine"), also the name of its done-marker RUN/stages/<name>.json
    inputs    the stages whose artifacts it reads: its hash includes theirs, so it re-runs when they do
    feeds     stages that read what it writes without naming it in their inputs (a new concept kind feeds
              "teachability"): the runner adds it to their inputs, so a new stage is declared in its own module
    outputs   the run directory's paths it owns (relative, from `core.rundir`): cleared before a fresh run
              (`clears(order)`: the filter order moves the novelty scores between the two filter stages)
    section   the part of the config its result depends on (the hash input besides the inputs' hashes)
    run(ctx)  does the work and returns a JSON-ready summary (stored in the done-marker)

The runner (`alphazero_concepts.pipeline`) only orders stages, hashes, clears, resumes and records; every
piece of work is a stage's `run`, and the stage drivers that `run` calls are the same functions the `azc`
commands call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from alphazero_concepts.core.rundir import RunDir

if TYPE_CHECKING:
    from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series
    from alphazero_concepts.nn.network import HookedNet
    from alphazero_concepts.stages.config import PipelineConfig

Progress = Callable[[str, int, int | None], None]
Log = Callable[[str], None]


class PipelineError(ValueError):
    """A run that cannot go on (bad config, missing input); the message names the file or field."""


class Stage(Protocol):
    """One step of the pipeline (see the module notes)."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    feeds: tuple[str, ...]

    def section(self, config: PipelineConfig) -> dict: ...

    def clears(self, order: str) -> tuple[str, ...]: ...

    def run(self, ctx: Context) -> dict: ...


@dataclass(frozen=True)
class StageDef:
    """A `Stage` made of functions: what every stage module's `STAGE` is."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    section_of: Callable[[PipelineConfig], dict]
    work: Callable[[Context], dict]
    clears_of: Callable[[str], tuple[str, ...]] | None = field(default=None)
    feeds: tuple[str, ...] = ()

    def section(self, config: PipelineConfig) -> dict:
        return self.section_of(config)

    def clears(self, order: str) -> tuple[str, ...]:
        """What a fresh (re)run clears first: `outputs`, unless the stage says otherwise under the filter `order`."""
        return self.outputs if self.clears_of is None else self.clears_of(order)

    def run(self, ctx: Context) -> dict:
        return self.work(ctx)


def run_settings(config: PipelineConfig) -> dict[str, Any]:
    """The run-level settings every stage's result depends on."""
    return {"model": config.run.model, "seed": config.run.seed}


class Context:
    """What the stages share: the run directory, the config, the lazily loaded teacher, progress and log."""

    def __init__(self, run: Path, config: PipelineConfig, progress: Progress, log: Log,
                 stage_names: tuple[str, ...] = ()) -> None:
        self.run = run
        self.stage_names = stage_names  # the runner's order (the report shows each stage's marker)
        self.rundir = RunDir(run)
        self.config = config
        self.progress = progress
        self.log = log
        self._teacher: tuple | None = None

    @property
    def teacher(self) -> tuple[HookedNet, CheckpointMeta]:
        if self._teacher is None:
            from alphazero_concepts.nn.loading import load_network
            from alphazero_concepts.nn.network import resolve_device

            self._teacher = load_network(self.config.run.model, resolve_device(self.config.run.device))
        return self._teacher  # type: ignore[return-value]

    @property
    def net(self) -> HookedNet:
        return self.teacher[0]

    @property
    def meta(self) -> CheckpointMeta:
        return self.teacher[1]

    @property
    def model_id(self) -> str:
        return str((self.meta.extra or {}).get("sha256") or self.meta.name)

    def series(self) -> Series | None:
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

    def check_layers(self, layers: list[str]) -> None:
        """PipelineError naming `mine.layers` when a layer is not in the teacher."""
        unknown = [x for x in layers if x not in self.net.layer_names]
        if unknown:
            raise PipelineError(f"mine.layers: unknown layers {unknown}; the network has: "
                                f"{', '.join(self.net.layer_names)}")
