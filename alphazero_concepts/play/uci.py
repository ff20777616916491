"""A UCI engine over the project's networks and batched MCTS: `azc uci --model M` or `python -m
alphazero_concepts.play.uci --model M`.

Any GUI, tournament manager (cutechess-cli), python-chess's `chess.engine` or a Lichess bot bridge can drive it.
The protocol loop reads stdin line by line (bytes, so a stray non-UTF-8 byte cannot break it) and answers on
stdout; a search runs in a worker thread so that `stop`, `isready` and `quit` are answered while it thinks.
Every command is guarded: a malformed or unknown line is answered with ``info string error: …`` and the engine
keeps serving.

Scores are from the side to move's view (as UCI requires). A search value q ∈ [−1, 1] (the Q of the move on the
line) becomes centipawns with lc0's mapping ``cp = 111.714640912 · tan(1.5620688421 · q)`` (q = 0.5 → 111 cp,
0.9 → 671 cp), and WDL (with ``UCI_ShowWDL``) per mille as ``w = 1000·max(q, 0)``, ``l = 1000·max(−q, 0)``,
``d = 1000 − w − l`` — the draw share takes the uncertainty, and the expected score (w + d/2)/1000 = (1 + q)/2
agrees with q. A move that mates at once is reported as ``score mate 1``.

MCTS has no depth: ``depth`` is the length of the principal variation and ``seldepth`` the longest line shown;
``nodes`` are the root's visits (simulations). Limits: ``go nodes N`` runs N simulations; ``movetime``,
``wtime/btime/winc/binc/movestogo`` give a deadline (`time_budget_s`); ``depth D`` stops when the principal
variation is D plies long; ``infinite`` (and ``ponder``) searches until ``stop``; a bare ``go`` runs the
``Simulations`` option (0 = until ``stop``). A command that changes state during a search (``position``,
``setoption``, ``ucinewgame``, ``go``; GUIs do not send them then) waits for a search with a limit to end, and
stops one that waits for ``stop``; so does the end of input. ``quit`` stops at once. The search tree is not
reused between moves; the network evaluation cache is, until ``ucinewgame``.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import chess
import numpy as np

if TYPE_CHECKING:
    from alphazero_concepts.concepts.conceptset import Concept
    from alphazero_concepts.search.mcts import MCTS, Evaluator, SearchResult

ENGINE_NAME = "alphazero-concepts"
ENGINE_AUTHOR = "alphazero-concepts developers"
UNTIL_STOP = 500_000  # simulations of a search ending on `stop` or a deadline: caps the tree (~6.4 KB each)
REPORT_INTERVAL_S = 1.0  # seconds between `info` lines during a search
DEFAULT_MOVES_TO_GO = 30  # moves the remaining clock is shared over when the GUI does not say
MAX_PV = 32
EMPTY = "<empty>"


# ---------------------------------------------------------------------------------------------------------------
# Scores and time


def value_to_cp(q: float) -> int:
    """Centipawns of a value in [−1, 1] (side to move's view), lc0's mapping; ±1 → ±12,800."""
    q = max(-1.0, min(1.0, float(q)))
    return round(111.714640912 * math.tan(1.5620688421 * q))


def value_to_wdl(q: float) -> tuple[int, int, int]:
    """(win, draw, loss) per mille of a value (side to move's view) with expected score (1 + q)/2."""
    q = max(-1.0, min(1.0, float(q)))
    w, loss = round(1000 * max(q, 0.0)), round(1000 * max(-q, 0.0))
    return w, 1000 - w - loss, loss


@dataclass
class GoLimits:
    """The parameters of one `go` command (times in milliseconds, as UCI sends them)."""

    nodes: int | None = None
    movetime: int | None = None
    wtime: int | None = None
    btime: int | None = None
    winc: int = 0
    binc: int = 0
    movestogo: int | None = None
    depth: int | None = None
    mate: int | None = None
    infinite: bool = False
    ponder: bool = False
    searchmoves: list[chess.Move] = field(default_factory=list)

    @property
    def waits_for_stop(self) -> bool:
        """Searches that may print `bestmove` only after `stop` (or `ponderhit`)."""
        return self.infinite or self.ponder


_INT_PARAMS = ("nodes", "movetime", "wtime", "btime", "winc", "binc", "movestogo", "depth", "mate")


def parse_go(tokens: Sequence[str], board: chess.Board) -> tuple[GoLimits, list[str]]:
    """`GoLimits` from the tokens after ``go``, and the problems found (bad values are skipped, not fatal)."""
    limits = GoLimits()
    problems: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i].lower()
        if tok in _INT_PARAMS:
            if i + 1 >= len(tokens):
                problems.append(f"go {tok}: missing value")
                break
            try:
                setattr(limits, tok, int(float(tokens[i + 1])))
            except ValueError:
                problems.append(f"go {tok}: {tokens[i + 1]!r} is not a number")
            i += 2
        elif tok in ("infinite", "ponder"):
            setattr(limits, tok, True)
            i += 1
        elif tok == "searchmoves":
            i += 1
            while i < len(tokens) and tokens[i].lower() not in (*_INT_PARAMS, "infinite", "ponder"):
                try:
                    limits.searchmoves.append(board.parse_uci(tokens[i]))
                except ValueError:
                    problems.append(f"go searchmoves: {tokens[i]!r} is not a legal move here")
                i += 1
        else:
            problems.append(f"go: unknown parameter {tokens[i]!r}")
            i += 1
    if limits.nodes is not None and limits.nodes < 1:
        problems.append(f"go nodes {limits.nodes}: must be ≥ 1, ignored")
        limits.nodes = None
    if limits.depth is not None and limits.depth < 1:
        problems.append(f"go depth {limits.depth}: must be ≥ 1, ignored")
        limits.depth = None
    return limits, problems


def time_budget_s(limits: GoLimits, turn: chess.Color, overhead_ms: int) -> float | None:
    """Seconds to think for this move, or None when no time limit applies.

    ``movetime``: that time less the move overhead (at least half of it). A clock: the remaining time shared
    over ``movestogo`` moves (30 when not given) plus three quarters of the increment, never more than half of
    what is left after the overhead (90% when it is the last move before the time control). Both: the smaller.
    """
    if limits.waits_for_stop:
        return None
    budgets: list[float] = []
    if limits.movetime is not None:
        movetime = max(0, limits.movetime)
        budgets.append(max(movetime - overhead_ms, movetime / 2))
    remaining = limits.wtime if turn == chess.WHITE else limits.btime
    if remaining is not None:
        remaining = max(0, remaining)
        inc = max(0, limits.winc if turn == chess.WHITE else limits.binc)
        mtg = min(max(limits.movestogo or DEFAULT_MOVES_TO_GO, 1), 50)
        share = remaining / mtg + 0.75 * inc
        cap = max(remaining - overhead_ms, 0) * (0.9 if mtg == 1 else 0.5)
        budgets.append(min(share, cap))
    if not budgets:
        return None
    return max(min(budgets), 1.0) / 1000.0


# ---------------------------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class UciOption:
    """One declared UCI option: its UCI name, type, default and range (what `uci` prints)."""

    name: str
    type: str  # spin, check, string
    default: Any
    min: int | None = None
    max: int | None = None

    def declaration(self) -> str:
        if self.type == "check":
            default = "true" if self.default else "false"
        elif self.type == "string":
            default = str(self.default) if str(self.default) else EMPTY
        else:
            default = str(self.default)
        text = f"option name {self.name} type {self.type} default {default}"
        if self.type == "spin":
            text += f" min {self.min} max {self.max}"
        return text

    def parse(self, value: str) -> Any:
        """The typed value of `value`; ValueError with a readable reason when it does not fit."""
        value = value.strip()
        if self.type == "check":
            if value.lower() not in ("true", "false"):
                raise ValueError(f"{self.name} takes true or false, not {value!r}")
            return value.lower() == "true"
        if self.type == "spin":
            number = int(float(value))
            if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
                raise ValueError(f"{self.name} must be in [{self.min}, {self.max}], got {number}")
            return number
        return "" if value == EMPTY else value


OPTIONS: tuple[UciOption, ...] = (
    UciOption("Model", "string", ""),  # "" → the --model given at start (default: the bundled teacher)
    UciOption("Simulations", "spin", 800, 0, UNTIL_STOP),
    UciOption("Threads", "spin", 1, 1, 256),
    UciOption("MinibatchSize", "spin", 1, 1, 256),
    UciOption("Temperature", "string", "0"),
    UciOption("MultiPV", "spin", 1, 1, 64),
    UciOption("UCI_ShowWDL", "check", False),
    UciOption("MoveOverhead", "spin", 50, 0, 10_000),
    UciOption("ConceptRun", "string", ""),
    UciOption("Concept", "string", ""),
)
_OPTION_BY_KEY = {o.name.lower(): o for o in OPTIONS}


# ---------------------------------------------------------------------------------------------------------------
# The engine


class NoNetworkError(RuntimeError):
    """`go` without a network (the model could not be loaded): answered with ``bestmove 0000``."""


class UciEngine:
    """The protocol state machine: feed it lines with `handle`; it answers through `write` (one line per call).

    `model` is any `load_network` spec (None → the bundled teacher). Tests may pass `evaluator` instead: the
    search then uses it and no network is loaded (concept reports need a network and are unavailable).
    """

    def __init__(self, write: Callable[[str], None], model: str | None = None, device: str = "cpu",
                 evaluator: Evaluator | None = None, load_now: bool = True,
                 options: dict[str, Any] | None = None) -> None:
        self._write_line = write
        self._out_lock = threading.Lock()
        self.start_model = model
        self.device = device
        self.options: dict[str, Any] = {o.name: o.default for o in OPTIONS}
        for name, value in (options or {}).items():
            if name not in self.options:
                raise ValueError(f"unknown option {name!r}")
            self.options[name] = value
        self._threads_applied: int | None = None
        self.board = chess.Board()
        self._fixed_evaluator = evaluator
        self._net: Any = None
        self._meta: Any = None
        self._loaded_spec: str | None = None
        self._mcts: MCTS | None = None
        self._concept: Concept | None = None
        self._concept_key: tuple[str, str] | None = None
        self._rng = np.random.default_rng()
        self._worker: threading.Thread | None = None
        self._waits_for_stop = False
        self._notes: list[str] = []  # messages of the set-up, sent at the next isready/go
        self._stop = threading.Event()
        self._load_lock = threading.Lock()
        self._loader: threading.Thread | None = None
        if load_now and evaluator is None:  # start loading at once; `isready`/`go` wait for it
            self._loader = threading.Thread(target=self._safe_prepare, args=(True,), daemon=True)
            self._loader.start()

    # -- output -----------------------------------------------------------------------------------------------
    def send(self, line: str) -> None:
        with self._out_lock:
            self._write_line(line)

    def error(self, message: str) -> None:
        self.send(f"info string error: {' '.join(message.split())}")

    # -- input ------------------------------------------------------------------------------------------------
    def handle(self, line: str) -> bool:
        """Process one input line; False once the engine should exit (`quit`). Never raises."""
        tokens = line.strip().split()
        if not tokens:
            return True
        command, args = tokens[0].lower(), tokens[1:]
        try:
            if command == "quit":
                self.stop_search()
                return False
            handler = self._handlers().get(command)
            if handler is None:
                self.error(f"unknown command {line.strip()[:80]!r}")
            else:
                handler(args)
        except Exception as exc:  # a bad command must never take the engine down
            self.error(f"{command}: {type(exc).__name__}: {exc}")
        return True

    def _handlers(self) -> dict[str, Callable[[list[str]], None]]:
        return {
            "uci": self._cmd_uci,
            "isready": self._cmd_isready,
            "ucinewgame": self._cmd_ucinewgame,
            "setoption": self._cmd_setoption,
            "position": self._cmd_position,
            "go": self._cmd_go,
            "stop": lambda _args: self.stop_search(),
            "ponderhit": lambda _args: self.stop_search(wait=False),
            "debug": lambda _args: None,
            "register": lambda _args: None,
        }

    def _cmd_uci(self, _args: list[str]) -> None:
        self.send(f"id name {ENGINE_NAME}")
        self.send(f"id author {ENGINE_AUTHOR}")
        for option in OPTIONS:
            self.send(option.declaration())
        self.send("uciok")

    def _cmd_isready(self, _args: list[str]) -> None:
        if not self.searching:  # while searching, answer at once (the UCI rule)
            self._safe_prepare(errors_only=True)
        self.send("readyok")

    def _cmd_ucinewgame(self, _args: list[str]) -> None:
        self.finish_search()
        self.board = chess.Board()
        self._mcts = None  # a fresh evaluation cache

    def _cmd_setoption(self, args: list[str]) -> None:
        self.finish_search()
        lower = [a.lower() for a in args]
        if not args or lower[0] != "name":
            raise ValueError("expected 'setoption name <name> [value <value>]'")
        end = lower.index("value") if "value" in lower else len(args)
        name = " ".join(args[1:end])
        value = " ".join(args[end + 1:]) if end < len(args) else ""
        option = _OPTION_BY_KEY.get(name.lower())
        if option is None:
            raise ValueError(f"unknown option {name!r} (options: {', '.join(o.name for o in OPTIONS)})")
        parsed = option.parse(value)
        if option.name == "Temperature":
            temperature = float(parsed or 0)
            if not math.isfinite(temperature) or temperature < 0:
                raise ValueError(f"Temperature must be ≥ 0, got {parsed!r}")
        self.options[option.name] = parsed
        if option.name == "MinibatchSize":
            self._mcts = None

    def _cmd_position(self, args: list[str]) -> None:
        self.finish_search()
        if not args:
            raise ValueError("expected 'position startpos|fen <FEN> [moves …]'")
        lower = [a.lower() for a in args]
        moves_at = lower.index("moves") if "moves" in lower else len(args)
        if lower[0] == "startpos":
            board = chess.Board()
        elif lower[0] == "fen":
            fen = " ".join(args[1:moves_at])
            try:
                board = chess.Board(fen)
            except ValueError as exc:
                raise ValueError(f"invalid FEN {fen!r}: {exc}") from None
        else:
            raise ValueError(f"expected startpos or fen, got {args[0]!r}")
        if not board.is_valid():
            from alphazero_concepts.chess.positions import board_problem

            raise ValueError(f"not a legal position ({board_problem(board)}): {board.fen()}; position unchanged")
        for i, uci in enumerate(args[moves_at + 1:]):
            try:
                board.push(board.parse_uci(uci))
            except ValueError:
                raise ValueError(f"move {i + 1} {uci!r} is not legal in {board.fen()}; position unchanged") from None
        self.board = board

    def _cmd_go(self, args: list[str]) -> None:
        self.finish_search()
        limits, problems = parse_go(args, self.board)
        for problem in problems:
            self.error(problem)
        self._safe_prepare()
        self._stop.clear()
        self._waits_for_stop = limits.waits_for_stop
        board = self.board.copy(stack=True)
        self._worker = threading.Thread(target=self._search_and_report, args=(board, limits), daemon=True)
        self._worker.start()

    # -- search control ---------------------------------------------------------------------------------------
    @property
    def searching(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def stop_search(self, wait: bool = True) -> None:
        """Stop a running search (it prints its `bestmove`); with `wait`, return once it has."""
        self._stop.set()
        if wait and self._worker is not None:
            self._worker.join()
            self._worker = None

    def finish_search(self) -> None:
        """Let a search with a limit run to its end, stop one that waits for `stop`; return after its `bestmove`."""
        if self._worker is not None:
            if self._waits_for_stop:
                self._stop.set()
            self._worker.join()
            self._worker = None

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current search (if any) has printed its `bestmove` (tests, scripted use)."""
        if self._worker is not None:
            self._worker.join(timeout)

    # -- network, search and concept set-up -------------------------------------------------------------------
    def _safe_prepare(self, background: bool = False, errors_only: bool = False) -> None:
        """`_prepare`, then its messages sent (once each, in order). In the background (at start) they wait for
        the next `isready` or `go`, as a GUI between commands may not expect output; `isready` sends only the
        errors (python-chess warns about any other line before `readyok`) and `go` the rest."""
        try:
            self._prepare()
        except Exception as exc:
            self._notes.append(f"info string error: {type(exc).__name__}: {' '.join(str(exc).split())}")
        if background:
            return
        notes, self._notes = self._notes, []
        for note in dict.fromkeys(notes):
            if errors_only and not note.startswith("info string error:"):
                self._notes.append(note)
            else:
                self.send(note)

    def _prepare(self) -> None:
        """Load the network the options name (once), the concept to report, and the search."""
        with self._load_lock:
            if self._threads_applied != self.options["Threads"]:
                import torch

                torch.set_num_threads(int(self.options["Threads"]))
                self._threads_applied = int(self.options["Threads"])
            if self._fixed_evaluator is None:
                spec = self.options["Model"] or self.start_model or ""
                if self._net is None or spec != self._loaded_spec:
                    from alphazero_concepts.nn.loading import load_network
                    from alphazero_concepts.nn.network import resolve_device

                    self._net, self._meta = load_network(spec or None, resolve_device(self.device))
                    self._loaded_spec = spec
                    self._mcts = None
                    self._concept_key = None
                    self._notes.append(f"info string loaded {self._meta.name} ({spec or 'bundled default'})")
            self._prepare_concept()
            if self._mcts is None:
                from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator

                evaluator = self._fixed_evaluator or NetEvaluator(self._net)
                self._mcts = MCTS(evaluator, MCTSConfig(leaves_per_tree=int(self.options["MinibatchSize"])))

    def _prepare_concept(self) -> None:
        key = (self.options["ConceptRun"], self.options["Concept"])
        if key == self._concept_key:
            return
        self._concept, self._concept_key = None, key
        if not key[0]:
            return
        if self._net is None:
            raise ValueError("concept reports need a network")
        from alphazero_concepts.concepts.conceptset import ConceptSet
        from alphazero_concepts.play.concept_scores import check_concepts

        concepts = list(ConceptSet.load(key[0], solved_only=True, ids=[key[1]] if key[1] else None))
        if not concepts:
            raise ValueError(f"{key[0]}: no mined concepts")
        check_concepts(self._net, concepts[:1])
        self._concept = concepts[0]
        self._notes.append(f"info string reporting concept {self._concept.id} at {self._concept.layer}")

    # -- the search (worker thread) ---------------------------------------------------------------------------
    def _search_and_report(self, board: chess.Board, limits: GoLimits) -> None:
        start = time.monotonic()
        best: chess.Move | None = None
        ponder: chess.Move | None = None
        try:
            best, ponder = self._search(board, limits, start)
        except NoNetworkError as exc:  # misconfigured: say so and play no move (a GUI reports it)
            self.error(str(exc))
        except Exception as exc:  # a bug: report it, and keep the game going with a legal move
            self.error(f"search failed: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)
            legal = list(board.legal_moves)
            best, ponder = (legal[0] if legal else None), None
        if limits.waits_for_stop:
            self._stop.wait()
        if best is None:
            self.send("bestmove (none)" if board.is_game_over() else "bestmove 0000")
        else:
            self.send(f"bestmove {best.uci()}" + (f" ponder {ponder.uci()}" if ponder else ""))

    def _search(self, board: chess.Board, limits: GoLimits, start: float
                ) -> tuple[chess.Move | None, chess.Move | None]:
        legal = list(board.legal_moves)
        if not legal:
            self.send("info depth 0 score " + ("mate 0" if board.is_checkmate() else "cp 0"))
            return None, None
        if self._mcts is None:
            raise NoNetworkError("no network is loaded (see the error above; fix the Model option)")
        mcts = self._mcts
        budget = time_budget_s(limits, board.turn, int(self.options["MoveOverhead"]))
        deadline = start + budget if budget is not None else None
        if limits.nodes is not None:
            sims = limits.nodes
        elif deadline is not None or limits.waits_for_stop or limits.depth:
            sims = UNTIL_STOP
        else:
            sims = int(self.options["Simulations"]) or UNTIL_STOP
        if deadline is not None and len(legal) == 1 and not limits.searchmoves:
            sims = 1  # one legal move under a clock: play it at once
        state = {"next_report": start + REPORT_INTERVAL_S, "depth_reached": False}

        def on_step(snapshot: Callable[[], list[SearchResult]]) -> None:
            now = time.monotonic()
            if limits.depth is None and now < state["next_report"]:
                return
            result = snapshot()[0]
            if limits.depth is not None and len(result.pv) >= limits.depth:
                state["depth_reached"] = True
            if now >= state["next_report"]:
                self._report(result, now - start, limits.searchmoves)
                state["next_report"] = now + REPORT_INTERVAL_S

        def should_stop() -> bool:
            return (self._stop.is_set() or bool(state["depth_reached"])
                    or (deadline is not None and time.monotonic() >= deadline))

        result = mcts.search([board], sims, should_stop=should_stop, on_step=on_step)[0]
        if not result.root.expanded:  # the root is a draw by rule (repetition, 50 moves, material)
            return self._policy_move(board, legal), None
        if limits.waits_for_stop:
            self._stop.wait()
        self._report(result, time.monotonic() - start, limits.searchmoves)
        best = self._choose(result, limits.searchmoves)
        self._report_concept(board, best)
        ponder = None
        if result.pv and result.pv[0] == best and len(result.pv) > 1:
            ponder = result.pv[1]
        return best, ponder

    def _policy_move(self, board: chess.Board, legal: list[chess.Move]) -> chess.Move:
        """The network's favourite move where the search has nothing to say (a position drawn by rule)."""
        from alphazero_concepts.chess.encoding import boards_to_arrays

        assert self._mcts is not None
        moves, index = self._mcts.move_indices(board)
        priors, _ = self._mcts.evaluator.evaluate(boards_to_arrays([board]), [index])
        move = moves[int(np.argmax(priors[0]))] if moves else legal[0]
        self.send(f"info depth 1 score cp 0 nodes 1 pv {move.uci()}")
        return move

    def _choose(self, result: SearchResult, searchmoves: list[chess.Move]) -> chess.Move:
        """Most visits (temperature 0), or a draw from visits^(1/T); restricted to `searchmoves` when given."""
        allowed = np.array([not searchmoves or m in searchmoves for m in result.moves])
        if not allowed.any():
            allowed[:] = True
        temperature = float(self.options["Temperature"] or 0)
        visits = np.where(allowed, result.visits, 0).astype(np.float64)
        if temperature > 1e-6 and visits.sum() > 0:
            p = visits ** (1.0 / temperature)
            return result.moves[int(self._rng.choice(len(p), p=p / p.sum()))]
        order = np.lexsort((-result.priors, -visits, ~allowed))
        return result.moves[int(order[0])]

    # -- reports ----------------------------------------------------------------------------------------------
    def _report(self, result: SearchResult, elapsed_s: float, searchmoves: list[chess.Move]) -> None:
        for line in info_lines(result, elapsed_s, int(self.options["MultiPV"]), bool(self.options["UCI_ShowWDL"]),
                               searchmoves):
            self.send(line)

    def _report_concept(self, board: chess.Board, best: chess.Move) -> None:
        if self._concept is None or self._net is None:
            return
        from alphazero_concepts.play.concept_scores import concept_scores

        after = board.copy(stack=True)
        after.push(best)
        before_score, after_score = concept_scores(self._net, [board, after], [self._concept])[0]
        self.send(f"info string concept {self._concept.id} layer {self._concept.layer} "
                  f"score {before_score:.4f} after {best.uci()} {after_score:.4f}")


def info_lines(result: SearchResult, elapsed_s: float, multipv: int = 1, show_wdl: bool = False,
               searchmoves: Sequence[chess.Move] = ()) -> list[str]:
    """UCI `info` lines (one per MultiPV line, best first) for a search result; scores for the side to move."""
    ranked = [r for r in result.ranked() if not searchmoves or r[0] in searchmoves] or result.ranked()
    nodes = max(1, int(result.visits.sum()))
    time_ms = max(1, round(elapsed_s * 1000))
    lines = [_pv_line(result, move, visits, q) for move, visits, q, _ in ranked[:max(1, multipv)]]
    depth = max(1, len(lines[0][0]))
    seldepth = max(depth, *(len(pv) for pv, _ in lines))
    out = []
    for k, (pv, q) in enumerate(lines, 1):
        after = result.board.copy(stack=False)
        after.push(pv[0])
        score = "mate 1" if after.is_checkmate() else f"cp {value_to_cp(q)}"
        wdl = " wdl {} {} {}".format(*value_to_wdl(1.0 if after.is_checkmate() else q)) if show_wdl else ""
        out.append(f"info depth {depth} seldepth {seldepth} nodes {nodes} nps {round(nodes / (time_ms / 1000))} "
                   f"time {time_ms} score {score}{wdl} multipv {k} pv {' '.join(m.uci() for m in pv)}")
    return out


def _pv_line(result: SearchResult, move: chess.Move, visits: int, q: float) -> tuple[list[chess.Move], float]:
    """The line starting with `move` (most visits at every node below) and its value for the root's mover."""
    pv = [move]
    node = result.root.children[result.moves.index(move)] if result.root.children else None
    while node is not None and node.expanded and node.n_total > 0 and len(pv) < MAX_PV:
        a = int(np.lexsort((-node.P, -node.N))[0])
        pv.append(node.moves[a])
        node = node.children[a]
    if visits == 0 or math.isnan(q):
        q = result.nn_value  # an unvisited move: the network's value of the root is all there is
    return pv, q


# ---------------------------------------------------------------------------------------------------------------
# Entry points


def serve(stdin: IO[bytes], stdout: IO[str], model: str | None = None, device: str = "cpu",
          threads: int | None = None) -> None:
    """Run the protocol loop until `quit` or the end of input (then any search is stopped)."""
    def write(line: str) -> None:
        try:
            stdout.write(line + "\n")
            stdout.flush()
        except (BrokenPipeError, ValueError):  # the GUI went away
            pass

    engine = UciEngine(write, model=model, device=device, options={"Threads": threads} if threads else None)
    while True:
        raw = stdin.readline()
        if not raw:
            break
        if not engine.handle(raw.decode("utf-8", errors="replace")):
            return
    engine.finish_search()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m alphazero_concepts.play.uci [--model M] [--device D] [--threads N]`."""
    parser = argparse.ArgumentParser(prog="python -m alphazero_concepts.play.uci", description=__doc__.split("\n")[0])
    parser.add_argument("--model", "-m", default=None, help="load_network spec (default: the bundled teacher)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (the Threads option)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        try:
            _OPTION_BY_KEY["threads"].parse(str(args.threads))
        except ValueError as exc:
            parser.error(f"--threads {args.threads}: {exc}")  # one line on stderr, exit status 2
    serve(sys.stdin.buffer, sys.stdout, args.model, args.device, args.threads)


__all__ = [
    "OPTIONS",
    "GoLimits",
    "UciEngine",
    "info_lines",
    "main",
    "parse_go",
    "serve",
    "time_budget_s",
    "value_to_cp",
    "value_to_wdl",
]

if __name__ == "__main__":
    main()
