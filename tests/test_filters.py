"""Filters: novelty (M − H) on planted bases, teachability on a planted concept with tiny nets, the funnel, the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from pathlib import Path

import chess
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from alphazero_concepts.concepts.conceptset import ConceptSet
from alphazero_concepts.concepts.samples import (
    PositionSample,
    SelfPlaySampleConfig,
    layer_latents,
    positions_sample,
    selfplay_sample,
)
from alphazero_concepts.filters.commands import register
from alphazero_concepts.filters.funnel import funnel
from alphazero_concepts.filters.novelty import (
    NoveltyBasis,
    NoveltyConfig,
    build_basis,
    k_grid,
    novelty_scores,
    right_singular_basis,
)
from alphazero_concepts.filters.rundir import ResultLog, read_results
from alphazero_concepts.filters.stages import funnel_stage, novelty_stage, series_students, teachability_stage
from alphazero_concepts.filters.teachability import (
    ALREADY_KNOWN,
    Pool,
    TeachConfig,
    bootstrap_diff_ci,
    pool_scores,
    random_sparse_vector,
    rollout_prototypes,
    select_student,
    teach_rows,
    top_prototypes,
    top_rows,
)
from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series
from alphazero_concepts.nn.network import AZNet, NetConfig

TINY = NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)
PLANE = 8  # policy plane "two squares north-east" (bishop/queen moves): the planted teacher's preference


# ----------------------------------------------------------------------------------------------------------------
# fixtures


class PlantedTeacher(AZNet):
    """The student plus one piece of knowledge: with White to move, prefer plane-8 moves; with Black, avoid them.

    Where White is to move and such a move exists the teacher plays it and the student (usually) does not: the
    planted concept. On random positions the rule's two halves pull the plane's bias in opposite directions, so
    random positions cannot teach it; the concept's own positions can.
    """

    def __init__(self, base: AZNet, plane: int = PLANE, delta: float = 2.0) -> None:
        super().__init__(base.config)
        self.load_state_dict(base.state_dict())
        self.eval()
        self.delta = delta
        self.boost = torch.zeros(base.format.policy_size)
        self.boost[plane * 64:(plane + 1) * 64] = 1.0

    def forward_heads(self, planes: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward_heads(planes)
        white = planes[:, 112, 0, 0] * 2 - 1  # the side-to-move plane: +1 White, −1 Black
        out["policy"] = out["policy"] + self.delta * white[:, None] * self.boost
        return out


def random_positions(games: int = 12, plies: int = 60, seed: int = 0) -> list[chess.Board]:
    rng = random.Random(seed)
    out = []
    for _ in range(games):
        board = chess.Board()
        for _ in range(plies):
            moves = list(board.legal_moves)
            if not moves or board.is_game_over():
                break
            board.push(rng.choice(moves))
            out.append(board.copy())
    return out


@pytest.fixture(scope="module")
def sample() -> PositionSample:
    return positions_sample(random_positions(), source="random games")


@pytest.fixture(scope="module")
def student() -> AZNet:
    torch.manual_seed(0)
    return AZNet(TINY).eval()


@pytest.fixture(scope="module")
def planted(sample: PositionSample, student: AZNet) -> tuple[Pool, np.ndarray]:
    teacher = PlantedTeacher(student)
    pool = Pool(sample, teacher, [("student", student)])
    rows = np.arange(len(sample))
    t, s = pool.top1("teacher", rows), pool.top1("student", rows)
    return pool, rows[(t != s) & (t // 64 == PLANE)]


# tiny random nets need a larger step than the paper's 1e-4; one student seed unless a test is about seeds
TEACH = TeachConfig(lr=1e-3, seed=0, student_seeds=1)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# novelty


def synthetic_bases(seed: int = 0) -> tuple[NoveltyBasis, np.ndarray, np.ndarray]:
    """Human latents span e0…e9; machine latents span e0…e9 and, with the largest variance, e10…e12."""
    rng = np.random.default_rng(seed)
    n, d = 300, 40
    scales = np.linspace(3.0, 0.5, 10)
    z_h = np.zeros((n, d))
    z_h[:, :10] = rng.standard_normal((n, 10)) * scales
    z_a = np.zeros((n, d))
    z_a[:, :10] = rng.standard_normal((n, 10)) * scales
    z_a[:, 10:13] = rng.standard_normal((n, 3)) * 5.0
    basis = build_basis(z_h.astype(np.float32), z_a.astype(np.float32), "synthetic", NoveltyConfig(positions=n))
    e = np.eye(d)
    return basis, e[10] + 0.5 * e[12], e[0] + 0.7 * e[3] - 0.2 * e[9]


@pytest.mark.unit
def test_vector_in_machine_only_span_is_novel_and_one_in_human_span_is_not() -> None:
    basis, machine_only, human_span = synthetic_bases()
    assert (basis.rank_human, basis.rank_machine) == (10, 13)
    assert basis.ks() == [1, 2, 4, 8]
    novel = basis.score(machine_only)
    assert novel.novel and novel.min_score > 0.5
    human = basis.score(human_span)
    assert not human.novel and human.min_score < -0.5
    mixed = basis.score(machine_only + human_span)  # half machine-only: not novel at every k
    assert not mixed.novel


@pytest.mark.unit
def test_novelty_score_is_invariant_to_scaling() -> None:
    basis, machine_only, _ = synthetic_bases(1)
    v = np.random.default_rng(2).standard_normal(basis.dim)
    base = basis.scores(v)
    for scale in (1e-3, 0.5, 7.3, 1e4):
        np.testing.assert_allclose(basis.scores(scale * v), base, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(basis.scores(-3 * machine_only), basis.scores(machine_only), atol=1e-12)
    with pytest.raises(ValueError, match="zero vector"):
        basis.scores(np.zeros(basis.dim))


@pytest.mark.unit
def test_numerical_rank_and_methods_agree() -> None:
    rng = np.random.default_rng(3)
    factors = rng.standard_normal((120, 7)) * np.array([10, 5, 3, 2, 1, 0.5, 0.3])
    z = (factors @ np.linalg.qr(rng.standard_normal((60, 7)))[0].T).astype(np.float32)
    spectra = {m: right_singular_basis(z, method=m, max_components=10) for m in ("gram", "svd", "randomized")}
    for spec in spectra.values():
        assert spec.rank == 7 and spec.basis.shape == (60, 7)
        np.testing.assert_allclose(spec.basis.T @ spec.basis, np.eye(7), atol=1e-4)
    proj = [s.basis @ s.basis.T for s in spectra.values()]  # same span whatever the method
    for p in proj[1:]:
        np.testing.assert_allclose(p, proj[0], atol=1e-4)
    np.testing.assert_allclose(spectra["gram"].singular_values[:7], spectra["svd"].singular_values[:7], rtol=1e-6)
    tall = right_singular_basis(z.T.copy(), method="gram")  # n > d path (eigenvectors of ZᵀZ)
    assert tall.rank == 7
    assert right_singular_basis(z, rank_rtol=0.5).rank < 7  # a loose relative tolerance drops small σ
    assert k_grid(7) == [1, 2, 4] and k_grid(0) == []


@pytest.mark.unit
def test_basis_round_trips_through_npz(tmp_path: Path) -> None:
    basis, machine_only, _ = synthetic_bases()
    loaded = NoveltyBasis.load(basis.save(tmp_path / "b.npz"))
    assert loaded.rank_human == basis.rank_human and loaded.ks() == basis.ks()
    np.testing.assert_allclose(loaded.scores(machine_only), basis.scores(machine_only), rtol=1e-6)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match=r"bad\.npz"):
        NoveltyBasis.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="exceeds"):
        novelty_scores(machine_only, basis.human, basis.machine, [64])


# ----------------------------------------------------------------------------------------------------------------
# teachability


@pytest.mark.unit
def test_student_rule_picks_latest_checkpoint_under_threshold() -> None:
    assert select_student([("a", 0.05), ("b", 0.15), ("c", 0.5)]) == "b"
    assert select_student([("a", 0.05), ("b", 0.35), ("c", 0.19)]) == "c"
    assert select_student([("a", 0.2), ("b", 0.9)]) is None  # 0.2 is not below 0.2: already known
    assert select_student([("a", 0.3)], max_agreement=0.5) == "a"
    assert select_student([]) is None


@pytest.mark.integration
def test_planted_concept_is_teachable_and_random_vector_is_not(planted, sample, student) -> None:
    pool, concept = planted
    assert len(concept) >= 100
    result = teach_rows(pool, concept, TEACH, concept_id="planted")
    assert result.status == "ok" and result.student == "student"
    assert result.table["before"]["concept_test"] == 0.0  # the student never plays the teacher's move there
    assert result.lift > 0.15
    assert result.ci[0] > 0 and result.kept == (result.ci[0] > TEACH.threshold)
    assert result.table["concept"]["concept_test"] > result.table["random"]["concept_test"]
    z = layer_latents(pool.teacher, sample, ["block0"])["block0"]
    v = random_sparse_vector(z.shape[1], 20, np.random.default_rng(0))
    control = teach_rows(pool, top_prototypes(z @ v, 0.2), TEACH, concept_id="control", student="student")
    assert control.ci[0] <= 0 <= control.ci[1]
    assert not control.kept


@pytest.mark.unit
def test_a_shared_baseline_is_trained_once_and_kept_out_of_the_test_rows(planted, monkeypatch) -> None:
    import alphazero_concepts.filters.teachability as teachability

    pool, concept = planted
    calls: list[int] = []
    real = teachability.distill

    def counting(student, targets, **kw):
        calls.append(len(targets))
        return real(student, targets, **kw)

    monkeypatch.setattr(teachability, "distill", counting)
    baselines: dict = {}
    first = teach_rows(pool, concept, TEACH, concept_id="a", baselines=baselines)
    second = teach_rows(pool, concept[::-1].copy(), TEACH, concept_id="b", baselines=baselines)
    assert len(calls) == 3 and len(baselines) == 1  # random baseline once, each concept once
    (_, rand_train), = baselines.values()
    for result in (first, second):
        assert not set(result.test_rows) & set(rand_train.tolist())
        assert result.status == "ok" and result.lift > 0  # the teacher's move is still learned better from it
    assert first.table["random"] != second.table["random"]  # one baseline model, evaluated on each test set


@pytest.mark.unit
def test_student_selection_on_networks_and_already_known(planted, student) -> None:
    pool, concept = planted
    knows = PlantedTeacher(student)  # a later checkpoint that already plays like the teacher
    pool2 = Pool(pool.sample, pool.teacher, [("early", student), ("late", knows)])
    assert pool2.agreement("late", concept) == 1.0 and pool2.agreement("early", concept) == 0.0
    rows = concept[:40]
    config = TeachConfig(lr=1e-3, epochs=1, seed=0)
    assert teach_rows(pool2, rows, config, concept_id="c").student == "early"
    pool3 = Pool(pool.sample, pool.teacher, [("late", knows)])
    known = teach_rows(pool3, rows, config, concept_id="c")
    assert known.status == ALREADY_KNOWN and known.student is None and not known.kept
    few = teach_rows(pool2, rows[:3], config, concept_id="c")
    assert few.status == "too few prototypes"


@pytest.mark.integration
def test_exact_dynamic_rule_keeps_candidates_whose_rollouts_satisfy_the_constraints(planted, sample) -> None:
    from alphazero_concepts.concepts.activations import latents
    from alphazero_concepts.concepts.mining import dynamic_pairs, mine_dynamic

    pool, _ = planted
    small = Pool(sample.subset(np.arange(0, len(sample), 12)), pool.teacher, [])
    z = layer_latents(small.teacher, small.sample, ["block0"])["block0"]
    # enough simulations for sub-par lines to exist (a tiny random net's search spreads its visits evenly)
    config = TeachConfig(top_fraction=0.05, rollout_candidates=2, rollout_length=3, rollout_simulations=40,
                         rollout_subpar=2, prototype_rule="rollouts")
    target = math.ceil(0.05 * len(small))
    cache: dict = {}
    v = random_sparse_vector(z.shape[1], 30, np.random.default_rng(4))
    rollout_prototypes(small, v, "block0", z @ v, config, cache=cache)
    candidates = top_rows(z @ v, 2 * target)
    assert set(cache) == {int(r) for r in candidates}  # rolled out once each, kept for the next concept

    def lines(r: int) -> list[np.ndarray]:
        ro = cache[r]
        return [latents(small.teacher, ro.boards(line), "block0") for line in [ro.chosen, *ro.subpar]]

    # a concept mined from one candidate's own rollout satisfies that candidate's constraints by construction
    r0 = next(int(r) for r in candidates if cache[int(r)].subpar)
    z0 = lines(r0)
    v0 = mine_dynamic(z0[0], z0[1:], [ln.branch for ln in cache[r0].subpar]).vector
    scores = z @ v0
    scores[candidates] += 1e6  # the same candidates (no new searches), ranked by this concept
    rows = rollout_prototypes(small, v0, "block0", scores, config, cache=cache)
    assert len(cache) == len(candidates) and r0 in set(rows)
    satisfied = []
    for r in top_rows(scores, 2 * target):
        ro = cache[int(r)]
        ok = bool(ro.subpar) and bool(np.all(dynamic_pairs(lines(int(r))[0], lines(int(r))[1:],
                                                           [ln.branch for ln in ro.subpar]) @ v0 > 0))
        satisfied.append((int(r), ok))
    expected = [r for r, ok in satisfied if ok][:target]  # in score order, up to the prototype count
    assert list(rows) == expected


@pytest.mark.unit
def test_cosine_scores_divide_by_the_activation_norm(sample, student) -> None:
    from alphazero_concepts.concepts.activations import latents

    small = sample.subset(np.arange(40))
    pool = Pool(small, student, [])
    z = latents(student, [small.board(i) for i in range(len(small))], "block0")
    v = np.random.default_rng(0).standard_normal((2, z.shape[1]))
    dot = pool_scores(pool, {"block0": v})["block0"]
    cos = pool_scores(pool, {"block0": v}, score="cosine")["block0"]
    np.testing.assert_allclose(dot, z @ v.T, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(cos, (z @ v.T) / np.linalg.norm(z, axis=1, keepdims=True), rtol=1e-3, atol=1e-4)
    assert np.all(np.abs(cos) <= np.linalg.norm(v, axis=1) + 1e-4)  # Cauchy–Schwarz: no norm advantage left
    with pytest.raises(ValueError, match="score"):
        TeachConfig(score="l2")


@pytest.mark.unit
def test_bootstrap_interval() -> None:
    rng = np.random.default_rng(0)
    a = np.ones(50, bool)
    b = np.zeros(50, bool)
    assert bootstrap_diff_ci(a, b, rng=rng) == (1.0, 1.0)
    x = rng.random(400) < 0.5
    lo, hi = bootstrap_diff_ci(x, x, rng=rng)
    assert lo == hi == 0.0
    lo, hi = bootstrap_diff_ci(rng.random(400) < 0.5, rng.random(400) < 0.5, rng=rng)
    assert lo < 0 < hi and hi - lo < 0.3
    with pytest.raises(ValueError):
        bootstrap_diff_ci(a, b[:10])


# ----------------------------------------------------------------------------------------------------------------
# samples


@pytest.mark.unit
def test_selfplay_sample_keeps_history_and_round_trips(tmp_path: Path, student) -> None:
    config = SelfPlaySampleConfig(positions=60, parallel_games=4, skip_plies=6, sample_plies=10, max_plies=40, seed=1)
    s = selfplay_sample(student, config)
    assert len(s) == 60 and s.info["games"] >= 1
    assert (s.origin[:, 1] >= 6).all()
    for i in (0, 17, 59):
        board = s.board(i)
        assert board.fen() == s.fens[i] and len(board.move_stack) == s.origin[i, 1]
    np.testing.assert_array_equal(s.planes(student.format, [3, 5]), student.format.encode([s.board(3), s.board(5)]))
    loaded = PositionSample.load(s.save(tmp_path / "pool.npz"))
    assert loaded.fens == s.fens and loaded.games == s.games
    np.testing.assert_array_equal(loaded.planes(student.format), s.planes(student.format))
    again = selfplay_sample(student, config)
    assert again.fens == s.fens  # seeded: reproducible


# ----------------------------------------------------------------------------------------------------------------
# run directory: teachability → novelty → funnel, resumable, checkpoints untouched


def make_run(run: Path, student: AZNet, n_concepts: int = 2) -> list[str]:
    """A run directory as `azc mine --out RUN` writes it: 2 solved concepts at block0, one refused."""
    run.mkdir(parents=True, exist_ok=True)
    d = int(np.prod(student.layer_shape("block0")))
    rng = np.random.default_rng(5)
    ids = [f"block0/root{k:05d}" for k in range(n_concepts + 1)]
    vectors = {cid: random_sparse_vector(d, 16, rng) for cid in ids[:n_concepts]}
    with open(run / "concepts.jsonl", "w") as fh:
        for k, cid in enumerate(ids):
            rec = {"id": cid, "layer": "block0", "root": k, "status": "optimal", "extra": {"kind": "dynamic"}}
            if cid not in vectors:
                rec["status"] = "refused: the solver returned v = 0"
            fh.write(json.dumps(rec) + "\n")
        fh.write("{not json\n")
    np.savez_compressed(run / "vectors.npz", **vectors)
    (run / "roots.jsonl").write_text("".join(json.dumps({"i": k}) + "\n" for k in range(5)))
    return ids


@pytest.mark.integration
def test_teachability_stage_resumes_and_leaves_checkpoints_unchanged(tmp_path: Path, sample, student) -> None:
    series = Series(tmp_path / "series", name="tiny")
    torch.manual_seed(1)
    series.add(student, CheckpointMeta(name="ck-000", step=0))
    series.add(AZNet(TINY).eval(), CheckpointMeta(name="ck-001", step=1))
    before = {p.name: sha(p) for p in series.directory.iterdir()}
    teacher = PlantedTeacher(student)
    students = series_students(series, None)
    assert [n for n, _ in students] == ["ck-000", "ck-001"]
    run = tmp_path / "run"
    ids = make_run(run, student)
    sample.save(run / "pool.npz")
    config = TeachConfig(pool_size=len(sample), top_fraction=0.1, epochs=2, lr=1e-3, max_student_agreement=0.6,
                         random_controls=1, seed=0)
    logs: list[str] = []
    summary = teachability_stage(run, teacher, students, config, log=logs.append)
    assert summary["candidates"] == 2 and summary["controls"] == 1 and summary["scored_now"] == 3
    assert summary["skipped_records"] == 1  # the bad JSON line, reported
    recs = read_results(run / "teachability.jsonl")
    assert set(recs) == {ids[0], ids[1], "control/block0/0"}
    for rec in recs.values():
        assert rec["status"] in ("ok", "already known")
        if rec["status"] == "ok":
            assert len(rec["ci"]) == 2 and rec["ci"][0] <= rec["lift"] <= rec["ci"][1]
            assert set(rec["table"]) == {"before", "concept", "random"}
    assert recs["control/block0/0"]["kind"] == "control" and recs["control/block0/0"]["student"] is not None
    rec = recs[ids[0]]
    assert len(rec["prototype_rows"]) == rec["n_prototypes"] == math.ceil(0.1 * len(sample))
    assert set(rec["test_rows"]) <= set(rec["prototype_rows"])
    assert {p.name: sha(p) for p in series.directory.iterdir()} == before  # checkpoints never change
    # resume: nothing left to do; a record cut off by a kill is redone, the others are not
    assert teachability_stage(run, teacher, students, config, log=logs.append)["scored_now"] == 0
    text = (run / "teachability.jsonl").read_text().splitlines(keepends=True)
    (run / "teachability.jsonl").write_text("".join(text[:-1]) + text[-1][: len(text[-1]) // 2])
    assert len(ResultLog(run / "teachability.jsonl").done) == 2
    assert teachability_stage(run, teacher, students, config, log=logs.append)["scored_now"] == 1
    assert len(read_results(run / "teachability.jsonl")) == 3


@pytest.mark.unit
def test_novelty_stage_order_and_funnel_counts(tmp_path: Path, student) -> None:
    run = tmp_path / "run"
    ids = make_run(run, student, n_concepts=3)
    d = int(np.prod(student.layer_shape("block0")))
    rng = np.random.default_rng(0)
    z_h = rng.standard_normal((80, d)).astype(np.float32)
    z_a = rng.standard_normal((80, d)).astype(np.float32)
    build_basis(z_h, z_a, "block0", NoveltyConfig(positions=80)).save(run / "novelty_basis" / "block0.npz")
    with pytest.raises(ValueError, match=r"teachability\.jsonl is missing"):
        novelty_stage(run, log=lambda _: None)  # the paper's order needs the teachability results first
    log = ResultLog(run / "teachability.jsonl")
    log.add({"id": ids[0], "status": "ok", "kept": True})
    log.add({"id": ids[1], "status": "already known", "kept": False})
    log.add({"id": ids[2], "status": "ok", "kept": True})
    summary = novelty_stage(run, log=lambda _: None)
    assert summary["candidates"] == 2 and summary["scored_now"] == 2
    nov = read_results(run / "novelty.jsonl")
    assert set(nov) == {ids[0], ids[2]}
    assert nov[ids[0]]["ks"] == k_grid(80) and len(nov[ids[0]]["scores"]) == len(nov[ids[0]]["ks"])
    result = funnel_stage(run)
    total = result["total"]
    assert result["stages"] == ["roots", "mined", "solved", "teachable", "novel", "kept"]
    assert (total["roots"], total["mined"], total["solved"], total["teachable"]) == (5, 4, 3, 2)
    n_novel = sum(bool(r["novel"]) for r in nov.values())
    assert total["novel"] == total["kept"] == n_novel
    assert total["already_known"] == 1
    assert total["shares"]["fail_teachability"] == pytest.approx(1 - 2 / 3)
    assert json.loads((run / "funnel.json").read_text())["paper"]["fail_teachability"] == 0.976
    assert (run / "figures" / "funnel.png").stat().st_size > 0
    assert not (run / "figures" / "controls.png").exists()  # no control was scored
    # the other order: novelty scores every solved concept, then the funnel reads novel → teachable
    independent = novelty_stage(run, order="independent", log=lambda _: None)
    assert independent["candidates"] == 3 and independent["scored_now"] == 1
    other = funnel(ConceptSet.load(run), read_results(run / "teachability.jsonl"), read_results(run / "novelty.jsonl"),
                   roots=5, order="novelty-first")
    assert other["stages"][3:5] == ["novel", "teachable"]
    assert other["total"]["kept"] == total["kept"]  # both filters passed either way


# ----------------------------------------------------------------------------------------------------------------
# CLI


@pytest.mark.integration
def test_cli_novelty_basis_filter_and_funnel(tmp_path: Path, small_pgn: Path, sample, student) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    ckpt = tmp_path / "series"
    Series(ckpt, name="tiny").add(student, CheckpointMeta(name="ck-000"))
    run = tmp_path / "run"
    make_run(run, student)
    sample.subset(np.arange(60)).save(tmp_path / "machine.npz")
    res = runner.invoke(app, ["novelty", "basis", "--run", str(run), "--model", f"{ckpt}:ck-000", "--human",
                              str(small_pgn), "--machine", str(tmp_path / "machine.npz"), "--positions", "60"])
    assert res.exit_code == 0, res.output
    assert (run / "novelty_basis" / "block0.npz").is_file() and (run / "figures" / "novelty_spectrum.png").is_file()
    assert "rank human" in res.output
    torch.manual_seed(2)
    Series(ckpt).add(AZNet(TINY).eval(), CheckpointMeta(name="ck-001"))
    res = runner.invoke(app, ["filter", "teachability", "--run", str(run), "--model", f"{ckpt}:ck-001",
                              "--pool", str(tmp_path / "machine.npz"), "--pool-size", "60", "--top-fraction", "0.25",
                              "--epochs", "1", "--controls", "0", "--max-agreement", "1.01"])
    assert res.exit_code == 0, res.output
    recs = read_results(run / "teachability.jsonl")
    assert len(recs) == 2 and {r["student"] for r in recs.values()} == {"ck-000"}
    res = runner.invoke(app, ["filter", "teachability", "--run", str(run), "--model", str(ckpt / "ck-001.pt")])
    assert res.exit_code == 2 and "--series" in res.output
    res = runner.invoke(app, ["filter", "novelty", "--run", str(run), "--order", "independent"])
    assert res.exit_code == 0, res.output
    assert len(read_results(run / "novelty.jsonl")) == 2
    res = runner.invoke(app, ["filter", "funnel", "--run", str(run), "--order", "novelty-first", "--no-figure"])
    assert res.exit_code == 0, res.output
    assert json.loads((run / "funnel.json").read_text())["order"] == "novelty-first"
    assert "beats every control" not in res.output  # taught with --controls 0
    layer = next(iter(recs.values()))["layer"]
    with open(run / "teachability.jsonl", "a") as fh:  # a control that every kept concept beats
        fh.write(json.dumps({"id": f"control/{layer}/0", "layer": layer, "kind": "control", "lift": -1.0}) + "\n")
    res = runner.invoke(app, ["filter", "funnel", "--run", str(run), "--no-figure"])
    assert res.exit_code == 0, res.output
    total = json.loads((run / "funnel.json").read_text())["total"]
    assert total["kept_beating_controls"] == total["kept"]
    assert f"beats every control of their layer: {total['kept']} of {total['kept']}" in " ".join(res.output.split())
    res = runner.invoke(app, ["filter", "novelty", "--run", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "concepts.jsonl" in res.output
    res = runner.invoke(app, ["filter", "funnel", "--run", str(run), "--order", "sideways"])
    assert res.exit_code == 2 and "order must be one of" in res.output


@pytest.mark.unit
def test_kept_concepts_beating_controls_are_counted_per_layer(tmp_path: Path) -> None:
    from alphazero_concepts.concepts.conceptset import Concept
    from alphazero_concepts.filters.funnel import beats_controls, control_ceilings, controls_figure

    def teach(cid: str, layer: str, lift: float | None, lo: float | None, kind: str = "concept") -> dict:
        return {"id": cid, "layer": layer, "kind": kind, "lift": lift, "kept": lo is not None and lo > 0.05,
                "ci": None if lo is None else [lo, lo + 0.2], "status": "ok" if lift is not None else "too few"}

    records = [teach("control/a/0", "a", 0.10, 0.0, "control"), teach("control/a/1", "a", 0.04, -0.1, "control"),
               {"id": "control/a/2", "layer": "a", "kind": "control", "lift": None},  # from elsewhere: no lift
               teach("control/b/0", "b", None, None, "control"),  # no lift: not a ceiling
               teach("control/b/1", "b", float("nan"), None, "control"),  # untaught controls record NaN
               teach("a1", "a", 0.30, 0.12), teach("a2", "a", 0.20, 0.08), teach("b1", "b", 0.30, 0.2),
               teach("c1", "c", 0.30, 0.2)]
    teachability = {r["id"]: r for r in records}
    assert control_ceilings(teachability) == {"a": 0.10}
    ceilings = control_ceilings(teachability)
    assert [beats_controls(teachability[k], ceilings) for k in ("a1", "a2", "b1", "c1")] == [True, False, False,
                                                                                           False]
    concepts = [Concept(k, k[0], {}, np.ones(3)) for k in ("a1", "a2", "b1", "c1")]
    novelty = {k: {"novel": True} for k in ("a1", "a2", "b1", "c1")}
    result = funnel(concepts, teachability, novelty, roots=4)
    assert result["total"]["kept"] == 4 and result["total"]["kept_beating_controls"] == 1
    assert result["layers"]["a"]["kept_beating_controls"] == 1 and result["control_ceilings"] == {"a": 0.10}
    assert controls_figure(teachability, tmp_path / "controls.png").stat().st_size > 0
    no_controls = {k: r for k, r in teachability.items() if r["kind"] != "control"}
    assert controls_figure(no_controls, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


@pytest.mark.unit
def test_lift_comparison_sets_taught_concepts_against_controls_per_layer() -> None:
    """Concepts that lift far more than every control give a small p; concepts drawn like the controls do not;
    untaught concepts (already known, NaN) and planted records are left out of both groups."""
    from alphazero_concepts.filters.funnel import lift_comparison

    rng = np.random.default_rng(0)
    records = []
    for layer, shift in (("high", 0.3), ("same", 0.0)):
        records += [{"id": f"{layer}/c{i}", "layer": layer, "kind": "concept", "status": "ok",
                     "lift": float(shift + rng.normal(0, 0.02))} for i in range(12)]
        records += [{"id": f"control/{layer}/{i}", "layer": layer, "kind": "control", "status": "ok",
                     "lift": float(rng.normal(0, 0.02))} for i in range(8)]
    records += [{"id": "same/known", "layer": "same", "kind": "concept", "status": "already known", "lift": None},
                {"id": "same/nan", "layer": "same", "kind": "concept", "status": "ok", "lift": float("nan")},
                {"id": "planted", "layer": "same", "kind": "planted", "status": "ok", "lift": 0.9}]
    result = lift_comparison({r["id"]: r for r in records})
    assert list(result) == ["high", "same", "all"]
    assert result["high"]["concepts"]["n"] == 12 and result["same"]["concepts"]["n"] == 12
    assert result["all"]["controls"]["n"] == 16
    assert result["high"]["mann_whitney_p"] < 0.001 < 0.05 < result["same"]["mann_whitney_p"]
    assert result["high"]["concepts"]["mean"] == pytest.approx(0.3, abs=0.02)
    lone = lift_comparison({"x": {"id": "x", "layer": "a", "kind": "concept", "status": "ok", "lift": 0.1}})
    assert lone["a"]["mann_whitney_p"] is None and lone["a"]["controls"]["n"] == 0


@pytest.mark.unit
def test_students_seeds_are_in_the_lifts_interval(planted, monkeypatch) -> None:
    """With several student seeds every seed trains its own concept and baseline students, the lift is their mean,
    and the interval resamples seeds too: seed-to-seed spread widens it."""
    import alphazero_concepts.filters.teachability as teachability
    from alphazero_concepts.filters.teachability import bootstrap_diff_ci, bootstrap_seeded_diff_ci

    rng = np.random.default_rng(0)
    a = rng.random((3, 200)) < np.array([[0.5], [0.8], [0.65]])  # three seeds that disagree
    b = rng.random((3, 200)) < 0.5
    seeded = bootstrap_seeded_diff_ci(a, b, n_boot=2000)
    pooled = bootstrap_diff_ci(a.reshape(-1), b.reshape(-1), n_boot=2000)
    assert seeded[1] - seeded[0] > 1.5 * (pooled[1] - pooled[0])
    assert bootstrap_seeded_diff_ci(a[:1], b[:1], n_boot=500) == bootstrap_diff_ci(a[0], b[0], n_boot=500)

    pool, concept = planted
    calls: list[int] = []
    real = teachability.distill

    def counting(student, targets, **kw):
        calls.append(kw["seed"])
        return real(student, targets, **kw)

    monkeypatch.setattr(teachability, "distill", counting)
    config = dataclasses.replace(TEACH, student_seeds=3)
    baselines: dict = {}
    result = teach_rows(pool, concept, config, concept_id="a", baselines=baselines)
    assert len(calls) == 6 and len(baselines) == 3 and len(set(calls)) >= 3
    seeds, lifts = result.extra["seeds"], result.extra["seed_lifts"]
    assert len(seeds) == len(set(seeds)) == 3 and len(lifts) == 3
    assert result.lift == pytest.approx(np.mean(lifts))
    assert result.ci[0] <= result.lift <= result.ci[1]
    one = teach_rows(pool, concept, TEACH, concept_id="a")
    assert one.extra["seeds"] == seeds[:1]  # the first seed is the single-seed run's


def test_human_sample_records_the_bundled_games_without_the_checkouts_path(tmp_path: Path) -> None:
    """A committed basis or funnel names the bundled games as `<package>/…`, not this checkout's absolute path;
    a user's own file keeps its path."""
    from alphazero_concepts.concepts.samples import bundled_human_games, human_sample

    bundled = human_sample(bundled_human_games(), 5, max_games=3)
    assert bundled.source == "human:<package>/data/human_games.pgn"
    own = tmp_path / "mine.pgn"
    own.write_text(bundled_human_games().read_text())
    assert human_sample(own, 2, max_games=3).source == f"human:{own}"
