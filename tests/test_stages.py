"""The shape of the pipeline: stages agree with each other, RunDir is the one place artifact names are spelled,
and a concept set of another kind sits beside the mined one (the worked example of docs/DESIGN.md)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from alphazero_concepts.concepts.conceptset import ConceptSet
from alphazero_concepts.core import rundir
from alphazero_concepts.core.rundir import RunDir
from alphazero_concepts.pipeline import DEPENDS, STAGES, stage_artifacts
from alphazero_concepts.stages.config import PIPELINE_ORDERS, STAGE_LIST, PipelineConfig

PACKAGE = Path(rundir.__file__).resolve().parents[1]
# names only a run directory uses (generic ones such as summary.json or config.json are other files' names too)
RUN_NAMES = {getattr(rundir, k) for k in ("ROOTS", "ROLLOUTS", "ROLLOUTS_PARTIAL", "LINES", "CONCEPTS", "VECTORS",
                                           "TEACHABILITY", "TEACHABILITY_CONFIG", "POOL", "POOL_TOP1",
                                           "NOVELTY_BASIS", "NOVELTY", "FUNNEL", "PROTOTYPES", "KEPT",
                                           "NOVELTY_SPECTRUM", "FUNNEL_FIGURE", "CONTROLS_FIGURE", "REPORT",
                                           "STATIC_CONCEPTS", "DISTRIBUTED")}


@pytest.mark.unit
def test_every_stage_reads_only_earlier_stages_and_has_a_config_section() -> None:
    config = PipelineConfig()
    seen: list[str] = []
    for stage in STAGE_LIST:
        assert set(DEPENDS[stage.name]) <= set(seen), stage.name
        assert isinstance(stage.section(config), dict) and stage.outputs
        seen.append(stage.name)
    assert tuple(seen) == STAGES


@pytest.mark.unit
@pytest.mark.parametrize("order", [o for o in PIPELINE_ORDERS if o != "novelty-first"])
def test_no_two_stages_clear_the_same_artifact(order: str) -> None:
    """(Under "novelty-first" the teachability stage also clears what the novelty stage writes: by design.)"""
    owners: dict[str, str] = {}
    for stage in STAGES:
        for rel in stage_artifacts(stage, order):
            assert rel not in owners, f"{rel}: cleared by {owners[rel]} and {stage}"
            owners[rel] = stage


@pytest.mark.unit
def test_artifact_names_are_spelled_only_in_core_rundir() -> None:
    """Every run artifact's file name is a string literal in core/rundir.py and nowhere else in the package."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "rundir.py" and path.parent.name == "core":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in RUN_NAMES:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    assert not found, "artifact names spelled outside core/rundir.py:\n" + "\n".join(found)


@pytest.mark.unit
def test_a_concept_kind_beside_the_mined_set_is_read_with_it_and_survives_mine_clearing(tmp_path: Path) -> None:
    rd = RunDir(tmp_path)
    ConceptSet.save(rd.concepts, [{"id": "block0/root00000", "layer": "block0"},
                                  {"id": "block0/root00001", "layer": "block0", "status": "no sub-par lines"}],
                    {"block0/root00000": np.ones(4, np.float32)})
    ConceptSet.save(rd.concept_kind("static"), [{"id": "block0/static/has_queen", "layer": "block0",
                                                 "kind": "static"}],
                    {"block0/static/has_queen": np.arange(4, dtype=np.float32)})
    concepts = ConceptSet.load(tmp_path)
    assert concepts.ids == ["block0/root00000", "block0/root00001", "block0/static/has_queen"]
    assert [c.kind for c in concepts] == ["dynamic", "dynamic", "static"]
    assert [c.id for c in concepts.solved()] == ["block0/root00000", "block0/static/has_queen"]
    assert ConceptSet.load(tmp_path, solved_only=True).ids == ["block0/root00000"]  # one directory: the mined set
    for rel in stage_artifacts("mine", "independent"):  # what a rerun of "mine" clears
        path = tmp_path / rel
        if path.is_file():
            path.unlink()
    assert ConceptSet.load(tmp_path).ids == ["block0/static/has_queen"]
    assert json.loads((rd.concept_kind("static") / rundir.CONCEPTS).read_text())["kind"] == "static"
