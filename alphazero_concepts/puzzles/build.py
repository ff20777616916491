"""The puzzle stage over a run directory: reads ``RUN/prototypes.jsonl``, writes ``RUN/puzzles/``, resumably.

    RUN/prototypes.jsonl           input (schema: `candidates` module docstring)
    RUN/puzzles/state.json         what the cached searches were made with (teacher sha256, simulations, ...)
    RUN/puzzles/candidates.jsonl   one solved candidate per line, appended chunk by chunk (the resume point)
    RUN/puzzles/engine.jsonl       one Stockfish verdict per line, appended as they come (the resume point)
    RUN/puzzles/config.json        checks, solve and search configuration, models, Stockfish
    RUN/puzzles/puzzles.json       the puzzle book (a study puzzle set with everything; see `book`)
    RUN/puzzles/report.json        funnel counts, concepts left out (with the reason), rejected candidates (with
                                   the reasons and every check's values)

A killed build continues where it stopped: finished search chunks and engine verdicts are read back and not
redone (a truncated last line, from a kill mid-write, is ignored). Cached searches are reused only when they were
made with the same teacher and search settings; otherwise the build stops and says so (``fresh=True`` starts
over). Changing only check thresholds re-uses everything and re-runs just the selection, in seconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chess
from torch import nn

from alphazero_concepts.chess.positions import ReadReport
from alphazero_concepts.core.rundir import PuzzleDir, RunDir
from alphazero_concepts.puzzles.book import BuildReport, PuzzleBook, human_probs_for, make_book
from alphazero_concepts.puzzles.candidates import (
    Candidate,
    SolveConfig,
    plan_positions,
    read_prototypes,
    solve,
)
from alphazero_concepts.puzzles.checks import PuzzleChecks, needs_engine
from alphazero_concepts.puzzles.engine import EngineVerdict, StockfishAnalyser
from alphazero_concepts.puzzles.export import write_text
from alphazero_concepts.puzzles.human import HumanModels, ladder_probs
from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator

__all__ = ["BuildError", "BuildResult", "RunPaths", "build_run"]

Progress = Callable[[str, int, int], None]


class BuildError(RuntimeError):
    """The build cannot go on (bad input, cached work made with other settings); the message says what to do."""


@dataclass(frozen=True)
class RunPaths(PuzzleDir):
    """Where the puzzle stage reads and writes: its input `prototypes` and its directory `root` (`PuzzleDir`)."""

    run: Path
    prototypes: Path

    def __init__(self, run: Path, prototypes: Path, out: Path) -> None:
        super().__init__(out)
        object.__setattr__(self, "run", run)
        object.__setattr__(self, "prototypes", prototypes)

    @property
    def out(self) -> Path:
        return self.root

    @classmethod
    def of(cls, run: str | os.PathLike[str], prototypes: str | os.PathLike[str] | None = None,
           out: str | os.PathLike[str] | None = None) -> RunPaths:
        rd = RunDir(Path(run))
        return cls(rd.root, Path(prototypes) if prototypes else rd.prototypes, Path(out) if out else rd.puzzles)


@dataclass(frozen=True)
class BuildResult:
    """What `build_run` made: the book (None when no puzzle survived), the report, the input read report."""

    book: PuzzleBook | None
    report: BuildReport
    read: ReadReport
    paths: RunPaths
    resumed_candidates: int
    resumed_verdicts: int


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL cache; a bad *last* line (a kill mid-write) is dropped, a bad earlier one is an error.

    A last line without its newline is cut off the file, so that the next append starts on a line of its own.
    """
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break
            raise BuildError(f"{path}:{i + 1}: corrupt cache line ({exc.msg}); delete the file to redo it") from exc
    return out


def _append_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=1, allow_nan=False, default=str) + "\n")


def _search_state(teacher_id: str, solve_config: SolveConfig, mcts_config: MCTSConfig) -> dict[str, Any]:
    search = {k: v for k, v in mcts_config.to_dict().items() if k not in ("simulations", "cache_size")}
    return {"teacher": teacher_id, "simulations": solve_config.simulations,
            "alternatives": solve_config.alternatives, "max_line_plies": solve_config.max_line_plies,
            "mcts": search}


