"""What a probe predicts: targets computed from `chess.Board`s, each continuous or binary.

A `Target` is a label function over a batch of boards (lczerolens' `Concept.compute_label`, batched): it returns
one float per board, NaN where the target is undefined (e.g. the opponent's mobility when the side to move is in
check, or a FEN missing from a user CSV); probes drop those rows. Unless a name says ``white``, targets are from
the side to move's view ("own" = the side to move's, "opp" = the opponent's), like the network's input and value.

Board targets (`BOARD_TARGETS`; the groups of `TARGET_GROUPS`, ``pieces``, ``king_safety``, ``threats`` and ``board``
(all of them), select several at once):

    material            own − opp material, P=1 N=3 B=3 R=5 Q=9 (vectorised over bitboards)
    material_white      White − Black material
    own_pawns … opp_queens   per-piece counts
    mobility            legal moves of the side to move; opp_mobility: the opponent's after a null move (NaN in check)
    king_attackers      opponent pieces attacking the own king's zone (king square + its neighbours); opp_…: mirrored
    pawn_shield         own pawns on the king's file and its neighbours, one or two ranks ahead; opp_…: mirrored
    passed_pawns        own passed pawns (no enemy pawn ahead on its file or the neighbouring files); opp_…
    in_check            binary: the side to move is in check
    own_en_prise        own non-king pieces attacked and either undefended or attacked by a cheaper piece; opp_…
    can_win_material    binary: some opponent piece is en prise (a capture threat for the side to move)

Engine and user targets: `StockfishTarget` (Stockfish's evaluation through `chess.engine` at a fixed depth or node
count, cached on disk in a JSONL file that survives kills), `StockfishTerms` (the classical evaluation terms that
Stockfish ≤ 15.1 prints for its ``eval`` command: material, mobility, king safety, threats, passed pawns, space …)
and `CsvTargets` (any column of a CSV of FEN → value; bad rows are skipped, each error naming the file and line).

`resolve_targets(["material", "mobility", "stockfish", "stockfish_terms", "csv:evals.csv"])` turns names into
targets.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import chess
import chess.engine
import numpy as np

from alphazero_concepts.chess.encoding import board_bitboards
from alphazero_concepts.chess.positions import InputError, ReadReport
from alphazero_concepts.engines import locate_stockfish

Kind = Literal["continuous", "binary"]
PIECE_VALUES = np.array([1, 3, 3, 5, 9, 0], dtype=np.float64)  # P N B R Q K
PIECE_NAMES = ("pawns", "knights", "bishops", "rooks", "queens")


class TargetError(ValueError):
    """A target that cannot be computed (unknown name, missing engine, unusable CSV)."""


@dataclass(frozen=True)
class Target:
    """One probe target: `compute(boards)` → (N,) float64, NaN where undefined; `kind` says which probe fits it."""

    name: str
    kind: Kind
    description: str
    fn: Callable[[Sequence[chess.Board]], np.ndarray] = field(repr=False, compare=False)

    def compute(self, boards: Sequence[chess.Board]) -> np.ndarray:
        values = np.asarray(self.fn(boards), dtype=np.float64)
        if values.shape != (len(boards),):
            raise TargetError(f"target {self.name!r} returned shape {values.shape}, expected ({len(boards)},)")
        return values


class TargetSource(Protocol):
    """Anything that yields targets (a CSV with several value columns, Stockfish …)."""

    def targets(self) -> list[Target]: ...


# ------------------------------------------------------------------------------------------------------------
# Board targets


def _popcount(words: np.ndarray) -> np.ndarray:
    """Bits set in each uint64 (numpy ≥ 2 has it built in; the fallback counts bytes)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words).astype(np.int64)
    as_bytes = words.astype("<u8").view(np.uint8).reshape(*words.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1).astype(np.int64)


