"""Game annotation: [%eval] from White's view, best moves, concept scores v·z (checked against the layer's
activations), figures, bad games reported by file and line, and the `annotate` command registered on a Typer app."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import chess
import chess.pgn
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from alphazero_concepts.chess.positions import GameRecord, InputError, ReadReport, read_pgn_games
from alphazero_concepts.concepts.activations import latents
from alphazero_concepts.concepts.conceptset import Concept, ConceptSet
from alphazero_concepts.nn.checkpoints import CheckpointMeta, save_checkpoint
from alphazero_concepts.nn.network import AZNet, NetConfig
from alphazero_concepts.play.annotate import AnnotateConfig, GameAnnotation, annotate_game, annotate_pgn
from alphazero_concepts.play.commands import register
from alphazero_concepts.play.concept_scores import check_concepts
from alphazero_concepts.play.uci import UciEngine

TINY = NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)
LAYER = "block0"
IDS = [f"{LAYER}/root0000{i}" for i in range(3)]


def load_concepts(run: Path, ids: list[str] | None = None) -> list[Concept]:
    """The solved concepts of a run, as annotation and the UCI engine read them (ConceptSet, solved_only)."""
    return list(ConceptSet.load(run, solved_only=True, ids=ids))


def tiny_net(seed: int = 0) -> AZNet:
    torch.manual_seed(seed)
    return AZNet(TINY).eval()


def mover_wins_net() -> AZNet:
    """Value +0.995 for the side to move in every position (value head: zero weights, bias 3)."""
    net = tiny_net()
    with torch.no_grad():
        net.value_fc2.weight.zero_()
        net.value_fc2.bias.fill_(3.0)
    return net


def random_games(path: Path, n: int, plies: int, seed: int = 0, bad_after: int | None = None) -> Path:
    """`n` legal random games; with `bad_after`, an illegal game is written after that many good ones."""
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for k in range(n):
            board = chess.Board()
            while not board.is_game_over() and board.ply() < plies:
                board.push(rng.choice(list(board.legal_moves)))
            game = chess.pgn.Game.from_board(board)
            game.headers["White"], game.headers["Black"] = f"W{k}", f"B{k}"
            print(game, file=fh, end="\n\n")
            if bad_after is not None and k + 1 == bad_after:
                fh.write('[Event "broken"]\n[Result "*"]\n\n1. e4 e5 2. Ke3 *\n\n')
    return path


@pytest.fixture(scope="module")
def net() -> AZNet:
    return tiny_net()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mining output as `azc mine` writes it: two concepts with vectors, one refused root without."""
    out = tmp_path_factory.mktemp("concepts")
    dim = int(np.prod(AZNet(TINY).layer_shape(LAYER)))
    rng = np.random.default_rng(0)
    unit = np.zeros(dim, np.float32)
    unit[3 * 64 + 27] = 1.0  # reads one unit: channel 3 on square d4
    vectors = {IDS[0]: unit, IDS[1]: rng.normal(size=dim).astype(np.float32)}
    records = [{"id": IDS[0], "layer": LAYER, "root": 0, "status": "optimal"},
               {"id": IDS[1], "layer": LAYER, "root": 1, "status": "optimal"},
               {"id": IDS[2], "layer": LAYER, "root": 2, "status": "no sub-par lines"}]
    (out / "concepts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    np.savez_compressed(out / "vectors.npz", **vectors)
    return out


@pytest.mark.unit
def test_load_concepts(run_dir: Path, net: AZNet, tmp_path: Path) -> None:
    concepts = load_concepts(run_dir)
    assert [c.id for c in concepts] == IDS[:2]  # the refused root has no vector and is left out
    assert concepts[0].short_id == "root00000"
    check_concepts(net, concepts)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run / "concepts")  # a run directory holding concepts/ works too
    assert [c.id for c in load_concepts(run, [IDS[1]])] == [IDS[1]]
    with pytest.raises(InputError, match="unknown concept"):
        load_concepts(run_dir, ["nope"])
    with pytest.raises(InputError, match="no vector"):
        load_concepts(run_dir, [IDS[2]])
    with pytest.raises(InputError, match=r"no concepts\.jsonl"):
        load_concepts(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "concepts.jsonl").write_text('{"id": "a", "layer": "block0"}\n{not json\n')
    np.savez(bad / "vectors.npz", a=np.zeros(3))
    with pytest.raises(InputError, match=r"concepts.jsonl:2: invalid JSON"):
        load_concepts(bad)
    with pytest.raises(ValueError, match="512 units"):
        check_concepts(net, [Concept("a", LAYER, {}, np.zeros(3, np.float32))])
    with pytest.raises(ValueError, match="not in this network"):
        check_concepts(net, [Concept("a", "block7", {}, np.zeros(512, np.float32))])


