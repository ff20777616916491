"""From checked candidates to a puzzle book: per-concept rules, ratings, labels, and the JSON with everything.

`make_book` applies the checks (`checks.run_checks`) to every candidate, de-duplicates by position (a position
shared by several concepts goes to one of them: `PuzzleChecks.shared_positions`), leaves out
concepts with fewer than `min_puzzles_per_concept` puzzles (with the reason), estimates ratings (`rating.py`) and
returns a `PuzzleBook` and a `BuildReport` (every rejected candidate with its reasons, every left-out concept).
`make_puzzles` runs the whole stage in memory (plan → teacher search → Stockfish → human model → book) for the
pipeline; `build.py` does the same over a run directory, resumably.

The book's JSON (`PuzzleBook.to_dict`, written as ``puzzles.json``) *is* a study puzzle set (schema
``alphazero-concepts/puzzles/1``, validated by `core.puzzleset.parse_puzzle_set` before it is returned), with
extra keys per puzzle that the study app ignores::

    {"schema": "alphazero-concepts/puzzles/1", "name": ..., "model": {provenance}, "config": {checks, solve},
     "concepts": [{"concept", "label", "layer", "novelty", "teachability", "train", "test"}],
     "puzzles": [{"id", "fen", "solution": [answer], "line": [answer, ...PV], "concept", "concept_label",
                  "split", "rating", "themes",                                  # the study schema
                  "layer", "novelty", "teachability", "score", "prev_fen", "last_move",
                  "engine_disagrees": bool | null, "human_policy_prob": float | null,
                  "rating_source", "rating_deviation",
                  "search": {"simulations", "visit_share", "q_gap", "root_value", "nn_value", "legal_moves",
                             "moves": [{"uci", "visits", "q", "prior", "line"}]},   # answer first, then alternatives
                  "engine": {"depth", "best", "best_cp", "second", "second_cp", "answer", "answer_cp", "cp_loss",
                             "disagrees", "engine"} | null,
                  "checks": {name: {"passed", "value", "threshold", "detail"}}}]}

`load_book` reads it back (and also reads a plain study set, filling the search fields with blanks).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import chess
from torch import nn

from alphazero_concepts.core.puzzleset import PuzzleSetError, load_puzzle_set, parse_puzzle_set
from alphazero_concepts.puzzles.candidates import (
    Candidate,
    ConceptPrototypes,
    MoveStat,
    PrototypePosition,
    Rejection,
    SolveConfig,
    concept_slug,
    plan_positions,
    position_key,
    puzzle_id,
    solve,
)
from alphazero_concepts.puzzles.checks import CheckResult, PuzzleChecks, human_policy_probs, run_checks
from alphazero_concepts.puzzles.engine import EngineVerdict, StockfishAnalyser
from alphazero_concepts.puzzles.human import difficulty
from alphazero_concepts.puzzles.rating import RATING_DEVIATION, estimate_rating
from alphazero_concepts.search.mcts import MCTS

__all__ = [
    "MACHINE_ONLY_BELOW",
    "BuildReport",
    "ConceptPuzzle",
    "PuzzleBook",
    "engine_verdicts",
    "human_probs_for",
    "load_book",
    "make_book",
    "make_puzzles",
    "parse_book",
]

MACHINE_ONLY_BELOW = 0.02  # the "machineOnly" theme: the human model plays the answer with p below this


@dataclass(frozen=True)
class ConceptPuzzle:
    """A checked candidate with its labels: rating estimate, engine verdict, human-model probability, checks."""

    candidate: Candidate
    checks: Mapping[str, CheckResult]
    engine: EngineVerdict | None = None
    human_policy_prob: float | None = None
    rating: int | None = None
    rating_source: str = ""
    maia_probs: Mapping[str, float] | None = None  # per human model (Maia level), weakest first
    difficulty: str | None = None  # the weakest human model that plays the answer with p ≥ the threshold

    @property
    def id(self) -> str:
        return self.candidate.id

    @property
    def accepted(self) -> bool:
        """No check failed (checks that did not run do not count)."""
        return all(c.passed is not False for c in self.checks.values())

    @property
    def reasons(self) -> list[str]:
        """Why the puzzle was rejected, one "check: detail" per failed check."""
        return [f"{name}: {c.detail}" for name, c in self.checks.items() if c.passed is False]

    @property
    def engine_disagrees(self) -> bool | None:
        """Stockfish prefers another move (None: no engine cross-check was run)."""
        return None if self.engine is None else self.engine.disagrees

    @property
    def themes(self) -> list[str]:
        """Lichess-style theme words: the concept, the split, and the honest labels."""
        out = [f"concept_{concept_slug(self.candidate.concept)}", self.candidate.split]
        if self.human_policy_prob is not None and self.human_policy_prob < MACHINE_ONLY_BELOW:
            out.append("machineOnly")
        if self.engine_disagrees:
            out.append("engineDisagrees")
        return out

    def to_record(self) -> dict[str, Any]:
        """The puzzle's JSON record: the study schema's keys plus everything else (see the module docstring)."""
        c = self.candidate
        return {
            "id": c.id, "fen": c.fen, "solution": [c.answer], "line": list(c.line), "concept": c.concept,
            "concept_label": c.label, "split": c.split, "rating": self.rating, "themes": self.themes,
            "layer": c.layer, "novelty": c.novelty, "teachability": c.teachability, "score": c.score,
            "prev_fen": c.prev_fen, "last_move": c.last_move, "start_fen": c.start_fen, "history": list(c.history),
            "engine_disagrees": self.engine_disagrees, "human_policy_prob": self.human_policy_prob,
            "maia_probs": dict(self.maia_probs) if self.maia_probs is not None else None,
            "difficulty": self.difficulty,
            "machine_only": None if self.maia_probs is None else self.difficulty is None,
            "rating_source": self.rating_source, "rating_deviation": RATING_DEVIATION,
            "search": {"simulations": c.simulations, "visit_share": c.visit_share, "q_gap": c.q_gap,
                       "root_value": c.root_value, "nn_value": c.nn_value, "legal_moves": c.legal_moves,
                       "moves": [m.to_dict() for m in c.moves]},
            "engine": None if self.engine is None else self.engine.to_dict(),
            "checks": {name: r.to_dict() for name, r in self.checks.items()},
        }

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> ConceptPuzzle:
        """Inverse of `to_record`; a plain study-set record gets blank search fields."""
        search = d.get("search") or {}
        answer = d["solution"][0]
        moves = tuple(MoveStat.from_dict(m) for m in search.get("moves", ())) or (
            MoveStat(answer, 0, None, 0.0, tuple(d["line"])),)
        board = chess.Board(d["fen"])
        candidate = Candidate(
            id=d["id"], concept=d["concept"], label=d.get("concept_label") or d["concept"], layer=d.get("layer", ""),
            novelty=d.get("novelty"), teachability=d.get("teachability"), fen=d["fen"], split=d["split"],
            answer=answer, line=tuple(d["line"]), moves=moves, visit_share=float(search.get("visit_share", 0.0)),
            q_gap=search.get("q_gap"), root_value=float(search.get("root_value", 0.0)),
            nn_value=float(search.get("nn_value", 0.0)),
            legal_moves=int(search.get("legal_moves", board.legal_moves.count())),
            simulations=int(search.get("simulations", 0)), prev_fen=d.get("prev_fen"), last_move=d.get("last_move"),
            score=d.get("score"), start_fen=d.get("start_fen"), history=tuple(d.get("history") or ()))
        checks = {name: CheckResult.from_dict(name, r) for name, r in (d.get("checks") or {}).items()}
        engine = EngineVerdict.from_dict(d["engine"]) if d.get("engine") else None
        return cls(candidate, checks, engine, d.get("human_policy_prob"), d.get("rating"), d.get("rating_source", ""),
                   d.get("maia_probs"), d.get("difficulty"))


@dataclass(frozen=True)
class PuzzleBook:
    """A named, checked puzzle set with its provenance (`model`) and the configuration that made it."""

    name: str
    puzzles: tuple[ConceptPuzzle, ...]
    model: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)

    def concepts(self) -> list[dict[str, Any]]:
        """One summary per concept, in book order: id, label, layer, scores, puzzles per split."""
        out: dict[str, dict[str, Any]] = {}
        for p in self.puzzles:
            c = p.candidate
            row = out.setdefault(c.concept, {"concept": c.concept, "label": c.label, "layer": c.layer,
                                             "novelty": c.novelty, "teachability": c.teachability,
                                             "train": 0, "test": 0})
            row[c.split] += 1
        return list(out.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON with everything; validated as a study puzzle set (`PuzzleSetError` if it is not one)."""
        data = {"schema": "alphazero-concepts/puzzles/1", "name": self.name, "model": dict(self.model),
                "config": dict(self.config), "concepts": self.concepts(),
                "puzzles": [p.to_record() for p in self.puzzles]}
        parse_puzzle_set(data, source=f"puzzle book {self.name!r}")
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"