def piece_counts(boards: Sequence[chess.Board]) -> tuple[np.ndarray, np.ndarray]:
    """(own, opp) piece counts (N, 6) in P N B R Q K order, side to move's view; one vectorised popcount."""
    bits = np.array([board_bitboards(b) for b in boards], dtype=np.uint64).reshape(len(boards), 12)
    counts = _popcount(bits)
    white_to_move = np.array([b.turn == chess.WHITE for b in boards], dtype=bool)[:, None]
    own = np.where(white_to_move, counts[:, :6], counts[:, 6:])
    opp = np.where(white_to_move, counts[:, 6:], counts[:, :6])
    return own, opp


def material(boards: Sequence[chess.Board]) -> np.ndarray:
    own, opp = piece_counts(boards)
    return (own - opp) @ PIECE_VALUES


def material_white(boards: Sequence[chess.Board]) -> np.ndarray:
    sign = np.array([1.0 if b.turn == chess.WHITE else -1.0 for b in boards])
    return material(boards) * sign


def _count(side: int, piece: int) -> Callable[[Sequence[chess.Board]], np.ndarray]:
    def fn(boards: Sequence[chess.Board]) -> np.ndarray:
        return piece_counts(boards)[side][:, piece].astype(np.float64)

    return fn


def mobility(boards: Sequence[chess.Board]) -> np.ndarray:
    return np.array([b.legal_moves.count() for b in boards], dtype=np.float64)


def opp_mobility(boards: Sequence[chess.Board]) -> np.ndarray:
    """The opponent's legal moves after a null move; NaN when the side to move is in check (no null move)."""
    out = np.full(len(boards), np.nan)
    for i, board in enumerate(boards):
        if not board.is_check():
            b = board.copy(stack=False)
            b.push(chess.Move.null())
            out[i] = b.legal_moves.count()
    return out


def _king_attackers(board: chess.Board, color: chess.Color) -> int:
    king = board.king(color)
    if king is None:
        return 0
    zone = chess.SquareSet(chess.BB_KING_ATTACKS[king] | chess.BB_SQUARES[king])
    attackers = 0
    for square in zone:
        attackers |= int(board.attackers_mask(not color, square))
    return chess.popcount(attackers)


def _pawn_shield(board: chess.Board, color: chess.Color) -> int:
    king = board.king(color)
    if king is None:
        return 0
    file, rank = chess.square_file(king), chess.square_rank(king)
    step = 1 if color == chess.WHITE else -1
    mask = 0
    for r in (rank + step, rank + 2 * step):
        if 0 <= r < 8:
            for f in (file - 1, file, file + 1):
                if 0 <= f < 8:
                    mask |= chess.BB_SQUARES[chess.square(f, r)]
    return chess.popcount(mask & board.pieces_mask(chess.PAWN, color))


def _front_span(square: int, color: chess.Color) -> int:
    """Squares ahead of `square` (from `color`'s view) on its file and the neighbouring files."""
    file, rank = chess.square_file(square), chess.square_rank(square)
    ranks = range(rank + 1, 8) if color == chess.WHITE else range(rank)
    mask = 0
    for r in ranks:
        for f in (file - 1, file, file + 1):
            if 0 <= f < 8:
                mask |= chess.BB_SQUARES[chess.square(f, r)]
    return mask


_FRONT_SPAN = {color: [_front_span(sq, color) for sq in chess.SQUARES] for color in chess.COLORS}


def count_passed_pawns(board: chess.Board, color: chess.Color) -> int:
    """Pawns of `color` with no enemy pawn ahead of them on their own file or a neighbouring file."""
    enemy = board.pieces_mask(chess.PAWN, not color)
    return sum(1 for sq in chess.scan_forward(board.pieces_mask(chess.PAWN, color))
               if not _FRONT_SPAN[color][sq] & enemy)


_VALUE = {chess.PAWN: 1, chess.KNIGHT: 3, chess.BISHOP: 3, chess.ROOK: 5, chess.QUEEN: 9, chess.KING: 100}


