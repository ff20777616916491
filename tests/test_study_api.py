"""The study app end to end through its HTTP API (in-process TestClient): organiser, participant, security.

Every scenario starts from an empty database and a puzzle set the test builds (`demo_puzzle_set`: legal random
positions), and checks what was stored, not only what was answered.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import warnings
from pathlib import Path

import chess
import pytest

with warnings.catch_warnings():  # starlette's TestClient warns about httpx's future; irrelevant here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from alphazero_concepts.study.app import create_app
from alphazero_concepts.study.demo import demo_puzzle_set
from alphazero_concepts.study.store import Store

pytestmark = pytest.mark.integration


class Clock:
    """A settable clock, so that phase deadlines can be crossed without waiting."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Env:
    def __init__(self, tmp_path: Path, limits: dict | None = None) -> None:
        self.db = tmp_path / "study.sqlite"
        self.clock = Clock()
        self.store = Store(self.db, clock=self.clock)
        self.client = TestClient(create_app(self.store))
        self.admin = {"Authorization": f"Bearer {self.store.admin_token()}"}
        self.set = demo_puzzle_set(4, 2, 2, seed=3)
        self.puzzles = {p["id"]: p for p in self.set["puzzles"]}
        body = {"name": "Pilot", "puzzle_set": self.set}
        if limits is not None:
            body["limits"] = limits
        r = self.client.post("/api/admin/studies", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        self.study = r.json()["id"]

    def add(self, name: str, **kw) -> dict:
        r = self.client.post(f"/api/admin/studies/{self.study}/participants", json={"name": name, **kw},
                             headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()

    def state(self, token: str) -> dict:
        r = self.client.get(f"/api/p/{token}/state")
        assert r.status_code == 200, r.text
        return r.json()

    def start(self, token: str, phase: int) -> None:
        r = self.client.post(f"/api/p/{token}/start", json={"phase": phase})
        assert r.status_code == 200, r.text

    def answer(self, token: str, puzzle_id: str, move: str | None, **kw):
        return self.client.post(f"/api/p/{token}/answer", json={"puzzle_id": puzzle_id, "move": move, **kw})

    def rows(self, sql: str, *args) -> list[tuple]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql, args).fetchall()

    def wrong_move(self, puzzle_id: str) -> str:
        p = self.puzzles[puzzle_id]
        return next(m.uci() for m in chess.Board(p["fen"]).legal_moves if m.uci() != p["solution"][0])


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def play_session(env: Env, token: str, solve) -> None:
    """Drive one participant through all three phases; `solve(puzzle_id, phase)` gives the move or None (pass)."""
    for phase in (1, 2, 3):
        assert env.state(token)["state"] == {**env.state(token)["state"], "phase": phase, "started": False}
        env.start(token, phase)
        while (s := env.state(token))["state"]["phase"] == phase:
            pid = s["puzzle"]["id"]
            if phase == 2:
                r = env.client.post(f"/api/p/{token}/review", json={"puzzle_id": pid, "plies_viewed": 3})
            else:
                move = solve(pid, phase)
                r = env.answer(token, pid, move, phase=phase, method="pass" if move is None else "text",
                               think_ms=1234)
            assert r.status_code == 200, r.text
            assert r.json()["duplicate"] is False
    assert env.state(token)["state"]["phase"] == "done"


def test_whole_session_is_stored_exported_and_analysed(env: Env) -> None:
    ann = env.add("Ann", mode="explicit", taught=["demo-0", "demo-1"], control=["demo-2", "demo-3"], seed=11)
    bob = env.add("Bob")                        # balanced: the second of a pair mirrors the first …
    cat = env.add("Cat", seed=5)                # … and the third starts a new pair with a seeded random split
    assert bob["taught"] == ann["control"] and bob["control"] == ann["taught"]
    assert len(cat["taught"]) == 2 and cat["assignment_seed"] == 5
    assert ann["seed"] == 11 and ann["link"].endswith("/p/" + ann["token"])

    first = env.state(ann["token"])
    assert first["state"] == {"phase": 1, "started": False, "done": 0, "total": 4, "current": first["state"]["current"],
                              "seconds_left": None, "limit_s": 7200.0}
    # Phase 1 = the train puzzles of the taught concepts, in the stored, seeded order.
    plan1 = [r[0] for r in env.rows("SELECT puzzle_id FROM plan WHERE participant_id=? AND phase=1 ORDER BY position",
                                    ann["id"])]
    assert sorted(plan1) == sorted(p for p, z in env.puzzles.items()
                                   if z["concept"] in ("demo-0", "demo-1") and z["split"] == "train")

    solved = {}

    def solve(pid: str, phase: int):
        # Ann: right on even-numbered puzzles, passes one, wrong otherwise.
        k = len(solved)
        solved[(pid, phase)] = k
        if k == 1:
            return None
        p = env.puzzles[pid]
        board = chess.Board(p["fen"])
        if k % 2 == 0:
            return board.san(chess.Move.from_uci(p["solution"][0]))  # SAN for the right ones
        return env.wrong_move(pid)

    seen_phase2 = []
    orig_state = env.state

    def spy(token):
        s = orig_state(token)
        if s["state"]["phase"] == 2 and "puzzle" in s:
            seen_phase2.append(s["puzzle"])
        else:  # solving phases never show the machine's line or the answer
            assert "line" not in s.get("puzzle", {}) and "answer" not in s.get("puzzle", {})
        return s

    env.state = spy
    env.clock.t += 5
    play_session(env, ann["token"], solve)
    # Phase 2 showed exactly the phase-1 puzzles, with line and concept; never a control concept.
    assert {p["id"] for p in seen_phase2} == set(plan1)
    assert all(p["concept"] in ("demo-0", "demo-1") and p["line"] == env.puzzles[p["id"]]["line"] for p in seen_phase2)

    stored = env.rows("SELECT phase, puzzle_id, move_uci, method, correct, think_ms_client FROM answers "
                      "WHERE participant_id=? ORDER BY id", ann["id"])
    assert len(stored) == 4 + 8 and {r[0] for r in stored} == {1, 3}
    for phase, pid, move, method, correct, think in stored:
        k = solved[(pid, phase)]
        assert think == 1234
        if k == 1:
            assert (move, method, correct) == (None, "pass", 0)
        else:
            assert correct == (k % 2 == 0) and (move == env.puzzles[pid]["solution"][0]) == bool(correct)
    assert env.rows("SELECT COUNT(*), MIN(plies_viewed) FROM reviews WHERE participant_id=?", ann["id"]) == [(4, 3)]
    # Phase 3 mixed taught and control test puzzles.
    conditions = env.rows("SELECT condition FROM plan WHERE participant_id=? AND phase=3 ORDER BY position", ann["id"])
    assert sorted(c for (c,) in conditions) == ["control"] * 4 + ["taught"] * 4

    # Exports: every answer, no token anywhere.
    r = env.client.get(f"/api/admin/studies/{env.study}/export.csv", headers=env.admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert len(table) == 12 and {row["participant_name"] for row in table} == {"Ann"}
    assert all(row["condition"] in ("taught", "control") for row in table)
    full = env.client.get(f"/api/admin/studies/{env.study}/export.json", headers=env.admin)
    dump = full.text
    assert len(full.json()["answers"]) == 12 and len(full.json()["participants"]) == 3
    for token in (ann["token"], bob["token"], cat["token"], env.store.admin_token()):
        assert token not in dump and token not in r.text

    stats = env.client.get(f"/api/admin/studies/{env.study}/stats", headers=env.admin).json()
    ann_stats = next(p for p in stats["participants"] if p["name"] == "Ann")
    p1_right = sum(1 for (pid, ph), k in solved.items() if ph == 1 and k % 2 == 0 and k != 1)
    assert ann_stats["phase1"]["solved"] == p1_right and ann_stats["finished"]
    assert stats["paired"]["gain"]["n"] == 1  # only Ann finished
    assert stats["paper"]["gain"]["n"] == 4


def test_retries_are_idempotent_and_answers_final(env: Env) -> None:
    p = env.add("Ann", mode="random", seed=1)
    env.start(p["token"], 1)
    pid = env.state(p["token"])["state"]["current"]
    right = env.puzzles[pid]["solution"][0]
    r1 = env.answer(p["token"], pid, right, phase=1)
    r2 = env.answer(p["token"], pid, right, phase=1)   # the client retried (lost response)
    assert r1.status_code == r2.status_code == 200
    assert r1.json()["duplicate"] is False and r2.json()["duplicate"] is True
    assert r2.json()["answer"] == r1.json()["answer"]
    r3 = env.answer(p["token"], pid, env.wrong_move(pid), phase=1)
    assert r3.status_code == 409 and "already answered" in r3.json()["detail"]
    assert env.rows("SELECT move_uci FROM answers") == [(right,)]
    # Correctness is not revealed while solving.
    assert "correct" not in json.dumps(r1.json())


def test_phase_rules_and_time_limits(tmp_path: Path) -> None:
    env = Env(tmp_path, limits={"phase1": 600, "phase2": None, "phase3": 600})
    p = env.add("Ann", mode="random", seed=2)
    tok = p["token"]
    pid = env.state(tok)["state"]["current"]
    r = env.answer(tok, pid, env.wrong_move(pid), phase=1)
    assert r.status_code == 409 and "press Start" in r.json()["detail"]
    r = env.client.post(f"/api/p/{tok}/start", json={"phase": 3})
    assert r.status_code == 409
    env.start(tok, 1)
    env.start(tok, 1)  # idempotent
    phase3 = [r[0] for r in env.rows("SELECT puzzle_id FROM plan WHERE participant_id=? AND phase=3", p["id"])]
    r = env.answer(tok, phase3[0], env.wrong_move(phase3[0]))      # not in the current phase
    assert r.status_code == 403 and "not one of your phase-1 puzzles" in r.json()["detail"]
    r = env.answer(tok, phase3[0], env.wrong_move(phase3[0]), phase=3)
    assert r.status_code == 409 and "has not begun" in r.json()["detail"]
    r = env.client.post(f"/api/p/{tok}/review", json={"puzzle_id": pid, "plies_viewed": 1})
    assert r.status_code == 409
    assert env.answer(tok, pid, env.wrong_move(pid), phase=1).status_code == 200
    # Time runs out: the phase closes, the rest count as unanswered, the next phase waits for Start.
    env.clock.t += 601
    s = env.state(tok)["state"]
    assert s["phase"] == 2 and not s["started"]
    other = next(i for i in env.rows("SELECT puzzle_id FROM plan WHERE participant_id=? AND phase=1", p["id"])
                 if i[0] != pid)[0]
    r = env.answer(tok, other, env.wrong_move(other), phase=1)
    assert r.status_code == 409 and "time is up for phase 1" in r.json()["detail"]
    assert env.rows("SELECT COUNT(*) FROM answers") == [(1,)]
    assert env.rows("SELECT end_reason FROM phase_runs WHERE phase=1") == [("time",)]
    # Phase 2 without a limit; answers are refused there.
    env.start(tok, 2)
    cur = env.state(tok)
    assert cur["state"]["seconds_left"] is None and cur["puzzle"]["concept_label"].startswith("Demo concept")
    r = env.answer(tok, cur["puzzle"]["id"], env.wrong_move(cur["puzzle"]["id"]))
    assert r.status_code == 409 and "review" in r.json()["detail"]
    # The organiser changes limits; applies to running phases.
    r = env.client.put(f"/api/admin/studies/{env.study}/limits", json={"phase1": 60, "phase2": 30, "phase3": 120},
                       headers=env.admin)
    assert r.status_code == 200
    env.clock.t += 31
    assert env.state(tok)["state"]["phase"] == 3
    # The player starts phase 3, then goes away; when time is up the organiser's views count them as finished.
    env.start(tok, 3)
    env.clock.t += 121
    stats = env.client.get(f"/api/admin/studies/{env.study}/stats", headers=env.admin).json()
    assert stats["participants"][0]["finished"] and stats["participants"][0]["phase3_taught"]["solved"] == 0
    assert env.rows("SELECT phase, end_reason FROM phase_runs ORDER BY phase") == [
        (1, "time"), (2, "time"), (3, "time")]


def test_illegal_and_malformed_moves_are_422_and_change_nothing(env: Env) -> None:
    p = env.add("Ann", mode="random", seed=4)
    tok = p["token"]
    env.start(tok, 1)
    pid = env.state(tok)["state"]["current"]
    board = chess.Board(env.puzzles[pid]["fen"])
    illegal = next(chess.Move(a, b).uci() for a in chess.SQUARES for b in chess.SQUARES
                   if a != b and not any(board.is_legal(chess.Move(a, b, promo)) for promo in (None, chess.QUEEN)))
    cases = [
        ({"puzzle_id": pid, "move": illegal}, "not a legal move in this position"),
        ({"puzzle_id": pid, "move": "Zz9"}, "is not a move"),
        ({"puzzle_id": pid, "move": ""}, "no move given"),
        ({"puzzle_id": pid, "move": "e4", "method": "pass"}, "a pass carries no move"),
        ({"puzzle_id": pid, "move": "x" * 100}, "move"),
        ({"puzzle_id": pid, "move": "e2e4", "think_ms": -5}, "think_ms"),
        ({"puzzle_id": pid, "move": "e2e4", "admin": True}, "admin"),
        ({"move": "e2e4"}, "puzzle_id"),
    ]
    for body, words in cases:
        r = env.client.post(f"/api/p/{tok}/answer", json=body)
        assert r.status_code == 422, (body, r.text)
        assert words in r.json()["detail"], (body, r.json())
    r = env.client.post(f"/api/p/{tok}/answer", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert env.rows("SELECT COUNT(*) FROM answers") == [(0,)]
    assert env.state(tok)["state"]["current"] == pid


def test_tokens_cannot_cross(env: Env) -> None:
    ann = env.add("Ann", mode="explicit", taught=["demo-0"], control=["demo-1"])
    bob = env.add("Bob", mode="explicit", taught=["demo-2"], control=["demo-3"])
    env.start(ann["token"], 1)
    env.start(bob["token"], 1)
    bob_puzzle = env.state(bob["token"])["state"]["current"]
    # Ann's token cannot answer Bob's puzzle, nor see anything of Bob's.
    r = env.answer(ann["token"], bob_puzzle, env.puzzles[bob_puzzle]["solution"][0], phase=1)
    assert r.status_code == 403
    assert env.rows("SELECT COUNT(*) FROM answers") == [(0,)]
    assert "Bob" not in env.client.get(f"/p/{ann['token']}").text
    # Unknown and guessed tokens.
    for bad in ("nope", ann["token"][:-1] + ("A" if ann["token"][-1] != "A" else "B")):
        assert env.client.get(f"/api/p/{bad}/state").status_code == 404
        assert env.answer(bad, bob_puzzle, "e2e4").status_code == 404
        assert env.client.get(f"/p/{bad}").status_code == 404
    # Participant tokens are not organiser tokens: 403 everywhere; no token: 401.
    admin_gets = [f"/api/admin/studies/{env.study}/export.csv", f"/api/admin/studies/{env.study}/export.json",
                  f"/api/admin/studies/{env.study}/progress", f"/api/admin/studies/{env.study}/participants",
                  f"/api/admin/studies/{env.study}/stats", "/api/admin/studies",
                  f"/admin/studies/{env.study}/figures/solve_rates.png"]
    for url in admin_gets:
        assert env.client.get(url, headers={"Authorization": f"Bearer {ann['token']}"}).status_code == 403, url
        assert env.client.get(url).status_code == 401, url
    r = env.client.post(f"/api/admin/studies/{env.study}/participants", json={"name": "Eve"},
                        headers={"Authorization": f"Bearer {ann['token']}"})
    assert r.status_code == 403
    for url in ("/admin", f"/admin/studies/{env.study}", f"/admin/studies/{env.study}/results",
                f"/admin/studies/{env.study}/participants/{bob['id']}"):
        env.client.cookies.set("azc_admin", ann["token"])
        r = env.client.get(url)
        assert r.status_code == 403 and "Bob" not in r.text, url
        env.client.cookies.clear()
        assert env.client.get(url).status_code == 401
    assert env.rows("SELECT COUNT(*) FROM participants") == [(2,)]


def test_names_and_comments_are_escaped(env: Env) -> None:
    evil = "<script>alert('x')</script>"
    p = env.add(evil, mode="random", seed=5)
    tok = p["token"]
    page = env.client.get(f"/p/{tok}")
    assert page.status_code == 200 and evil not in page.text and "&lt;script&gt;" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    env.start(tok, 1)
    pid = env.state(tok)["state"]["current"]
    r = env.answer(tok, pid, env.wrong_move(pid), comment=f"{evil} <img src=x onerror=alert(1)>")
    assert r.status_code == 200
    env.client.cookies.set("azc_admin", env.store.admin_token())
    for url in (f"/admin/studies/{env.study}", f"/admin/studies/{env.study}/participants/{p['id']}",
                f"/admin/studies/{env.study}/results", "/admin"):
        html = env.client.get(url).text
        assert evil not in html and "<img src=x" not in html, url
    detail = env.client.get(f"/admin/studies/{env.study}/participants/{p['id']}").text
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail
    # Spreadsheet formulas in names are neutralised in the CSV.
    env.add("=HYPERLINK(\"http://x\")", mode="random", seed=6)
    q = env.client.get(f"/api/admin/studies/{env.study}/participants", headers=env.admin).json()[-1]
    env.start(q["token"], 1)
    qid = env.state(q["token"])["state"]["current"]
    env.answer(q["token"], qid, env.wrong_move(qid))
    text = env.client.get(f"/api/admin/studies/{env.study}/export.csv", headers=env.admin).text
    assert "'=HYPERLINK" in text


def test_resume_after_restart_and_pages_per_phase(env: Env) -> None:
    p = env.add("Ann", mode="random", seed=8)
    tok = p["token"]
    intro = env.client.get(f"/p/{tok}").text
    assert 'id="start"' in intro and "Phase 1" in intro
    env.start(tok, 1)
    pid = env.state(tok)["state"]["current"]
    page = env.client.get(f"/p/{tok}").text
    assert f'data-puzzle-id="{pid}"' in page and "<svg" in page and 'id="move-text"' in page
    assert env.puzzles[pid]["concept_label"] not in page  # the concept is only named in phase 2
    env.clock.t += 7
    assert env.answer(tok, pid, env.wrong_move(pid)).status_code == 200
    think = env.rows("SELECT think_ms_server FROM answers")[0][0]
    assert think == 7000
    # A new app over the same file (server restart, browser closed) continues at the next puzzle.
    client2 = TestClient(create_app(Store(env.db, clock=env.clock)))
    s = client2.get(f"/api/p/{tok}/state").json()["state"]
    assert s["done"] == 1 and s["current"] != pid and s["started"]
    # Finish phase 1 and look at the review page: line stepping data and the concept are there.
    while (st := client2.get(f"/api/p/{tok}/state").json())["state"]["phase"] == 1:
        cur = st["state"]["current"]
        client2.post(f"/api/p/{tok}/answer", json={"puzzle_id": cur, "move": env.puzzles[cur]["solution"][0]})
    client2.post(f"/api/p/{tok}/start", json={"phase": 2})
    review = client2.get(f"/p/{tok}").text
    cur = client2.get(f"/api/p/{tok}/state").json()["puzzle"]
    line = env.puzzles[cur["id"]]["line"]
    assert review.count('<template id="ply-') == len(line) + 1
    assert cur["concept_label"] in review and 'id="next-puzzle"' in review


def test_organiser_flows(env: Env) -> None:
    # Login by link sets an HttpOnly, SameSite=Strict cookie; a wrong token does not.
    r = env.client.get(f"/admin/login?token={env.store.admin_token()}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert env.client.get("/admin").status_code == 200
    env.client.cookies.clear()
    r = env.client.post("/admin/login", content=b"token=wrong",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 403 and "azc_admin" not in r.headers.get("set-cookie", "")
    # A broken puzzle set is refused with the puzzle's index and field.
    bad = json.loads(json.dumps(env.set))
    bad["puzzles"][5]["solution"] = ["a1a1"]
    r = env.client.post("/api/admin/studies", json={"name": "x", "puzzle_set": bad}, headers=env.admin)
    assert r.status_code == 422 and "puzzles[5].solution[0]" in r.json()["detail"]
    r = env.client.post(f"/api/admin/studies/{env.study}/participants", json={"name": "X", "mode": "explicit",
                        "taught": ["demo-0"], "control": ["demo-0"]}, headers=env.admin)
    assert r.status_code == 422 and "both taught and control" in r.json()["detail"]
    assert env.client.get("/api/admin/studies/99", headers=env.admin).status_code == 404
    # Live progress.
    p = env.add("Ann", mode="random", seed=9)
    env.start(p["token"], 1)
    pid = env.state(p["token"])["state"]["current"]
    env.answer(p["token"], pid, env.wrong_move(pid))
    prog = env.client.get(f"/api/admin/studies/{env.study}/progress", headers=env.admin).json()
    assert prog[0]["counts"]["1"] == {"done": 1, "total": 4} and prog[0]["phase"] == 1
    assert prog[0]["seconds_left"] == 7200 and prog[0]["link"].endswith(p["token"])
    env.client.cookies.set("azc_admin", env.store.admin_token())
    results = env.client.get(f"/admin/studies/{env.study}/results")
    assert results.status_code == 200 and "Paper (4 GMs)" in results.text
    png = env.client.get(f"/admin/studies/{env.study}/figures/concepts.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
