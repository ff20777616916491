"""Puzzle checks: is a candidate a sound puzzle? Each check is recorded per puzzle, each threshold a parameter.

A puzzle must have one clearly best move, a line that explains it, and honest labels (METHOD.md §5). The checks,
all configured by `PuzzleChecks`:

* ``unique``: the answer's visit share ≥ `min_visit_share` and its Q gap over the second most-visited move
  ≥ `min_q_gap` (Q from the solver's view, in [-1, 1]). Two equally good moves fail it.
* ``only_move`` (optional, `only_move_rule`, needs the engine): Lichess's puzzle-generator rule on Stockfish's
  lines: the win chances 2/(1+exp(−0.004·cp))−1 of the answer exceed those of the best other move by more than
  `only_move_margin` (0.5).
* ``line``: the machine line (the teacher's principal variation, starting with the answer) has ≥ `min_line_plies`
  (at least 3: the study's puzzle-set schema requires it).
* ``trivial``: none of the rules in `trivial` applies: ``only_legal_move``; ``mate_in_one`` (some legal move mates:
  either the answer is a mate in one, or the teacher missed one); ``recapture`` (the opponent's last move, when
  known, captured on a square and the answer captures back on it).
* ``engine`` (optional, `engine`): Stockfish at `engine_depth`: the answer loses ≤ `max_cp_loss` centipawns
  against Stockfish's best. Where Stockfish prefers another move, `engine_disagrees` is set on the puzzle (never
  hidden); with ``on_disagree="reject"`` such puzzles are rejected, with ``"flag"`` (default) they are kept.
  `engine_scope`: "passing" (default) asks Stockfish only about candidates that pass the network's own checks
  (unique, line, trivial; the engine cannot rescue one they reject, and most candidates fail them), "all" about
  every candidate (the build report then has the engine's numbers for the rejected ones too).
* ``audit`` (with the engine, `audit`): the grandmaster-grade rules of `rules.judge` on Stockfish's verdict at
  `engine_depth` (18 by default): undecided (|eval| ≤ `max_eval` cp before the answer), correct (the answer within
  `max_answer_loss` cp of Stockfish's best), unique (every other move ≥ `min_gap` cp worse), not trivial, worth
  asking (no mate in ≤ `fail_mate_in` for the solver). The same rules as `azc puzzles audit`, so every set the
  build writes passes that audit at the same settings.
* ``human``: `human_policy_prob`, the probability that a model of human play plays the answer (by default the
  most human-findable level of the Maia ladder, see `human.py`), is recorded with every level's probability and
  the puzzle's difficulty; with `max_human_policy_prob` set, answers humans play at least that often are rejected
  (too easy to be "machine" knowledge).

A check that did not run (no engine, no human model) is recorded with ``passed: null`` and rejects nothing.
The per-concept rules (≥ `min_puzzles_per_concept` puzzles, deduplication) are applied by `book.make_book`.
A position that is a prototype of several concepts becomes one puzzle: with `shared_positions` "balance"
(default) it goes to the concept that needs it to reach `min_puzzles_per_concept` (concepts with the fewest
passing positions choose first, taking the least shared ones), with "first" to the first concept that lists it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import chess
import numpy as np
from torch import nn

from alphazero_concepts.core.config import DictConfig
from alphazero_concepts.core.puzzleset import MIN_LINE_PLIES
from alphazero_concepts.nn.network import predict
from alphazero_concepts.puzzles.candidates import Candidate
from alphazero_concepts.puzzles.engine import EngineVerdict, win_chances
from alphazero_concepts.puzzles.rules import AuditItem, AuditRules, judge
from alphazero_concepts.search.mcts import legal_softmax

__all__ = [
    "CHECK_NAMES",
    "TRIVIAL_RULES",
    "CheckResult",
    "PuzzleChecks",
    "check_audit",
    "check_engine",
    "check_human",
    "check_line",
    "check_only_move",
    "check_trivial",
    "check_unique",
    "human_policy_probs",
    "needs_engine",
    "run_checks",
    "trivial_reasons",
]

CHECK_NAMES = ("unique", "only_move", "line", "trivial", "engine", "audit", "human")
TRIVIAL_RULES = ("only_legal_move", "mate_in_one", "recapture")
DISAGREE_ACTIONS = ("flag", "reject")
ENGINE_SCOPES = ("passing", "all")
SHARED_POSITIONS = ("balance", "first")


@dataclass(frozen=True)
class PuzzleChecks(DictConfig):
    """Every threshold of the puzzle checks (see the module docstring); saved beside the puzzles."""

    min_visit_share: float = 0.5
    min_q_gap: float = 0.05
    only_move_rule: bool = False
    only_move_margin: float = 0.5
    min_line_plies: int = 3
    trivial: tuple[str, ...] = TRIVIAL_RULES
    engine: bool = True
    engine_depth: int = 18
    max_cp_loss: int = 150
    audit: bool = True  # the grandmaster-grade rules (rules.judge) on the engine's verdict
    max_eval: int = 250
    max_answer_loss: int = 20
    min_gap: int = 75
    fail_mate_in: int = 2
    human_threshold: float = 0.1  # a human model "finds" the answer when it plays it with at least this probability
    on_disagree: str = "flag"
    engine_scope: str = "passing"
    max_human_policy_prob: float | None = None
    min_puzzles_per_concept: int = 4
    min_puzzles_per_split: int = 0
    shared_positions: str = "balance"

    def __post_init__(self) -> None:
        if not isinstance(self.trivial, tuple):
            object.__setattr__(self, "trivial", tuple(self.trivial))
        unknown = [r for r in self.trivial if r not in TRIVIAL_RULES]
        if unknown:
            raise ValueError(f"unknown trivial rules {unknown}; known: {', '.join(TRIVIAL_RULES)}")
        if self.shared_positions not in SHARED_POSITIONS:
            raise ValueError(f"shared_positions must be 'balance' or 'first', got {self.shared_positions!r}")
        if self.engine_scope not in ENGINE_SCOPES:
            raise ValueError(f"engine_scope must be 'passing' or 'all', got {self.engine_scope!r}")
        if self.on_disagree not in DISAGREE_ACTIONS:
            raise ValueError(f"on_disagree must be 'flag' or 'reject', got {self.on_disagree!r}")
        if self.only_move_rule and not self.engine:
            raise ValueError("the only-move rule needs Stockfish's lines: set engine=True or only_move_rule=False")
        if not 0.0 <= self.min_visit_share <= 1.0:
            raise ValueError(f"min_visit_share must be in [0, 1], got {self.min_visit_share}")
        if self.min_line_plies < MIN_LINE_PLIES:
            raise ValueError(f"min_line_plies must be ≥ {MIN_LINE_PLIES} (the study's puzzle-set schema needs a "
                             f"line of at least {MIN_LINE_PLIES} plies), got {self.min_line_plies}")
        if self.engine_depth < 1 or self.max_cp_loss < 0:
            raise ValueError("engine_depth ≥ 1 and max_cp_loss ≥ 0 are required")
        if self.min_puzzles_per_concept < 1 or self.min_puzzles_per_split < 0:
            raise ValueError("min_puzzles_per_concept ≥ 1 and min_puzzles_per_split ≥ 0 are required")

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["trivial"] = list(self.trivial)
        return out

    def audit_rules(self) -> AuditRules:
        """The `rules.AuditRules` of these checks (the audit's own defaults where these do not say)."""
        return AuditRules(max_eval=self.max_eval, max_cp_loss=self.max_answer_loss, min_gap=self.min_gap,
                          fail_mate_in=self.fail_mate_in)


@dataclass(frozen=True)
class CheckResult:
    """One check on one puzzle: passed (None: not run), the measured value, the threshold, and why."""

    name: str
    passed: bool | None
    value: Any = None
    threshold: Any = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "value": self.value, "threshold": self.threshold, "detail": self.detail}

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> CheckResult:
        return cls(name, d.get("passed"), d.get("value"), d.get("threshold"), d.get("detail", ""))


