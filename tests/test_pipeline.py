"""The end-to-end pipeline on a tiny series: stage skipping, --from, config invalidation, kill-and-resume, report."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from alphazero_concepts.filters.novelty import NoveltyConfig
from alphazero_concepts.filters.teachability import TeachConfig
from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series
from alphazero_concepts.nn.network import AZNet, NetConfig
from alphazero_concepts.pipeline import (
    ARTIFACTS,
    STAGES,
    run_pipeline,
    run_summary,
    stage_artifacts,
    stage_status,
)
from alphazero_concepts.report import SECTIONS
from alphazero_concepts.stages.config import (
    PIPELINE_ORDERS,
    MineStage,
    PipelineConfig,
    PipelineError,
    PuzzlesStage,
    ReportStage,
    RolloutsStage,
    RootsStage,
    RunSettings,
    load_config,
    save_config,
)
from alphazero_concepts.stages.config import FiltersStage as Filters

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMEDRIVER = shutil.which("chromedriver") or \
    ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)


def tiny_series(directory: Path) -> Path:
    """Three tiny random checkpoints (different seeds), the last one the teacher."""
    series = Series(directory, name="tiny")
    for k in range(3):
        torch.manual_seed(k)
        net = AZNet(NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8))
        series.add(net, CheckpointMeta(name=f"c{k}", step=k * 100, stage="supervised", seed=k))
    return directory


def tiny_config(series: Path, **changes) -> PipelineConfig:
    config = PipelineConfig(
        run=RunSettings(model=str(series), seed=0, threads=1),
        roots=RootsStage(games=4, max_plies=16, skip_plies=2, sample_plies=4, max_roots=4),
        rollouts=RolloutsStage(length=5, max_subpar=2, simulations=48),
        mine=MineStage(layers=("block0",)),
        teachability=TeachConfig(pool_size=120, top_fraction=0.1, epochs=1, bootstrap=100, random_test_min=20,
                                 max_student_agreement=1.01),
        novelty=NoveltyConfig(positions=40, max_components=32),
        filters=Filters(order="independent", kept_rule="solved", max_prototypes=4),
        puzzles=PuzzlesStage(simulations=32, engine="off", min_visit_share=0.0, min_q_gap=-2.0,
                             min_puzzles_per_concept=1, human=True),
        report=ReportStage(title="tiny run", static_positions=40, static_pairs=30, boards_per_card=2, max_cards=2),
    )
    return dataclasses.replace(config, **changes)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One finished run of the tiny config (shared: the later tests copy it)."""
    root = tmp_path_factory.mktemp("pipeline")
    series = tiny_series(root / "series")
    config = tiny_config(series)
    run = root / "run"
    results = run_pipeline(config, run, log=lambda s: None)
    return series, config, run, results


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def _statuses(results) -> dict[str, str]:
    return {r.stage: r.status for r in results}


@pytest.mark.integration
def test_full_run_writes_every_artifact_and_reruns_skip(base):
    _series, config, run, results = base
    assert [r.stage for r in results] == list(STAGES)
    assert all(r.status == "done" for r in results)
    for rel in ("config.toml", "roots.jsonl", "rollouts.jsonl", "activations/lines.json", "concepts/concepts.jsonl",
                "concepts/vectors.npz", "teachability.jsonl", "novelty.jsonl", "funnel.json", "prototypes.jsonl",
                "report.html", "figures/funnel.png", "figures/novelty_spectrum.png"):
        assert (run / rel).exists(), rel
    assert load_config(run / "config.toml") == config  # the config round-trips through TOML
    marker = json.loads((run / "stages" / "teachability.json").read_text())
    assert set(marker) >= {"hash", "config_hash", "deps"} and set(marker["deps"]) == {"mine"}
    summary = run_summary(run)
    assert summary["funnel"]["roots"] == results[0].summary["roots"] > 0
    assert summary["report"] and summary["kept"]  # kept_rule "solved": every solved concept is kept
    again = run_pipeline(config, run, log=lambda s: None)
    assert set(_statuses(again).values()) == {"skipped"}


