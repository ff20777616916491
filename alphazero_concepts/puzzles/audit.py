"""Audit a puzzle set with Stockfish: is each puzzle undecided, correct, unique, not trivial and worth asking?

``azc puzzles audit FILE...`` re-checks any puzzle file this toolkit writes (PGN, EPD, Lichess CSV, JSON; see
`export.py`) and plain EPD suites with a ``bm`` (best move, SAN) and an ``id``, whoever made them. It trusts
nothing the file says about its own checks: every puzzle is searched again, one position at a time, and judged
by the rules below. All scores are centipawns **from the solver's (side to move's) view**. A mate counts as
±(`MATE_CP` − moves to mate), as in `engine.py`.

Rules (defaults in `AuditRules`; each is an option of the command):

* ``undecided``: before the answer, |eval| ≤ `max_eval` (250 cp). A puzzle asks for a move that changes the
  game; in a position that is already won or lost, almost any sensible move keeps it that way, and the
  puzzle teaches nothing. The eval is Stockfish's score of the position (its best line) at the audit depth.
  So a winning tactic that Stockfish sees at that depth makes the position "decided". A puzzle that passes is
  one whose point Stockfish finds only by searching, or a quiet position with one clearly best move.
* ``correct``: the answer is Stockfish's best move, or scores within `max_cp_loss` (20 cp) of it.
* ``unique``: every other legal move is at least `min_gap` (75 cp) worse than the answer. The search uses two
  principal variations (MultiPV 2): the best other move is the second line when the answer is the first, and
  the first line otherwise. A smaller gap means the puzzle has two solutions.
* ``trivial``: fails a position with a single legal move, and a forced recapture. A forced recapture is an answer
  that recaptures on the square where the opponent's last move captured, while every other move is
  `min_gap` worse. The recapture needs the last move, which only the Lichess CSV and the JSON carry (PGN and
  EPD puzzles have no history); the check is then reported as not run.
* ``worth_asking``: marks a puzzle ``won`` when the answer scores ≥ `won_cp` (700 cp) or a mate for the
  solver: the side to move is already winning by force. A mark does not fail the puzzle unless `fail_won` is set.
  The rule fails a puzzle when Stockfish finds a mate in ≤ `fail_mate_in` (2) moves for the solver: too easy
  to ask. With the default `max_eval` such a position already fails ``undecided``. The rule matters when
  `max_eval` is raised to audit classic tactics, which are all decided by definition.

The rules are pure functions of an `AuditItem` and an `EngineVerdict` (`judge`), so they are tested with
hand-made verdicts. Only `engine_verdict` talks to an engine, through python-chess's ``analyse``. A fake engine
object works too.

Readers (`parse_pgn`, `parse_epd`, `parse_csv`, `parse_json`) are pure functions from text to a list of
`AuditItem`. A bad record is reported as an `InputError` naming the file and line and then skipped, and the good
records are kept. `read_puzzle_file` reads a file and picks the reader from the file's extension (or its
content).

The search is deterministic: one engine thread, a new game (``ucinewgame``) per position, and a fixed depth
(`StockfishAnalyser`, default 18) or a stated node budget (``--nodes``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol

import chess
import chess.engine
import chess.pgn
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from alphazero_concepts.chess.positions import LICHESS_COLUMNS, InputError
from alphazero_concepts.engines import STOCKFISH_DIRS, locate_stockfish
from alphazero_concepts.puzzles.engine import EngineUnavailable, EngineVerdict, StockfishAnalyser
from alphazero_concepts.puzzles.rules import (
    RULE_NAMES,
    AuditItem,
    AuditRules,
    RuleResult,
    cp_text,
    judge,
    mate_in,
    san_of,
)

__all__ = [
    "AUDIT_FORMATS",
    "AUDIT_SCHEMA",
    "RULE_NAMES",
    "AuditItem",
    "AuditRecord",
    "AuditRules",
    "RuleResult",
    "audit_command",
    "audit_items",
    "audit_report",
    "cp_text",
    "detect_format",
    "judge",
    "mate_in",
    "parse_csv",
    "parse_epd",
    "parse_json",
    "parse_pgn",
    "read_puzzle_file",
]

AUDIT_DEPTH = 18  # the audit's default Stockfish depth (the "defaults" a committed set must pass at)
AUDIT_SCHEMA = "alphazero-concepts/puzzle-audit/1"
AUDIT_FORMATS = ("pgn", "epd", "csv", "json")
_SUFFIXES = {".pgn": "pgn", ".epd": "epd", ".csv": "csv", ".json": "json"}


# ---------------------------------------------------------------------------------------------------------------
# Puzzles as read from any file


def _bad(errors: list[InputError] | None, message: str, source: str, line: int | None) -> None:
    """Record a bad record in `errors`; without a list to collect into, raise it (strict reading)."""
    error = InputError(message, source=source, line=line)
    if errors is None:
        raise error
    errors.append(error)


def _default_id(source: str, line: int) -> str:
    return f"{Path(source).name}:{line}"


def _move(board: chess.Board, text: str) -> chess.Move:
    """A legal move given in UCI or SAN; ValueError naming the move otherwise."""
    text = text.strip()
    try:
        move = chess.Move.from_uci(text)
    except ValueError:
        return board.parse_san(text)
    if not board.is_legal(move):
        raise ValueError(f"illegal move {text!r} in {board.fen()!r}")
    return move


def _board(fen: str) -> chess.Board:
    board = chess.Board(fen)
    if not board.is_valid():
        raise ValueError(f"invalid position {fen!r}: {board.status()!r}")
    return board


def _item(id_: str, board: chess.Board, answer: chess.Move, last_move: chess.Move | None, source: str,
          line: int) -> AuditItem:
    if not board.is_legal(answer):
        raise ValueError(f"answer {answer.uci()} is illegal in {board.fen()!r}")
    return AuditItem(id_, board, answer, last_move, source, line)


class _QuietGameBuilder(chess.pgn.GameBuilder):
    """python-chess's game builder, keeping parse errors on the game instead of logging them."""

    def handle_error(self, error: Exception) -> None:
        self.game.errors.append(error)


