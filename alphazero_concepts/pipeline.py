"""The runner: every stage of `STAGE_LIST` over one run directory, resumable stage by stage (docs/DESIGN.md).

    roots → rollouts → collect → mine → static → teachability → novelty → puzzles → report

Each stage is a module of `alphazero_concepts/stages/` (a `Stage`: name, inputs, outputs, config section,
`run(ctx)`); the run directory's layout is `core.rundir.RunDir`. This module only orders, hashes, clears, resumes
and records:

A stage's hash is the sha256 of its config section (`Stage.section`: its own table, the run-level settings and
the teacher's file hash) and the hashes of the stages it reads (`Stage.inputs`, and the stages that declare they
feed it, `Stage.feeds`): change a parameter and that
stage and everything downstream re-run; the stages before it are skipped. `from_stage` forces a stage and all
later ones. A stage writes RUN/stages/<stage>.started.json with its hash before it starts; a killed stage found
with the same hash is resumed (each stage resumes by its own unit: rollouts by chunk of roots, activations by
batch, mining by root, the filters by concept, the puzzle search by chunk); otherwise its outputs are removed
first (`Stage.clears`). Every artifact is written atomically or appended record by record.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alphazero_concepts.core.files import read_json, write_json
from alphazero_concepts.core.rundir import PuzzleDir, RunDir
from alphazero_concepts.stages.base import Context, Log, PipelineError, Progress, Stage
from alphazero_concepts.stages.config import STAGE_LIST, PipelineConfig, save_config

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGE_LIST}
STAGES = tuple(BY_NAME)
DEPENDS: dict[str, tuple[str, ...]] = {s.name: (*s.inputs, *(f.name for f in STAGE_LIST if s.name in f.feeds))
                                       for s in STAGE_LIST}
ARTIFACTS: dict[str, tuple[str, ...]] = {s.name: s.outputs for s in STAGE_LIST}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_config(config: PipelineConfig, stage: str) -> dict:
    """The part of the config a stage's result depends on (its hash input besides the upstream hashes)."""
    return BY_NAME[stage].section(config)


def stage_hashes(config: PipelineConfig, model_id: str = "") -> dict[str, dict]:
    """{stage: {"hash", "config_hash", "deps": {stage: hash}}}: the hash chain of the whole run."""
    out: dict[str, dict] = {}
    for stage in STAGE_LIST:
        config_hash = _hash({"stage": stage.name, "config": stage.section(config), "model_id": model_id})
        deps = {d: out[d]["hash"] for d in DEPENDS[stage.name]}
        out[stage.name] = {"hash": _hash({"config": config_hash, "deps": deps}), "config_hash": config_hash,
                           "deps": deps}
    return out


@dataclass
class StageResult:
    stage: str
    status: str  # "done", "skipped" (finished before with the same hash)
    seconds: float
    summary: dict


def stage_status(run: str | Path, config: PipelineConfig, model_id: str) -> dict[str, str]:
    """Per stage: "done" (finished with the current hash), "stale" (finished with another), "partial", "todo"."""
    rd = RunDir(run)
    hashes = stage_hashes(config, model_id)
    out = {}
    for stage in STAGES:
        done = read_json(rd.marker(stage))
        started = read_json(rd.marker(stage, started=True))
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
    """What a (re)run of `stage` clears first, under the filter `order` (see `Stage.clears`)."""
    return BY_NAME[stage].clears(order)


def _clear(rd: RunDir, stage: str, config: PipelineConfig) -> None:
    for rel in stage_artifacts(stage, config.filters.order):
        path = rd / rel
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


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
    rd = RunDir(run)
    if run.exists() and not run.is_dir():
        raise PipelineError(f"{run}: exists and is not a directory (the run directory)")
    _check_input_files(config)
    if config.run.threads > 0:
        torch.set_num_threads(config.run.threads)
    ctx = Context(run, config, progress or (lambda stage, done, total: None), log, STAGES)
    hashes = stage_hashes(config, ctx.model_id)  # loads the teacher: a bad run.model fails before anything is written
    run.mkdir(parents=True, exist_ok=True)
    rd.stages.mkdir(exist_ok=True)
    save_config(config, rd.config)
    forced = set(STAGES[STAGES.index(from_stage):]) if from_stage else set()
    last = STAGES.index(until) if until else len(STAGES) - 1
    results: list[StageResult] = []
    for stage in STAGE_LIST[: last + 1]:
        name = stage.name
        h = hashes[name]
        done = read_json(rd.marker(name))
        if name not in forced and done and done.get("hash") == h["hash"]:
            results.append(StageResult(name, "skipped", 0.0, done.get("summary", {})))
            ctx.progress(name, 1, 1)
            continue
        started = read_json(rd.marker(name, started=True))
        resume = name not in forced and started is not None and started.get("hash") == h["hash"]
        rd.marker(name).unlink(missing_ok=True)
        if not resume:
            _clear(rd, name, config)
            write_json(rd.marker(name, started=True), {"stage": name, **h, "started": time.time()})
        else:
            log(f"{name}: resuming a stage that was stopped")
        t0 = time.perf_counter()
        try:
            summary = stage.run(ctx)
        except (ValueError, OSError):
            # A stage that failed on its input (InputError, PipelineError, StageError, CheckpointError, an
            # unreadable file …) is not progress: without its marker the next run clears its artifacts and starts
            # it afresh, so nothing computed from the bad input is reused. A killed or interrupted stage keeps the
            # marker and resumes.
            rd.marker(name, started=True).unlink(missing_ok=True)
            raise
        seconds = time.perf_counter() - t0
        write_json(rd.marker(name), {"stage": name, **h, "finished": time.time(), "seconds": seconds,
                                     "summary": summary})
        rd.marker(name, started=True).unlink(missing_ok=True)
        results.append(StageResult(name, "done", seconds, summary))
    return results


def _check_input_files(config: PipelineConfig) -> None:
    """The files the config names exist (checked before any stage runs, not hours later at the stage)."""
    for key, value in (("filters.human_pgn", config.filters.human_pgn),
                       ("report.validation_json", config.report.validation_json)):
        if value and not Path(value).is_file():
            what = "is a directory" if Path(value).is_dir() else "no such file"
            raise PipelineError(f"{key} = {value!r}: {what}")


def run_summary(run: str | Path) -> dict:
    """Funnel counts, kept concepts, puzzles written and the report's path, from the run directory."""
    rd = RunDir(run)
    funnel = read_json(rd.funnel) or {}
    kept = read_json(rd.kept) or {}
    puzzles_summary = read_json(PuzzleDir(rd.puzzles).summary) or {}
    return {"funnel": funnel.get("total", {}), "stages": funnel.get("stages", []), "kept": kept.get("concepts", []),
            "kept_rule": kept.get("kept_rule"), "puzzles": puzzles_summary.get("puzzles", 0),
            "puzzle_files": puzzles_summary.get("files", {}),
            "report": str(rd.report) if rd.report.is_file() else None}