def _not_run(name: str, why: str) -> CheckResult:
    return CheckResult(name, None, None, None, f"not run: {why}")


def check_unique(candidate: Candidate, config: PuzzleChecks) -> CheckResult:
    """Visit share and Q gap of the answer over the second most-visited move, both above their thresholds."""
    share, gap = candidate.visit_share, candidate.q_gap
    problems = []
    if share < config.min_visit_share:
        problems.append(f"visit share {share:.2f} < {config.min_visit_share:.2f}")
    if gap is not None and gap < config.min_q_gap:
        second = candidate.second.uci if candidate.second else "?"
        problems.append(f"Q gap over {second} {gap:+.3f} < {config.min_q_gap:.3f}")
    gap_text = "no other move visited" if gap is None else f"Q gap {gap:+.3f}"
    detail = "; ".join(problems) if problems else f"visit share {share:.2f}, {gap_text}"
    return CheckResult("unique", not problems, {"visit_share": share, "q_gap": gap},
                       {"min_visit_share": config.min_visit_share, "min_q_gap": config.min_q_gap}, detail)


def check_only_move(verdict: EngineVerdict | None, config: PuzzleChecks) -> CheckResult:
    """Lichess's only-move rule: win chances of the answer minus those of the best other move > the margin."""
    if not config.only_move_rule:
        return _not_run("only_move", "disabled")
    if verdict is None:
        return _not_run("only_move", "no engine verdict")
    if verdict.disagrees:
        other_cp: int | None = verdict.best_cp
        other = verdict.best
    else:
        other_cp, other = verdict.second_cp, verdict.second
    if other_cp is None:
        return CheckResult("only_move", True, None, config.only_move_margin, "no other legal move")
    margin = win_chances(verdict.answer_cp) - win_chances(other_cp)
    ok = margin > config.only_move_margin
    detail = (f"win chances {win_chances(verdict.answer_cp):+.2f} vs {win_chances(other_cp):+.2f} for {other} "
              f"(margin {margin:+.2f} {'>' if ok else '≤'} {config.only_move_margin})")
    return CheckResult("only_move", ok, round(margin, 4), config.only_move_margin, detail)


