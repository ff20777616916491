"""Probes, splits, targets, steering and the `probe`/`steer` commands, on synthetic activations and tiny networks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import chess
import chess.engine
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from alphazero_concepts.chess.positions import InputError
from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series
from alphazero_concepts.nn.network import AZNet, NetConfig
from alphazero_concepts.probing.commands import read_answers, register
from alphazero_concepts.probing.probes import (
    LayerProbe,
    ProbeConfig,
    ProbeError,
    block_split,
    random_split,
    reduce_features,
    run_probes,
)
from alphazero_concepts.probing.sampling import SampleConfig, sample_positions
from alphazero_concepts.probing.steer import (
    SteerConfig,
    amplification_check,
    load_concept,
    random_like,
    steered,
)
from alphazero_concepts.probing.targets import (
    BOARD_TARGETS,
    CsvTargets,
    StockfishTarget,
    StockfishTerms,
    TargetError,
    compute_targets,
    resolve_targets,
)

TINY = NetConfig(blocks=2, channels=8, value_channels=2, value_hidden=8)


def tiny_net(seed: int = 0) -> AZNet:
    torch.manual_seed(seed)
    return AZNet(TINY).eval()


def planted(n: int = 400, d: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """ReLU-like activations and a target that is a fixed linear function of them plus a little noise."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((n, d)), 0).astype(np.float32)
    w = rng.standard_normal(d)
    return x, x @ w + 0.05 * rng.standard_normal(n)


# ------------------------------------------------------------------------------------------------------------
# probes


@pytest.mark.unit
def test_linear_probe_recovers_a_planted_target_and_reports_chance_when_shuffled() -> None:
    x, y = planted()
    split = random_split(len(y), 0.25, seed=1)
    probe = LayerProbe("continuous").fit(x[split.train], y[split.train])
    assert probe.score(x[split.test], y[split.test]) >= 0.95
    metrics = probe.metrics(x[split.test], y[split.test])[0]
    assert metrics["spearman"] >= 0.95
    shuffled = np.random.default_rng(2).permutation(y)
    chance = LayerProbe("continuous").fit(x[split.train], shuffled[split.train])
    assert chance.score(x[split.test], shuffled[split.test]) < 0.1
    assert chance.alpha_[0] >= 100  # the CV picks heavy regularisation when there is nothing to find


@pytest.mark.unit
def test_binary_probe_learns_a_planted_label_and_is_at_chance_on_shuffled_labels() -> None:
    x, y = planted(n=500, d=30, seed=3)
    label = (y > np.median(y)).astype(float)
    split = random_split(len(y), 0.3, seed=0)
    probe = LayerProbe("binary").fit(x[split.train], label[split.train])
    m = probe.metrics(x[split.test], label[split.test])[0]
    assert m["accuracy"] >= 0.9 and m["chance"] < 0.65
    shuffled = np.random.default_rng(4).permutation(label)
    m0 = LayerProbe("binary").fit(x[split.train], shuffled[split.train]).metrics(x[split.test], shuffled[split.test])[0]
    assert m0["accuracy"] < m0["chance"] + 0.1
    with pytest.raises(ProbeError, match="class"):
        LayerProbe("binary").fit(x[:50], np.zeros(50))


@pytest.mark.unit
def test_mlp_beats_linear_on_a_product_and_l1_probe_is_sparse() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((600, 12)).astype(np.float32)
    y = x[:, 0] * x[:, 1]  # no linear signal at all
    split = random_split(600, 0.25, seed=0)
    linear = LayerProbe("continuous").fit(x[split.train], y[split.train]).score(x[split.test], y[split.test])
    mlp = LayerProbe("continuous", "mlp", hidden=32, mlp_alpha=1.0, max_iter=300).fit(x[split.train], y[split.train])
    assert linear < 0.1 and mlp.score(x[split.test], y[split.test]) > 0.6
    xs, _ = planted(n=300, d=80, seed=6)
    sparse_y = xs[:, :3] @ np.array([1.0, -2.0, 1.5])
    l1 = LayerProbe("continuous", "l1").fit(xs, sparse_y)
    assert l1.nonzeros_[0] <= 20 and l1.score(xs, sparse_y) > 0.95


