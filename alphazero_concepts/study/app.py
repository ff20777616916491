"""The study web app (FastAPI): participant pages and API, organiser dashboard and API, exports, results.

Runs offline: every asset is in this package (templates/, static/), boards are python-chess SVGs rendered on the
server, and the only script is ours. ``create_app(db)`` builds the app over one SQLite file (see store.py).

Who may do what:

* a participant is identified by the unguessable token in their link (``/p/<token>``); every participant route
  is keyed by that token alone, so there is no way to name another participant's data with it;
* the organiser holds the admin token (kept in the database, printed by ``azc study serve``); admin routes accept
  it as ``Authorization: Bearer <token>`` or as the ``azc_admin`` cookie set by ``/admin/login`` (HttpOnly,
  SameSite=Strict). No token: 401; any other token (a participant's included): 403.

HTML is rendered by Jinja2 with autoescaping and pages carry a Content-Security-Policy that allows only our own
scripts, so a name such as ``<script>…`` is shown as text. Tokens never reach the log: uvicorn's access log is
off and our own request log redacts them.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import secrets
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

import chess
import chess.svg
import jinja2
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field

from alphazero_concepts.core.puzzleset import Puzzle, PuzzleSetError, parse_puzzle_set
from alphazero_concepts.study.protocol import AssignmentError, choose_assignment, new_seed, plan_session
from alphazero_concepts.study.session import (
    StudyError,
    ensure_started,
    participant_view,
    refresh_study,
    submit_answer,
    submit_review,
)
from alphazero_concepts.study.store import Store

__all__ = ["create_app"]

HERE = Path(__file__).resolve().parent
ADMIN_COOKIE = "azc_admin"
log = logging.getLogger("alphazero_concepts.study")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_TOKEN_PATH = re.compile(r"^/(api/)?p/[^/]+")

PHASE_TITLES = {1: "Phase 1 — solve", 2: "Phase 2 — review", 3: "Phase 3 — solve"}


# -- request bodies ------------------------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartIn(_Body):
    phase: int = Field(ge=1, le=3)


class AnswerIn(_Body):
    puzzle_id: str = Field(min_length=1, max_length=200)
    move: str | None = Field(default=None, max_length=32)
    method: Literal["board", "text", "pass"] = "text"
    phase: int | None = Field(default=None, ge=1, le=3)
    think_ms: int | None = Field(default=None, ge=0, le=86_400_000)
    comment: str | None = Field(default=None, max_length=2000)


class ReviewIn(_Body):
    puzzle_id: str = Field(min_length=1, max_length=200)
    plies_viewed: int = Field(default=0, ge=0, le=1000)
    phase: int | None = Field(default=2, ge=1, le=3)


class LimitsIn(_Body):
    """Phase time limits in seconds; null = no limit."""

    phase1: float | None = Field(default=None, gt=0)
    phase2: float | None = Field(default=None, gt=0)
    phase3: float | None = Field(default=None, gt=0)

    def as_dict(self) -> dict[int, float | None]:
        return {1: self.phase1, 2: self.phase2, 3: self.phase3}


class StudyIn(_Body):
    name: str = Field(min_length=1, max_length=200)
    puzzle_set: dict[str, Any]
    limits: LimitsIn | None = None


class ParticipantIn(_Body):
    name: str = Field(min_length=1, max_length=200)
    mode: Literal["balanced", "random", "explicit"] = "balanced"
    taught: list[str] | None = None
    control: list[str] | None = None
    n_taught: int | None = Field(default=None, ge=1)
    n_control: int | None = Field(default=None, ge=0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)


class PilotIn(_Body):
    """A pilot on simulated participants (see study/pilot.py)."""

    students: list[str] = Field(default_factory=lambda: ["maia-1100", "maia-1500", "maia-1900"], min_length=1,
                                max_length=9)
    quick: bool = True
    nodes: int = Field(default=0, ge=0, le=10_000)
    repetitions: int | None = Field(default=None, ge=1, le=50)
    steps: int | None = Field(default=None, ge=1, le=10_000)
    sts: bool = True


# -- rendering helpers ---------------------------------------------------------------------------------------------
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.0f}%"
    env.filters["pp"] = lambda x: "–" if x is None or x != x else f"{100 * x:+.0f} pp"
    env.filters["pval"] = lambda x: "–" if x is None else f"{x:.3f}"
    env.filters["minutes"] = lambda s: "" if s is None else f"{s / 60:g}"
    return env


@lru_cache(maxsize=4096)
def _board_svg(fen: str, lastmove: str | None = None, orientation: bool | None = None) -> str:
    board = chess.Board(fen)
    move = chess.Move.from_uci(lastmove) if lastmove else None
    return chess.svg.board(board, orientation=board.turn if orientation is None else orientation, lastmove=move,
                           check=board.king(board.turn) if board.is_check() else None, coordinates=True)


def _piece_list(board: chess.Board) -> str:
    """A text description of the position for screen readers ("White: Kg1, Qd1, …; Black: …")."""
    parts = []
    for color, name in ((chess.WHITE, "White"), (chess.BLACK, "Black")):
        pieces = []
        for pt in (chess.KING, chess.QUEEN, chess.ROOK, chess.BISHOP, chess.KNIGHT, chess.PAWN):
            for sq in board.pieces(pt, color):
                pieces.append(("" if pt == chess.PAWN else chess.piece_symbol(pt).upper()) + chess.square_name(sq))
        parts.append(f"{name}: {', '.join(pieces)}")
    return "; ".join(parts)


def _review_plies(puzzle: Puzzle) -> list[dict[str, Any]]:
    """Every position of the machine's line: ply 0 = the puzzle, ply k = after k moves (with SAN)."""
    board = puzzle.board()
    orientation = board.turn
    plies = [{"svg": Markup(_board_svg(board.fen(), None, orientation)), "san": None, "uci": None}]
    for uci in puzzle.line:
        move = chess.Move.from_uci(uci)
        san = board.san(move)
        number = f"{board.fullmove_number}." if board.turn == chess.WHITE else f"{board.fullmove_number}…"
        board.push(move)
        plies.append({"svg": Markup(_board_svg(board.fen(), uci, orientation)), "san": san, "uci": uci,
                      "number": number})
    return plies