def parse_pgn(text: str, source: str = "<pgn>", errors: list[InputError] | None = None) -> list[AuditItem]:
    """Puzzles of a PGN text: each game's start position (``[FEN]`` with ``[SetUp "1"]``, else the initial
    position) with its first main-line move as the answer, as `puzzle_game` writes them. The id is the
    ``PuzzleId`` header, else ``file:line``. A game that does not parse or has no move is a bad record."""
    handle = io.StringIO(text)
    items: list[AuditItem] = []
    while True:
        offset = handle.tell()
        start = len(text) - len(text[offset:].lstrip())
        line = text.count("\n", 0, start) + 1
        try:
            game = chess.pgn.read_game(handle, Visitor=_QuietGameBuilder)
        except (ValueError, IndexError, KeyError) as exc:  # python-chess on binary garbage
            _bad(errors, f"unreadable PGN ({type(exc).__name__}: {exc})", source, line)
            break
        if game is None:
            break
        if game.errors:
            _bad(errors, f"unreadable PGN game: {game.errors[0]}", source, line)
            continue
        node = game.next()
        if node is None:
            _bad(errors, "not a puzzle: the game has no moves (the first main-line move is the answer)", source, line)
            continue
        if "FEN" not in game.headers and "PuzzleId" not in game.headers:
            _bad(errors, "not a puzzle: no [FEN] header (the puzzle's position) and no [PuzzleId]", source, line)
            continue
        try:
            board = _board(game.board().fen())
            items.append(_item(game.headers.get("PuzzleId") or _default_id(source, line), board, node.move, None,
                               source, line))
        except ValueError as exc:
            _bad(errors, str(exc), source, line)
    return items


_FEN_WITH_COUNTERS = re.compile(r"^(\S+\s+\S+\s+\S+\s+\S+)\s+(\d+)\s+(\d+)(?:\s+(.*))?$")


def _from_epd(line: str) -> tuple[chess.Board, dict[str, Any]]:
    """`chess.Board.from_epd`, also accepting a full FEN (with the two move counters) before the opcodes."""
    try:
        return chess.Board.from_epd(line)
    except ValueError:
        match = _FEN_WITH_COUNTERS.match(line)
        if match is None:
            raise
        board, ops = chess.Board.from_epd(f"{match.group(1)} {match.group(4) or ''}".strip())
        board.halfmove_clock, board.fullmove_number = int(match.group(2)), max(1, int(match.group(3)))
        return board, ops