@pytest.mark.unit
def test_block_split_never_puts_a_held_out_group_in_training() -> None:
    rng = np.random.default_rng(0)
    groups = [f"g{int(k)}" for k in rng.integers(0, 9, size=300)]
    for seed in range(10):
        split = block_split(groups, 0.25, seed=seed)
        train_groups = {groups[i] for i in split.train}
        test_groups = {groups[i] for i in split.test}
        assert test_groups == set(split.held_out) and not train_groups & test_groups
        assert len(split.train) + len(split.test) == 300 and len(split.test) >= 0.25 * 300
    fixed = block_split(groups, held_out=["g3"])
    assert {groups[i] for i in fixed.test} == {"g3"}
    with pytest.raises(ProbeError, match="do not occur"):
        block_split(groups, held_out=["nope"])


@pytest.mark.unit
def test_block_split_scores_show_no_leakage_of_group_identity() -> None:
    """A target that is a per-group constant is learnable from a one-hot group feature on a random split, and
    impossible on the block split: any leak of held-out rows into training would make it learnable there too."""
    rng = np.random.default_rng(1)
    n_groups, n = 12, 600
    g = rng.integers(0, n_groups, size=n)
    x = np.eye(n_groups, dtype=np.float32)[g] + 0.01 * rng.standard_normal((n, n_groups)).astype(np.float32)
    y = rng.standard_normal(n_groups)[g]
    values, kinds = {"t": y}, {"t": "continuous"}
    from alphazero_concepts.probing.probes import probe_layer

    splits = [random_split(n, 0.25, 0), block_split([f"g{k}" for k in g], 0.25, 0)]
    rows = probe_layer(x, values, kinds, splits, ProbeConfig(alphas=(1e-3, 1e-2, 0.1)))
    score = {r["split"]: r["r2"] for r in rows}
    assert score["random"] > 0.95 and score["block"] < 0.1


@pytest.mark.unit
def test_feature_reductions_have_the_documented_sizes() -> None:
    x = np.random.default_rng(0).random((40, 8 * 64)).astype(np.float32)
    train = np.arange(30)
    assert reduce_features(x, "flat", (8, 8, 8), train).shape == (40, 512)
    pooled = reduce_features(x, "pool2", (8, 8, 8), train)
    assert pooled.shape == (40, 128)
    np.testing.assert_allclose(pooled[0, 0], x[0].reshape(8, 8, 8)[0, :2, :2].mean(), rtol=1e-6)
    assert reduce_features(x, "pool", (8, 8, 8), train).shape == (40, 16)
    assert reduce_features(x, "pca", (8, 8, 8), train, pca_dim=10).shape == (40, 10)


@pytest.mark.integration
def test_run_probes_on_a_tiny_series_resumes_without_refitting(tmp_path: Path) -> None:
    boards, groups = sample_positions(SampleConfig(positions=160, max_plies=40, seed=3))
    targets = resolve_targets(["material", "in_check"])
    nets = {"a": tiny_net(0), "b": tiny_net(1)}
    config = ProbeConfig(layers=("stem", "block1"), block="game", features="pool2", mlp_layers=("block1",),
                         mlp_targets=("material",), mlp_checkpoints=("b",))
    rows = run_probes(nets, boards, targets, config, groups=groups["game"], out=tmp_path / "p")
    linear = [r for r in rows if r["probe"] == "linear" and r["target"] == "material"]
    assert {(r["checkpoint"], r["layer"], r["split"]) for r in linear} == \
        {(c, layer, s) for c in "ab" for layer in ("stem", "block1") for s in ("random", "block")}
    assert all(r["r2"] is not None for r in linear)
    mlp = [r for r in rows if r["probe"] == "mlp"]
    assert [(r["checkpoint"], r["layer"], r["target"], r["split"]) for r in mlp] == [("b", "block1", "material",
                                                                                       "random")]
    held = next(r["held_out"] for r in rows if r["split"] == "block")
    test_games = {groups["game"][i] for i in range(len(boards)) if groups["game"][i] in held}
    assert test_games == set(held)

    def must_not_load() -> AZNet:
        raise AssertionError("a finished checkpoint was loaded again")

    again = run_probes({"a": must_not_load, "b": must_not_load}, boards, targets, config, groups=groups["game"],
                       out=tmp_path / "p")
    assert again == rows
    with pytest.raises(ProbeError, match="other settings"):
        run_probes(nets, boards, targets, ProbeConfig(layers=("stem",)), out=tmp_path / "p")


# ------------------------------------------------------------------------------------------------------------
# steering


