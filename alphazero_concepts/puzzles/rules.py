"""The grandmaster-grade rules for one puzzle, as pure functions of the position and Stockfish's verdict.

A puzzle is **undecided** (|eval| ≤ 250 cp before the answer), **correct** (the answer is Stockfish's best move or
within 20 cp of it), **unique** (every other move ≥ 75 cp worse: MultiPV 2), **not trivial** (not the only legal
move, not a forced recapture) and **worth asking** (no mate in ≤ 2 for the solver; a won position is marked).
All scores are centipawns from the solver's (side to move's) view; a mate counts as ±(`MATE_CP` − moves to mate).
Why each rule, and its option, is in `docs/puzzles.md`. Used by `azc puzzles audit` on any puzzle file and by the
puzzle build as its default checks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import chess

from alphazero_concepts.puzzles.engine import MATE_CP, EngineVerdict

RULE_NAMES = ("undecided", "correct", "unique", "trivial", "worth_asking")
MATE_SPAN = 1000  # scores within this of ±MATE_CP are mates (no search reports a mate 1000 moves away)


@dataclass(frozen=True)
class AuditItem:
    """One puzzle to audit: the solver's position, the answer, and where it was read.

    `board` is the position the solver faces. When the opponent's last move is known (Lichess CSV, the toolkit's
    JSON), the board carries that move on its move stack and `last_move` is that move; otherwise it has no
    history and `last_move` is None. `line` is the file's line (1-based) where the puzzle starts.
    """

    id: str
    board: chess.Board
    answer: chess.Move
    last_move: chess.Move | None
    source: str
    line: int

    @property
    def fen(self) -> str:
        return self.board.fen()

    @property
    def answer_san(self) -> str:
        return self.board.san(self.answer)

    @property
    def recaptured_square(self) -> chess.Square | None:
        """The square the opponent's last move captured on (None: no capture, or the last move is unknown)."""
        if self.last_move is None or not self.board.move_stack or self.board.peek() != self.last_move:
            return None
        before = self.board.copy()
        before.pop()
        return self.last_move.to_square if before.is_capture(self.last_move) else None