def parse_epd(text: str, source: str = "<epd>", errors: list[InputError] | None = None) -> list[AuditItem]:
    """Puzzles of an EPD text, one a line: the answer is ``bm`` (SAN; the first when several are listed), the id
    is ``id`` (else ``file:line``); ``hmvc``/``fmvn`` set the move counters. A full FEN (with its two move
    counters) before the opcodes is accepted too. Blank and ``#`` lines are ignored. The toolkit's other
    opcodes (``pv``, ``c0``–``c3``) are read and not needed."""
    items: list[AuditItem] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            board, ops = _from_epd(line)
            if not board.is_valid():
                raise ValueError(f"invalid position: {board.status()!r}")
            best = ops.get("bm")
            if not best or not isinstance(best, list):
                raise ValueError("no bm opcode (the answer)")
            ident = ops.get("id")
            items.append(_item(str(ident) if ident else _default_id(source, lineno), board, best[0], None, source,
                               lineno))
        except ValueError as exc:
            _bad(errors, f"invalid EPD puzzle {line[:80]!r}: {exc}", source, lineno)
    return items


def parse_csv(text: str, source: str = "<csv>", errors: list[InputError] | None = None) -> list[AuditItem]:
    """Puzzles of a Lichess puzzle CSV (with or without the header row; Lichess's column order when without).

    Lichess's convention: ``FEN`` is the position before the opponent's move and ``Moves`` starts with that
    move, then the answer; the board gets the opponent's move as its last move. A row with the theme
    ``solverToMove`` (written by `export.csv_row` when the last move is unknown) has the solver's own position
    as ``FEN`` and the answer first in ``Moves``. Only the answer is audited (the first solver move).
    """
    items: list[AuditItem] = []
    reader = csv.reader(io.StringIO(text))
    columns: tuple[str, ...] | None = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over the csv module's size limit: the rest is unreadable
            _bad(errors, f"unreadable CSV: {exc}", source, reader.line_num)
            break
        lineno = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if columns is None:
            if len(row) < 2 or "/" not in row[1]:  # a header: its FEN column holds a name
                columns = tuple(cell.strip().lstrip("\ufeff") for cell in row)
                missing = [name for name in ("FEN", "Moves") if name not in columns]
                if missing:
                    _bad(errors, f"not a Lichess puzzle CSV: header lacks {', '.join(missing)} (expected "
                                 f"{','.join(LICHESS_COLUMNS)})", source, lineno)
                    return items
                continue
            columns = LICHESS_COLUMNS
        record = dict(zip(columns, (cell.strip() for cell in row), strict=False))
        try:
            if "FEN" not in record or "Moves" not in record:
                raise ValueError(f"expected the columns {', '.join(columns)}, found {len(row)} cells")
            board = _board(record["FEN"])
            moves = record["Moves"].split()
            solver = "solverToMove" in record.get("Themes", "").split()
            last = None
            if not solver:
                if len(moves) < 2:
                    raise ValueError(f"Moves {record['Moves']!r} holds no answer after the opponent's move "
                                     "(a row without the theme solverToMove starts with the opponent's move)")
                last = _move(board, moves[0])
                board.push(last)
                moves = moves[1:]
            if not moves:
                raise ValueError("empty Moves")
            answer = _move(board, moves[0])
            items.append(_item(record.get("PuzzleId") or _default_id(source, lineno), board, answer, last, source,
                               lineno))
        except ValueError as exc:
            _bad(errors, f"invalid puzzle row: {exc}", source, lineno)
    return items


def _json_offsets(text: str) -> list[int] | None:
    """Character offset of each element of the ``puzzles`` list (or of a top-level list) in valid JSON text."""
    decoder = json.JSONDecoder()
    space = re.compile(r"[ \t\n\r]*")

    def skip(i: int) -> int:
        match = space.match(text, i)
        return match.end() if match else i

    def elements(i: int) -> list[int]:  # text[i] == "["
        out: list[int] = []
        i = skip(i + 1)
        while text[i] != "]":
            out.append(i)
            _, i = decoder.raw_decode(text, i)
            i = skip(i)
            if text[i] == ",":
                i = skip(i + 1)
        return out

    i = skip(0)
    if text[i] == "[":
        return elements(i)
    if text[i] != "{":
        return None
    i = skip(i + 1)
    while text[i] != "}":
        key, i = decoder.raw_decode(text, i)
        i = skip(skip(i) + 1)  # past the colon
        if key == "puzzles" and text[i] == "[":
            return elements(i)
        _, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text[i] == ",":
            i = skip(i + 1)
    return None