@pytest.mark.unit
def test_steering_changes_only_the_chosen_layer_and_leaves_no_hook() -> None:
    net = tiny_net(2)
    boards = sample_positions(SampleConfig(positions=6, max_plies=12, seed=1))[0]
    planes = torch.from_numpy(net.format.encode(boards))
    layer = "block0.conv2"
    names = net.layer_names
    before = net.hook_count()
    (plain_p, plain_v), plain = net.run_with_cache(planes)
    v = np.random.default_rng(0).standard_normal(int(np.prod(net.layer_shape(layer)))).astype(np.float32)
    with steered(net, layer, v, alpha=0.5, beta=2.0):
        assert net.hook_count() == before + 1
        (_, _), cache = net.run_with_cache(planes)
    for name in names[: names.index(layer)]:
        torch.testing.assert_close(cache[name], plain[name], rtol=0, atol=0)
    z = plain[layer].reshape(len(boards), -1)
    vt = torch.from_numpy(v)
    expected = 0.5 * z + 0.5 * 2.0 * z.norm(dim=1, keepdim=True) / vt.norm() * vt
    torch.testing.assert_close(cache[layer].reshape(len(boards), -1), expected)
    for name in ("block0", "block1", "policy.logits", "value.out"):
        assert not torch.equal(cache[name], plain[name]), name
    assert net.hook_count() == before
    after_p, after_v = net(planes)
    torch.testing.assert_close(after_p, plain_p, rtol=0, atol=0)
    torch.testing.assert_close(after_v, plain_v, rtol=0, atol=0)
    with pytest.raises(RuntimeError), steered(net, layer, v, alpha=1.0):
        raise RuntimeError("boom")
    assert net.hook_count() == before


@pytest.mark.unit
def test_random_control_has_the_same_sparsity_and_is_seeded() -> None:
    v = np.zeros(500, np.float32)
    v[[3, 40, 41, 200]] = [1.0, -2.0, 0.5, 3.0]
    r = random_like(v, seed=7)
    assert np.count_nonzero(r) == 4 and sorted(np.abs(r[r != 0])) == sorted(np.abs(v[v != 0]))
    np.testing.assert_array_equal(r, random_like(v, seed=7))
    assert not np.array_equal(r, random_like(v, seed=8))


@pytest.mark.unit
def test_amplification_check_moves_agreement_towards_the_answers_the_vector_encodes() -> None:
    """Planted: steering value.fc1 can only move the value; steering policy.logits along the answers' one-hot
    direction must make the policy play the answers at α = 1, while random vectors of that sparsity do not."""
    net = tiny_net(3)
    fmt = net.format
    boards = sample_positions(SampleConfig(positions=40, max_plies=60, seed=2))[0][::10]  # 4 unlike positions
    legal = [fmt.legal_move_indices(b) for b in boards]
    answers, support = [], []
    for i, (moves, idx) in enumerate(legal):  # answers whose index no other board can play: no ties at α = 1
        others = set(np.concatenate([ix for j, (_, ix) in enumerate(legal) if j != i]).tolist())
        k = next(k for k in range(len(moves) - 1, 0, -1) if int(idx[k]) not in others)
        answers.append(moves[k])
        support.append(int(idx[k]))
    v = np.zeros(4672, np.float32)
    v[support] = 1.0
    before = net.hook_count()
    result = amplification_check(net, "policy.logits", v, boards, answers,
                                 SteerConfig(alphas=(0.5, 1.0), beta=50.0, random_vectors=2))
    assert result["alphas"] == [0.0, 0.5, 1.0]
    assert result["concept"]["agreement"][-1] == 1.0
    assert result["concept"]["answer_prob"][-1] > result["concept"]["answer_prob"][0]
    assert result["random"]["agreement"][-1] < 0.5
    assert result["concept"]["value_change"] == [0.0, 0.0, 0.0]  # policy logits do not feed the value
    assert net.hook_count() == before
    with pytest.raises(ValueError, match="not legal"):
        amplification_check(net, "policy.logits", v, boards[:1], [chess.Move.from_uci("a1a8")])


@pytest.mark.unit
def test_load_concept_from_a_mining_run_and_from_npy(tmp_path: Path) -> None:
    vec = np.arange(8, dtype=np.float32)
    np.savez_compressed(tmp_path / "vectors.npz", **{"block1/root00002": vec})
    (tmp_path / "concepts.jsonl").write_text(json.dumps({"id": "block1/root00002", "layer": "block1"}) + "\n" +
                                             json.dumps({"id": "block1/root00003", "status": "refused: x"}) + "\n")
    c = load_concept(tmp_path, "block1/root00002")
    assert c.layer == "block1" and c.nonzeros == 7
    np.testing.assert_array_equal(c.vector, vec)
    with pytest.raises(ValueError, match="refused"):
        load_concept(tmp_path, "block1/root00003")
    np.save(tmp_path / "v.npy", vec)
    assert load_concept(tmp_path / "v.npy", layer="stem").layer == "stem"
    with pytest.raises(ValueError, match="--layer"):
        load_concept(tmp_path / "v.npy")


