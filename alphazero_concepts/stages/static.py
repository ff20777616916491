"""Stage "static": how well static piece concepts are found per layer (RUN/static_concepts.json), for the report.

A sparse vector is mined per piece concept and layer on labelled positions and scored on held-out pairs
(`concepts.validation.piece_concepts`), or the numbers are read from an `azc validate --json` output
(`report.validation_json`). The report shows this file; it computes nothing itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from alphazero_concepts.core.files import atomic_write_bytes
from alphazero_concepts.core.rundir import STATIC_CONCEPTS
from alphazero_concepts.stages.base import Context, StageDef, run_settings

if TYPE_CHECKING:
    from alphazero_concepts.stages.config import PipelineConfig


def normalise_static(result: dict) -> dict:
    """{"concepts": {name: {"layers": {layer: row}}}}, from either validation output format (one or several)."""
    if "concepts" in result:
        return result
    name = result.get("concept", "static concept")
    return {**result, "concepts": {name: {"layers": result.get("layers", {}),
                                          "positive_share": result.get("positive_share")}}}


def _read_validation(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        data = None
    if not data or "piece_concept" not in data:
        raise ValueError(f"{path}: not an `azc validate --json` output (no 'piece_concept')")
    return {**normalise_static(data["piece_concept"]), "source": path}


def _run(ctx: Context) -> dict:
    rc = ctx.config.report
    ctx.progress("static", 0, 1)
    if rc.validation_json:
        result = _read_validation(rc.validation_json)
    else:
        from alphazero_concepts.concepts.validation import ValidationConfig, piece_concepts

        layers = tuple(dict.fromkeys(["stem", *ctx.config.mine.layers]))
        ctx.log(f"static piece concepts at {', '.join(layers)} …")
        result = {**normalise_static(piece_concepts(ctx.net, ValidationConfig(
            positions=rc.static_positions, layers=layers, pairs=rc.static_pairs, seed=ctx.config.run.seed))),
            "source": f"computed here: {rc.static_positions} positions, {rc.static_pairs} pairs"}
    atomic_write_bytes(ctx.rundir.static_concepts, (json.dumps(result, indent=2, default=str) + "\n").encode())
    ctx.progress("static", 1, 1)
    return {"concepts": sorted(result.get("concepts", {})), "source": result.get("source")}


def _section(config: PipelineConfig) -> dict:
    rc = config.report
    return {"run": run_settings(config), "layers": list(config.mine.layers),
            "static": {"validation_json": rc.validation_json, "positions": rc.static_positions,
                       "pairs": rc.static_pairs}}


STAGE = StageDef("static", inputs=(), outputs=(STATIC_CONCEPTS,), section_of=_section, work=_run)
