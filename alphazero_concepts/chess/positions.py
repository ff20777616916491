"""Read chess positions from PGN, EPD, FEN lists and the Lichess puzzle CSV, keeping where each came from.

Every reader streams: files are read line by line and never loaded whole, so a PGN of many thousands of games
costs the memory of one game. Each record remembers its source (file, game index, ply, line number) so that a
concept found in the network can be traced back to the exact game or puzzle it came from.

History matters to the network (its input planes include the previous positions), so a `Position` is stored as
a start FEN plus the UCI moves played from it, and `Position.board()` rebuilds a `chess.Board` with that move
stack. A bare FEN or EPD line has no history (``moves == ()``). For many positions, `boards_of` builds the boards
of consecutive plies of a game by pushing one move onto the previous board rather than replaying the game, and
`fast_fens` writes many FENs at once.

Bad records are skipped, never fatal: each one is counted in a `ReadReport` and described by an `InputError`
whose message names the file and the line (``games.pgn:57: ...``). With ``strict=True`` the first bad record
raises instead. When the caller passes no report, the reader keeps its own and, if anything was skipped, emits
one `UserWarning` with the summary at the end of the iteration, so skipped records are never silent.

Choices worth knowing:

* PGN games are parsed with python-chess (`chess.pgn.read_game`) through a visitor that keeps only the headers
  and the main line; side variations are not parsed. A game with any parse error (an illegal or unreadable
  move, a bad ``FEN`` header, a null move) is skipped as a whole.
* A truncated PGN (the file ends inside a game's movetext, before its result marker ``1-0``, ``0-1``,
  ``1/2-1/2`` or ``*``) does not crash: that last game is skipped with an error, wherever the cut fell, rather
  than yielded as a prefix whose recorded result belongs to moves that are missing. A chunk with headers but
  no movetext (or unreadable garbage) is skipped with an error too.
* Only standard chess is read; games of other variants (Chess960 included) are skipped with an error.
* Files are decoded as UTF-8 line by line, falling back to latin-1 for a line that is not valid UTF-8, so a
  stray byte costs nothing. A UTF-8 byte order mark and CRLF line endings are accepted.
* Games dropped by ``min_elo`` are counted in `ReadReport.filtered`, not as skipped: they are not errors.
"""

from __future__ import annotations

import csv
import functools
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any, TypeVar

import chess
import chess.pgn
import numpy as np

__all__ = [
    "GameRecord",
    "InputError",
    "Position",
    "ReadReport",
    "board_from_fen",
    "board_problem",
    "boards_of",
    "fast_fen",
    "fast_fens",
    "read_epd",
    "read_fens",
    "read_jsonl",
    "read_lichess_puzzles",
    "read_pgn_games",
    "read_pgn_positions",
    "read_positions",
]

PathLike = str | os.PathLike[str]
T = TypeVar("T")

RESULTS = ("1-0", "0-1", "1/2-1/2", "*")
# PGN headers copied into the meta of every position of a game (when present).
PGN_META_HEADERS = (
    "Event",
    "Site",
    "Date",
    "Round",
    "White",
    "Black",
    "WhiteElo",
    "BlackElo",
    "ECO",
    "Opening",
    "TimeControl",
)
# Lichess puzzle CSV columns in their published order (OpeningTags is missing in older dumps).
LICHESS_COLUMNS = (
    "PuzzleId",
    "FEN",
    "Moves",
    "Rating",
    "RatingDeviation",
    "Popularity",
    "NbPlays",
    "Themes",
    "GameUrl",
    "OpeningTags",
)