@pytest.mark.integration
def test_from_stage_reruns_that_stage_and_later_only(base, tmp_path):
    _series, config, run, _ = base
    run = _copy(run, tmp_path)
    before = (run / "roots.jsonl").stat().st_mtime_ns
    statuses = _statuses(run_pipeline(config, run, from_stage="novelty", log=lambda s: None))
    assert [s for s in STAGES if statuses[s] == "done"] == ["novelty", "puzzles", "report"]
    assert (run / "roots.jsonl").stat().st_mtime_ns == before
    with pytest.raises(PipelineError, match="unknown stage"):
        run_pipeline(config, run, from_stage="nope")


@pytest.mark.integration
def test_changed_config_reruns_the_stages_it_affects(base, tmp_path):
    _series, config, run, _ = base
    run = _copy(run, tmp_path)
    changed = dataclasses.replace(config, teachability=dataclasses.replace(config.teachability, epochs=2))
    assert stage_status(run, changed, _model_id(run))["teachability"] == "stale"
    statuses = _statuses(run_pipeline(changed, run, log=lambda s: None))
    assert [s for s in STAGES if statuses[s] == "done"] == ["teachability", "novelty", "puzzles", "report"]
    assert json.loads((run / "teachability_config.json").read_text())["config"]["epochs"] == 2
    # a report-only change re-runs only the report
    titled = dataclasses.replace(changed, report=dataclasses.replace(changed.report, title="renamed"))
    statuses = _statuses(run_pipeline(titled, run, log=lambda s: None))
    assert [s for s in STAGES if statuses[s] == "done"] == ["report"]
    assert "renamed" in (run / "report.html").read_text()


@pytest.mark.integration
def test_novelty_first_teaches_only_novel_concepts_and_keeps_the_same_set(base, tmp_path, monkeypatch):
    import alphazero_concepts.filters.stages as filter_stages
    from alphazero_concepts.stages.novelty import kept_concepts

    _series, config, run, _ = base
    run = _copy(run, tmp_path)
    teach = _results(run / "teachability.jsonl")  # order "independent": every solved concept was taught
    planted = sorted(_results(run / "novelty.jsonl"))[::2]  # a tiny random net has no novel concept of its own
    real = filter_stages.novelty_stage
    calls = []

    def planted_novelty(run_dir, **kw):  # the real scoring, then a known novel set planted in its results
        summary = real(run_dir, **kw)
        calls.append(summary["scored_now"])
        rows = _results(Path(run_dir) / "novelty.jsonl")
        (Path(run_dir) / "novelty.jsonl").write_text("".join(json.dumps({**r, "novel": k in planted}) + "\n"
                                                             for k, r in rows.items()))
        return summary

    monkeypatch.setattr(filter_stages, "novelty_stage", planted_novelty)
    funnel = dataclasses.replace(config.filters, kept_rule="funnel", order="novelty-first")
    novelty_first = dataclasses.replace(config, filters=funnel)
    assert stage_status(run, novelty_first, _model_id(run))["teachability"] == "stale"
    statuses = _statuses(run_pipeline(novelty_first, run, log=lambda s: None))
    assert [s for s in STAGES if statuses[s] == "done"] == ["teachability", "novelty", "puzzles", "report"]
    assert calls[0] > 0 and calls[1:] == [0]  # scored once, in the teachability stage; the novelty stage reuses it
    taught = {k for k, r in _results(run / "teachability.jsonl").items() if r.get("kind") != "control"}
    assert planted and taught == set(planted)  # a student is trained only for the novel concepts
    assert kept_concepts(run, "funnel") == [k for k in planted if teach[k]["kept"]]  # as if both had scored all
    assert json.loads((run / "funnel.json").read_text())["stages"][3:5] == ["novel", "teachable"]