def parse_book(data: object, source: str = "<puzzle book>") -> PuzzleBook:
    """A decoded ``puzzles.json`` (or any study puzzle set) as a `PuzzleBook`; `PuzzleSetError` when invalid."""
    validated = parse_puzzle_set(data, source=source)
    assert isinstance(data, dict)  # checked by parse_puzzle_set
    puzzles = []
    for i, (record, valid) in enumerate(zip(data["puzzles"], validated.puzzles, strict=True)):
        try:
            puzzles.append(ConceptPuzzle.from_record({**record, "fen": valid.fen, "split": valid.split,
                                                      "concept": valid.concept}))
        except (KeyError, TypeError, ValueError) as exc:
            raise PuzzleSetError(f"{source}: puzzles[{i}]: bad extra field: {exc!r}") from exc
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    return PuzzleBook(validated.name, tuple(puzzles), dict(validated.model), config)


def load_book(path: str | os.PathLike[str]) -> PuzzleBook:
    """Read ``puzzles.json`` (or a plain study set); errors name the file, the puzzle index and the field."""
    load_puzzle_set(path)  # readable, JSON, schema: the study loader's messages
    return parse_book(json.loads(Path(path).read_text(encoding="utf-8")), source=str(path))


# ---------------------------------------------------------------------------------------------------------------
# Selection