def check_line(candidate: Candidate, config: PuzzleChecks) -> CheckResult:
    """The machine line (starting with the answer) is at least `min_line_plies` long."""
    n = len(candidate.line)
    ok = n >= config.min_line_plies and bool(candidate.line) and candidate.line[0] == candidate.answer
    return CheckResult("line", ok, n, config.min_line_plies,
                       f"machine line of {n} plies" + ("" if ok else f" (need ≥ {config.min_line_plies})"))


def trivial_reasons(board: chess.Board, answer: chess.Move, last_move: chess.Move | None = None,
                    prev_board: chess.Board | None = None, rules: Sequence[str] = TRIVIAL_RULES) -> list[str]:
    """The triviality rules that apply to `answer` in `board` (empty: not trivial)."""
    out: list[str] = []
    legal = list(board.legal_moves)
    if "only_legal_move" in rules and len(legal) == 1:
        out.append("only_legal_move")
    if "mate_in_one" in rules and any(board.gives_check(m) and _mates(board, m) for m in legal):
        out.append("mate_in_one")
    if ("recapture" in rules and last_move is not None and prev_board is not None
            and prev_board.is_capture(last_move) and board.is_capture(answer)
            and answer.to_square == last_move.to_square):
        out.append("recapture")
    return out


def _mates(board: chess.Board, move: chess.Move) -> bool:
    board.push(move)
    try:
        return board.is_checkmate()
    finally:
        board.pop()


def check_trivial(candidate: Candidate, config: PuzzleChecks) -> CheckResult:
    """Not the only legal move, not a mate in one, not a plain recapture (the rules in `config.trivial`)."""
    board = candidate.board()
    answer = chess.Move.from_uci(candidate.answer)
    last = prev = None
    if candidate.last_move and candidate.prev_fen:
        last, prev = chess.Move.from_uci(candidate.last_move), chess.Board(candidate.prev_fen)
    found = trivial_reasons(board, answer, last, prev, config.trivial)
    detail = f"trivial: {', '.join(found)}" if found else "not trivial"
    if "recapture" in config.trivial and last is None:
        detail += " (recapture not checked: last move unknown)"
    return CheckResult("trivial", not found, found, list(config.trivial), detail)