def parse_json(text: str, source: str = "<json>", errors: list[InputError] | None = None) -> list[AuditItem]:
    """Puzzles of a puzzle-set JSON: the toolkit's ``puzzles.json`` (`PuzzleBook.to_dict`), any study puzzle set,
    or a bare list of records. Each record needs ``fen`` and the answer as ``solution[0]`` (else ``line[0]``;
    UCI or SAN). ``prev_fen`` with ``last_move``, when both are present, gives the opponent's last move; they
    must lead to ``fen``. Errors name the record's line and its index (``puzzles[3]``)."""
    text = text.lstrip("\ufeff")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        _bad(errors, f"not valid JSON: {exc.msg} (column {exc.colno})", source, exc.lineno)
        return []
    records = data.get("puzzles") if isinstance(data, dict) else data
    if not isinstance(records, list):
        _bad(errors, "not a puzzle set: expected an object with a 'puzzles' list, or a list of puzzles", source, 1)
        return []
    offsets = _json_offsets(text)
    if offsets is None or len(offsets) != len(records):
        offsets = [0] * len(records)
    items: list[AuditItem] = []
    for i, (record, offset) in enumerate(zip(records, offsets, strict=True)):
        lineno = text.count("\n", 0, offset) + 1
        try:
            if not isinstance(record, dict):
                raise ValueError(f"expected an object, got {type(record).__name__}")
            fen = record.get("fen")
            if not isinstance(fen, str):
                raise ValueError("no 'fen' string")
            board = _board(fen)
            moves = record.get("solution") or record.get("line")
            if isinstance(moves, str):
                moves = moves.split()
            if not isinstance(moves, list) or not moves or not isinstance(moves[0], str):
                raise ValueError("no answer: expected 'solution' (or 'line'), a non-empty list of moves")
            last = None
            prev_fen, last_uci = record.get("prev_fen"), record.get("last_move")
            if isinstance(prev_fen, str) and isinstance(last_uci, str) and prev_fen and last_uci:
                history = _board(prev_fen)
                last = _move(history, last_uci)
                history.push(last)
                if history.epd() != board.epd():
                    raise ValueError(f"prev_fen + last_move {last_uci} give {history.epd()!r}, not the fen")
                board = history
            ident = record.get("id")
            items.append(_item(str(ident) if ident else _default_id(source, lineno), board, _move(board, moves[0]),
                               last, source, lineno))
        except ValueError as exc:
            _bad(errors, f"puzzles[{i}]: {exc}", source, lineno)
    return items


_READERS: dict[str, Callable[[str, str, list[InputError] | None], list[AuditItem]]] = {
    "pgn": parse_pgn, "epd": parse_epd, "csv": parse_csv, "json": parse_json}


def detect_format(path: str | os.PathLike[str], text: str) -> str:
    """The format of a puzzle file: by extension (.pgn .epd .csv .json), else by its first characters."""
    by_suffix = _SUFFIXES.get(Path(path).suffix.lower())
    if by_suffix:
        return by_suffix
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith("{") or re.match(r"\[\s*[{\]\"]", head):
        return "json"
    if head.startswith("["):
        return "pgn"
    first = head.split("\n", 1)[0]
    if "," in first and ("FEN" in first or "Moves" in first or first.count(",") >= 2):
        return "csv"
    return "epd"


def read_puzzle_file(path: str | os.PathLike[str], fmt: str = "auto") -> tuple[list[AuditItem], list[InputError],
                                                                              str]:
    """Read one puzzle file: (puzzles, bad records skipped, the format used).

    A missing or unreadable file raises `InputError` naming it. Text is decoded as UTF-8 (a byte-order mark is
    accepted), falling back to latin-1.
    """
    source = str(path)
    if fmt != "auto" and fmt not in AUDIT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: auto, {', '.join(AUDIT_FORMATS)}")
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", source=source, line=None) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=source, line=None) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    chosen = detect_format(path, text) if fmt == "auto" else fmt
    errors: list[InputError] = []
    items = _READERS[chosen](text, source, errors)
    return items, errors, chosen