@dataclass(frozen=True)
class AuditRules:
    """The thresholds of the audit (centipawns, solver's view); see the module docstring for each rule."""

    max_eval: int = 250
    max_cp_loss: int = 20
    min_gap: int = 75
    fail_trivial: bool = True
    won_cp: int = 700
    fail_mate_in: int = 2
    fail_won: bool = False

    def __post_init__(self) -> None:
        for name in ("max_eval", "max_cp_loss", "min_gap", "fail_mate_in"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if self.won_cp <= 0:
            raise ValueError(f"won_cp must be > 0, got {self.won_cp}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RuleResult:
    """One rule on one puzzle: passed (None: not applicable or not run), the measured value, the threshold, the
    reason in words (starting with the rule's name), and a mark that does not fail (``won``)."""

    name: str
    passed: bool | None
    value: int | None
    threshold: int | None
    detail: str
    mark: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "value": self.value, "threshold": self.threshold, "detail": self.detail,
                "mark": self.mark}


def mate_in(cp: int) -> int | None:
    """Moves to mate of a score (positive: the solver mates; negative: the solver is mated); None when no mate."""
    if abs(cp) < MATE_CP - MATE_SPAN:
        return None
    return (MATE_CP - abs(cp)) * (1 if cp > 0 else -1)


def cp_text(cp: int | None) -> str:
    """A score for people: ``+58``, ``-120``, ``#3`` (the solver mates in 3), ``#-2`` (is mated in 2)."""
    if cp is None:
        return "?"
    mate = mate_in(cp)
    if mate is not None:
        return f"#{mate}"
    return f"{cp:+d}"


def san_of(board: chess.Board, uci: str | None) -> str:
    if uci is None:
        return "?"
    try:
        return board.san(chess.Move.from_uci(uci))
    except (ValueError, AssertionError):
        return uci


def judge(item: AuditItem, verdict: EngineVerdict, rules: AuditRules) -> dict[str, RuleResult]:
    """Every rule of `RULE_NAMES` on one puzzle, from Stockfish's verdict (scores from the solver's view)."""
    board = item.board
    answer_san = item.answer_san
    best_san = san_of(board, verdict.best)
    eval_cp = verdict.best_cp
    out: dict[str, RuleResult] = {}

    # undecided: the position before the answer
    mate = mate_in(eval_cp)
    mate_words = "" if mate is None else f" (mate in {abs(mate)} for {'the solver' if mate > 0 else 'the opponent'})"
    if abs(eval_cp) <= rules.max_eval:
        out["undecided"] = RuleResult("undecided", True, abs(eval_cp), rules.max_eval,
                                      f"undecided: |eval| {abs(eval_cp)} cp ≤ {rules.max_eval}")
    else:
        out["undecided"] = RuleResult("undecided", False, abs(eval_cp), rules.max_eval,
                                      f"undecided: |eval| {abs(eval_cp)} cp > {rules.max_eval}{mate_words}: "
                                      "already decided")

    # correct: the answer against Stockfish's best
    loss = verdict.cp_loss
    if verdict.answer == verdict.best:
        detail = f"correct: {answer_san} is Stockfish's best ({cp_text(verdict.answer_cp)})"
    else:
        detail = (f"correct: {answer_san} ({cp_text(verdict.answer_cp)}) is {loss} cp below Stockfish's best "
                  f"{best_san} ({cp_text(verdict.best_cp)})")
    ok = loss <= rules.max_cp_loss
    out["correct"] = RuleResult("correct", ok, loss, rules.max_cp_loss,
                                detail + ("" if verdict.answer == verdict.best
                                          else f" {'≤' if ok else '>'} {rules.max_cp_loss}"))

    # unique: the best other move against the answer
    legal = board.legal_moves.count()
    gap: int | None = None
    if verdict.answer == verdict.best:
        other, other_cp = verdict.second, verdict.second_cp
    else:
        other, other_cp = verdict.best, verdict.best_cp
    if legal <= 1:
        out["unique"] = RuleResult("unique", None, None, rules.min_gap, "unique: the only legal move (see trivial)")
    elif other is None or other_cp is None:
        out["unique"] = RuleResult("unique", None, None, rules.min_gap, "unique: not run (no second move scored)")
    else:
        gap = verdict.answer_cp - other_cp
        ok = gap >= rules.min_gap
        why = "" if ok else (": another move is better" if gap < 0 else ": two solutions")
        out["unique"] = RuleResult("unique", ok, gap, rules.min_gap,
                                   f"unique: gap {gap} cp to the best other move {san_of(board, other)} "
                                   f"({cp_text(other_cp)}) {'≥' if ok else '<'} {rules.min_gap}{why}")

    # trivial: a single legal move, or a forced recapture on the last move's square
    square = item.recaptured_square
    if legal <= 1:
        out["trivial"] = RuleResult("trivial", not rules.fail_trivial, legal, 1, "trivial: the only legal move")
    elif square is not None and item.answer.to_square == square and board.is_capture(item.answer) \
            and gap is not None and gap >= rules.min_gap:
        out["trivial"] = RuleResult("trivial", not rules.fail_trivial, gap, rules.min_gap,
                                    f"trivial: forced recapture on {chess.square_name(square)} (the last move "
                                    f"captured there; every other move is ≥ {gap} cp worse)")
    else:
        note = "" if item.last_move is not None else " (recapture not checked: last move unknown)"
        out["trivial"] = RuleResult("trivial", True, legal, 1, f"trivial: no, {legal} legal moves{note}")

    # worth asking: already won by force?
    won = verdict.answer_cp >= rules.won_cp
    mate_found = rules.fail_mate_in > 0 and eval_cp >= MATE_CP - rules.fail_mate_in
    if mate_found:
        out["worth_asking"] = RuleResult(
            "worth_asking", False, eval_cp, MATE_CP - rules.fail_mate_in,
            f"worth_asking: Stockfish finds mate in {MATE_CP - eval_cp} (≤ {rules.fail_mate_in}): too easy to ask",
            "won")
    elif won:
        out["worth_asking"] = RuleResult(
            "worth_asking", not rules.fail_won, verdict.answer_cp, rules.won_cp,
            f"worth_asking: already won after the answer ({cp_text(verdict.answer_cp)} ≥ +{rules.won_cp} cp)",
            "won")
    else:
        out["worth_asking"] = RuleResult("worth_asking", True, verdict.answer_cp, rules.won_cp,
                                         f"worth_asking: {cp_text(verdict.answer_cp)} cp after the answer "
                                         f"(< +{rules.won_cp}: not yet won)")
    return out
