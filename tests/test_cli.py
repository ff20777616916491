"""The `azc` command line end to end on a tiny series the test builds (roots → rollouts → mine, collect, analyse)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from alphazero_concepts.cli import app
from alphazero_concepts.concepts.activations import ActivationStore
from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series
from alphazero_concepts.nn.network import AZNet, NetConfig

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("series")
    s = Series(directory, name="tiny")
    for step, seed in ((1, 0), (2, 1)):
        torch.manual_seed(seed)
        net = AZNet(NetConfig(blocks=2, channels=8, value_channels=2, value_hidden=8))
        with torch.no_grad():
            net.policy_out.weight.mul_(5)
        s.add(net, CheckpointMeta(name=f"c{step}", step=step, elo=float(step)))
    return directory


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_roots_rollouts_and_mine(series: Path, tmp_path: Path) -> None:
    run("roots", "--model", str(series), "--out", str(tmp_path / "roots.jsonl"), "--games", "4", "--max-roots", "2")
    roots = [json.loads(x) for x in (tmp_path / "roots.jsonl").read_text().splitlines()]
    assert roots and all(r["teacher_move"] != r["weaker_move"] for r in roots)
    assert {r["teacher"] for r in roots} == {"c2"} and {r["weaker"] for r in roots} == {"c1"}
    run("rollouts", "--model", str(series), "--roots", str(tmp_path / "roots.jsonl"), "--out",
        str(tmp_path / "rollouts.jsonl"), "--length", "6", "--subpar", "2", "--sims", "64")
    lines = [json.loads(x) for x in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert len(lines) == len(roots) and all(len(x["chosen"]["steps"]) == 7 for x in lines)
    run("mine", "--model", str(series), "--rollouts", str(tmp_path / "rollouts.jsonl"), "--layer", "block1",
        "--out", str(tmp_path / "concepts"))
    records = [json.loads(x) for x in (tmp_path / "concepts" / "concepts.jsonl").read_text().splitlines()]
    vectors = np.load(tmp_path / "concepts" / "vectors.npz")
    mined = [r for r in records if "objective" in r]
    assert mined and all(r["id"] in vectors for r in mined)
    assert all(r["violated"] == 0 or r["used_slack"] for r in mined)


def test_collect_and_analyse(series: Path, tmp_path: Path) -> None:
    fens = tmp_path / "positions.fen"
    fens.write_text("rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1\n"
                    "6k1/5ppp/8/8/8/8/5PPP/3R2K1 w - - 0 1\n")
    run("collect", "--model", str(series), "--positions", str(fens), "--layers", "block1", "--layers",
        "value.fc1", "--out", str(tmp_path / "acts"))
    store = ActivationStore(tmp_path / "acts")
    assert store.complete and store.read("block1").shape == (2, 8 * 64)
    out = run("analyse", "--model", f"{series}:c1", "6k1/5ppp/8/8/8/8/5PPP/3R2K1 w - - 0 1", "--sims", "64",
              "--json")
    assert json.loads(out)["pv"][0] == "d1d8"


def test_bad_input_gets_a_clear_error(series: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyse", "--model", str(series), "not a fen"])
    assert result.exit_code == 2 and "invalid FEN" in result.output
    result = runner.invoke(app, ["analyse", "--model", str(tmp_path / "missing.pt"), "startpos"])
    assert result.exit_code == 2 and "missing.pt" in result.output