@pytest.mark.unit
def test_scores_are_v_dot_z_and_top_concepts(run_dir: Path, net: AZNet, tmp_path: Path) -> None:
    pgn = random_games(tmp_path / "g.pgn", 1, 16)
    record = next(read_pgn_games(pgn))
    concepts = load_concepts(run_dir)
    ann = annotate_game(net, record, concepts, AnnotateConfig(top=1))
    z = latents(net, ann.boards, LAYER)
    all_scores = np.stack([z @ c.vector for c in concepts])
    chosen = int(np.argmax(all_scores.max(axis=1) - all_scores.min(axis=1)))
    assert [c.id for c in ann.concepts] == [concepts[chosen].id]  # top-1 by range over the game
    np.testing.assert_allclose(ann.scores[0], all_scores[chosen], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(z[:, 3 * 64 + 27], all_scores[0], rtol=1e-5, atol=1e-5)  # the unit concept
    assert len(ann.best) == len(record.moves) + 1
    for board, move in zip(ann.boards, ann.best, strict=True):
        assert move is None or move in board.legal_moves


@pytest.mark.unit
def test_rises_mark_the_largest_increases() -> None:
    record = GameRecord({}, chess.STARTING_FEN, [chess.Move.from_uci(m) for m in ("e2e4", "e7e5", "g1f3", "b8c6")],
                        "*", "x.pgn", 0, 1)
    boards = [chess.Board()]
    for m in record.moves:
        boards.append(boards[-1].copy())
        boards[-1].push(m)
    ann = GameAnnotation(record, boards, np.zeros(5), [None] * 5, scores=np.array([[0, 1, 0.5, 3, 2.0]]))
    assert ann.rises(2) == [[3, 1]]  # +2.5 at ply 3 (Nf3), then +1 at ply 1
    assert ann.move_label(3) == "2. Nf3" and ann.move_label(4) == "2... Nc6"


@pytest.mark.integration
def test_annotated_pgn_reads_back_with_one_comment_per_move(run_dir: Path, tmp_path: Path) -> None:
    net = mover_wins_net()
    pgn = random_games(tmp_path / "games.pgn", 2, 24, seed=3, bad_after=1)
    out = tmp_path / "out" / "annotated.pgn"
    result = annotate_pgn(net, pgn, out, load_concepts(run_dir), AnnotateConfig(top=2), model_name="mover-wins")
    assert result.games == 2 and result.report.skipped == 1
    assert str(result.report.errors[0]).startswith(f"{pgn}:")  # the broken game is named by file and line
    with open(out) as fh:
        games = []
        while (game := chess.pgn.read_game(fh)) is not None:
            games.append(game)
    assert len(games) == 2
    originals = list(read_pgn_games(pgn, report=ReadReport(str(pgn))))
    for game, original in zip(games, originals, strict=True):
        assert not game.errors
        assert [n.move for n in game.mainline()] == original.moves
        assert game.headers["White"] == original.headers["White"]
        assert "mover-wins" in game.headers["Annotator"]
        for node in game.mainline():
            assert node.comment.count("[%eval") == 1 or node.board().is_checkmate()
            assert "best " in node.comment or node.board().is_game_over()
            assert all(c.split("/")[1] in node.comment for c in IDS[:2])
            score = node.eval()
            if score is not None:  # the planted net: the side to move wins, so White's eval flips every ply
                white = score.white().score()
                assert (white > 0) == (node.turn() == chess.WHITE), node.comment
    assert len(result.figures) == 2 and all(p.is_file() and p.stat().st_size > 5000 for p in result.figures)
    meta = json.loads((result.figures[0].parent / "annotate.json").read_text())
    assert meta["skipped"] == 1 and len(meta["games"]) == 2 and meta["games"][0]["concepts"][0]["rises"]
    assert not list(out.parent.glob(".*.tmp"))


@pytest.mark.integration
def test_annotate_with_search_and_no_concepts(net: AZNet, tmp_path: Path) -> None:
    pgn = random_games(tmp_path / "g.pgn", 1, 10, seed=5)
    out = tmp_path / "a.pgn"
    result = annotate_pgn(net, pgn, out, (), AnnotateConfig(simulations=8), figures_dir=tmp_path / "figs")
    game = chess.pgn.read_game(io.StringIO(out.read_text()))
    assert game is not None and all("[%eval" in n.comment for n in game.mainline())
    assert "|" not in "".join(n.comment for n in game.mainline())  # no concept part without concepts
    assert result.figures[0].parent == tmp_path / "figs"


@pytest.mark.integration
def test_annotate_command(run_dir: Path, tmp_path: Path) -> None:
    model = save_checkpoint(tmp_path / "tiny.pt", tiny_net(), CheckpointMeta(name="tiny"))
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    pgn = random_games(tmp_path / "g.pgn", 1, 12, seed=7)
    out = tmp_path / "annotated.pgn"
    res = runner.invoke(app, ["annotate", str(pgn), "--out", str(out), "--concepts", str(run_dir),
                              "--concept", IDS[1], "--model", str(model)])
    assert res.exit_code == 0, res.output
    game = chess.pgn.read_game(io.StringIO(out.read_text()))
    assert "root00001" in game.next().comment and "root00000" not in game.next().comment
    assert (tmp_path / "annotated_figures" / "game-0001.png").is_file()
    broken = tmp_path / "broken.pgn"
    broken.write_text('[Event "x"]\n\n1. e4 e5 2. Ke3 *\n')
    res = runner.invoke(app, ["annotate", str(broken), "--out", str(tmp_path / "b.pgn"), "--model", str(model)])
    assert res.exit_code == 2 and f"{broken}:" in res.output and "no readable game" in res.output
    res = runner.invoke(app, ["annotate", str(pgn), "--out", str(out), "--concepts", str(run_dir),
                              "--concept", "nope", "--model", str(model)])
    assert res.exit_code == 2 and "unknown concept" in res.output
    assert "uci" in [c.name for c in app.registered_commands]


@pytest.mark.unit
def test_uci_reports_the_concept_option(run_dir: Path, tmp_path: Path) -> None:
    model = save_checkpoint(tmp_path / "tiny.pt", tiny_net(), CheckpointMeta(name="tiny"))
    lines: list[str] = []
    eng = UciEngine(lines.append, model=str(model), load_now=False)
    eng.handle(f"setoption name ConceptRun value {run_dir}")
    eng.handle(f"setoption name Concept value {IDS[0]}")
    eng.handle("go nodes 4")
    eng.wait(30)
    report = [x for x in lines if x.startswith(f"info string concept {IDS[0]}")]
    assert report, lines
    best = chess.Move.from_uci(lines[-1].split()[1])
    board = chess.Board()
    expected = latents(eng._net, [board], LAYER)[0, 3 * 64 + 27]
    assert float(report[0].split(" score ")[1].split()[0]) == pytest.approx(expected, abs=1e-3)
    assert f"after {best.uci()}" in report[0]