def check_engine(verdict: EngineVerdict | None, config: PuzzleChecks) -> CheckResult:
    """The answer loses ≤ `max_cp_loss` against Stockfish's best; a disagreement rejects only with "reject"."""
    if not config.engine:
        return _not_run("engine", "disabled (--no-engine)")
    if verdict is None:
        return _not_run("engine", "no engine verdict" + (" (engine_scope 'passing': Stockfish is asked only about "
                                                         "candidates the network's checks pass)"
                                                         if config.engine_scope == "passing" else ""))
    loss = verdict.cp_loss
    problems = []
    if loss > config.max_cp_loss:
        problems.append(f"answer loses {loss} cp > {config.max_cp_loss} against Stockfish's {verdict.best}")
    if verdict.disagrees and config.on_disagree == "reject":
        problems.append(f"Stockfish prefers {verdict.best} (on_disagree=reject)")
    if problems:
        detail = "; ".join(problems)
    elif verdict.disagrees:
        detail = f"Stockfish prefers {verdict.best} by {loss} cp (flagged: engine_disagrees)"
    else:
        detail = f"Stockfish agrees ({verdict.best_cp:+d} cp at depth {verdict.depth})"
    return CheckResult("engine", not problems, {"cp_loss": loss, "disagrees": verdict.disagrees},
                       {"max_cp_loss": config.max_cp_loss, "on_disagree": config.on_disagree}, detail)


def check_audit(candidate: Candidate, verdict: EngineVerdict | None, config: PuzzleChecks) -> CheckResult:
    """The grandmaster-grade rules (`rules.judge`) on Stockfish's verdict; every failed rule is in the detail."""
    if not config.audit:
        return _not_run("audit", "audit rules off")
    if verdict is None:
        return _not_run("audit", "no engine verdict")
    board = candidate.board_with_last_move()
    last = board.peek() if board.move_stack else None
    item = AuditItem(candidate.id, board, chess.Move.from_uci(candidate.answer), last, "build", 0)
    results = judge(item, verdict, config.audit_rules())
    failed = [r.detail for r in results.values() if r.passed is False]
    detail = "; ".join(failed) if failed else "; ".join(r.detail for r in results.values() if r.passed)
    return CheckResult("audit", not failed, {name: r.value for name, r in results.items()},
                       config.audit_rules().to_dict(), detail)


def check_human(prob: float | None, config: PuzzleChecks) -> CheckResult:
    """Record `human_policy_prob`; reject only when `max_human_policy_prob` is set and reached."""
    if prob is None:
        return _not_run("human", "no human model")
    limit = config.max_human_policy_prob
    ok = limit is None or prob < limit
    detail = f"human model plays the answer with p = {prob:.3f}"
    if not ok:
        detail += f" ≥ {limit} (too human to teach)"
    return CheckResult("human", ok, prob, limit, detail)


def needs_engine(candidate: Candidate, config: PuzzleChecks) -> bool:
    """Whether the build asks Stockfish about `candidate`: under `engine_scope` "passing", only when the
    network-side checks (unique, line, trivial) do not already reject it."""
    if not config.engine:
        return False
    if config.engine_scope == "all":
        return True
    return all(r.passed is not False for r in (check_unique(candidate, config), check_line(candidate, config),
                                               check_trivial(candidate, config)))


def run_checks(candidate: Candidate, config: PuzzleChecks, verdict: EngineVerdict | None = None,
               human_prob: float | None = None) -> dict[str, CheckResult]:
    """All per-puzzle checks of one candidate, by name (in `CHECK_NAMES` order)."""
    if verdict is not None and verdict.answer != candidate.answer:
        raise ValueError(f"{candidate.id}: engine verdict is for {verdict.answer}, the answer is {candidate.answer}")
    results = [check_unique(candidate, config), check_only_move(verdict, config), check_line(candidate, config),
               check_trivial(candidate, config), check_engine(verdict, config),
               check_audit(candidate, verdict, config), check_human(human_prob, config)]
    return {r.name: r for r in results}


def human_policy_probs(net: nn.Module, boards: Sequence[chess.Board], answers: Sequence[chess.Move],
                       batch_size: int = 256) -> list[float]:
    """The probability that `net` (a human-trained model) plays each answer: its raw policy, no search.

    Works with any network that carries a board format (AlphaZero's or lc0's, e.g. Maia weights).
    """
    if len(boards) != len(answers):
        raise ValueError(f"{len(boards)} boards but {len(answers)} answers")
    if not boards:
        return []
    fmt = net.format
    planes = fmt.encode(boards)
    logits, _ = predict(net, planes, batch_size)
    legal = [fmt.legal_move_indices(b) for b in boards]
    probs = legal_softmax(logits, [np.asarray(ix) for _, ix in legal])
    out = []
    for (moves, _), p, answer, board in zip(legal, probs, answers, boards, strict=True):
        if answer not in moves:
            raise ValueError(f"answer {answer.uci()} is illegal in {board.fen()!r}")
        out.append(float(p[moves.index(answer)]))
    return out