# ------------------------------------------------------------------------------------------------------------
# targets


def values_of(fen: str, *names: str) -> list[float]:
    board = chess.Board(fen)
    return [float(BOARD_TARGETS[n].compute([board])[0]) for n in names]


@pytest.mark.unit
def test_targets_on_hand_checked_positions() -> None:
    start = chess.STARTING_FEN
    assert values_of(start, "material", "in_check", "passed_pawns", "mobility", "opp_mobility", "pawn_shield",
                     "king_attackers", "own_pawns", "opp_queens") == [0, 0, 0, 20, 20, 3, 0, 8, 1]
    # White has an extra queen; Black to move: the side to move's material is −9, White's +9
    up_queen = "rnb1kbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR b KQkq - 0 1"
    assert values_of(up_queen, "material", "material_white", "own_queens", "opp_queens") == [-9, 9, 0, 1]
    # rook check along the open e-file: in check, and no null move, so the opponent's mobility is undefined
    check = "4k3/8/8/8/8/8/8/4R1K1 b - - 0 1"
    in_check, opp_mob = values_of(check, "in_check", "opp_mobility")
    assert in_check == 1 and np.isnan(opp_mob)
    # d5 and a2 are passed (no black pawn ahead on their or the next files); h2 is Black's passed pawn
    assert values_of("4k3/8/8/3P4/8/8/P6p/4K3 w - - 0 1", "passed_pawns", "opp_passed_pawns") == [2, 1]
    # c7 stands in front of d5 on a neighbouring file: neither pawn is passed
    assert values_of("4k3/2p5/8/3P4/8/8/8/4K3 w - - 0 1", "passed_pawns", "opp_passed_pawns") == [0, 0]
    # the rook attacks the queen (a cheaper attacker); the queen attacks the rook, which the king defends
    assert values_of("4k3/8/8/3q4/8/8/3R4/4K3 w - - 0 1", "opp_en_prise", "own_en_prise",
                     "can_win_material") == [1, 0, 1]
    assert {t.name: t.kind for t in resolve_targets(["in_check,material", "king_safety"])} == {
        "in_check": "binary", "material": "continuous", "king_attackers": "continuous",
        "opp_king_attackers": "continuous", "pawn_shield": "continuous", "opp_pawn_shield": "continuous"}
    with pytest.raises(TargetError, match="unknown target"):
        resolve_targets(["materiel"])


@pytest.mark.unit
def test_vectorised_material_matches_a_per_board_count() -> None:
    boards = sample_positions(SampleConfig(positions=50, max_plies=60, seed=9))[0]
    values = {chess.PAWN: 1, chess.KNIGHT: 3, chess.BISHOP: 3, chess.ROOK: 5, chess.QUEEN: 9, chess.KING: 0}

    def slow(b: chess.Board) -> float:
        return sum(values[p.piece_type] * (1 if p.color == b.turn else -1) for p in b.piece_map().values())

    np.testing.assert_array_equal(compute_targets(boards, resolve_targets(["material"]))["material"],
                                  [slow(b) for b in boards])


@pytest.mark.unit
def test_csv_targets_name_file_and_line_of_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    b1 = chess.Board()
    b2 = chess.Board("4k3/8/8/8/8/8/8/4R1K1 b - - 0 1")
    path.write_text(f"fen,score,flag\n{b1.fen()},0.5,1\nnot a fen,1,0\n{b2.fen()},oops,1\n"
                    f"{b2.fen().replace(' 0 1', ' 7 30')},-2,0\n{b1.fen()},3\n")
    table = CsvTargets(path)
    assert table.report.read == 2 and table.report.skipped == 3
    lines = [e.line for e in table.report.errors]
    assert lines == [3, 4, 6] and str(table.report.errors[0]).startswith(f"{path}:3:")
    kinds = {t.name: t.kind for t in table.targets()}
    assert kinds == {"labels.score": "continuous", "labels.flag": "binary"}
    score = next(t for t in table.targets() if t.name == "labels.score")
    got = score.compute([b1, b2, chess.Board("8/8/8/8/8/8/8/K6k w - - 0 1")])
    assert got[0] == 0.5 and got[1] == -2 and np.isnan(got[2])  # move counters do not matter; unknown → NaN
    with pytest.raises(InputError, match=r"labels\.csv:3"):
        CsvTargets(path, strict=True)