def build_run(run: str | os.PathLike[str], teacher: nn.Module, *, teacher_id: str,
              checks: PuzzleChecks | None = None, solve_config: SolveConfig | None = None,
              mcts_config: MCTSConfig | None = None, human: nn.Module | HumanModels | None = None,
              human_id: str | None = None,
              stockfish: str | None = None, prototypes: str | os.PathLike[str] | None = None,
              out: str | os.PathLike[str] | None = None, name: str | None = None,
              model: Mapping[str, Any] | None = None, fresh: bool = False,
              progress: Progress | None = None) -> BuildResult:
    """Build ``RUN/puzzles/`` from ``RUN/prototypes.jsonl`` (see the module docstring); resumable.

    `teacher_id` identifies the teacher for the resume check (its sha256, or its name); `model` is extra
    provenance recorded in ``puzzles.json``. With ``checks.engine`` a Stockfish binary is required (`stockfish`
    or found on PATH / in /usr/games): `EngineUnavailable` says how to get one or to pass ``engine=False``.
    """
    checks = checks or PuzzleChecks()
    solve_config = solve_config or SolveConfig()
    mcts_config = mcts_config or MCTSConfig(simulations=solve_config.simulations)
    paths = RunPaths.of(run, prototypes, out)
    if not paths.prototypes.is_file():
        raise BuildError(f"{paths.prototypes}: no such file (the filters stage writes it; schema in "
                         "alphazero_concepts/puzzles/candidates.py)")
    read = ReadReport(str(paths.prototypes))
    concepts = read_prototypes(paths.prototypes, report=read)
    if not concepts:
        raise BuildError(f"{paths.prototypes}: no usable concept ({read.summary()})")
    paths.out.mkdir(parents=True, exist_ok=True)

    # 1. search, resuming from candidates.jsonl
    state = _search_state(teacher_id, solve_config, mcts_config)
    if fresh:
        for p in (paths.candidates, paths.engine, paths.state):
            p.unlink(missing_ok=True)
    if paths.state.is_file():
        old = json.loads(paths.state.read_text(encoding="utf-8"))
        if old != state:
            changed = sorted(k for k in state if old.get(k) != state[k])
            raise BuildError(f"{paths.out} holds searches made with other settings ({', '.join(changed)} differ); "
                             "pass --fresh (fresh=True) to start over, or use another --out")
    else:
        paths.candidates.unlink(missing_ok=True)
        _write_json(paths.state, state)
    planned, rejected = plan_positions(concepts)
    cached = {}
    for rec in _read_jsonl(paths.candidates):
        cand = Candidate.from_dict(rec)
        cached[cand.id] = cand
    todo = [p for p in planned if p.id not in cached]
    resumed = len(planned) - len(todo)
    if progress:
        progress("search", resumed, len(planned))
    if todo:
        mcts = MCTS(NetEvaluator(teacher), mcts_config)
        solve(todo, mcts, solve_config,
              on_chunk=lambda done: _append_jsonl(paths.candidates, [c.to_dict() for c in done]),
              progress=(lambda d, t: progress("search", resumed + d, len(planned))) if progress else None)
        for rec in _read_jsonl(paths.candidates):
            cand = Candidate.from_dict(rec)
            cached[cand.id] = cand
    candidates = [cached[p.id] for p in planned]
    # the cached record holds the concept as it was searched; refresh the labels and scores from the input
    by_id = {p.id: p for p in planned}
    candidates = [c.under(by_id[c.id].concept, by_id[c.id].position) for c in candidates]

    # 2. Stockfish, resuming from engine.jsonl
    verdicts: dict[str, EngineVerdict] = {}
    resumed_verdicts = 0
    engine_name = None
    if checks.engine:
        for rec in _read_jsonl(paths.engine):
            v = EngineVerdict.from_dict(rec["verdict"])
            verdicts[rec["id"]] = v
        answers = {c.id: c.answer for c in candidates}
        verdicts = {k: v for k, v in verdicts.items()
                    if answers.get(k) == v.answer and v.depth == checks.engine_depth}
        asked = [c for c in candidates if needs_engine(c, checks)]
        todo_c = [c for c in asked if c.id not in verdicts]
        resumed_verdicts = len(asked) - len(todo_c)
        if progress:
            progress("stockfish", resumed_verdicts, len(asked))
        if todo_c:
            with StockfishAnalyser(stockfish, checks.engine_depth) as analyser:
                engine_name = analyser.name
                for i, cand in enumerate(todo_c):
                    v = analyser.verdict(cand.board(), chess.Move.from_uci(cand.answer))
                    verdicts[cand.id] = v
                    _append_jsonl(paths.engine, [{"id": cand.id, "verdict": v.to_dict()}])
                    if progress:
                        progress("stockfish", resumed_verdicts + i + 1, len(asked))
        elif verdicts:
            engine_name = next(iter(verdicts.values())).engine

    # 3. human model(s) (fast: one batched forward pass each): one model, or a ladder {name: model} (Maia)
    probs: dict[str, float] = {}
    levels: dict[str, dict[str, float]] = {}
    if human is not None and candidates:
        if isinstance(human, Mapping):
            levels = ladder_probs(human, candidates)
        else:
            probs = human_probs_for(human, candidates)
        if progress:
            progress("human model", len(candidates), len(candidates))

    # 4. selection, book and report
    provenance = {"teacher": teacher_id, "human_model": human_id, "simulations": solve_config.simulations,
                  "stockfish": engine_name, "stockfish_depth": checks.engine_depth if checks.engine else None,
                  "prototypes": str(paths.prototypes), **dict(model or {})}
    book, report = make_book(candidates, checks, verdicts=verdicts, human_probs=probs, maia_probs=levels,
                             concepts=concepts,
                             rejected=rejected, name=name or f"{paths.run.name} puzzles", model=provenance,
                             solve_config=solve_config)
    _write_json(paths.config, {"checks": checks.to_dict(), "solve": solve_config.to_dict(),
                               "mcts": mcts_config.to_dict(), "model": provenance})
    _write_json(paths.report, {"input": read.summary(), "input_errors": [str(e) for e in read.errors],
                               **report.to_dict()})
    if book.puzzles:
        write_text(paths.puzzles, book.to_json())
    else:
        paths.puzzles.unlink(missing_ok=True)
    return BuildResult(book if book.puzzles else None, report, read, paths, resumed, resumed_verdicts)