@dataclass
class BuildReport:
    """What the build did: counts, every rejected candidate with its reasons, every concept left out and why."""

    concepts_in: int = 0
    positions_in: int = 0
    candidates: int = 0
    passed_checks: int = 0
    puzzles: int = 0
    concepts_kept: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    left_out: list[dict[str, Any]] = field(default_factory=list)
    engine_disagrees: int = 0

    def reason_counts(self) -> dict[str, int]:
        """How many rejections each check (or rule) caused; a candidate failing two checks counts twice."""
        out: dict[str, int] = {}
        for r in self.rejected:
            for reason in r.reasons:
                key = reason.split(":", 1)[0]
                out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict[str, Any]:
        return {"concepts_in": self.concepts_in, "positions_in": self.positions_in, "candidates": self.candidates,
                "passed_checks": self.passed_checks, "puzzles": self.puzzles, "concepts_kept": self.concepts_kept,
                "engine_disagrees": self.engine_disagrees, "reason_counts": self.reason_counts(),
                "left_out": self.left_out, "rejected": [r.to_dict() for r in self.rejected]}


def _rejection(p: ConceptPuzzle, reasons: Sequence[str]) -> Rejection:
    c = p.candidate
    return Rejection(c.id, c.concept, c.fen, c.split, tuple(reasons), c.answer,
                     {name: r.to_dict() for name, r in p.checks.items()})


def _rate(candidate: Candidate, human_prob: float | None) -> tuple[int, str]:
    if human_prob is not None:
        return estimate_rating(human_prob), "human_policy_prob"
    return estimate_rating(candidate.answer_prior), "teacher_prior"