# ---------------------------------------------------------------------------------------------------------------
# The rules (pure: an item and a verdict in, a result per rule out)


@dataclass(frozen=True)
class AuditRecord:
    """One audited puzzle: the item, Stockfish's verdict and every rule's result."""

    item: AuditItem
    verdict: EngineVerdict
    rules: Mapping[str, RuleResult]

    @property
    def passed(self) -> bool:
        """No rule failed (a rule not run or only marking does not count)."""
        return all(r.passed is not False for r in self.rules.values())

    @property
    def failed_rules(self) -> list[str]:
        return [name for name, r in self.rules.items() if r.passed is False]

    @property
    def reasons(self) -> list[str]:
        """One reason per failed rule, each starting with the rule's name and giving the numbers."""
        return [r.detail for r in self.rules.values() if r.passed is False]

    @property
    def marks(self) -> list[str]:
        return [r.mark for r in self.rules.values() if r.mark]

    def to_dict(self) -> dict[str, Any]:
        item, v = self.item, self.verdict
        unique = self.rules.get("unique")
        return {"id": item.id, "source": item.source, "line": item.line, "fen": item.fen,
                "last_move": item.last_move.uci() if item.last_move else None,
                "answer": item.answer.uci(), "answer_san": item.answer_san, "eval": v.best_cp,
                "best": v.best, "best_san": san_of(item.board, v.best), "best_cp": v.best_cp,
                "answer_cp": v.answer_cp, "second": v.second, "second_cp": v.second_cp, "cp_loss": v.cp_loss,
                "gap": unique.value if unique is not None else None, "depth": v.depth, "passed": self.passed,
                "reasons": self.reasons, "marks": self.marks,
                "rules": {name: r.to_dict() for name, r in self.rules.items()}}


# ---------------------------------------------------------------------------------------------------------------
# The engine


class _Analyses(Protocol):
    def analyse(self, board: chess.Board, limit: chess.engine.Limit, **kwargs: Any) -> Any: ...


def audit_items(items: Iterable[AuditItem], verdict: Callable[[chess.Board, chess.Move], EngineVerdict],
                rules: AuditRules, progress: Callable[[int], None] | None = None) -> list[AuditRecord]:
    """Judge every item from `verdict(board, answer)` (e.g. `StockfishAnalyser.verdict`), in order."""
    out = []
    for i, item in enumerate(items, 1):
        found = verdict(item.board, item.answer)
        out.append(AuditRecord(item, found, judge(item, found, rules)))
        if progress is not None:
            progress(i)
    return out


