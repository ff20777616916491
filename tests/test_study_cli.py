"""`azc study …` commands, in-process (typer's CliRunner): demo set → create → add → export → stats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alphazero_concepts.study.cli import study_app
from alphazero_concepts.study.session import ensure_started, participant_view, submit_answer
from alphazero_concepts.study.store import Store

pytestmark = pytest.mark.integration


def run(*args: str) -> str:
    result = CliRunner().invoke(study_app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_round_trip(tmp_path: Path) -> None:
    db, puzzles = tmp_path / "s.sqlite", tmp_path / "set.json"
    run("demo-set", "--out", puzzles, "--concepts", "4", "--train", "2", "--test", "2", "--seed", "1")
    assert json.loads(puzzles.read_text())["schema"] == "alphazero-concepts/puzzles/1"
    out = run("create", "--db", db, "--puzzles", puzzles, "--name", "Pilot", "--phase2-min", "0")
    assert out.startswith("study 1: 16 puzzles, 4 concepts")
    assert "Pilot" in run("list", "--db", db)
    out = run("add", "Ann", "Bob", "--study", "1", "--db", db, "--seed", "7", "--base-url", "http://laptop:9000")
    ann, bob = (line.split("\t") for line in out.strip().splitlines())
    assert ann[1].startswith("http://laptop:9000/p/") and ann[4] == "seed=7" and bob[4] == "seed=8"
    assert ann[2].removeprefix("taught=") == bob[3].removeprefix("control=")  # balanced: Bob mirrors Ann
    out = run("add", "Cat", "--study", "1", "--db", db, "--taught", "demo-0", "--control", "demo-1,demo-2")
    assert "taught=demo-0\tcontrol=demo-1,demo-2" in out
    store = Store(db)
    assert store.study(1).limits == {1: 7200.0, 2: None, 3: 7200.0}
    assert len(store.admin_token()) >= 32 and run("token", "--db", db).strip() == store.admin_token()

    token = ann[1].rsplit("/", 1)[1]
    ensure_started(store, token, 1)
    pid = participant_view(store, token).state.current
    answer = store.study(1).puzzle_set.by_id()[pid].answer
    submit_answer(store, token, puzzle_id=pid, move=answer, comment="=1+1")
    table = list(csv.DictReader(io.StringIO(run("export", "--study", "1", "--db", db))))
    assert len(table) == 1 and table[0]["move_uci"] == answer and table[0]["correct"] == "True"
    assert table[0]["comment"] == "'=1+1"
    run("export", "--study", "1", "--db", db, "--format", "json", "--out", tmp_path / "all.json")
    dump = (tmp_path / "all.json").read_text()
    assert token not in dump and len(json.loads(dump)["participants"]) == 3

    out = run("stats", "--study", "1", "--db", db, "--out", tmp_path / "res")
    assert "gain (paper, 4 GMs)" in out and "sign p=0.125" in out
    assert {p.name for p in (tmp_path / "res").iterdir()} == {"results.json", "solve_rates.png", "concepts.png"}


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "alphazero-concepts/puzzles/1", "name": "x", "puzzles": [{"id": "a"}]}))
    result = CliRunner().invoke(study_app, ["create", "--db", str(tmp_path / "s.sqlite"), "--puzzles", str(bad)])
    assert result.exit_code == 2 and "puzzles[0].fen: missing" in result.output
    result = CliRunner().invoke(study_app, ["stats", "--db", str(tmp_path / "s.sqlite"), "--study", "3"])
    assert result.exit_code == 2 and "no such study database" in result.output  # only serve/create make one
    Store(tmp_path / "s.sqlite").close()
    result = CliRunner().invoke(study_app, ["stats", "--db", str(tmp_path / "s.sqlite"), "--study", "3"])
    assert result.exit_code == 2 and "no study 3" in result.output