def _results(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def _model_id(run: Path) -> str:
    from alphazero_concepts.nn.loading import load_network

    cfg = load_config(run / "config.toml")
    _, meta = load_network(cfg.run.model)
    return str(meta.extra.get("sha256") or meta.name)


def _concepts(run: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    recs = [json.loads(x) for x in (run / "concepts" / "concepts.jsonl").read_text().splitlines()]
    with np.load(run / "concepts" / "vectors.npz") as data:
        vecs = {k: data[k] for k in data.files}
    return [{k: r.get(k) for k in ("id", "status", "nonzeros", "n_constraints")} for r in recs], vecs


class Killed(RuntimeError):
    pass


@pytest.mark.integration
def test_killed_during_rollouts_resumes_by_chunk_and_matches_an_uninterrupted_run(base, tmp_path, monkeypatch):
    import alphazero_concepts.search.rollouts as rollouts_module
    import alphazero_concepts.stages.rollouts as rollouts_stage

    _series, config, run, _ = base
    monkeypatch.setattr(rollouts_stage, "ROLLOUT_CHUNK", 2)
    whole = _copy(run, tmp_path / "whole")
    run_pipeline(config, whole, from_stage="rollouts", until="rollouts", log=lambda s: None)
    work = _copy(run, tmp_path / "work")

    def kill_after_one_chunk(stage: str, done: int, total) -> None:
        if stage == "rollouts" and done == 2:
            raise Killed("simulated kill after the first chunk")

    with pytest.raises(Killed):
        run_pipeline(config, work, from_stage="rollouts", until="rollouts", progress=kill_after_one_chunk,
                     log=lambda s: None)
    assert len(list((work / "rollouts.partial").glob("*.jsonl"))) == 1
    calls = []
    real = rollouts_module.rollouts
    monkeypatch.setattr(rollouts_module, "rollouts",
                        lambda m, boards, c: calls.append(len(boards)) or real(m, boards, c))
    statuses = _statuses(run_pipeline(config, work, until="rollouts", log=lambda s: None))
    assert statuses["rollouts"] == "done" and statuses["roots"] == "skipped"
    n_roots = len((whole / "rollouts.jsonl").read_text().splitlines())
    assert sum(calls) == n_roots - 2  # the finished chunk was not searched again
    assert (work / "rollouts.jsonl").read_text() == (whole / "rollouts.jsonl").read_text()
    assert not (work / "rollouts.partial").exists()


@pytest.mark.integration
def test_killed_during_mining_resumes_and_matches_an_uninterrupted_run(base, tmp_path, monkeypatch):
    import alphazero_concepts.concepts.mining as mining

    _series, config, run, _ = base
    n_roots = len((run / "rollouts.jsonl").read_text().splitlines())
    assert n_roots >= 3
    work = _copy(run, tmp_path)

    def kill_after_two(stage: str, done: int, total) -> None:
        if stage == "mine" and done == 2:
            raise Killed("simulated kill after 2 roots")

    with pytest.raises(Killed):
        run_pipeline(config, work, from_stage="mine", until="mine", progress=kill_after_two, log=lambda s: None)
    assert not (work / "stages" / "mine.json").exists()
    assert len(list((work / "concepts" / "partial").glob("*.json"))) == 2
    calls = []
    real = mining.mine_rollout
    monkeypatch.setattr(mining, "mine_rollout", lambda *a, **k: calls.append(a[1].root_index) or real(*a, **k))
    statuses = _statuses(run_pipeline(config, work, until="mine", log=lambda s: None))
    assert statuses["mine"] == "done" and statuses["rollouts"] == "skipped"
    assert len(calls) == n_roots - 2  # the two finished roots were not mined again
    recs_a, vecs_a = _concepts(run)
    recs_b, vecs_b = _concepts(work)
    assert recs_a == recs_b
    assert vecs_a.keys() == vecs_b.keys() and len(vecs_a) > 0
    for k in vecs_a:
        np.testing.assert_allclose(vecs_a[k], vecs_b[k], atol=1e-5)


@pytest.mark.unit
def test_config_toml_roundtrip_and_errors(tmp_path):
    config = PipelineConfig.quickstart()
    path = save_config(config, tmp_path / "c.toml")
    assert load_config(path) == config
    (tmp_path / "bad.toml").write_text('[mine]\nlayers = ["block1"]\nplayer = "three"\n')
    with pytest.raises(PipelineError, match=r"bad.toml: \[mine\].*player"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "typo.toml").write_text("[roots]\ngamez = 3\n")
    with pytest.raises(PipelineError, match="gamez"):
        load_config(tmp_path / "typo.toml")


@pytest.mark.integration
def test_report_sections_present_and_images_load_in_chromium(base):
    run = base[2]
    text = (run / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in text
    assert "http://" not in text.replace("http://www.w3.org", "")  # self-contained (SVG namespaces aside)
    assert 'class="card"' in text  # kept_rule "solved": concept cards are drawn
    assert "not measured" in text  # the tiny series has no ladder.json
    comparison = json.loads((run / "funnel.json").read_text())["lift_comparison"]
    assert comparison["all"]["controls"]["n"] >= 1 and "Mann–Whitney p" in text  # concepts beside the controls
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver; .ci/run does this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--no-first-run", "--window-size=1200,900"):
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='azc-chromium-')}")
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        driver.get((run / "report.html").resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);")
        assert len(images) >= 5
        broken = [alt for alt, complete, width in images if not complete or width == 0]
        assert broken == []
        present = driver.execute_script(
            "return arguments[0].map(id => { const s = document.getElementById(id);"
            " return s ? s.innerText.trim().length : 0; });", list(SECTIONS))
        assert all(n > len("Run") for n in present), dict(zip(SECTIONS, present, strict=True))
    finally:
        driver.quit()


@pytest.mark.integration
def test_zero_kept_concepts_say_so(base, tmp_path):
    _series, config, run, _ = base
    run = _copy(run, tmp_path)
    strict = dataclasses.replace(config, filters=dataclasses.replace(config.filters, kept_rule="funnel"))
    statuses = _statuses(run_pipeline(strict, run, log=lambda s: None))
    assert statuses["teachability"] == "skipped" and statuses["novelty"] == "done"
    if run_summary(run)["funnel"]["kept"]:
        pytest.skip("a random tiny concept passed both filters: nothing to check here")
    text = (run / "report.html").read_text()
    assert "No concept was kept" in text and "No puzzle was written" in text
    for section in SECTIONS:
        assert f'id="{section}"' in text
    assert run_summary(run)["kept"] == []


@pytest.mark.integration
def test_azc_run_cli_skips_a_finished_run_and_prints_the_summary(base, tmp_path):
    from typer.testing import CliRunner

    from alphazero_concepts.cli import app

    run = _copy(base[2], tmp_path)
    result = CliRunner().invoke(app, ["run", str(run / "config.toml"), "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "report.html" in result.output and "kept concepts" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[roots]\ngames = \n")
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "bad.toml" in result.output


@pytest.mark.unit
@pytest.mark.parametrize("order", PIPELINE_ORDERS)
def test_every_artifact_is_cleared_by_some_stage_and_the_novelty_scores_by_one(order: str) -> None:
    cleared = {stage: stage_artifacts(stage, order) for stage in STAGES}
    assert set().union(*cleared.values()) == set().union(*ARTIFACTS.values())
    owners = [stage for stage, rels in cleared.items() if "novelty.jsonl" in rels]
    assert owners == ["teachability" if order == "novelty-first" else "novelty"]


@pytest.mark.integration
def test_specific_kept_rule_keeps_funnel_concepts_that_beat_their_layers_controls(base, tmp_path):
    from alphazero_concepts.stages.novelty import kept_concepts

    _series, _config, run, _ = base
    run = _copy(run, tmp_path)
    teach = _results(run / "teachability.jsonl")
    concepts = sorted(k for k, r in teach.items() if r.get("kind") != "control")
    layers = sorted({teach[k]["layer"] for k in concepts})
    assert len(concepts) >= 3 and layers
    # planted: every concept teachable and novel; lower bounds 0.10, 0.20, 0.30, …; one control per layer at 0.25
    rows = {k: {**teach[k], "kept": True, "lift": 0.2 + 0.1 * i, "ci": [0.1 + 0.1 * i, 0.3 + 0.1 * i]}
            for i, k in enumerate(concepts)}
    rows.update({f"control/{layer}/0": {"id": f"control/{layer}/0", "layer": layer, "kind": "control",
                                        "lift": 0.25, "ci": [0.0, 0.5], "kept": True} for layer in layers})
    (run / "teachability.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
    (run / "novelty.jsonl").write_text("".join(json.dumps({"id": k, "novel": True}) + "\n" for k in concepts))
    funnel = kept_concepts(run, "funnel")
    assert sorted(funnel) == concepts
    assert sorted(kept_concepts(run, "specific")) == [k for i, k in enumerate(concepts) if 0.1 + 0.1 * i > 0.25]
    # "novel" ignores teachability: the not-novel concept (planted) drops out whatever its lift
    (run / "novelty.jsonl").write_text("".join(json.dumps({"id": k, "novel": i > 0}) + "\n"
                                               for i, k in enumerate(concepts)))
    assert sorted(kept_concepts(run, "novel")) == concepts[1:]
    with pytest.raises(PipelineError, match="kept rule must be one of"):
        kept_concepts(run, "loose")
    novel_first = tmp_path / "novel.toml"
    novel_first.write_text('[filters]\nkept_rule = "novel"\norder = "teachability-first"\n')
    with pytest.raises(PipelineError, match=r"novel\.toml: .*novelty-first"):
        load_config(novel_first)
    bad = tmp_path / "bad.toml"
    bad.write_text('[filters]\nkept_rule = "specific"\n[teachability]\nrandom_controls = 0\n')
    with pytest.raises(PipelineError, match=r"bad\.toml: .*random_controls ≥ 1"):
        load_config(bad)


@pytest.mark.integration
def test_prototypes_are_the_rows_teachability_saved_not_re_picked(base, tmp_path):
    """prototypes.jsonl holds exactly the rows the teachability stage taught ("train") and tested on ("test"),
    with their saved scores; a saved prototype that was in neither (e.g. dropped from a shared test set) is left
    out. Planted rows that differ from a re-pick by score catch a stage that recomputes them."""
    from alphazero_concepts.concepts.samples import PositionSample

    _series, config, run, _ = base
    run = _copy(run, tmp_path)
    teach = _results(run / "teachability.jsonl")
    cid = next(k for k, r in teach.items() if r.get("kind") != "control")
    sample = PositionSample.load(run / "pool.npz")
    planted_train, planted_test, dropped = [3, 11], [7, 19], [23]
    rows = [*planted_train, *planted_test, *dropped]
    teach[cid].update(status="ok", prototype_rows=rows, prototype_scores=[5.0, 4.0, 3.0, 2.0, 1.0],
                      train_rows=planted_train, test_rows=planted_test)
    (run / "teachability.jsonl").write_text("".join(json.dumps(r) + "\n" for r in teach.values()))
    run_pipeline(config, run, from_stage="novelty", until="novelty", log=lambda s: None)
    records = {r["concept"]: r for r in map(json.loads, (run / "prototypes.jsonl").read_text().splitlines())}
    got = records[cid]["positions"]
    assert [p["row"] for p in got] == [3, 11, 7, 19]  # by saved score, the dropped row left out
    assert {p["row"]: p["split"] for p in got} == {3: "train", 11: "train", 7: "test", 19: "test"}
    for p in got:
        assert p["fen"] == sample.board(p["row"]).fen()
    assert records[cid]["split_source"] == "taught"


@pytest.mark.integration
def test_same_seed_gives_the_same_concepts_and_puzzles_as_before_the_stage_refactor(base, tmp_path):
    """tests/data/same_seed.json was written by the code before issue #21's refactor (see tests/same_seed.py)."""
    from same_seed import FIXTURE, snapshot

    series, _config, run, _ = base
    expected = json.loads(FIXTURE.read_text())
    got = json.loads(json.dumps(snapshot(series, run, tmp_path)))  # tuples → lists, as in the fixture
    for part in ("pipeline", "cli"):
        for key in expected[part]:
            assert got[part][key] == expected[part][key], f"{part}: {key} differs from the fixture"