class InputError(ValueError):
    """A problem with an input file, located by file and line.

    ``str(error)`` always starts with the location: ``"games.pgn:57: illegal san ..."``, or ``"games.pgn: ..."``
    when no line applies (a missing file). The location is prefixed here, so `message` is just the problem;
    ``reason`` keeps it without the location.
    """

    def __init__(self, message: str, *, source: str, line: int | None) -> None:
        self.source = source
        self.line = line
        where = _where(source, line)
        self.reason = message.removeprefix(f"{where}: ")
        super().__init__(f"{where}: {self.reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive the default exception pickling (needed across processes).
        return (functools.partial(type(self), source=self.source, line=self.line), (self.reason,))


def _where(source: str, line: int | None) -> str:
    source = source or "<unknown source>"
    return source if line is None else f"{source}:{line}"


class _FrozenMeta(Mapping[str, str]):
    """Read-only str → str mapping that is hashable and picklable (a `MappingProxyType` is neither)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        self._data: dict[str, str] = {str(k): str(v) for k, v in dict(data).items()}

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._data,))


_STANDARD_CASTLING = {chess.H1: "K", chess.A1: "Q", chess.H8: "k", chess.A8: "q"}
# piece symbols as bytes, in the order of the bitboards `_piece_masks` reads (White's six kinds, then Black's)
_SYMBOL_CODES = np.frombuffer(b"PNBRQKpnbrqk", dtype=np.uint8)
_FEN_SQUARES = np.arange(64) ^ 56  # FEN reads a8..h8, a7..h7, …: square index of each FEN cell
_BIT_OF_SQUARE = np.uint64(1) << np.arange(64, dtype=np.uint64)


class _RankFen(dict[int, str]):
    """FEN of one rank, keyed by its 8 cell bytes ('.' for empty) read as one integer; filled on first use and
    emptied when it reaches `MAX` entries (random play makes about 0.7 new ranks a position)."""

    MAX = 1 << 16

    def __missing__(self, key: int) -> str:
        cells = key.to_bytes(8, "little").decode("ascii")
        for run in range(8, 0, -1):  # longest runs of empty squares first
            cells = cells.replace("." * run, str(run))
        if len(self) >= self.MAX:
            self.clear()
        self[key] = cells
        return cells


_RANK_FEN = _RankFen()
FEN_BLOCK = 1024  # boards whose placements `fast_fens` builds in one numpy pass


def fast_fens(boards: Sequence[chess.Board]) -> list[str]:
    """``[b.fen() for b in boards]`` (python-chess's defaults: X-FEN castling, en passant square only when a legal
    capture exists), several times faster: for hot loops that write many positions (the activation index).

    The piece placement of up to `FEN_BLOCK` boards is built at once with numpy (one byte per square from the
    twelve piece bitboards; 6 KB of temporaries a board); ranks are compressed through a cache, as the same ranks
    recur across positions. Falls back to ``board.fen()`` for chess variants and non-standard castling rights
    (Chess960).
    """
    if len(boards) > FEN_BLOCK:
        return [fen for lo in range(0, len(boards), FEN_BLOCK) for fen in fast_fens(boards[lo : lo + FEN_BLOCK])]
    n = len(boards)
    if n == 0:
        return []
    raw = np.fromiter((m for b in boards for m in _raw_masks(b)), dtype=np.uint64, count=8 * n).reshape(n, 8)
    masks = np.concatenate([raw[:, :6] & raw[:, 6:7], raw[:, :6] & raw[:, 7:8]], axis=1)  # White's kinds, Black's
    bits = (masks[:, :, None] & _BIT_OF_SQUARE[_FEN_SQUARES]) != 0  # (n, 12, 64), cells in FEN order
    cells = np.where(bits.any(axis=1), _SYMBOL_CODES[bits.argmax(axis=1)], ord(".")).astype(np.uint8)
    ranks = cells.view("<u8").tolist()  # (n, 8): each rank's 8 bytes as one integer
    rank_fen = _RANK_FEN.__getitem__
    fens = []
    for k, board in enumerate(boards):
        rights = board.clean_castling_rights()
        if type(board) is not chess.Board or board.chess960 or rights & ~chess.BB_CORNERS:
            fens.append(board.fen())
            continue
        placement = "/".join(map(rank_fen, ranks[k]))
        castling = "".join(c for sq, c in _STANDARD_CASTLING.items() if rights & chess.BB_SQUARES[sq]) or "-"
        ep = chess.SQUARE_NAMES[board.ep_square] if board.ep_square is not None and board.has_legal_en_passant() \
            else "-"
        fens.append(f"{placement} {'w' if board.turn == chess.WHITE else 'b'} {castling} {ep} "
                    f"{board.halfmove_clock} {board.fullmove_number}")
    return fens


def _raw_masks(board: chess.Board) -> tuple[int, ...]:
    """The six piece-kind bitboards, then White's and Black's occupancy (`occupied_co` is indexed Black, White)."""
    black, white = board.occupied_co
    return (board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings, white, black)


def boards_of(positions: Iterable[Position | chess.Board]) -> Iterator[chess.Board]:
    """One board per position (boards pass through; a `Position` as `Position.board()` builds it), replaying only
    the new moves when a position continues the previous one: the same start FEN, and moves that extend the
    previous position's. Consecutive plies of a game (as the PGN readers yield them) then cost one move each
    instead of a replay from the start (about 1 ms for a middlegame position of a master game).
    """
    prev: Position | None = None
    board: chess.Board | None = None
    for p in positions:
        if isinstance(p, chess.Board):
            yield p
            continue
        if prev is not None and board is not None and p.start_fen == prev.start_fen and \
                len(p.moves) >= len(prev.moves) and p.moves[: len(prev.moves)] == prev.moves:
            b = board.copy(stack=False)  # moves and saved states are shared: python-chess never changes them
            b.move_stack, b._stack = board.move_stack.copy(), board._stack.copy()
            try:
                for uci in p.moves[len(prev.moves):]:
                    b.push_uci(uci)
            except ValueError:
                b = p.board()  # raises the InputError that names the record and the move
        else:
            b = p.board()
        prev, board = p, b
        yield b


def fast_fen(board: chess.Board) -> str:
    """``board.fen()`` through `fast_fens` (one board; batches are where the speed is)."""
    return fast_fens([board])[0]


@dataclass(frozen=True)
class Position:
    """One position with its history and its origin.

    The position is `start_fen` with `moves` (UCI) played from it. `ply` is ``len(moves)`` for positions taken
    from PGN games, `game` the 0-based game index in the file, `line` the 1-based line where the record (game,
    EPD line or CSV row) starts. `meta` holds the record's extra data (a subset of the PGN headers, EPD opcodes,
    puzzle columns) as a read-only, hashable str → str mapping.
    """

    start_fen: str
    moves: tuple[str, ...] = ()
    source: str = ""
    game: int | None = None
    ply: int | None = None
    line: int | None = None
    meta: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.moves, tuple):
            object.__setattr__(self, "moves", tuple(self.moves))
        if not isinstance(self.meta, _FrozenMeta):
            object.__setattr__(self, "meta", _FrozenMeta(self.meta))

    def board(self) -> chess.Board:
        """A new board at this position, with `moves` on its move stack; `InputError` if they do not replay."""
        try:
            board = chess.Board(self.start_fen)
        except ValueError as error:
            raise InputError(f"invalid FEN {self.start_fen!r}: {error}", source=self.source, line=self.line) from None
        for i, uci in enumerate(self.moves):
            try:
                board.push_uci(uci)
            except ValueError as error:
                raise InputError(
                    f"move {i + 1} ({uci!r}) cannot be played from {board.fen()!r}: {error}",
                    source=self.source,
                    line=self.line,
                ) from None
        return board

    @cached_property
    def fen(self) -> str:
        """FEN of the final position (after all `moves`); computed once, as it replays the moves."""
        return self.board().fen()

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict; `from_dict` inverts it."""
        return {
            "start_fen": self.start_fen,
            "moves": list(self.moves),
            "source": self.source,
            "game": self.game,
            "ply": self.ply,
            "line": self.line,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Position:
        """Inverse of `to_dict`; keys other than ``start_fen`` may be missing."""
        return cls(
            start_fen=d["start_fen"],
            moves=tuple(d.get("moves", ())),
            source=d.get("source", ""),
            game=d.get("game"),
            ply=d.get("ply"),
            line=d.get("line"),
            meta=d.get("meta") or {},
        )


@dataclass
class GameRecord:
    """A PGN game's main line, kept as moves (no boards are built while reading, which keeps streaming cheap)."""

    headers: dict[str, str]
    start_fen: str
    moves: list[chess.Move]
    result: str  # "1-0", "0-1", "1/2-1/2" or "*"
    source: str
    game: int  # 0-based index of the game in its file
    line: int  # 1-based line where the game starts

    def positions(self, min_ply: int = 0) -> Iterator[Position]:
        """One position per ply from `min_ply` on: before each move, and after the last one."""
        ucis = tuple(move.uci() for move in self.moves)
        meta = {k: self.headers[k] for k in PGN_META_HEADERS if k in self.headers}
        meta["Result"] = self.result
        frozen = _FrozenMeta(meta)  # shared by all positions of the game
        for ply in range(max(min_ply, 0), len(ucis) + 1):
            yield Position(self.start_fen, ucis[:ply], self.source, self.game, ply, self.line, frozen)

    def board(self) -> chess.Board:
        """The start board of the game (no moves played)."""
        return chess.Board(self.start_fen)


@dataclass
class ReadReport:
    """What a reader did with a file: records read, records skipped (with their errors), games filtered out.

    `read` counts records yielded (games for PGN, lines or rows for the others). At most `max_errors` errors are
    kept; `skipped` counts them all.
    """

    source: str
    read: int = 0
    skipped: int = 0
    errors: list[InputError] = field(default_factory=list)
    filtered: int = 0
    max_errors: int = 1000

    def record_skip(self, error: InputError) -> None:
        """Count one skipped record and keep its error."""
        self.skipped += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(error)

    def summary(self) -> str:
        """One line, e.g. ``"games.pgn: 998 read, 2 skipped (first: games.pgn:57: illegal san ...)"``."""
        text = f"{self.source}: {self.read} read, {self.skipped} skipped"
        if self.filtered:
            text += f", {self.filtered} filtered"
        if self.errors:
            text += f" (first: {self.errors[0]})"
        return text


# ---------------------------------------------------------------------------------------------------------------
# Shared plumbing: file checks, numbered line reading, report/warning handling.


def _check_file(path: PathLike) -> str:
    """The path as a string, or `InputError` (line None) if it is not a readable file; checked at call time."""
    source = os.fspath(path)
    p = Path(source)
    if not p.exists():
        raise InputError("no such file", source=source, line=None)
    if not p.is_file():
        raise InputError("not a file", source=source, line=None)
    return source


def _open(source: str) -> IO[bytes]:
    try:
        return open(source, "rb")
    except OSError as error:
        raise InputError(f"cannot open: {error.strerror or error}", source=source, line=None) from None


class _LineReader:
    """Numbered text lines of a binary file: UTF-8 with a per-line latin-1 fallback, CRLF turned into LF.

    It offers `readline()`, which is all `chess.pgn.read_game` uses, and records `start_line`: the first line
    holding content (not blank, not a ``%``/``;`` comment) since it was last reset, i.e. where a game starts.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.lineno = 0
        self.start_line: int | None = None
        self.at_eof = False

    def readline(self) -> str:
        data = self._raw.readline()
        if not data:
            self.at_eof = True
            return ""
        self.lineno += 1
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        if self.lineno == 1:
            text = text.removeprefix("\ufeff")
        if text.endswith("\r\n"):
            text = text[:-2] + "\n"
        if self.start_line is None and text.strip() and text[0] not in "%;":
            self.start_line = self.lineno
        return text

    def __iter__(self) -> Iterator[tuple[int, str]]:
        """(line number, line without its line ending) until the end of the file."""
        while line := self.readline():
            yield self.lineno, line.rstrip("\r\n")


def _reported(source: str, report: ReadReport | None, body: Callable[[ReadReport], Iterator[T]]) -> Iterator[T]:
    """Run a reader body with the caller's report, or with an own one that warns once at the end if it skipped."""
    own = report is None
    rep = ReadReport(source) if report is None else report
    yield from body(rep)
    if own and rep.skipped:
        warnings.warn(rep.summary(), UserWarning, stacklevel=2)


def _skip(report: ReadReport, strict: bool, message: str, source: str, line: int | None) -> None:
    """Record a skipped record; raise its error instead of continuing when `strict`."""
    error = InputError(message, source=source, line=line)
    report.record_skip(error)
    if strict:
        raise error


def _status_text(board: chess.Board) -> str:
    """Why `board.is_valid()` is false, in words (e.g. "no white king, opposite check")."""
    status = board.status()
    names = [flag.name for flag in chess.Status if flag and flag.name and flag in status]
    return ", ".join(name.lower().replace("_", " ") for name in names) or "invalid"


def board_problem(board: chess.Board) -> str | None:
    """Why `board` is not a position of chess (``"no black king"``, ``"opposite check"`` …), or None if it is."""
    return None if board.is_valid() else _status_text(board)


def board_from_fen(fen: str, *, source: str = "", line: int | None = None, moves: Sequence[str] = ()) -> chess.Board:
    """The board of `fen` with the UCI `moves` pushed; `InputError` for a FEN that does not parse, an impossible
    position (`board.is_valid()` false, with the reason) or an illegal move. `source`/`line` locate the error."""
    if not isinstance(fen, str):
        raise InputError(f"FEN must be a string, got {type(fen).__name__}", source=source, line=line)
    try:
        board = chess.Board(fen)
    except ValueError as error:
        raise InputError(f"invalid FEN {_clip(fen)!r}: {error}", source=source, line=line) from None
    problem = board_problem(board)
    if problem:
        raise InputError(f"impossible position {_clip(fen)!r}: {problem}", source=source, line=line)
    if isinstance(moves, str) or not isinstance(moves, Sequence):
        raise InputError(f"moves must be a list of UCI moves, got {type(moves).__name__}", source=source, line=line)
    for i, uci in enumerate(moves):
        try:
            board.push(board.parse_uci(uci if isinstance(uci, str) else ""))
        except ValueError:
            raise InputError(f"move {i + 1} {_clip(str(uci))!r} is not legal in {board.fen()}", source=source,
                             line=line) from None
    return board


def _clip(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------------------------------------------------------
# PGN


class _MainlineVisitor(chess.pgn.BaseVisitor["_MainlineVisitor"]):
    """Collects headers, start FEN, main-line moves, the result marker and errors (with their line) of one game.

    Side variations are skipped unparsed; games failing the variant or Elo checks are skipped after their
    headers (python-chess's fast path), so they cost almost nothing.
    """

    def __init__(self, reader: _LineReader, min_elo: int | None) -> None:
        self._reader = reader
        self._min_elo = min_elo
        self.headers = chess.pgn.Headers({})
        self.start_fen: str | None = None
        self.moves: list[chess.Move] = []
        self.marker: str | None = None
        self.filtered = False
        self.errors: list[tuple[int | None, str]] = []

    def begin_headers(self) -> chess.pgn.Headers:
        return self.headers

    def visit_header(self, tagname: str, tagvalue: str) -> None:
        self.headers[tagname] = tagvalue

    def end_headers(self) -> chess.pgn.SkipType | None:
        if not self._standard_variant():
            self._error(f"unsupported variant {self.headers.get('Variant')!r} (only standard chess is read)")
            return chess.pgn.SKIP
        if self._min_elo is not None and not self._elo_ok(self._min_elo):
            self.filtered = True
            return chess.pgn.SKIP
        return None

    def _standard_variant(self) -> bool:
        try:
            variant = self.headers.variant()
        except ValueError:
            return False
        return variant is chess.Board and not self.headers.is_chess960() and not self.headers.is_wild()

    def _elo_ok(self, min_elo: int) -> bool:
        for key in ("WhiteElo", "BlackElo"):
            try:
                if int(self.headers.get(key, "")) < min_elo:
                    return False
            except ValueError:
                return False
        return True

    def visit_board(self, board: chess.Board) -> None:
        if self.start_fen is not None:
            return
        self.start_fen = board.fen()
        if board.chess960:
            self._error("start position has Chess960 castling rights (only standard chess is read)")
        elif "FEN" in self.headers and not board.is_valid():
            self._error(f"invalid FEN header {_clip(self.headers['FEN'])!r}: {_status_text(board)}")

    def begin_variation(self) -> chess.pgn.SkipType:
        return chess.pgn.SKIP

    def visit_move(self, board: chess.Board, move: chess.Move) -> None:
        if not move:
            self._error(f"null move after {len(self.moves)} moves")
        self.moves.append(move)

    def visit_result(self, result: str) -> None:
        self.marker = result

    def handle_error(self, error: Exception) -> None:
        self._error(str(error))

    def _error(self, message: str) -> None:
        # Errors in the movetext point at the line being parsed; header problems at the start of the game.
        line = self._reader.lineno if self.start_fen is not None else self._reader.start_line
        self.errors.append((line, _clip(message, 300)))

    def result(self) -> _MainlineVisitor:
        return self


def read_pgn_games(
    path: PathLike,
    *,
    report: ReadReport | None = None,
    strict: bool = False,
    max_games: int | None = None,
    min_elo: int | None = None,
) -> Iterator[GameRecord]:
    """Stream the games of a PGN file as `GameRecord`s (main line only), one game in memory at a time.

    Games with errors or cut off by the end of the file are skipped (see the module notes); `max_games` stops
    after that many games were yielded; `min_elo` keeps only games where WhiteElo and BlackElo are both integers
    ≥ `min_elo`. A missing file raises `InputError` at once.
    """
    source = _check_file(path)
    return _reported(source, report, lambda rep: _pgn_games(source, rep, strict, max_games, min_elo))


def _pgn_games(
    source: str, report: ReadReport, strict: bool, max_games: int | None, min_elo: int | None
) -> Iterator[GameRecord]:
    yielded = 0
    with _open(source) as raw:
        reader = _LineReader(raw)
        visitor_factory = functools.partial(_MainlineVisitor, reader, min_elo)
        index = 0
        while max_games is None or yielded < max_games:
            reader.start_line = None
            v = chess.pgn.read_game(reader, Visitor=visitor_factory)
            if v is None:
                return
            game, index = index, index + 1
            start = reader.start_line or reader.lineno
            where = f"game index {game} (starting at line {start})"
            truncated = v.marker is None and reader.at_eof
            if v.filtered:
                report.filtered += 1
                continue
            if v.errors:
                line, problem = v.errors[0]
                hint = "; the file ends inside this game (truncated?)" if truncated else ""
                _skip(report, strict, f"{problem} in {where}{hint}", source, line or start)
                continue
            if truncated:
                _skip(
                    report,
                    strict,
                    f"truncated {where}: the file ends after {len(v.moves)} moves without a result marker",
                    source,
                    start,
                )
                continue
            if v.marker is None and not v.moves:
                _skip(report, strict, f"no movetext in {where}", source, start)
                continue
            assert v.start_fen is not None  # set by visit_board whenever the game was not skipped
            header_result = v.headers.get("Result", "*")
            result = header_result if header_result in RESULTS and header_result != "*" else v.marker or "*"
            report.read += 1
            yielded += 1
            yield GameRecord(dict(v.headers), v.start_fen, v.moves, result, source, game, start)


def read_pgn_positions(
    path: PathLike,
    *,
    min_ply: int = 0,
    report: ReadReport | None = None,
    strict: bool = False,
    max_games: int | None = None,
    min_elo: int | None = None,
) -> Iterator[Position]:
    """Every position (ply ≥ `min_ply`) of every game read by `read_pgn_games`, with its move history."""
    source = _check_file(path)

    def body(rep: ReadReport) -> Iterator[Position]:
        for record in _pgn_games(source, rep, strict, max_games, min_elo):
            yield from record.positions(min_ply)

    return _reported(source, report, body)


# ---------------------------------------------------------------------------------------------------------------
# EPD and FEN lists


def _content_lines(reader: _LineReader) -> Iterator[tuple[int, str]]:
    """Stripped lines that are neither blank nor ``#`` comments."""
    for lineno, line in reader:
        text = line.strip()
        if text and not text.startswith("#"):
            yield lineno, text


def _epd_value(board: chess.Board, opcode: str, value: Any) -> str:
    """An EPD operand as text: moves in SAN (``pv`` as a sequence, ``bm``/``am`` as alternatives)."""
    if value is None:
        return ""
    if isinstance(value, chess.Move):
        return board.san(value)
    if isinstance(value, list):
        if opcode == "pv":
            line = board.copy(stack=False)
            sans = []
            for move in value:
                sans.append(line.san(move))
                line.push(move)
            return " ".join(sans)
        return " ".join(board.san(move) for move in value)
    return str(value)


def read_epd(path: PathLike, *, report: ReadReport | None = None, strict: bool = False) -> Iterator[Position]:
    """Positions of an EPD file, one per line, with the opcodes (``bm``, ``id``, ``c0`` …) in `meta`.

    Moves in opcodes are written in SAN (several ``bm`` moves joined by spaces). Blank lines and lines starting
    with ``#`` are ignored; unparsable lines and invalid positions are skipped with an error.
    """
    source = _check_file(path)

    def body(rep: ReadReport) -> Iterator[Position]:
        with _open(source) as raw:
            for lineno, text in _content_lines(_LineReader(raw)):
                try:
                    board, ops = chess.Board.from_epd(text)
                except ValueError as error:
                    _skip(rep, strict, f"invalid EPD {_clip(text)!r}: {_clip(str(error))}", source, lineno)
                    continue
                if not board.is_valid():
                    _skip(rep, strict, f"invalid position {_clip(text)!r}: {_status_text(board)}", source, lineno)
                    continue
                meta = {op: _epd_value(board, op, value) for op, value in ops.items()}
                rep.read += 1
                yield Position(board.fen(), (), source, line=lineno, meta=meta)

    return _reported(source, report, body)


def read_fens(path: PathLike, *, report: ReadReport | None = None, strict: bool = False) -> Iterator[Position]:
    """Positions of a plain FEN list: one FEN per line; blank lines and lines starting with ``#`` ignored."""
    source = _check_file(path)

    def body(rep: ReadReport) -> Iterator[Position]:
        with _open(source) as raw:
            for lineno, text in _content_lines(_LineReader(raw)):
                try:
                    board = chess.Board(text)
                except ValueError as error:
                    _skip(rep, strict, f"invalid FEN {_clip(text)!r}: {_clip(str(error))}", source, lineno)
                    continue
                if not board.is_valid():
                    _skip(rep, strict, f"invalid position {_clip(text)!r}: {_status_text(board)}", source, lineno)
                    continue
                rep.read += 1
                yield Position(board.fen(), (), source, line=lineno)

    return _reported(source, report, body)


# ---------------------------------------------------------------------------------------------------------------
# Lichess puzzles


def read_lichess_puzzles(
    path: PathLike, *, report: ReadReport | None = None, strict: bool = False
) -> Iterator[Position]:
    """Puzzle positions of a Lichess puzzle CSV (``PuzzleId,FEN,Moves,Rating,…``), with or without header row.

    Lichess gives the position before the opponent's move, and the first of `Moves` is that move; so each
    puzzle becomes ``Position(start_fen=FEN, moves=(first_move,))``, the solver to move, with
    ``meta["solution"]`` the remaining moves (UCI, space-separated) and the other columns (Rating, Themes,
    PuzzleId, GameUrl …) in `meta`. Only the first move is checked for legality (the solution is checked for
    UCI syntax), which keeps reading a multi-million-row dump fast.

    The first row is a header unless its second cell looks like a FEN; a header lacking ``FEN`` or ``Moves``
    raises `InputError` (wrong CSV columns) whatever `strict` says. Without a header the published column order
    is assumed.
    """
    source = _check_file(path)
    return _reported(source, report, lambda rep: _puzzles(source, rep, strict))


def _puzzles(source: str, report: ReadReport, strict: bool) -> Iterator[Position]:
    columns: tuple[str, ...] | None = None
    with _open(source) as raw:
        for lineno, line in _LineReader(raw):
            if not line.strip():
                continue
            try:
                row = next(csv.reader([line]))
            except csv.Error as error:  # e.g. a field over the csv module's size limit
                _skip(report, strict, f"unreadable CSV row: {error}", source, lineno)
                continue
            if columns is None:
                if len(row) < 2 or "/" not in row[1]:  # a header row: its FEN column holds a name
                    columns = tuple(cell.strip() for cell in row)
                    missing = [name for name in ("FEN", "Moves") if name not in columns]
                    if missing:
                        raise InputError(
                            f"wrong CSV columns for Lichess puzzles: missing {', '.join(missing)} "
                            f"(found {', '.join(columns) or 'nothing'}; expected {','.join(LICHESS_COLUMNS)})",
                            source=source,
                            line=lineno,
                        )
                    continue
                columns = LICHESS_COLUMNS
            position, problem = _puzzle(row, columns, source, lineno)
            if position is None:
                _skip(report, strict, problem, source, lineno)
                continue
            report.read += 1
            yield position


def _puzzle(row: list[str], columns: tuple[str, ...], source: str, lineno: int) -> tuple[Position | None, str]:
    """One CSV row as a puzzle position, or (None, why not)."""
    cells = dict(zip(columns, (cell.strip() for cell in row), strict=False))  # short rows: fewer cells
    fen, moves = cells.get("FEN"), cells.get("Moves")
    if fen is None or moves is None:
        return None, f"row has {len(row)} columns, too few to hold FEN and Moves"
    try:
        board = chess.Board(fen)
    except ValueError as error:
        return None, f"invalid FEN {_clip(fen)!r}: {_clip(str(error))}"
    if not board.is_valid():
        return None, f"invalid position {_clip(fen)!r}: {_status_text(board)}"
    ucis = moves.split()
    if not ucis:
        return None, "no moves"
    try:
        first = chess.Move.from_uci(ucis[0])
        for uci in ucis[1:]:
            chess.Move.from_uci(uci)
    except ValueError as error:
        return None, f"bad move in {_clip(moves)!r}: {_clip(str(error))}"
    if not board.is_legal(first):
        return None, f"first move {_clip(ucis[0])!r} is illegal in {fen!r}"
    meta = {name: value for name, value in cells.items() if name not in ("FEN", "Moves")}
    meta["solution"] = " ".join(ucis[1:])
    return Position(board.fen(), (ucis[0],), source, line=lineno, meta=meta), ""


# ---------------------------------------------------------------------------------------------------------------
# JSON lines


def read_jsonl(
    path: PathLike,
    parse: Callable[[dict[str, Any]], T],
    *,
    report: ReadReport | None = None,
    strict: bool = False,
) -> Iterator[T]:
    """`parse(record)` of every JSON object of a JSON-lines file (one object a line; blank lines ignored).

    A line that is not UTF-8, not JSON, not a JSON object, or that `parse` rejects (it raises `InputError`,
    `KeyError`, `TypeError`, `ValueError`, `AttributeError` or `IndexError`) is skipped with an `InputError` naming
    the file and line, like the other readers; ``strict=True`` raises the first one instead. A missing file
    raises `InputError` at once.
    """
    source = _check_file(path)
    return _reported(source, report, lambda rep: _jsonl(source, parse, rep, strict))


def _jsonl(source: str, parse: Callable[[dict[str, Any]], T], report: ReadReport, strict: bool) -> Iterator[T]:
    import json

    with _open(source) as raw:
        for lineno, data in enumerate(raw, 1):
            if lineno == 1:
                data = data.removeprefix(b"\xef\xbb\xbf")
            if not data.strip():
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as error:
                _skip(report, strict, f"not UTF-8 text (byte {data[error.start:error.start + 1]!r} at column "
                                      f"{error.start + 1})", source, lineno)
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                _skip(report, strict, f"invalid JSON ({error.msg} at column {error.colno})", source, lineno)
                continue
            except RecursionError:
                _skip(report, strict, "invalid JSON (nested too deeply)", source, lineno)
                continue
            if not isinstance(record, dict):
                _skip(report, strict, f"expected a JSON object, got {type(record).__name__}", source, lineno)
                continue
            try:
                item = parse(record)
            except InputError as error:
                _skip(report, strict, error.reason, source, lineno)
                continue
            except KeyError as error:
                _skip(report, strict, f"missing field {error}", source, lineno)
                continue
            except (TypeError, ValueError, AttributeError, IndexError) as error:
                _skip(report, strict, f"unusable record ({_clip(str(error))})", source, lineno)
                continue
            report.read += 1
            yield item


# ---------------------------------------------------------------------------------------------------------------
# Dispatch

_READERS: dict[str, Callable[..., Iterator[Position]]] = {
    ".pgn": read_pgn_positions,
    ".epd": read_epd,
    ".fen": read_fens,
    ".txt": read_fens,
    ".csv": read_lichess_puzzles,
}


def read_positions(path: PathLike, **kw: Any) -> Iterator[Position]:
    """Positions of a file, read by the reader its suffix names (.pgn, .epd, .fen/.txt, .csv); `kw` go to it."""
    source = os.fspath(path)
    suffix = Path(source).suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        known = ", ".join(_READERS)
        raise InputError(f"unknown position file type {suffix!r} (expected one of {known})", source=source, line=None)
    return reader(path, **kw)