class FakeEngine:
    """Answers every position with +1.5 pawns for White; counts calls."""

    calls = 0

    def analyse(self, board: chess.Board, limit: chess.engine.Limit) -> dict:
        FakeEngine.calls += 1
        return {"score": chess.engine.PovScore(chess.engine.Cp(150), chess.WHITE)}

    def quit(self) -> None:
        pass


@pytest.mark.unit
def test_stockfish_target_is_side_to_move_and_cached_on_disk(tmp_path: Path) -> None:
    boards = [chess.Board(), chess.Board("rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1")]
    cache = tmp_path / "sf.jsonl"
    FakeEngine.calls = 0
    target = StockfishTarget(depth=3, cache=cache, engine_factory=FakeEngine)
    np.testing.assert_allclose(target.evaluate(boards), [1.5, -1.5])
    assert FakeEngine.calls == 2
    with open(cache, "a") as fh:
        fh.write('{"key": "torn')  # a killed writer's last line
    np.testing.assert_allclose(StockfishTarget(depth=3, cache=cache, engine_factory=FakeEngine).evaluate(boards),
                               [1.5, -1.5])
    assert FakeEngine.calls == 2  # everything came from the cache
    StockfishTarget(depth=4, cache=cache, engine_factory=FakeEngine).evaluate(boards[:1])
    assert FakeEngine.calls == 3  # other settings, other key
    with pytest.raises(TargetError, match="Stockfish not found"):
        resolve_targets(["stockfish"], stockfish=StockfishTarget(engine_path=str(tmp_path / "none")))


TRACE = """ Contributing terms for the classical eval:
+------------+-------------+-------------+-------------+
|    Term    |    White    |    Black    |    Total    |
|            |   MG    EG  |   MG    EG  |   MG    EG  |
+------------+-------------+-------------+-------------+
|   Material |  ----  ---- |  ----  ---- |  2.00  4.00 |
|   Mobility | -0.13 -0.17 | -0.50 -0.66 |  0.38  0.49 |
|King safety |  0.53 -0.06 |  0.46 -0.06 |  0.07  0.00 |
|   Winnable |  ----  ---- |  ----  ---- |  0.00  0.11 |
+------------+-------------+-------------+-------------+
|      Total |  ----  ---- |  ----  ---- |  0.59  0.50 |
+------------+-------------+-------------+-------------+
Final evaluation       +0.16 (white side)""".splitlines()