def audit_report(records: Sequence[AuditRecord], skipped: Sequence[InputError] = (),
                 settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The audit as JSON: counts, every failure with its reason, every record, the settings (`--json OUT`)."""
    counts = {name: sum(name in r.failed_rules for r in records) for name in RULE_NAMES}
    return {"schema": AUDIT_SCHEMA, "puzzles": len(records), "passed": sum(r.passed for r in records),
            "failed": [{"id": r.item.id, "reason": "; ".join(r.reasons), "rules": r.failed_rules,
                        "source": r.item.source, "line": r.item.line} for r in records if not r.passed],
            "failed_by_rule": counts, "marked_won": sum("won" in r.marks for r in records),
            "skipped": [{"source": e.source, "line": e.line, "reason": e.reason} for e in skipped],
            "settings": dict(settings or {}), "records": [r.to_dict() for r in records]}


# ---------------------------------------------------------------------------------------------------------------
# Command line (registered as ``azc puzzles audit`` in `commands.py`)

console = Console(soft_wrap=True)  # one message, one line (greppable logs)
_NO_ENGINE_HINT = ("install it (Debian/Ubuntu: apt-get install stockfish) or pass its path with --stockfish PATH; "
                   "the audit needs the engine")


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code=2)


@dataclass
class _Inputs:
    items: list[AuditItem] = field(default_factory=list)
    skipped: list[InputError] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)


def _read_inputs(files: Sequence[Path], fmt: str) -> _Inputs:
    """Read every file, printing the bad records skipped; exits 2 on a missing file or one without puzzles."""
    out = _Inputs()
    for path in files:
        try:
            items, errors, chosen = read_puzzle_file(path, fmt)
        except InputError as exc:
            raise _fail(str(exc)) from exc
        for err in errors[:10]:
            console.print(f"[yellow]skipped[/yellow] {escape(str(err))}")
        if len(errors) > 10:
            console.print(f"[yellow]skipped[/yellow] … and {len(errors) - 10} more bad records in {escape(str(path))}")
        if not items:
            raise _fail(f"{path}: no usable puzzles (read as {chosen}; {len(errors)} bad record(s) skipped)")
        if errors:
            console.print(f"{escape(str(path))}: {len(items)} puzzles read, {len(errors)} bad record(s) skipped")
        out.items.extend(items)
        out.skipped.extend(errors)
        out.files.append({"path": str(path), "format": chosen, "puzzles": len(items), "skipped": len(errors)})
    return out


def _open_engine(stockfish: str | None, depth: int, nodes: int | None, hash_mb: int) -> StockfishAnalyser:
    if locate_stockfish(stockfish) is None:
        if stockfish is not None:
            raise _fail(f"Stockfish not found at {stockfish!r} (not an executable file or command): {_NO_ENGINE_HINT}")
        raise _fail(f"Stockfish not found (looked for 'stockfish' on PATH and in {', '.join(STOCKFISH_DIRS)}): "
                    f"{_NO_ENGINE_HINT}")
    try:
        return StockfishAnalyser(stockfish, depth, nodes=nodes, hash_mb=hash_mb)
    except (EngineUnavailable, ValueError) as exc:
        raise _fail(str(exc)) from exc


def _result_text(record: AuditRecord) -> str:
    marks = f" [yellow]({', '.join(record.marks)})[/yellow]" if record.marks else ""
    if record.passed:
        return f"[green]pass[/green]{marks}"
    return "[red]" + ", ".join(record.failed_rules) + "[/red]" + marks


def _print_table(records: Sequence[AuditRecord], show: str, title: str) -> None:
    rows = [r for r in records if show == "all" or (show == "failed" and not r.passed)]
    if not rows:
        return
    table = Table(title=escape(title), caption="eval: before the answer; answer: its score; loss: below "
                                               "Stockfish's best; gap: to the best other move (cp, solver's "
                                               "view; #N mate in N)")
    table.add_column("id", overflow="fold")
    table.add_column("side")
    table.add_column("eval", justify="right")
    table.add_column("answer")
    table.add_column("best")
    table.add_column("loss", justify="right")
    table.add_column("gap", justify="right")
    table.add_column("failed rules")
    for r in rows:
        v, board = r.verdict, r.item.board
        gap = r.rules["unique"].value
        table.add_row(escape(r.item.id), "W" if board.turn == chess.WHITE else "B", cp_text(v.best_cp),
                      f"{escape(r.item.answer_san)} {cp_text(v.answer_cp)}", escape(san_of(board, v.best)),
                      str(v.cp_loss), "–" if gap is None else str(gap), _result_text(r))
    console.print(table)


def _print_summary(report: Mapping[str, Any], limit_text: str) -> None:
    table = Table(title=f"audit summary ({escape(limit_text)}; scores in cp from the solver's view)")
    table.add_column("count")
    table.add_column("", justify="right")
    table.add_row("puzzles audited", str(report["puzzles"]))
    table.add_row("passed", f"[green]{report['passed']}[/green]")
    table.add_row("failed", f"[red]{len(report['failed'])}[/red]")
    for name, n in report["failed_by_rule"].items():
        table.add_row(f"  failed {name}", str(n))
    table.add_row("marked won (worth asking?)", str(report["marked_won"]))
    table.add_row("bad records skipped", str(len(report["skipped"])))
    console.print(table)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically (a temporary file in the same directory, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def audit_command(
    files: Annotated[list[Path], typer.Argument(help="Puzzle files: PGN, EPD (bm + id), Lichess CSV, JSON",
                                                show_default=False)],
    depth: Annotated[int, typer.Option("--depth", help="Stockfish search depth per position")] = AUDIT_DEPTH,
    nodes: Annotated[int | None, typer.Option("--nodes", help="Search a stated node budget per position "
                                                              "instead of a depth")] = None,
    stockfish: Annotated[str | None, typer.Option("--stockfish", help="Stockfish binary (default: PATH, "
                                                                      "/usr/games)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the audit as JSON here")] = None,
    fmt: Annotated[str, typer.Option("--format", help="auto (by extension, else content) | pgn | epd | csv | "
                                                      "json")] = "auto",
    max_eval: Annotated[int, typer.Option("--max-eval", help="undecided: |eval| before the answer ≤ this "
                                                             "(cp)")] = 250,
    max_cp_loss: Annotated[int, typer.Option("--max-cp-loss", help="correct: the answer within this of "
                                                                   "Stockfish's best (cp)")] = 20,
    min_gap: Annotated[int, typer.Option("--min-gap", help="unique: every other move at least this much worse "
                                                           "(cp)")] = 75,
    fail_trivial: Annotated[bool, typer.Option("--fail-trivial/--allow-trivial", help="trivial: fail a single "
                                                                                      "legal move or a forced "
                                                                                      "recapture")] = True,
    won_cp: Annotated[int, typer.Option("--won-cp", help="worth asking: mark 'won' when the answer scores ≥ this "
                                                         "(cp; mates included)")] = 700,
    fail_mate_in: Annotated[int, typer.Option("--fail-mate-in", help="worth asking: fail when Stockfish finds a "
                                                                     "mate in ≤ this many moves (0: never)")] = 2,
    fail_won: Annotated[bool, typer.Option("--fail-won", help="worth asking: fail every puzzle marked "
                                                              "'won'")] = False,
    show: Annotated[str, typer.Option("--show", help="all | failed (table rows) | reasons (one line per failed "
                                                     "puzzle, every reason in words) | none")] = "all",
    hash_mb: Annotated[int, typer.Option("--hash", help="Stockfish hash (MB)")] = 64,
) -> None:
    """Re-check puzzle files with Stockfish: undecided, correct, unique, not trivial, worth asking.

    Each puzzle is searched again (one thread, a new game per position, fixed depth or node budget) and judged
    by the rules; every failure gives the rule and the numbers. Exit code 0: every puzzle passed; 1: some
    failed; 2: nothing could be audited (missing file, no usable puzzle, no Stockfish, bad option).
    """
    try:
        rules = AuditRules(max_eval, max_cp_loss, min_gap, fail_trivial, won_cp, fail_mate_in, fail_won)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if depth < 1:
        raise _fail(f"--depth must be ≥ 1, got {depth}")
    if nodes is not None and nodes < 1:
        raise _fail(f"--nodes must be ≥ 1, got {nodes}")
    if show not in ("all", "failed", "reasons", "none"):
        raise _fail(f"--show must be all, failed, reasons or none, got {show!r}")
    if fmt != "auto" and fmt not in AUDIT_FORMATS:
        raise _fail(f"--format must be auto, {', '.join(AUDIT_FORMATS)}; got {fmt!r}")
    inputs = _read_inputs(files, fmt)
    analyser = _open_engine(stockfish, depth, nodes, hash_mb)
    limit_text = f"{analyser.name}, {nodes} nodes" if nodes else f"{analyser.name}, depth {depth}"
    with analyser, Progress(TextColumn("[bold]auditing[/bold]"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=console, transient=True) as bar:
        task = bar.add_task("audit", total=len(inputs.items))
        try:
            records = audit_items(inputs.items, analyser.verdict, rules,
                                  progress=lambda done: bar.update(task, completed=done))
        except (chess.engine.EngineError, chess.engine.EngineTerminatedError) as exc:
            raise _fail(f"Stockfish failed during the audit: {exc}") from exc
    settings = {"engine": analyser.name, "engine_path": analyser.path, "depth": None if nodes else depth,
                "nodes": nodes, "threads": 1, "hash_mb": hash_mb, "multipv": 2, "rules": rules.to_dict(),
                "files": inputs.files}
    report = audit_report(records, inputs.skipped, settings)
    title = ", ".join(str(f) for f in files)
    if show == "reasons":
        for r in records:
            if not r.passed:
                console.print(f"{escape(r.item.source)}:{r.item.line}: {escape(r.item.id)}: "
                              f"{escape('; '.join(r.reasons))}", highlight=False)
    else:
        _print_table(records, show, f"audit of {title}")
    _print_summary(report, limit_text)
    if json_out is not None:
        _write_json(json_out, report)
        console.print(f"json → {escape(str(json_out))}")
    if not all(r.passed for r in records):
        raise typer.Exit(code=1)