def count_en_prise(board: chess.Board, color: chess.Color) -> int:
    """Non-king pieces of `color` that the opponent attacks and that are undefended or attacked by a cheaper piece."""
    n = 0
    for square in chess.scan_forward(board.occupied_co[color] & ~board.kings):
        attackers = board.attackers_mask(not color, square)
        if not attackers:
            continue
        value = _VALUE[board.piece_type_at(square)]  # type: ignore[index]
        cheapest = min(_VALUE[board.piece_type_at(a)] for a in chess.scan_forward(attackers))  # type: ignore[index]
        if cheapest < value or not board.attackers_mask(color, square):
            n += 1
    return n


BatchFn = Callable[[Sequence[chess.Board]], np.ndarray]


def _per_board(fn: Callable[[chess.Board, chess.Color], int], own: bool) -> BatchFn:
    def compute(boards: Sequence[chess.Board]) -> np.ndarray:
        return np.array([fn(b, b.turn if own else not b.turn) for b in boards], dtype=np.float64)

    return compute


def in_check(boards: Sequence[chess.Board]) -> np.ndarray:
    return np.array([b.is_check() for b in boards], dtype=np.float64)


def can_win_material(boards: Sequence[chess.Board]) -> np.ndarray:
    return np.array([count_en_prise(b, not b.turn) > 0 for b in boards], dtype=np.float64)


def _board_targets() -> dict[str, Target]:
    items = [
        Target("material", "continuous", "own − opp material (P1 N3 B3 R5 Q9), side to move's view", material),
        Target("material_white", "continuous", "White − Black material", material_white),
    ]
    for side, side_name in ((0, "own"), (1, "opp")):
        for piece, piece_name in enumerate(PIECE_NAMES):
            items.append(Target(f"{side_name}_{piece_name}", "continuous", f"number of {side_name} {piece_name}",
                                _count(side, piece)))
    items += [
        Target("mobility", "continuous", "legal moves of the side to move", mobility),
        Target("opp_mobility", "continuous", "opponent's legal moves after a null move (NaN in check)", opp_mobility),
        Target("king_attackers", "continuous", "opponent pieces attacking the own king zone",
               _per_board(_king_attackers, own=True)),
        Target("opp_king_attackers", "continuous", "own pieces attacking the opponent's king zone",
               _per_board(_king_attackers, own=False)),
        Target("pawn_shield", "continuous", "own pawns shielding the own king", _per_board(_pawn_shield, own=True)),
        Target("opp_pawn_shield", "continuous", "opponent pawns shielding its king",
               _per_board(_pawn_shield, own=False)),
        Target("passed_pawns", "continuous", "own passed pawns", _per_board(count_passed_pawns, own=True)),
        Target("opp_passed_pawns", "continuous", "opponent passed pawns", _per_board(count_passed_pawns, own=False)),
        Target("in_check", "binary", "the side to move is in check", in_check),
        Target("own_en_prise", "continuous", "own pieces en prise", _per_board(count_en_prise, own=True)),
        Target("opp_en_prise", "continuous", "opponent pieces en prise", _per_board(count_en_prise, own=False)),
        Target("can_win_material", "binary", "some opponent piece is en prise", can_win_material),
    ]
    return {t.name: t for t in items}


BOARD_TARGETS: dict[str, Target] = _board_targets()
TARGET_GROUPS: dict[str, tuple[str, ...]] = {
    "pieces": tuple(f"{s}_{p}" for s in ("own", "opp") for p in PIECE_NAMES),
    "king_safety": ("king_attackers", "opp_king_attackers", "pawn_shield", "opp_pawn_shield"),
    "threats": ("own_en_prise", "opp_en_prise", "can_win_material"),
    "board": tuple(BOARD_TARGETS),
}


def compute_targets(boards: Sequence[chess.Board], targets: Iterable[Target]) -> dict[str, np.ndarray]:
    """{name: (N,) values} for every target (NaN where undefined)."""
    return {t.name: t.compute(boards) for t in targets}


# ------------------------------------------------------------------------------------------------------------
# Stockfish


def find_stockfish(path: str | os.PathLike | None = None) -> str:
    """The Stockfish binary: `path`, else `stockfish` on PATH, else /usr/games/stockfish; TargetError when absent."""
    found = locate_stockfish(path)
    if found is not None:
        return found
    raise TargetError(
        f"Stockfish not found ({'at ' + str(path) if path else 'not on PATH, not at /usr/games/stockfish'}); "
        "install it (`apt-get install stockfish`) or drop the `stockfish` target")