@pytest.mark.unit
def test_stockfish_terms_parse_the_trace_blend_by_phase_and_take_the_side_to_move(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def runner(fens: list[str]) -> list[list[str]]:
        calls.append(fens)
        return [["Final evaluation: none (in check)"] if chess.Board(f).is_check() else TRACE for f in fens]

    start_black = chess.Board("rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1")  # full material: MG
    bare = chess.Board("4k3/8/8/8/8/8/3P4/4K3 w - - 0 1")  # no pieces: EG
    check = chess.Board("4k3/8/8/8/8/8/8/4R1K1 b - - 0 1")
    terms = StockfishTerms(cache=tmp_path / "t.jsonl", runner=runner)
    got = terms.terms([start_black, bare, check])
    assert got["material"][0] == pytest.approx(-2.0) and got["material"][1] == pytest.approx(4.0)
    assert got["king safety"][0] == pytest.approx(-0.07) and np.isnan(got["total"][2])
    names = [t.name for t in terms.targets()]
    assert "sf.king_safety" in names and "sf.total" in names
    again = StockfishTerms(cache=tmp_path / "t.jsonl", runner=runner).terms([start_black, check])
    assert len(calls) == 1 and again["total"][0] == pytest.approx(-0.59)  # from the disk cache
    with pytest.raises(TargetError, match="no classical"):
        StockfishTerms(runner=lambda fens: [["Final evaluation +0.1"] for _ in fens]).terms([bare])


def _stockfish() -> str | None:
    return shutil.which("stockfish") or (shutil.which("/usr/games/stockfish"))


@pytest.mark.needs_engine
@pytest.mark.skipif(_stockfish() is None, reason="Stockfish binary not installed")
def test_real_stockfish_scores_an_extra_queen_for_the_side_to_move(tmp_path: Path) -> None:
    white_up = chess.Board("rnb1kbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1")
    black_to_move = chess.Board("rnb1kbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR b KQkq - 0 1")
    got = StockfishTarget(depth=4, cache=tmp_path / "c.jsonl").evaluate([white_up, black_to_move])
    assert got[0] > 4 and got[1] < -4
    terms = StockfishTerms(cache=tmp_path / "c.jsonl").terms([white_up, black_to_move])
    assert terms["material"][0] > 5 and terms["material"][1] < -5


# ------------------------------------------------------------------------------------------------------------
# commands


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("series")
    s = Series(directory, name="tiny")
    for step in (1, 2):
        s.add(tiny_net(step), CheckpointMeta(name=f"c{step}", step=step))
    return directory


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register(app)
    return app


@pytest.mark.integration
def test_probe_command_quick_on_a_tiny_series_writes_the_summary(series_dir: Path, tmp_path: Path) -> None:
    out_json = tmp_path / "probe.json"
    result = CliRunner().invoke(cli(), ["probe", "--series", str(series_dir), "--quick", "--limit", "150",
                                        "--layers", "stem,block1", "--targets", "material,material_white,mobility",
                                        "--json", str(out_json), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    assert data["strongest_checkpoint"] == "c2" and data["checkpoints"] == ["c1", "c2"]
    assert -1 <= data["material_best_r2"] <= 1 and data["material_best_layer"] in ("stem", "block1")
    assert set(data["scores"]["material"]) == {"c1", "c2"} and set(data["per_layer"]["material"]) == {"stem",
                                                                                                      "block1"}
    assert Path(data["heatmap"]).is_file() and data["held_out"]
    assert "seeded games" in data["positions"]["source"]


@pytest.mark.integration
def test_probe_command_reads_a_position_file_and_reports_bad_input(series_dir: Path, tmp_path: Path) -> None:
    boards = sample_positions(SampleConfig(positions=90, max_plies=30, seed=5))[0]
    fens = tmp_path / "pos.fen"
    fens.write_text("\n".join(b.fen() for b in boards) + "\nnot a fen\n")
    result = CliRunner().invoke(cli(), ["probe", "--model", f"{series_dir}:c1", "--positions", str(fens),
                                        "--targets", "material,in_check", "--layers", "stem", "--block", "game",
                                        "--json", str(tmp_path / "p.json"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "1 skipped" in result.output
    data = json.loads((tmp_path / "p.json").read_text())
    assert "material_best_r2" in data and "in_check_best_balanced_accuracy" in data
    bad = CliRunner().invoke(cli(), ["probe", "--positions", str(fens), "--targets", "nope"])
    assert bad.exit_code == 2 and "unknown target" in bad.output


@pytest.mark.integration
def test_steer_command_on_a_concept_run(series_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "concepts"
    run.mkdir()
    net = tiny_net(2)
    v = np.zeros(int(np.prod(net.layer_shape("block1"))), np.float32)
    v[[1, 70, 300]] = [1.0, -1.0, 2.0]
    np.savez_compressed(run / "vectors.npz", **{"block1/root00000": v})
    (run / "concepts.jsonl").write_text(json.dumps({"id": "block1/root00000", "layer": "block1"}) + "\n")
    boards = sample_positions(SampleConfig(positions=5, max_plies=10, seed=4))[0]
    roots = tmp_path / "roots.jsonl"
    roots.write_text("".join(json.dumps({"start_fen": b.root().fen(), "moves": [m.uci() for m in b.move_stack],
                                         "teacher_move": next(iter(b.legal_moves)).uci()}) + "\n" for b in boards))
    got_boards, answers, _ = read_answers(roots)
    assert [b.fen() for b in got_boards] == [b.fen() for b in boards] and len(got_boards[0].move_stack) > 0
    assert answers == [next(iter(b.legal_moves)) for b in boards]
    out = tmp_path / "steer.json"
    result = CliRunner().invoke(cli(), ["steer", "--model", f"{series_dir}:c2", "--concepts", str(run), "--concept",
                                        "block1/root00000", "--positions", str(roots), "--alphas", "0.5,1",
                                        "--random", "2", "--json", str(out), "--plot", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["alphas"] == [0.0, 0.5, 1.0] and data["nonzeros"] == 3 and len(data["random_each"]) == 2
    assert (tmp_path / "s.png").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"fen": "8/8/8/8/8/8/8/K6k w - - 0 1", "move": "a1a2"}\n{"fen": "x"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2"):
        read_answers(bad)
