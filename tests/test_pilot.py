"""`azc study pilot` (issue 25): simulated participants from the Maia ladder go through the study protocol.

Without ../shared the students are tiny random lc0 networks written as ``maia-1100.pb.gz`` … in a temporary
folder, and the puzzle set is *planted* so that phase 2 provably helps: each unseen (test) puzzle is the position
two plies down a learning puzzle's machine line, so a student trained on that line has been shown the answer,
and every answer is a move no student plays before training. Then transfer must be clearly above 0, while with
the concept labels shuffled it must vanish. The real Maia networks and the bundled puzzle set are used by the
last test only, which skips with the reason when ../shared is absent.
"""

from __future__ import annotations

import json
import random
import sqlite3
import warnings
from dataclasses import replace
from pathlib import Path

import chess
import pytest
import torch
from typer.testing import CliRunner

from alphazero_concepts.core.puzzleset import load_puzzle_set
from alphazero_concepts.study.pilot import (
    PilotConfig,
    PilotSet,
    cluster_bootstrap_ci,
    latest_pilot,
    load_pilot_set,
    pilot_figures,
    power_estimate,
    run_pilot,
    shuffle_labels,
    sts_pilot_set,
    summarise,
)
from alphazero_concepts.study.simulated import StudentError, TeachBudget, answer_moves, resolve_students
from alphazero_concepts.study.stats import analyse
from alphazero_concepts.study.store import Store

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
STUDENTS = ("maia-1100", "maia-1900")
BUDGET = TeachBudget(lr=1e-2, steps=30, batch_size=16)


def _tiny_students(folder: Path) -> list:
    from alphazero_concepts.nn.lc0 import Lc0Config, Lc0Net, load_lc0, save_lc0

    folder.mkdir(parents=True, exist_ok=True)
    config = Lc0Config(blocks=1, channels=8, se=False, policy_head="convolution", policy_channels=8,
                       value_channels=2, value_hidden=8, wdl=True)
    nets = []
    for i, rating in enumerate((1100, 1500, 1900)):
        torch.manual_seed(i)
        path = save_lc0(folder / f"maia-{rating}.pb.gz", Lc0Net(config).eval())
        nets.append(load_lc0(path)[0])
    return nets


def _planted_set(nets: list, path: Path, *, concepts: int = 6, pairs: int = 2, seed: int = 0) -> Path:
    """Train puzzles on random positions with 5-ply lines of moves no student plays; each test puzzle is the
    position after the first two plies of a train puzzle's line (its answer: the line's third move)."""
    rng = random.Random(seed)

    def pick(board: chess.Board) -> str:
        tops = {answer_moves(net, [board])[0] for net in nets}
        return rng.choice(sorted(m.uci() for m in board.legal_moves if m.uci() not in tops))

    puzzles = []
    for c in range(concepts):
        for j in range(pairs):
            while True:
                board = chess.Board()
                for _ in range(rng.randrange(6, 30)):
                    board.push(rng.choice(list(board.legal_moves)))
                root, line = chess.Board(board.fen()), []
                b = root.copy()
                while len(line) < 5 and not b.is_game_over() and b.legal_moves.count() >= 3:
                    line.append(pick(b))
                    b.push_uci(line[-1])
                if len(line) == 5 and not b.is_game_over():
                    break
            puzzles.append({"id": f"c{c}-train{j}", "fen": root.fen(), "solution": [line[0]], "line": line,
                            "concept": f"c{c}", "split": "train"})
            test = root.copy()
            test.push_uci(line[0])
            test.push_uci(line[1])
            puzzles.append({"id": f"c{c}-test{j}", "fen": test.fen(), "solution": [line[2]], "line": line[2:],
                            "concept": f"c{c}", "split": "test"})
    path.write_text(json.dumps({"schema": "alphazero-concepts/puzzles/1", "name": "planted", "puzzles": puzzles}))
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("pilot")
    nets = _tiny_students(root / "maia")
    set_path = _planted_set(nets, root / "planted.json")
    store = Store(root / "pilot.sqlite")
    config = PilotConfig(students=STUDENTS, repetitions=3, budget=BUDGET, n_boot=1000)
    result = run_pilot(store, load_pilot_set(set_path), config, maia_dir=root / "maia")
    return {"root": root, "store": store, "result": result, "set": set_path, "config": config}


def test_planted_set_transfer_interval_is_above_zero(planted: dict) -> None:
    r = planted["result"]
    assert list(r["students"]) == list(STUDENTS)
    for name in STUDENTS:
        s = r["students"][name]
        assert s["phase1"] == 0.0  # every answer is a move no student plays before phase 2
        assert s["phase2_fit"] > 0.6  # the budget teaches most of the lines
        assert r["transfer"][name]["ci"][0] > 0
    assert r["transfer_pooled"]["ci"][0] > 0.5
    assert r["participants_needed_80pct_power"] is not None and r["participants_needed_80pct_power"] >= 2