class EvalCache:
    """Engine results on disk, one JSON object per line ``{"key": …, "value": …}``, appended and flushed per entry.

    Keyed by FEN + engine settings, so a different depth or node budget never reuses an entry. A killed job loses
    at most the line being written: unreadable lines (a torn last line) are ignored when the cache is read.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.entries: dict[str, Any] = {}
        self.bad_lines = 0
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                        self.entries[str(rec["key"])] = rec["value"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        self.bad_lines += 1

    def get(self, key: str) -> Any:
        return self.entries.get(key)

    def put_many(self, items: Iterable[tuple[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            for key, value in items:
                self.entries[key] = value
                fh.write(json.dumps({"key": key, "value": value}) + "\n")
                fh.flush()
            os.fsync(fh.fileno())


EngineFactory = Callable[[], Any]  # returns an object with .analyse(board, limit) and .quit()


@dataclass
class StockfishTarget:
    """Stockfish's evaluation in pawns from the side to move's view, clipped to ±`clip` (mates → ±`clip`).

    Evaluated at a fixed `depth` (or `nodes`, when given) with one thread and a fixed hash, so a cached value is
    reproducible; results go to the `cache` JSONL file as they come (a rerun only evaluates what is missing).
    `engine_factory` replaces the real engine in tests (any object with ``analyse`` and ``quit``).
    """

    depth: int = 8
    nodes: int | None = None
    cache: str | os.PathLike | None = None
    engine_path: str | None = None
    clip: float = 10.0
    engine_factory: EngineFactory | None = None
    progress: Callable[[int, int], None] | None = None

    @property
    def settings(self) -> str:
        budget = f"nodes={self.nodes}" if self.nodes else f"depth={self.depth}"
        return f"stockfish {budget} threads=1 hash=16"

    @property
    def limit(self) -> chess.engine.Limit:
        return chess.engine.Limit(nodes=self.nodes) if self.nodes else chess.engine.Limit(depth=self.depth)

    def _open(self) -> Any:
        if self.engine_factory is not None:
            return self.engine_factory()
        engine = chess.engine.SimpleEngine.popen_uci(find_stockfish(self.engine_path))
        engine.configure({"Threads": 1, "Hash": 16})
        return engine

    def evaluate(self, boards: Sequence[chess.Board]) -> np.ndarray:
        cache = EvalCache(self.cache) if self.cache else None
        keys = [f"{b.fen()}|{self.settings}" for b in boards]
        out = np.full(len(boards), np.nan)
        todo = []
        for i, key in enumerate(keys):
            hit = cache.get(key) if cache else None
            if isinstance(hit, int | float):
                out[i] = float(hit)
            else:
                todo.append(i)
        if not todo:
            return out
        engine = self._open()
        try:
            batch: list[tuple[str, float]] = []
            for done, i in enumerate(todo, 1):
                board = boards[i]
                if board.is_game_over():
                    outcome = board.outcome()
                    value = 0.0 if outcome is None or outcome.winner is None else \
                        (self.clip if outcome.winner == board.turn else -self.clip)
                else:
                    info = engine.analyse(board.copy(stack=False), self.limit)
                    cp = info["score"].pov(board.turn).score(mate_score=100_000)
                    value = float(np.clip(cp / 100.0, -self.clip, self.clip))
                out[i] = value
                batch.append((keys[i], value))
                if cache and len(batch) >= 32:
                    cache.put_many(batch)
                    batch = []
                if self.progress:
                    self.progress(done, len(todo))
            if cache and batch:
                cache.put_many(batch)
        finally:
            engine.quit()
        return out

    def targets(self) -> list[Target]:
        return [Target("stockfish", "continuous", f"Stockfish evaluation, pawns, side to move ({self.settings})",
                       self.evaluate)]


STOCKFISH_TERMS = ("material", "imbalance", "pawns", "knights", "bishops", "rooks", "queens", "mobility",
                   "king safety", "threats", "passed", "space", "winnable", "total")
# Stockfish 15.1's classical middlegame piece values and phase limits (evaluate.cpp / types.h)
_SF_NPM = {chess.KNIGHT: 781, chess.BISHOP: 825, chess.ROOK: 1276, chess.QUEEN: 2538}
_SF_MIDGAME_LIMIT, _SF_ENDGAME_LIMIT = 15258, 3915


def parse_eval_trace(lines: Iterable[str]) -> dict[str, tuple[float, float]]:
    """{term: (middlegame, endgame)} of the "Total" column of Stockfish's classical ``eval`` table, White's view,
    in pawns; {} when the output has no such table (in check, or Stockfish ≥ 16 without the classical eval)."""
    out: dict[str, tuple[float, float]] = {}
    for line in lines:
        cells = line.split("|")
        if len(cells) != 6:
            continue
        name = cells[1].strip().lower()
        total = cells[4].split()
        if name in STOCKFISH_TERMS and len(total) == 2:
            try:
                out[name] = (float(total[0]), float(total[1]))
            except ValueError:
                continue
    return out


def stockfish_phase(board: chess.Board) -> float:
    """Stockfish's game phase in [0, 128] (128 = middlegame) from both sides' non-pawn material."""
    npm = sum(v * chess.popcount(board.pieces_mask(p, c)) for p, v in _SF_NPM.items() for c in chess.COLORS)
    npm = min(max(npm, _SF_ENDGAME_LIMIT), _SF_MIDGAME_LIMIT)
    return (npm - _SF_ENDGAME_LIMIT) * 128 / (_SF_MIDGAME_LIMIT - _SF_ENDGAME_LIMIT)


EvalRunner = Callable[[list[str]], list[list[str]]]  # FENs → the engine's output lines for `eval`, one list each


@dataclass
class StockfishTerms:
    """Stockfish's classical evaluation terms as targets ``sf.<term>`` (``sf.king_safety`` …), pawns, side to move.

    Each term is the "Total" column of the ``eval`` trace (White − Black), blended between its middlegame and
    endgame values by Stockfish's phase (without the endgame scale factor), then turned to the side to move's view;
    NaN in check (Stockfish prints no trace there). ``eval`` is static (no search), so no depth applies. Spoken
    over a raw UCI pipe (`chess.engine` has no ``eval`` command); results are cached on disk like `StockfishTarget`.
    Only Stockfish ≤ 15.1 has the classical evaluation: a newer binary raises `TargetError` on first use.
    `runner` replaces the engine in tests.
    """

    cache: str | os.PathLike | None = None
    engine_path: str | None = None
    runner: EvalRunner | None = None

    def __post_init__(self) -> None:
        self._memo: dict[str, dict[str, list[float]] | None] = {}

    def _run_engine(self, fens: list[str]) -> list[list[str]]:
        proc = subprocess.Popen([find_stockfish(self.engine_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, bufsize=1)
        assert proc.stdin is not None and proc.stdout is not None

        def read_until(prefix: str) -> list[str]:
            lines = []
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line.rstrip("\n"))
                if line.startswith(prefix):
                    return lines
            raise TargetError(f"Stockfish exited before printing {prefix!r}")

        try:
            proc.stdin.write("uci\n")
            read_until("uciok")
            out = []
            for fen in fens:
                proc.stdin.write(f"position fen {fen}\neval\n")
                out.append(read_until("Final evaluation"))
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        return out

    def terms(self, boards: Sequence[chess.Board]) -> dict[str, np.ndarray]:
        """{term: (N,) values} for every term (NaN where Stockfish gave none)."""
        cache = EvalCache(self.cache) if self.cache else None
        fens = [b.fen() for b in boards]
        todo = []
        for fen in dict.fromkeys(fens):
            if fen in self._memo:
                continue
            hit = cache.get(f"{fen}|stockfish eval terms") if cache else None
            if isinstance(hit, dict) or (hit is None and cache and f"{fen}|stockfish eval terms" in cache.entries):
                self._memo[fen] = hit
            else:
                todo.append(fen)
        if todo:
            outputs = (self.runner or self._run_engine)(todo)
            new = []
            for fen, lines in zip(todo, outputs, strict=True):
                parsed = parse_eval_trace(lines)
                checked = chess.Board(fen).is_check()
                if not parsed and not checked:
                    raise TargetError("this Stockfish prints no classical evaluation terms for `eval` (Stockfish "
                                      "16 removed them); use the `stockfish` target instead")
                self._memo[fen] = {k: list(v) for k, v in parsed.items()} or None
                new.append((f"{fen}|stockfish eval terms", self._memo[fen]))
            if cache:
                cache.put_many(new)
        out = {t: np.full(len(boards), np.nan) for t in STOCKFISH_TERMS}
        for i, (board, fen) in enumerate(zip(boards, fens, strict=True)):
            terms = self._memo[fen]
            if not terms:
                continue
            phase = stockfish_phase(board)
            sign = 1.0 if board.turn == chess.WHITE else -1.0
            for t, (mg, eg) in terms.items():
                out[t][i] = sign * (mg * phase + eg * (128 - phase)) / 128
        return out

    def _term(self, term: str) -> BatchFn:
        return lambda boards: self.terms(boards)[term]

    def targets(self) -> list[Target]:
        return [Target(f"sf.{t.replace(' ', '_')}", "continuous", f"Stockfish classical eval term {t!r}, pawns, "
                       "side to move", self._term(t)) for t in STOCKFISH_TERMS]


# ------------------------------------------------------------------------------------------------------------
# User CSV: FEN → value(s)


def position_key(board_or_fen: chess.Board | str) -> str:
    """The FEN without its move counters (board, turn, castling, en passant): how CSV rows meet positions."""
    fen = board_or_fen.fen() if isinstance(board_or_fen, chess.Board) else board_or_fen
    return " ".join(fen.split()[:4])


def _is_fen(text: str) -> bool:
    try:
        chess.Board(text)
    except ValueError:
        return False
    return True


@dataclass
class CsvTargets:
    """Every value column of a CSV of FEN → value becomes a target named ``<file stem>.<column>``.

    With a header row, the column named ``fen`` (any case) holds positions and every other column is a target;
    without one (first cell is a FEN), columns are ``fen,value``. Empty cells are NaN. Rows with an invalid FEN,
    a missing cell or a non-numeric value are skipped, each with an `InputError` naming the file and line in
    `report` (`strict=True` raises the first). A column whose values are all 0/1 is binary, else continuous.
    Positions are matched by FEN without move counters (`position_key`); positions not in the file get NaN.
    """

    path: str | os.PathLike
    strict: bool = False
    report: ReadReport = field(init=False)
    columns: list[str] = field(init=False)
    values: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        source = os.fspath(self.path)
        if not Path(source).is_file():
            raise InputError("no such file", source=source, line=None)
        self.report = ReadReport(source)
        keys, rows = self._read(source)
        self.index = {k: i for i, k in enumerate(keys)}
        self.values = {c: np.array([r[j] for r in rows], dtype=np.float64).reshape(len(rows))
                       for j, c in enumerate(self.columns)}
        if not keys:
            raise InputError(f"no usable rows ({self.report.summary()})", source=source, line=None)

    def _skip(self, message: str, lineno: int) -> None:
        error = InputError(message, source=self.report.source, line=lineno)
        if self.strict:
            raise error
        self.report.record_skip(error)

    def _read(self, source: str) -> tuple[list[str], list[list[float]]]:
        keys: list[str] = []
        rows: list[list[float]] = []
        fen_col = 0
        self.columns = []
        with open(source, newline="", encoding="utf-8-sig") as fh:
            for lineno, row in enumerate(csv.reader(fh), 1):
                if not row or not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                    continue
                if not self.columns:
                    lowered = [c.strip().lower() for c in row]
                    if "fen" in lowered:
                        fen_col = lowered.index("fen")
                        self.columns = [c.strip() for j, c in enumerate(row) if j != fen_col]
                        if not self.columns:
                            raise InputError("header has no value column besides 'fen'", source=source, line=lineno)
                        continue
                    if not _is_fen(row[0].strip()):
                        raise InputError(f"first row is neither a header with a 'fen' column nor a FEN row: {row}",
                                         source=source, line=lineno)
                    self.columns = ["value"]
                width = len(self.columns) + 1
                if len(row) < width:
                    self._skip(f"{len(row)} cells, expected {width} (fen + {', '.join(self.columns)})", lineno)
                    continue
                fen = row[fen_col].strip()
                try:
                    board = chess.Board(fen)
                except ValueError as exc:
                    self._skip(f"invalid FEN {fen!r}: {exc}", lineno)
                    continue
                cells = [c.strip() for j, c in enumerate(row[:width]) if j != fen_col]
                try:
                    values = [float(c) if c else float("nan") for c in cells]
                except ValueError:
                    self._skip(f"non-numeric value in {cells}", lineno)
                    continue
                keys.append(position_key(board))
                rows.append(values)
                self.report.read += 1
        return keys, rows

    def kind(self, column: str) -> Kind:
        v = self.values[column]
        v = v[~np.isnan(v)]
        return "binary" if v.size and np.isin(v, (0.0, 1.0)).all() else "continuous"

    def _lookup(self, column: str) -> Callable[[Sequence[chess.Board]], np.ndarray]:
        def fn(boards: Sequence[chess.Board]) -> np.ndarray:
            rows = [self.index.get(position_key(b), -1) for b in boards]
            col = self.values[column]
            return np.array([col[r] if r >= 0 else np.nan for r in rows], dtype=np.float64)

        return fn

    def targets(self) -> list[Target]:
        stem = Path(self.path).stem
        return [Target(f"{stem}.{c}", self.kind(c), f"column {c!r} of {self.path}", self._lookup(c))
                for c in self.columns]


# ------------------------------------------------------------------------------------------------------------


def target_names() -> list[str]:
    """Names `resolve_targets` accepts besides ``stockfish`` and ``csv:PATH``: groups and single targets."""
    return sorted(set(TARGET_GROUPS) | set(BOARD_TARGETS))


def resolve_targets(specs: Iterable[str], *, stockfish: StockfishTarget | None = None,
                    csv_reports: list[ReadReport] | None = None) -> list[Target]:
    """Targets for names (comma lists allowed): a board target (``material``, ``mobility`` …), a group
    (``pieces``, ``king_safety``, ``threats``, ``board``), ``stockfish``, ``stockfish_terms`` (both use `stockfish`'s
    engine path and cache), or ``csv:PATH`` (every value column of that CSV; its `ReadReport` is appended to
    `csv_reports`). Order is kept, duplicates dropped."""
    out: dict[str, Target] = {}
    for spec in _split(specs):
        if spec in BOARD_TARGETS:
            out[spec] = BOARD_TARGETS[spec]
        elif spec in TARGET_GROUPS:
            out.update({n: BOARD_TARGETS[n] for n in TARGET_GROUPS[spec]})
        elif spec == "stockfish":
            sf = stockfish or StockfishTarget()
            if sf.engine_factory is None:
                find_stockfish(sf.engine_path)  # fail now, with the install hint, not after the activations
            out.update({t.name: t for t in sf.targets()})
        elif spec == "stockfish_terms":
            sf = stockfish or StockfishTarget()
            if sf.engine_factory is None:
                find_stockfish(sf.engine_path)
            out.update({t.name: t for t in StockfishTerms(cache=sf.cache, engine_path=sf.engine_path).targets()})
        elif spec.startswith("csv:"):
            table = CsvTargets(spec[4:])
            if csv_reports is not None:
                csv_reports.append(table.report)
            out.update({t.name: t for t in table.targets()})
        else:
            raise TargetError(f"unknown target {spec!r}; known: {', '.join(target_names())}, stockfish, "
                              "stockfish_terms, csv:PATH")
    return list(out.values())


def _split(specs: Iterable[str]) -> Iterator[str]:
    for spec in specs:
        for part in spec.split(","):
            if part.strip():
                yield part.strip()