def _csv_safe(value: Any) -> Any:
    """Free text that a spreadsheet would run as a formula (=, +, -, @ first) gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


EXPORT_COLUMNS = ["participant_id", "participant_name", "seed", "phase", "position", "puzzle_id", "concept",
                  "concept_label", "condition", "split", "answer_uci", "move_uci", "move_san", "raw_input", "method",
                  "correct", "think_ms_client", "think_ms_server", "first_shown_at", "answered_at", "comment"]


# -- the app -------------------------------------------------------------------------------------------------------
def create_app(db: str | Path | Store, *, figure_seed: int = 0, maia_dir: str | Path | None = None) -> FastAPI:
    """The FastAPI app over one study database (created if missing). `maia_dir`: where the pilot's simulated
    participants (Maia weights) are looked for (default: $AZC_MAIA_DIR, ../shared/data/models/maia)."""
    store = db if isinstance(db, Store) else Store(db)
    admin_token = store.admin_token()
    env = _templates()
    app = FastAPI(title="alphazero-concepts study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(template: str, /, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status)

    @app.middleware("http")
    async def headers_and_log(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        path = _TOKEN_PATH.sub(lambda m: f"/{m.group(1) or ''}p/<token>", request.url.path)
        log.info("%s %s %d %.1fms", request.method, path, response.status_code, 1000 * (time.perf_counter() - t0))
        return response

    @app.exception_handler(StudyError)
    async def study_error(request: Request, exc: StudyError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return JSONResponse({"detail": "invalid request: " + "; ".join(parts)}, status_code=422)

    # -- organiser authentication -----------------------------------------------------------------------------
    def presented_token(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return request.cookies.get(ADMIN_COOKIE)

    def is_admin(request: Request) -> bool | None:
        """True: organiser; False: a token that is not the organiser's; None: no token."""
        token = presented_token(request)
        if not token:
            return None
        return secrets.compare_digest(token.encode(), admin_token.encode())

    def require_admin(request: Request) -> None:
        ok = is_admin(request)
        if ok is None:
            raise HTTPException(401, "organiser token required (Authorization: Bearer <token>)")
        if not ok:
            raise HTTPException(403, "not allowed: this needs the organiser token")

    def admin_page(request: Request) -> HTMLResponse | None:
        """None if the organiser is logged in, else the login page (401/403)."""
        ok = is_admin(request)
        if ok:
            return None
        return page("admin_login.html", status=401 if ok is None else 403, title="Organiser login",
                    error=None if ok is None else "That token is not the organiser token.")

    def study_or_404(study_id: int):
        try:
            return store.study(study_id)
        except KeyError as exc:
            raise HTTPException(404, f"no study {study_id}") from exc

    def exists_or_404(study_id: int) -> None:
        if not store.has_study(study_id):
            raise HTTPException(404, f"no study {study_id}")

    def fresh_or_404(study_id: int) -> None:
        """The study exists; close the phases whose time is up before the organiser looks at it."""
        exists_or_404(study_id)
        refresh_study(store, study_id)

    def link(request: Request, token: str) -> str:
        return str(request.base_url).rstrip("/") + f"/p/{token}"

    # -- public ---------------------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def home() -> HTMLResponse:
        return page("message.html", title="Study server",
                    message="This server runs a chess study. Participants: open the personal link you were given. "
                            "Organiser: go to /admin.")

    # -- participant pages and API ----------------------------------------------------------------------------
    @app.get("/p/{token}", response_class=HTMLResponse)
    def participant_page(token: str) -> HTMLResponse:
        try:
            view = participant_view(store, token)
        except StudyError as exc:
            return page("message.html", status=exc.status, title="Unknown link", message=exc.message)
        state, puzzle = view.state, view.puzzle
        base: dict[str, Any] = {"name": view.participant.name, "state": state, "summary": state.summary(view.now),
                                "phase_title": PHASE_TITLES.get(state.phase, "Finished")}
        data: dict[str, Any] = {"token": token, "phase": state.phase, "seconds_left": state.seconds_left(view.now)}
        if state.finished:
            return page("participant_done.html", title="Thank you", data={**data, "mode": "done"}, **base)
        if not state.started:
            return page("participant_intro.html", title=base["phase_title"], data={**data, "mode": "intro"}, **base)
        assert puzzle is not None
        board = puzzle.board()
        if state.phase == 2:
            plies = _review_plies(puzzle)
            answer_san = board.san(chess.Move.from_uci(puzzle.answer))
            data.update(mode="review", puzzle_id=puzzle.id, plies=len(plies) - 1)
            return page("participant_review.html", title=base["phase_title"], data=data, puzzle=puzzle, plies=plies,
                        answer_san=answer_san, own=view.own_answer,
                        turn="White" if board.turn == chess.WHITE else "Black", **base)
        data.update(mode="solve", puzzle_id=puzzle.id, turn="white" if board.turn == chess.WHITE else "black",
                    legal=[m.uci() for m in board.legal_moves])
        return page("participant_solve.html", title=base["phase_title"], data=data,
                    svg=Markup(_board_svg(puzzle.fen)), pieces=_piece_list(board),
                    turn="White" if board.turn == chess.WHITE else "Black", **base)

    @app.get("/api/p/{token}/state")
    def participant_state(token: str) -> dict[str, Any]:
        view = participant_view(store, token)
        out: dict[str, Any] = {"name": view.participant.name, "state": view.state.summary(view.now)}
        puzzle = view.puzzle
        if puzzle is not None:
            board = puzzle.board()
            out["puzzle"] = {"id": puzzle.id, "fen": puzzle.fen,
                             "turn": "white" if board.turn == chess.WHITE else "black",
                             "legal": [m.uci() for m in board.legal_moves]}
            if view.state.phase == 2:
                out["puzzle"].update(line=list(puzzle.line), concept=puzzle.concept,
                                     concept_label=puzzle.concept_label, answer=puzzle.answer,
                                     your_answer=view.own_answer)
        return out

    @app.post("/api/p/{token}/start")
    def participant_start(token: str, body: StartIn) -> dict[str, Any]:
        return ensure_started(store, token, body.phase)

    @app.post("/api/p/{token}/answer")
    def participant_answer(token: str, body: AnswerIn) -> dict[str, Any]:
        if body.method == "pass" and body.move:
            raise StudyError(422, "a pass carries no move: send method 'board' or 'text' with the move")
        return submit_answer(store, token, puzzle_id=body.puzzle_id, move=body.move, method=body.method,
                             phase=body.phase, think_ms=body.think_ms, comment=body.comment)

    @app.post("/api/p/{token}/review")
    def participant_review(token: str, body: ReviewIn) -> dict[str, Any]:
        return submit_review(store, token, puzzle_id=body.puzzle_id, plies_viewed=body.plies_viewed,
                             phase=body.phase)

    # -- organiser pages ----------------------------------------------------------------------------------------
    @app.get("/admin/login")
    def admin_login_link(request: Request, token: str | None = None) -> Response:
        if token:
            return _login(token)
        return page("admin_login.html", title="Organiser login", error=None)

    @app.post("/admin/login")
    async def admin_login_form(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        return _login((form.get("token") or [""])[0].strip())

    def _login(token: str) -> Response:
        if not secrets.compare_digest(token.encode(), admin_token.encode()):
            return page("admin_login.html", status=403, title="Organiser login",
                        error="That token is not the organiser token.")
        response = RedirectResponse("/admin", status_code=303)
        response.set_cookie(ADMIN_COOKIE, admin_token, httponly=True, samesite="strict", path="/")
        return response

    @app.post("/admin/logout")
    def admin_logout() -> Response:
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(ADMIN_COOKIE, path="/")
        return response

    @app.get("/admin", response_class=HTMLResponse)
    def admin_home(request: Request) -> HTMLResponse:
        if (denied := admin_page(request)) is not None:
            return denied
        return page("admin_home.html", title="Studies", studies=store.studies())

    @app.get("/admin/studies/{study_id}", response_class=HTMLResponse)
    def admin_study(request: Request, study_id: int) -> HTMLResponse:
        if (denied := admin_page(request)) is not None:
            return denied
        study = study_or_404(study_id)
        refresh_study(store, study_id)
        return page("admin_study.html", title=study.name, study=study, counts=study.puzzle_set.counts(),
                    concepts=study.puzzle_set.concepts(), progress=store.progress(study_id),
                    data={"study_id": study_id})

    @app.get("/admin/studies/{study_id}/participants/{participant_id}", response_class=HTMLResponse)
    def admin_participant(request: Request, study_id: int, participant_id: int) -> HTMLResponse:
        if (denied := admin_page(request)) is not None:
            return denied
        study = study_or_404(study_id)
        participant = store.participant(participant_id)
        if participant is None or participant.study_id != study_id:
            raise HTTPException(404, f"no participant {participant_id} in study {study_id}")
        answers = [a for a in store.answer_rows(study_id) if a["participant_id"] == participant_id]
        return page("admin_participant.html", title=participant.name, study=study, participant=participant,
                    answers=answers, link=link(request, participant.token))

    @app.get("/admin/studies/{study_id}/results", response_class=HTMLResponse)
    def admin_results(request: Request, study_id: int) -> HTMLResponse:
        if (denied := admin_page(request)) is not None:
            return denied
        from alphazero_concepts.study.stats import analyse

        study = study_or_404(study_id)
        refresh_study(store, study_id)
        results = analyse(store.trial_rows(study_id), seed=figure_seed)
        return page("admin_results.html", title=f"Results — {study.name}", study=study, results=results,
                    stamp=int(time.time()))

    @app.get("/admin/studies/{study_id}/figures/{name}.png")
    def admin_figure(request: Request, study_id: int, name: str) -> Response:
        require_admin(request)
        from alphazero_concepts.study.stats import analyse, figures

        fresh_or_404(study_id)
        pngs = figures(analyse(store.trial_rows(study_id), seed=figure_seed, n_boot=1000))
        if name not in pngs:
            raise HTTPException(404, f"no figure {name!r}; there are {sorted(pngs)}")
        return Response(pngs[name], media_type="image/png")

    # -- pilot with simulated participants (study/pilot.py) ---------------------------------------------------
    pilot_lock = threading.Lock()  # one pilot at a time: it fills the CPUs

    @app.get("/admin/studies/{study_id}/pilot", response_class=HTMLResponse)
    def admin_pilot(request: Request, study_id: int) -> HTMLResponse:
        if (denied := admin_page(request)) is not None:
            return denied
        from alphazero_concepts.engines import MAIA_LEVELS, locate_maia_dir
        from alphazero_concepts.study.pilot import pilot_of_study
        from alphazero_concepts.study.stats import analyse

        study = study_or_404(study_id)
        refresh_study(store, study_id)
        human = analyse(store.trial_rows(study_id), seed=figure_seed, n_boot=1000)
        folder = locate_maia_dir(maia_dir)
        levels = [m for m in MAIA_LEVELS if folder is not None and (folder / f"{m}.pb.gz").is_file()]
        return page("admin_pilot.html", title=f"Pilot — {study.name}", study=study, human=human,
                    pilot=pilot_of_study(store, study_id), levels=levels, stamp=int(time.time()),
                    data={"study_id": study_id})

    @app.get("/admin/pilots/{pilot_id}/figures/{name}.png")
    def admin_pilot_figure(request: Request, pilot_id: int, name: str) -> Response:
        require_admin(request)
        from alphazero_concepts.study.pilot import pilot_by_id, pilot_figures

        pilot = pilot_by_id(store, pilot_id)
        if pilot is None or pilot["result"] is None:
            raise HTTPException(404, f"no finished pilot {pilot_id}")
        pngs = pilot_figures(pilot["result"])
        if name not in pngs:
            raise HTTPException(404, f"no figure {name!r}; there are {sorted(pngs)}")
        return Response(pngs[name], media_type="image/png")

    @app.get("/api/admin/studies/{study_id}/pilot", dependencies=[Depends(require_admin)])
    def api_pilot(study_id: int) -> dict[str, Any]:
        from alphazero_concepts.study.pilot import pilot_of_study

        exists_or_404(study_id)
        return pilot_of_study(store, study_id) or {"status": "none"}

    @app.post("/api/admin/studies/{study_id}/pilot", dependencies=[Depends(require_admin)], status_code=202)
    def api_run_pilot(study_id: int, body: PilotIn) -> dict[str, Any]:
        from alphazero_concepts.study.pilot import PilotError, start_pilot_thread
        from alphazero_concepts.study.simulated import StudentError

        study = study_or_404(study_id)
        if not pilot_lock.acquire(blocking=False):
            raise HTTPException(409, "a pilot is already running on this server")
        try:
            start_pilot_thread(store, study.id, study.puzzle_set, students=body.students, quick=body.quick,
                               nodes=body.nodes, repetitions=body.repetitions, steps=body.steps, sts=body.sts,
                               maia_dir=maia_dir, on_exit=pilot_lock.release)
        except (PilotError, StudentError) as exc:
            pilot_lock.release()
            raise HTTPException(422, str(exc)) from exc
        return {"ok": True, "status": "running"}

    # -- organiser API ------------------------------------------------------------------------------------------
    @app.get("/api/admin/studies", dependencies=[Depends(require_admin)])
    def api_studies() -> list[dict[str, Any]]:
        return store.studies()

    @app.post("/api/admin/studies", dependencies=[Depends(require_admin)], status_code=201)
    def api_create_study(body: StudyIn) -> dict[str, Any]:
        try:
            puzzle_set = parse_puzzle_set(body.puzzle_set, source="uploaded puzzle set")
        except PuzzleSetError as exc:
            raise HTTPException(422, str(exc)) from exc
        limits = body.limits.as_dict() if body.limits is not None else None
        study_id = store.create_study(body.name, puzzle_set, limits)
        return {"id": study_id, "name": body.name, "puzzles": len(puzzle_set.puzzles),
                "concepts": puzzle_set.counts()}

    @app.get("/api/admin/studies/{study_id}", dependencies=[Depends(require_admin)])
    def api_study(study_id: int) -> dict[str, Any]:
        study = study_or_404(study_id)
        return {"id": study.id, "name": study.name, "created_at": study.created_at,
                "time_limits_s": {str(k): v for k, v in study.limits.items()},
                "puzzle_set": study.puzzle_set.name, "concepts": study.puzzle_set.counts(),
                "labels": study.puzzle_set.concepts()}

    @app.put("/api/admin/studies/{study_id}/limits", dependencies=[Depends(require_admin)])
    def api_limits(study_id: int, body: LimitsIn) -> dict[str, Any]:
        exists_or_404(study_id)
        store.set_limits(study_id, body.as_dict())
        return {"ok": True, "time_limits_s": {str(k): v for k, v in body.as_dict().items()}}

    @app.post("/api/admin/studies/{study_id}/participants", dependencies=[Depends(require_admin)],
              status_code=201)
    def api_add_participant(request: Request, study_id: int, body: ParticipantIn) -> dict[str, Any]:
        study = study_or_404(study_id)
        seed = new_seed() if body.seed is None else body.seed
        ps = study.puzzle_set
        try:
            assignment = choose_assignment(ps, body.mode, previous=[p.assignment for p in store.participants(study_id)],
                                           taught=body.taught, control=body.control, n_taught=body.n_taught,
                                           n_control=body.n_control, seed=seed)
        except AssignmentError as exc:
            raise HTTPException(422, str(exc)) from exc
        participant = store.add_participant(study_id, body.name, assignment, plan_session(ps, assignment, seed))
        return {"id": participant.id, "name": participant.name, "token": participant.token,
                "link": link(request, participant.token), "taught": list(assignment.taught),
                "control": list(assignment.control), "seed": seed, "assignment_seed": assignment.seed}

    @app.get("/api/admin/studies/{study_id}/participants", dependencies=[Depends(require_admin)])
    def api_participants(request: Request, study_id: int) -> list[dict[str, Any]]:
        exists_or_404(study_id)
        return [{"id": p.id, "name": p.name, "token": p.token, "link": link(request, p.token),
                 "taught": list(p.assignment.taught), "control": list(p.assignment.control), "seed": p.seed,
                 "phase": p.phase if p.phase <= 3 else "done"} for p in store.participants(study_id)]

    @app.get("/api/admin/studies/{study_id}/progress", dependencies=[Depends(require_admin)])
    def api_progress(request: Request, study_id: int) -> list[dict[str, Any]]:
        fresh_or_404(study_id)
        tokens = {p.id: p.token for p in store.participants(study_id)}
        return [{**row, "link": link(request, tokens[row["id"]])} for row in store.progress(study_id)]

    @app.get("/api/admin/studies/{study_id}/export.json", dependencies=[Depends(require_admin)])
    def api_export_json(study_id: int) -> JSONResponse:
        fresh_or_404(study_id)
        return JSONResponse(store.export(study_id), headers={
            "Content-Disposition": f'attachment; filename="study-{study_id}.json"'})

    @app.get("/api/admin/studies/{study_id}/export.csv", dependencies=[Depends(require_admin)])
    def api_export_csv(study_id: int) -> Response:
        fresh_or_404(study_id)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in store.answer_rows(study_id):
            writer.writerow({k: _csv_safe(v) for k, v in row.items()})
        return Response(buf.getvalue(), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="study-{study_id}-answers.csv"'})

    @app.get("/api/admin/studies/{study_id}/stats", dependencies=[Depends(require_admin)])
    def api_stats(study_id: int) -> dict[str, Any]:
        from alphazero_concepts.study.stats import analyse

        fresh_or_404(study_id)
        return analyse(store.trial_rows(study_id), seed=figure_seed).to_dict()

    return app