def test_shuffled_label_control_interval_contains_zero(planted: dict) -> None:
    sc = planted["result"]["shuffled_control"]
    lo, hi = sc["ci"]
    assert lo <= 0 <= hi, sc
    assert abs(sc["estimate"]) < planted["result"]["transfer_pooled"]["estimate"] / 2
    assert planted["result"]["positive_control"] is None  # no suite given


def test_simulated_answers_are_stored_and_read_by_stats_like_human_ones(planted: dict) -> None:
    from alphazero_concepts.cli import app

    store: Store = planted["store"]
    main = planted["result"]["studies"]["main"]
    answers = store.answer_rows(main)
    assert answers and {a["method"] for a in answers} == {"simulated"}
    participants = store.participants(main)
    assert len(participants) == 2 * 3 * len(STUDENTS)
    assert all(p.name.endswith("(simulated)") and p.phase == 4 for p in participants)
    results = analyse(store.trial_rows(main), seed=0, n_boot=500)
    assert results.transfer is not None and results.transfer.n == len(participants)
    assert results.transfer.mean_diff == pytest.approx(planted["result"]["transfer_pooled"]["estimate"], abs=1e-6)
    with sqlite3.connect(store.path) as conn:
        marked = conn.execute("SELECT COUNT(*) FROM simulated_participants").fetchone()[0]
    assert marked == len(participants) * 2  # main + shuffled
    out = planted["root"] / "stats"
    res = CliRunner().invoke(app, ["study", "stats", "--study", str(main), "--db", str(store.path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "maia-1100 0a (simulated)" in res.output and "transfer (ours)" in res.output
    assert json.loads((out / "results.json").read_text())["paired"]["transfer"]["n"] == len(participants)


def test_results_page_and_pilot_page_show_simulated_participants(planted: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from alphazero_concepts.study.app import create_app

    store: Store = planted["store"]
    client = TestClient(create_app(store, maia_dir=planted["root"] / "maia"))
    headers = {"Authorization": f"Bearer {store.admin_token()}"}
    main = planted["result"]["studies"]["main"]
    page = client.get(f"/admin/studies/{main}/results", headers=headers)
    assert page.status_code == 200 and "maia-1900 2b (simulated)" in page.text
    pilot = client.get(f"/admin/studies/{main}/pilot", headers=headers)
    assert pilot.status_code == 200
    for name in ("pilot_rates", "pilot_transfer"):
        fig = client.get(f"/admin/pilots/{planted['result']['pilot_id']}/figures/{name}.png", headers=headers)
        assert fig.status_code == 200 and fig.content[:4] == b"\x89PNG"
    assert client.get(f"/api/admin/studies/{main}/pilot").status_code == 401


def test_the_organiser_runs_a_pilot_from_the_app(tmp_path: Path, planted: dict) -> None:
    """POST starts the pilot on the study's own puzzle set in the background; GET reports it until done."""
    import time

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from alphazero_concepts.study.app import create_app

    store = Store(tmp_path / "study.sqlite")
    study = store.create_study("human study", load_puzzle_set(planted["set"]))
    client = TestClient(create_app(store, maia_dir=planted["root"] / "maia"))
    headers = {"Authorization": f"Bearer {store.admin_token()}"}
    bad = client.post(f"/api/admin/studies/{study}/pilot", headers=headers, json={"students": ["maia-1234"]})
    assert bad.status_code == 422 and "maia-1234" in bad.json()["detail"]
    started = client.post(f"/api/admin/studies/{study}/pilot", headers=headers,
                          json={"students": ["maia-1500"], "quick": True, "repetitions": 1, "steps": 5,
                                "sts": False})
    assert started.status_code == 202, started.text
    for _ in range(600):
        state = client.get(f"/api/admin/studies/{study}/pilot", headers=headers).json()
        if state["status"] != "running":
            break
        time.sleep(0.1)
    assert state["status"] == "done", state
    assert set(state["result"]["transfer"]) == {"maia-1500"}
    assert store.participants(study) == []  # the human study is untouched: simulated players have their own
    page = client.get(f"/admin/studies/{study}/pilot", headers=headers)
    assert page.status_code == 200 and "maia-1500" in page.text


def test_pilot_is_deterministic_and_resumes_where_it_stopped(tmp_path: Path, planted: dict) -> None:
    set_path, maia = planted["set"], planted["root"] / "maia"
    config = PilotConfig(students=("maia-1500",), repetitions=2, budget=replace(BUDGET, steps=10),
                         shuffled_control=False, n_boot=500)

    def answers(store: Store, result: dict) -> list[tuple]:
        return [(a["participant_name"], a["phase"], a["puzzle_id"], a["move_uci"])
                for a in store.answer_rows(result["studies"]["main"])]

    whole = Store(tmp_path / "whole.sqlite")
    first = run_pilot(whole, load_pilot_set(set_path), config, maia_dir=maia)

    class Stop(Exception):
        pass

    def stop_after_two(stage: str, done: int, total: int) -> None:
        if done == 2:
            raise Stop

    broken = Store(tmp_path / "broken.sqlite")
    with pytest.raises(Stop):
        run_pilot(broken, load_pilot_set(set_path), config, maia_dir=maia, progress=stop_after_two)
    assert latest_pilot(broken)["status"] == "failed"
    seen: list[int] = []
    second = run_pilot(broken, load_pilot_set(set_path), config, maia_dir=maia,
                       progress=lambda s, d, t: seen.append(d))
    assert seen == [1, 2, 3, 4]  # the finished participants are kept, not re-run
    assert len(broken.participants(second["studies"]["main"])) == 4
    assert answers(broken, second) == answers(whole, first)
    for key in ("students", "transfer", "transfer_pooled", "participants_needed_80pct_power"):
        assert second[key] == first[key]
    assert latest_pilot(broken)["status"] == "done"
    assert summarise(broken, second["pilot_id"])["transfer"] == first["transfer"]


def test_sts_positive_control_set(tmp_path: Path) -> None:
    lines = []
    fens = ["r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3",
            "rnbqkb1r/pppp1ppp/5n2/4p3/4P3/2N5/PPPP1PPP/R1BQKBNR w KQkq - 2 3",
            "rnbqkbnr/ppp2ppp/8/3pp3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 0 3"]
    for theme, name in ((1, "Undermine"), (2, "Open Files and Diagonals")):
        for k, fen in enumerate(fens):
            epd = " ".join(fen.split()[:4])
            lines.append(f'{epd} bm Bc4; id "STS(v{theme}.0) {name}.{k + 1:03d}"; c0 "Bc4=10, d4=7, Qe2=3";')
    suite = tmp_path / "sts.epd"
    suite.write_text("\n".join(lines) + "\n")
    ps = sts_pilot_set(suite, n_train=1, n_test=2, seed=0)
    assert ps.line_plies == 1 and ps.kind == "sts"
    counts = ps.puzzle_set.counts()
    assert counts == {"STS1": {"train": 1, "test": 2}, "STS2": {"train": 1, "test": 2}}
    p = ps.puzzle_set.puzzles[0]
    assert p.answer == "f1c4" and len(p.line) == 3 and ps.root_targets[p.id]["d2d4"] == 7
    assert load_pilot_set(suite, sts_train=1, sts_test=2).puzzle_set == ps.puzzle_set


def test_shuffled_labels_keep_each_concepts_counts(planted: dict) -> None:
    ps = load_puzzle_set(planted["set"])
    shuffled = shuffle_labels(ps, seed=3)
    assert shuffled.counts() == ps.counts()
    assert [p.id for p in shuffled.puzzles] == [p.id for p in ps.puzzles]
    assert [p.concept for p in shuffled.puzzles] != [p.concept for p in ps.puzzles]


def test_power_estimate_and_cluster_interval() -> None:
    none = power_estimate([0.0, -0.1, 0.1, 0.0], taught_rate=0.3, control_rate=0.3, m_taught=8, m_control=8)
    assert none["participants"] is None and "no positive transfer" in none["reason"]
    some = power_estimate([0.2, 0.1, 0.3, 0.2, 0.1, 0.3], taught_rate=0.5, control_rate=0.3, m_taught=10,
                          m_control=10)
    by = {r["puzzles_per_condition"]: r["participants"] for r in some["by_puzzles"]}
    assert some["participants"] == by[10] and 2 <= by[40] <= by[10]  # more puzzles, fewer participants
    # standardised effect 0.5 (mean 0.5, sd ≈ 1, no binomial part): the textbook ≈ 34 for a paired t-test
    d05 = power_estimate([-0.5, 1.5] * 10, taught_rate=0.0, control_rate=0.0, m_taught=1, m_control=1)
    assert 33 <= d05["participants"] <= 37
    mean, lo, hi = cluster_bootstrap_ci([[1.0, 1.0], [0.0, 0.0], [0.5]], seed=0, n_boot=500)
    assert mean == pytest.approx(0.5) and lo < 0.5 < hi


def test_students_are_named_or_refused(tmp_path: Path, planted: dict) -> None:
    maia = planted["root"] / "maia"
    assert set(resolve_students(["maia-1100", str(maia / "maia-1900.pb.gz")], maia)) == {"maia-1100", "maia-1900"}
    with pytest.raises(StudentError, match="maia-1234"):
        resolve_students(["maia-1234"], maia)
    with pytest.raises(StudentError, match="maia-1200"):
        resolve_students(["maia-1200"], maia)
    with pytest.raises(StudentError, match="named twice"):
        resolve_students(["maia-1100", "maia-1100"], maia)


def test_cli_pilot_writes_the_issue_keys(tmp_path: Path, planted: dict) -> None:
    from alphazero_concepts.cli import app

    out, figs = tmp_path / "pilot.json", tmp_path / "figs"
    res = CliRunner().invoke(app, ["study", "pilot", "--set", str(planted["set"]), "--students",
                                   "maia-1100,maia-1500", "--maia-dir", str(planted["root"] / "maia"), "--quick",
                                   "--steps", "10", "--repetitions", "2", "--db", str(tmp_path / "p.sqlite"),
                                   "--json", str(out), "--figures", str(figs), "--no-sts"])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    for key in ("students", "transfer", "positive_control", "shuffled_control", "participants_needed_80pct_power"):
        assert key in data
    for name in ("maia-1100", "maia-1500"):
        assert set(data["transfer"][name]) >= {"estimate", "ci"}
    assert set(data["shuffled_control"]) >= {"estimate", "ci"}
    assert data["config"]["budget"] == {"optimizer": "adam", "lr": 1e-4, "steps": 10, "batch_size": 32,
                                        "weight_decay": 0.0, "replay_batch": 32, "replay_positions": 256}
    assert data["students"]["maia-1100"]["phase3_untaught"] is not None
    assert sorted(p.name for p in figs.iterdir()) == ["pilot_rates.png", "pilot_transfer.png"]
    assert "participants for 80% power" in res.output


def test_replay_examples_are_the_students_own_play(planted: dict) -> None:
    """The replay pool: positions of the untaught student's own games, its own policy as the target; teaching
    with the replay keeps more of the student's play on positions it was not taught than teaching without."""
    from alphazero_concepts.nn.lc0 import load_lc0
    from alphazero_concepts.study.simulated import own_policy, replay_examples, teach, teaching_examples

    net = load_lc0(planted["root"] / "maia" / "maia-1100.pb.gz")[0].eval()
    pool = replay_examples(net, 40, seed=0)
    assert len(pool) == 40 and len({e.board.fen() for e in pool}) > 30
    assert all(sum(e.target.values()) == pytest.approx(1.0) for e in pool)
    assert replay_examples(net, 40, seed=0)[7].board.fen() == pool[7].board.fen()  # seeded
    examples = teaching_examples([p for p in load_puzzle_set(planted["set"]).puzzles if p.split == "train"])
    fresh = [e.board for e in replay_examples(net, 40, seed=1)]  # positions of other games
    before = answer_moves(net, fresh)

    def kept(budget: TeachBudget) -> float:
        moves = answer_moves(teach(net, examples, budget, seed=0), fresh)
        return sum(a == b for a, b in zip(moves, before, strict=True)) / len(fresh)

    assert kept(replace(BUDGET, replay_batch=32)) >= kept(replace(BUDGET, replay_batch=0))
    assert own_policy(net, [fresh[0]])[0].keys() == {m.uci() for m in fresh[0].legal_moves}


def test_figures_of_a_summary_without_controls() -> None:
    result = {"students": {"maia-1100": {"phase1": 0.1, "phase3_taught": 0.3, "phase3_control": 0.2}},
              "transfer": {"maia-1100": {"estimate": 0.1, "ci": [0.0, 0.2]}},
              "transfer_pooled": {"estimate": 0.1, "ci": [0.0, 0.2]}, "shuffled_control": None,
              "positive_control": None}
    assert set(pilot_figures(result)) == {"pilot_rates", "pilot_transfer"}


@pytest.mark.needs_shared
@pytest.mark.integration
@pytest.mark.skipif(not (SHARED / "models" / "maia" / "maia-1100.pb.gz").is_file(),
                    reason="the real Maia weights (../shared/data/models/maia) are not present")
def test_real_maia_answers_the_bundled_puzzles(tmp_path: Path) -> None:
    """The real Maia-1100 goes through one balanced pair on the committed puzzle set (5 teaching steps)."""
    pset = load_pilot_set(ROOT / "puzzles" / "teacher-480-novel")
    config = PilotConfig(students=("maia-1100",), repetitions=1, budget=TeachBudget(steps=5), shuffled_control=False,
                         n_boot=200)
    result = run_pilot(Store(tmp_path / "p.sqlite"), pset, config)
    s = result["students"]["maia-1100"]
    assert s["finished"] == 2 and 0 <= s["phase1"] <= 1 and s["phase2_fit"] is not None
    assert isinstance(pset, PilotSet)
