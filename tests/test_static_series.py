"""`azc static`: static concepts per layer and checkpoint, on planted activations and a tiny series.

Known answers: a fake network whose activations carry the concept labels at one layer of one checkpoint only (pure
noise everywhere else) must have that layer chosen there, with pair accuracy near 1, and chance elsewhere; the
other checkpoint (nothing planted) stays near chance. Nothing here needs ../shared.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import chess
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from alphazero_concepts.arena.sts import STSPosition
from alphazero_concepts.concepts.validation import PIECE_CONCEPTS, piece_labels, split_masks, static_concept_scores
from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series
from alphazero_concepts.nn.network import AZNet, NetConfig
from alphazero_concepts.probing import static_series as ss

THEMES = 3
PER_THEME = 40


def random_board(rng: random.Random) -> chess.Board:
    """A legal position with kings, maybe a queen and 0–2 bishops per side, and a few pawns (seeded)."""
    while True:
        board = chess.Board(None)
        squares = rng.sample(range(8, 56), 14)  # ranks 2–7: pawns may stand anywhere here
        board.set_piece_at(squares.pop(), chess.Piece(chess.KING, chess.WHITE))
        board.set_piece_at(squares.pop(), chess.Piece(chess.KING, chess.BLACK))
        for color in (chess.WHITE, chess.BLACK):
            if rng.random() < 0.5:
                board.set_piece_at(squares.pop(), chess.Piece(chess.QUEEN, color))
            for _ in range(rng.choice([0, 1, 2, 2])):
                board.set_piece_at(squares.pop(), chess.Piece(chess.BISHOP, color))
            for _ in range(2):
                board.set_piece_at(squares.pop(), chess.Piece(chess.PAWN, color))
        board.turn = rng.choice([chess.WHITE, chess.BLACK])
        if board.is_valid() and any(board.legal_moves):
            return board


def boards(n: int, seed: int) -> list[chess.Board]:
    rng = random.Random(seed)
    return [random_board(rng) for _ in range(n)]


def sts_positions(seed: int = 1) -> list[STSPosition]:
    out = []
    for i, board in enumerate(boards(THEMES * PER_THEME, seed)):
        k = 1 + i % THEMES
        move = next(iter(board.legal_moves))
        out.append(STSPosition(f"STS(v{k}.0) Theme {k}.{i:03d}", f"Theme {k}", k, board.fen(), {move.uci(): 1.0}))
    return out


class PlantedNet:
    """Stands in for a HookedNet (given through a loader: `static_series` calls what is not a HookedNet). At
    `planted` the activations are the concept labels (piece concepts and the STS theme, one column each) plus a
    little noise; every other layer is Gaussian noise."""

    layer_names: ClassVar[list[str]] = ["stem", "mid", "out"]

    def __init__(self, planted: str | None, themes: dict[str, int]) -> None:
        self.planted = planted
        self.themes = themes

    def eval(self) -> PlantedNet:
        return self

    def latents(self, positions: Sequence[chess.Board], layers: Sequence[str], batch_size: int = 256
                ) -> dict[str, np.ndarray]:
        n = len(positions)
        rng = np.random.default_rng(n + len(layers))
        signal = np.column_stack([*piece_labels(positions).values(),
                                  *[[self.themes.get(b.fen()) == k for b in positions]
                                    for k in range(1, THEMES + 1)]]).astype(float)
        out = {}
        for layer in layers:
            noise = rng.standard_normal((n, 6))
            out[layer] = np.hstack([3 * signal + 0.1 * noise[:, : signal.shape[1]], noise]) \
                if layer == self.planted else noise
        return out


def test_static_concept_scores_choose_the_planted_layer() -> None:
    rng = np.random.default_rng(7)  # not the split's seed: its draws would be the split itself
    labels = rng.random(300) < 0.4
    noise = rng.standard_normal((300, 8))
    z = {"noise": noise, "planted": np.hstack([labels[:, None] * 2.0, noise[:, :3]])}
    out = static_concept_scores(z, {"c": labels}, pairs=80, seed=0)["c"]
    assert out["best_layer"] == "planted" and out["best_acc"] > 0.97
    assert abs(out["layers"]["noise"]["test_pair_accuracy"] - 0.5) < 0.2
    assert out["positive_share"] == pytest.approx(labels.mean())
    train, val, test = split_masks(300, 0)
    assert not (train & val).any() and not (val & test).any() and (train | val | test).all()
    assert 0.5 < train.mean() < 0.7 and 0.1 < test.mean() < 0.3


def test_static_series_finds_what_when_and_where(tmp_path: Path) -> None:
    sts = sts_positions()
    themes = {p.board().fen(): p.number for p in sts}
    nets = [("early", lambda: PlantedNet(None, themes)), ("late", lambda: PlantedNet("mid", themes))]
    config = ss.StaticSeriesConfig(layers=("out", "stem", "mid"), pairs=60, seed=0)
    seen: list[tuple[str, str, str]] = []
    result = ss.static_series(nets, config, boards=boards(200, 0), sts=sts, sts_source="planted.epd",
                              progress=lambda c, layer, k: seen.append((c, layer, k)))
    assert set(result) >= {"settings", "checkpoints", "concepts", "summary"}
    assert result["checkpoints"] == ["early", "late"]
    settings = result["settings"]
    assert settings["layers"] == ["stem", "mid", "out"]  # network order, input first
    assert sum(settings["split"]["piece"].values()) == settings["positions"] == 200
    assert sum(settings["split"]["sts"].values()) == settings["sts"]["positions"] == THEMES * PER_THEME
    assert settings["pairs"] == 60 and settings["seed"] == 0 and settings["sts"]["themes"] == THEMES
    names = [*PIECE_CONCEPTS, *(f"STS{k} Theme {k}" for k in range(1, THEMES + 1))]
    assert list(result["concepts"]) == names
    assert len(seen) == 2 * 3 * len(names)
    noise_acc: list[float] = []
    for name, concept in result["concepts"].items():
        assert concept["kind"] == ("sts" if name.startswith("STS") else "piece")
        late, early = concept["checkpoints"]["late"], concept["checkpoints"]["early"]
        assert set(late["layers"]["mid"]) >= {"val_pair_accuracy", "test_pair_accuracy", "nonzeros"}
        assert late["best_layer"] == "mid", name  # where
        assert late["best_test_pair_accuracy"] > 0.95, name
        assert late["best_test_pair_accuracy"] == late["layers"]["mid"]["test_pair_accuracy"]
        noise_acc += [late["layers"][layer]["test_pair_accuracy"] for layer in ("stem", "out")]
        assert early["best_test_pair_accuracy"] < 0.8, name  # when: nothing before training
    assert abs(np.mean(noise_acc) - 0.5) < 0.1 and max(abs(a - 0.5) for a in noise_acc) < 0.4  # noise: chance
    means = result["summary"]["mean_best"]
    assert means["piece"]["late"] > 0.95 and means["sts"]["late"] > 0.95 and means["piece"]["early"] < 0.8
    assert result["summary"]["best_test_pair_accuracy"]["STS1 Theme 1"]["late"] > 0.95
    json.dumps(result)  # JSON-ready
    png = ss.plot_static(result, tmp_path / "static.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sts_labels_and_the_checks_name_what_is_wrong() -> None:
    sts = sts_positions()
    labels = ss.sts_labels(sts)
    assert list(labels) == ["STS1 Theme 1", "STS2 Theme 2", "STS3 Theme 3"]
    assert sum(int(v.sum()) for v in labels.values()) == len(sts)  # each position in exactly one theme
    one_theme = [p for p in sts if p.number == 1]
    with pytest.raises(ss.StaticSeriesError, match="at least two themes"):
        ss.static_series([("a", lambda: PlantedNet(None, {}))], ss.StaticSeriesConfig(pairs=10), boards=boards(100, 0),
                         sts=one_theme, sts_source="one.epd")
    rare = {"rare": np.arange(50) == 3}  # one positive: two splits have none
    with pytest.raises(ss.StaticSeriesError, match="'rare': 0 positive"):
        ss.check_splits(rare, 0, "positions")
    with pytest.raises(ss.StaticSeriesError, match="unknown layers"):
        ss.static_series([("a", lambda: PlantedNet(None, {}))], ss.StaticSeriesConfig(layers=("block9",), pairs=10),
                         boards=boards(100, 0))
    with pytest.raises(ValueError, match="pairs"):
        ss.StaticSeriesConfig(pairs=0)


# ------------------------------------------------------------------------------------------------------------
# the command, on a tiny series


@pytest.fixture(scope="module")
def tiny_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("series")
    s = Series(directory, name="tiny")
    for step in (1, 2):
        torch.manual_seed(step)
        s.add(AZNet(NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8)),
              CheckpointMeta(name=f"c{step}", step=step))
    return directory


def write_epd(path: Path) -> Path:
    lines = []
    for p in sts_positions():
        board = p.board()
        bm = board.san(chess.Move.from_uci(next(iter(p.points))))
        lines.append(f'{board.epd()} bm {bm}; id "{p.id}";')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_static_command_writes_json_and_png(tiny_series: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from alphazero_concepts.cli import app

    epd = write_epd(tmp_path / "sts.epd")
    monkeypatch.setattr(ss, "default_sts_path", lambda: epd)  # `--sts default`, without ../shared
    out, png = tmp_path / "static.json", tmp_path / "img" / "static.png"
    result = CliRunner().invoke(app, ["static", "--series", str(tiny_series), "--layers", "block0,stem",
                                      "--positions", "150", "--pairs", "20", "--sts", "default", "--json", str(out),
                                      "--figure", str(png)])
    assert result.exit_code == 0, result.output
    assert "default suite" in result.output
    data = json.loads(out.read_text())
    assert data["checkpoints"] == ["c1", "c2"] and data["model"] == "tiny"
    assert data["settings"]["layers"] == ["stem", "block0"] and data["settings"]["positions"] == 150
    assert data["settings"]["sts"]["source"] == str(epd) and len(data["concepts"]) == len(PIECE_CONCEPTS) + THEMES
    for concept in data["concepts"].values():
        for entry in concept["checkpoints"].values():
            assert entry["best_layer"] in ("stem", "block0")
            assert 0 <= entry["best_test_pair_accuracy"] <= 1
    assert png.read_bytes()[:4] == b"\x89PNG" and data["figure"] == str(png)


def test_static_command_inputs(tiny_series: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alphazero_concepts.cli import app

    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nope.epd"
    bad = CliRunner().invoke(app, ["static", "--series", str(tiny_series), "--sts", str(missing)])
    assert bad.exit_code == 2 and "error:" in bad.output and "nope.epd" in bad.output
    assert not (tmp_path / "runs").exists()
    monkeypatch.setattr(ss, "default_sts_path", lambda: missing)
    result = CliRunner().invoke(app, ["static", "--series", str(tiny_series), "--checkpoints", "c2", "--layers",
                                      "stem", "--positions", "100", "--pairs", "10", "--sts", "default"])
    assert result.exit_code == 0, result.output
    assert "not there; piece concepts only" in " ".join(result.output.split())
    assert (tmp_path / "runs" / "static" / "tiny.png").is_file()  # the default figure path