def _share_positions(passed: Sequence[ConceptPuzzle], rejected: Sequence[Rejection],
                     concepts: Sequence[ConceptPrototypes], min_n: int) -> tuple[list[ConceptPuzzle], list[Rejection]]:
    """Give each passing position that several concepts share to one of them (`shared_positions` "balance").

    Prototypes overlap (a position can be among the top-scoring ones of many concept vectors), and the plan
    searched each position once, under the first concept listing it. Here the concepts with the fewest passing
    positions choose first, each taking `min_n` free positions (the least shared first) when it can reach
    `min_n`; every other position goes to the first concept listing it that reached `min_n` (else to the first).
    The puzzle takes its new concept's id, labels, split and score; the other concepts get a "dedupe" rejection.
    """
    options: dict[str, list[tuple[int, ConceptPrototypes, PrototypePosition]]] = {
        position_key(p.candidate.fen): [] for p in passed}
    for ci, concept in enumerate(concepts):
        listed: set[str] = set()
        for pos in concept.positions:
            key = position_key(pos.fen)
            if key in options and key not in listed:
                options[key].append((ci, concept, pos))
                listed.add(key)
    keys_of: dict[int, list[str]] = {}
    for key, opts in options.items():
        for ci, _, _ in opts:
            keys_of.setdefault(ci, []).append(key)
    owner: dict[str, int] = {}
    for ci in sorted(keys_of, key=lambda c: (len(keys_of[c]), c)):
        free = sorted((k for k in keys_of[ci] if k not in owner), key=lambda k: len(options[k]))
        if len(free) >= min_n:
            owner.update((k, ci) for k in free[:min_n])
    reached = set(owner.values())
    for key, opts in options.items():
        if opts and key not in owner:
            owner[key] = next((ci for ci, _, _ in opts if ci in reached), opts[0][0])
    shared = {k for k, opts in options.items() if len(opts) > 1}
    out_rejected = [r for r in rejected if not (r.reasons and r.reasons[0].startswith("dedupe")
                                                 and position_key(r.fen) in shared)]
    out: list[ConceptPuzzle] = []
    for p in passed:
        key = position_key(p.candidate.fen)
        opts = options[key]
        if not opts:  # a candidate of no input concept: left as it is
            out.append(p)
            continue
        _, concept, pos = next(o for o in opts if o[0] == owner[key])
        out.append(replace(p, candidate=p.candidate.under(concept, pos, id=puzzle_id(concept.concept, key))))
        for ci, other, other_pos in opts:
            if ci != owner[key]:
                out_rejected.append(Rejection(puzzle_id(other.concept, key), other.concept, other_pos.fen,
                                              other_pos.split, (f"dedupe: given to {concept.concept} (a prototype "
                                                                f"of {len(opts)} concepts)",)))
    return out, out_rejected


def make_book(candidates: Sequence[Candidate], config: PuzzleChecks, *,
              verdicts: Mapping[str, EngineVerdict] | None = None, human_probs: Mapping[str, float] | None = None,
              maia_probs: Mapping[str, Mapping[str, float]] | None = None,
              concepts: Sequence[ConceptPrototypes] = (), rejected: Sequence[Rejection] = (),
              name: str = "puzzles", model: Mapping[str, Any] | None = None,
              solve_config: SolveConfig | None = None) -> tuple[PuzzleBook, BuildReport]:
    """Check every candidate and keep the concepts with enough puzzles (see the module docstring).

    `concepts` (the input records, in order) fixes the concept order of the book and lets concepts without any
    candidate be reported as left out; `rejected` carries earlier rejections (duplicates, finished games).
    `maia_probs` ({id: {model: p}}, weakest model first) gives each puzzle its per-level probabilities and its
    difficulty (`puzzles.human`); its largest probability is the puzzle's `human_policy_prob` unless
    `human_probs` says otherwise.
    """
    verdicts = verdicts or {}
    maia_probs = maia_probs or {}
    human_probs = {**{k: max(v.values()) for k, v in maia_probs.items() if v}, **(human_probs or {})}
    report = BuildReport(concepts_in=len(concepts), candidates=len(candidates), rejected=list(rejected))
    report.positions_in = sum(len(c.positions) for c in concepts) if concepts else len(candidates) + len(rejected)
    seen: dict[str, str] = {}
    passed: list[ConceptPuzzle] = []
    for cand in candidates:
        prob = human_probs.get(cand.id)
        rating, source = _rate(cand, prob)
        levels = maia_probs.get(cand.id)
        puzzle = ConceptPuzzle(cand, run_checks(cand, config, verdicts.get(cand.id), prob),
                               verdicts.get(cand.id), prob, rating, source, levels,
                               difficulty(levels, config.human_threshold) if levels else None)
        key = position_key(cand.fen)
        if key in seen:
            report.rejected.append(_rejection(puzzle, [f"dedupe: duplicate of {seen[key]}"]))
            continue
        seen[key] = cand.id
        if puzzle.accepted:
            passed.append(puzzle)
        else:
            report.rejected.append(_rejection(puzzle, puzzle.reasons))
    report.passed_checks = len(passed)
    if config.shared_positions == "balance" and concepts:
        passed, report.rejected = _share_positions(passed, report.rejected, concepts, config.min_puzzles_per_concept)

    order = [c.concept for c in concepts]
    labels = {c.concept: c.label for c in concepts}
    for cand in candidates:
        if cand.concept not in labels:
            order.append(cand.concept)
            labels[cand.concept] = cand.label
    by_concept: dict[str, list[ConceptPuzzle]] = {c: [] for c in order}
    for p in passed:
        by_concept[p.candidate.concept].append(p)
    kept: list[ConceptPuzzle] = []
    for concept in order:
        group = by_concept[concept]
        counts = {s: sum(p.candidate.split == s for p in group) for s in ("train", "test")}
        reason = None
        if len(group) < config.min_puzzles_per_concept:
            reason = (f"only {len(group)} puzzle(s) passed the checks (need ≥ {config.min_puzzles_per_concept})")
        elif min(counts.values()) < config.min_puzzles_per_split:
            reason = (f"train {counts['train']} / test {counts['test']} puzzles (need ≥ "
                      f"{config.min_puzzles_per_split} in each split)")
        if reason is not None:
            report.left_out.append({"concept": concept, "label": labels[concept], "reason": reason,
                                    "passed": len(group), **counts})
            report.rejected.extend(_rejection(p, [f"concept left out: {reason}"]) for p in group)
            continue
        kept.extend(sorted(group, key=lambda p: p.candidate.split != "train"))  # train first, input order kept
    report.puzzles = len(kept)
    report.concepts_kept = len({p.candidate.concept for p in kept})
    report.engine_disagrees = sum(bool(p.engine_disagrees) for p in kept)
    cfg: dict[str, Any] = {"checks": config.to_dict()}
    if solve_config is not None:
        cfg["solve"] = solve_config.to_dict()
    return PuzzleBook(name, tuple(kept), dict(model or {}), cfg), report


# ---------------------------------------------------------------------------------------------------------------
# The whole stage, in memory


def human_probs_for(net: nn.Module, candidates: Sequence[Candidate], batch_size: int = 256) -> dict[str, float]:
    """`human_policy_prob` of every candidate's answer, by candidate id (the position with its game history)."""
    boards = [c.board_with_history() for c in candidates]
    answers = [chess.Move.from_uci(c.answer) for c in candidates]
    probs = human_policy_probs(net, boards, answers, batch_size)
    return {c.id: p for c, p in zip(candidates, probs, strict=True)}


def engine_verdicts(analyser: StockfishAnalyser, candidates: Sequence[Candidate], *,
                    on_verdict: Callable[[str, EngineVerdict], None] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, EngineVerdict]:
    """Stockfish's verdict on every candidate's answer, by candidate id (one position at a time)."""
    out: dict[str, EngineVerdict] = {}
    for i, cand in enumerate(candidates):
        verdict = analyser.verdict(cand.board(), chess.Move.from_uci(cand.answer))
        out[cand.id] = verdict
        if on_verdict is not None:
            on_verdict(cand.id, verdict)
        if progress is not None:
            progress(i + 1, len(candidates))
    return out


def make_puzzles(concepts: Sequence[ConceptPrototypes], mcts: MCTS, *, checks: PuzzleChecks | None = None,
                 solve_config: SolveConfig | None = None, analyser: StockfishAnalyser | None = None,
                 human_net: nn.Module | None = None, name: str = "puzzles",
                 model: Mapping[str, Any] | None = None) -> tuple[PuzzleBook, BuildReport]:
    """The puzzle stage in memory: plan (dedupe) → teacher search → Stockfish → human model → `make_book`.

    `analyser` is required when `checks.engine` is on (pass ``PuzzleChecks(engine=False)`` to build without it).
    """
    checks = checks or PuzzleChecks()
    solve_config = solve_config or SolveConfig()
    if checks.engine and analyser is None:
        raise ValueError("checks.engine is on but no Stockfish analyser was given (or set engine=False)")
    planned, rejected = plan_positions(concepts)
    candidates = solve(planned, mcts, solve_config)
    verdicts = engine_verdicts(analyser, candidates) if checks.engine and analyser is not None else {}
    probs = human_probs_for(human_net, candidates) if human_net is not None and candidates else {}
    return make_book(candidates, checks, verdicts=verdicts, human_probs=probs, concepts=concepts,
                     rejected=rejected, name=name, model=model, solve_config=solve_config)
