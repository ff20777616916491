"""Engine-labelled games: the one reader and writer of their file format, and the compact arrays training uses.

The format (documented in `../shared/data/engine/README.md` and `docs/teacher.md`) is gzip-compressed JSON lines,
one game a line and one gzip member a game (so an append after a kill never corrupts earlier games):

    {"game": 0, "seed": 1, "nodes": 2000, "multipv": 4, "result": "1-0", "termination": "checkmate",
     "plies": [{"pv": [["e2e4", {"cp": 31}], ...], "wdl": [52, 930, 18], "move": "e2e4"}, ...]}

`plies[i]` labels the position before move i (the start position with the earlier moves pushed), so every
position keeps its full history. Scores are from the side to move's view; `wdl` is per mille for the side to
move (may be null). Games may start from `start_fen` (optional key; default the initial position), which is how
the network's own games are labelled.

`EngineData` holds every labelled position of a set of files in about 150 bytes a position (piece bitboards of
the position itself, its game's first row, the MultiPV move indices and scores, the WDL); the 8-step history
planes are gathered per batch (`EngineData.arrays`). Built once per file and cached as `.npz` beside the output.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import chess
import numpy as np

from alphazero_concepts.chess.encoding import (
    POLICY_SIZE,
    GameSnapshots,
    PositionArrays,
    game_snapshots,
    move_to_index,
    with_history,
)
from alphazero_concepts.chess.positions import InputError, ReadReport

CACHE_VERSION = 1
MAX_PV = 8  # MultiPV moves kept per position
MATE_CP = 10_000  # a mate in n scores ±(MATE_CP − 10·n) centipawns, so shorter mates rank first
RESULTS = ("1-0", "0-1", "1/2-1/2")


def score_cp(score: dict, *, source: str = "", line: int | None = None) -> int:
    """Centipawns of an engine score `{"cp": int}` or `{"mate": int}` (side to move's view)."""
    if isinstance(score, dict):
        if isinstance(score.get("cp"), int):
            return int(score["cp"])
        mate = score.get("mate")
        if isinstance(mate, int):
            return (MATE_CP - 10 * abs(mate)) * (1 if mate > 0 else -1)
    raise InputError(f"score must be {{'cp': int}} or {{'mate': int}}, got {score!r}", source=source, line=line)


def cp_to_wdl(cp: float) -> tuple[float, float, float]:
    """A documented centipawn → (win, draw, loss) map for positions without an engine WDL: expected score
    1 / (1 + 10^(−cp/400)) (the Elo curve with 100 cp ≈ 64%), draw share 0.5 · (1 − |2s − 1|)."""
    s = 1.0 / (1.0 + 10.0 ** (-max(-4000.0, min(4000.0, cp)) / 400.0))
    draw = 0.5 * (1.0 - abs(2.0 * s - 1.0))
    return s - draw / 2.0, draw, 1.0 - s - draw / 2.0


def read_engine_games(path: str | Path, report: ReadReport | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, game) of every well-formed game of an engine-games file, in file order.

    Bad lines (not JSON, missing keys, an illegal move) are skipped and counted in `report` with their file and
    line; a torn last line (a writer killed mid-game) is one such skip. Raises InputError for a missing or
    unreadable file.
    """
    source = str(path)
    p = Path(path)
    if not p.is_file():
        raise InputError("no such engine-games file" if not p.exists() else "not a file", source=source, line=None)
    report = report if report is not None else ReadReport(source=source)
    opener = gzip.open if _is_gzip(p) else open
    lineno = 0
    try:
        with opener(p, "rt", encoding="utf-8") as fh:
            for lineno, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    game = json.loads(text)
                    _check_game(game, source, lineno)
                except json.JSONDecodeError as exc:
                    report.record_skip(InputError(f"not a JSON game ({exc.msg})", source=source, line=lineno))
                    continue
                except InputError as exc:
                    report.record_skip(exc)
                    continue
                report.read += 1
                yield lineno, game
    except (EOFError, gzip.BadGzipFile, UnicodeDecodeError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise InputError("no such engine-games file", source=source, line=None) from exc
        report.record_skip(InputError(f"unreadable after this line ({type(exc).__name__}: {exc})", source=source,
                                      line=lineno + 1))


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _check_game(game: object, source: str, line: int) -> None:
    if not isinstance(game, dict):
        raise InputError("a game must be a JSON object", source=source, line=line)
    plies = game.get("plies")
    if not isinstance(plies, list):
        raise InputError("missing list field 'plies'", source=source, line=line)
    if game.get("result") not in RESULTS:
        raise InputError(f"field 'result' must be one of {RESULTS}, got {game.get('result')!r}", source=source,
                         line=line)
    for i, ply in enumerate(plies):
        if not isinstance(ply, dict) or not isinstance(ply.get("move"), str) or not isinstance(ply.get("pv"), list) \
                or not ply["pv"]:
            raise InputError(f"plies[{i}] needs 'move' (UCI) and a non-empty 'pv'", source=source, line=line)
        wdl = ply.get("wdl")
        if wdl is not None and not (isinstance(wdl, list) and len(wdl) == 3 and all(isinstance(x, int) for x in wdl)):
            raise InputError(f"plies[{i}].wdl must be null or [win, draw, loss] per mille", source=source, line=line)


@dataclass
class GameLabels:
    """One game's positions as snapshots with their labels (rows in game order)."""

    snapshots: GameSnapshots
    pv_index: np.ndarray  # (N, MAX_PV) int16 policy indices, −1 = none
    pv_cp: np.ndarray  # (N, MAX_PV) int32 centipawns, side to move's view
    wdl: np.ndarray  # (N, 3) float32 probabilities, side to move's view


def label_game(game: dict, *, source: str = "", line: int | None = None) -> GameLabels:
    """Snapshots and labels of every position of a checked game; InputError (file, line, ply) on an illegal move."""
    start = game.get("start_fen") or chess.STARTING_FEN
    try:
        board = chess.Board(start)
    except ValueError as exc:
        raise InputError(f"bad start_fen {start!r}: {exc}", source=source, line=line) from exc
    if not board.is_valid():
        raise InputError(f"impossible start_fen {start!r} ({board.status()!r})", source=source, line=line)
    plies = game["plies"]
    n = len(plies)
    pv_index = np.full((n, MAX_PV), -1, dtype=np.int16)
    pv_cp = np.zeros((n, MAX_PV), dtype=np.int32)
    wdl = np.zeros((n, 3), dtype=np.float32)
    moves: list[chess.Move] = []
    replay = board.copy(stack=False)
    for i, ply in enumerate(plies):
        try:
            move = replay.parse_uci(ply["move"])
        except ValueError as exc:
            raise InputError(f"plies[{i}]: illegal move {ply['move']!r} in {replay.fen()}", source=source,
                             line=line) from exc
        moves.append(move)
        replay.push(move)

    def visit(i: int, b: chess.Board) -> None:
        ply = plies[i]
        for k, entry in enumerate(ply["pv"][:MAX_PV]):
            try:
                uci, score = entry
                mv = chess.Move.from_uci(uci)
            except (TypeError, ValueError) as exc:
                raise InputError(f"plies[{i}].pv[{k}]: expected [uci, score], got {entry!r}", source=source,
                                 line=line) from exc
            if not b.is_legal(mv):
                raise InputError(f"plies[{i}].pv[{k}]: illegal move {uci} in {b.fen()}", source=source, line=line)
            pv_index[i, k] = move_to_index(mv, b)
            pv_cp[i, k] = score_cp(score, source=source, line=line)
        if ply.get("wdl") is not None:
            wdl[i] = np.asarray(ply["wdl"], dtype=np.float32) / max(1, sum(ply["wdl"]))
        else:
            wdl[i] = cp_to_wdl(float(pv_cp[i, 0]))

    snaps = game_snapshots(board, moves, visit)
    return GameLabels(snaps, pv_index, pv_cp, wdl)


_FIELDS = ("snaps", "repetitions", "turn", "castling", "ply", "halfmove")


@dataclass
class EngineData:
    """Every labelled position of some engine-games files, compact; `arrays`/`targets` build batches.

    Rows are positions in file and game order; `first[r]` is the row of row r's game start, `game[r]` a global
    game ordinal (files in order), which the held-out split uses so that no game is in both halves.
    """

    snapshots: GameSnapshots
    first: np.ndarray  # (N,) int64
    game: np.ndarray  # (N,) int32
    pv_index: np.ndarray
    pv_cp: np.ndarray
    wdl: np.ndarray
    sources: list[str] = field(default_factory=list)
    skipped: int = 0
    source_rows: list[int] = field(default_factory=list)  # positions of each source, in order (rows are contiguous)

    def __len__(self) -> int:
        return len(self.first)

    @property
    def games(self) -> int:
        return int(self.game.max()) + 1 if len(self.game) else 0

    def arrays(self, rows: np.ndarray, bare: np.ndarray | None = None) -> PositionArrays:
        """Encoder arrays (with 8 steps of history within each game) of `rows`; rows where `bare` is True get no
        history, as a position given by FEN alone is encoded."""
        first = self.first[rows]
        if bare is not None:
            first = np.where(bare, rows, first)
        return with_history(self.snapshots, rows, first)

    def best_index(self, rows: np.ndarray) -> np.ndarray:
        """(B,) int64 policy index of the engine's best move."""
        return self.pv_index[rows, 0].astype(np.int64)

    def policy_target(self, rows: np.ndarray, temperature_cp: float) -> np.ndarray:
        """(B, 4672) float32 policy targets: softmax(score / temperature) over the MultiPV moves (0 → best only)."""
        idx = self.pv_index[rows].astype(np.int64)
        valid = idx >= 0
        out = np.zeros((len(rows), POLICY_SIZE), dtype=np.float32)
        if temperature_cp <= 0:
            out[np.arange(len(rows)), idx[:, 0]] = 1.0
            return out
        cp = self.pv_cp[rows].astype(np.float64)
        logits = np.where(valid, (cp - cp[:, :1]) / temperature_cp, -np.inf)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        r, k = np.nonzero(valid)
        np.add.at(out, (r, idx[r, k]), p[r, k].astype(np.float32))
        return out

    def value_target(self, rows: np.ndarray) -> np.ndarray:
        """(B,) float32 expected outcome P(win) − P(loss) for the side to move, from the engine's WDL."""
        w = self.wdl[rows]
        return (w[:, 0] - w[:, 2]).astype(np.float32)

    def split(self, holdout_every: int) -> tuple[np.ndarray, np.ndarray]:
        """(train rows, held-out rows): every `holdout_every`-th game is held out whole."""
        held = (self.game % holdout_every) == 0 if holdout_every > 0 else np.zeros(len(self), dtype=bool)
        return np.nonzero(~held)[0], np.nonzero(held)[0]


def _labels_of_file(path: str, report: ReadReport, progress: Callable[[int], None] | None = None) -> dict:
    parts: list[GameLabels] = []
    for lineno, game in read_engine_games(path, report):
        if not game["plies"]:
            continue
        try:
            parts.append(label_game(game, source=path, line=lineno))
        except InputError as exc:
            report.read -= 1
            report.record_skip(exc)
            continue
        if progress:
            progress(len(game["plies"]))
    if not parts:
        raise InputError(f"no usable game ({report.summary()})", source=path, line=None)
    sizes = np.array([len(p.pv_cp) for p in parts], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = {f: np.concatenate([getattr(p.snapshots, f) for p in parts]) for f in _FIELDS}
    out["first"] = np.repeat(starts, sizes)
    out["game"] = np.repeat(np.arange(len(parts), dtype=np.int32), sizes)
    out["pv_index"] = np.concatenate([p.pv_index for p in parts])
    out["pv_cp"] = np.concatenate([p.pv_cp for p in parts])
    out["wdl"] = np.concatenate([p.wdl for p in parts])
    out["skipped"] = np.array(report.skipped)
    return out


def _cache_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{CACHE_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def load_file_labels(path: str | Path, cache_dir: Path | None = None,
                     progress: Callable[[int], None] | None = None, report: ReadReport | None = None) -> dict:
    """Arrays of one engine-games file (see `_labels_of_file`), read from / written to `cache_dir` when given."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such engine-games file" if not path.exists() else "not a file", source=str(path),
                         line=None)
    cache = cache_dir / f"{path.name}.{_cache_key(path)}.npz" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    report = report if report is not None else ReadReport(source=str(path))
    data = _labels_of_file(str(path), report, progress)
    if cache is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **data)
        tmp.replace(cache)
    return data


def load_engine_data(paths: Sequence[str | Path], cache_dir: Path | None = None,
                     progress: Callable[[int], None] | None = None, workers: int = 1) -> EngineData:
    """All labelled positions of `paths` (in order), as one `EngineData`; `workers` processes read files at once
    (then without `progress`)."""
    if not paths:
        raise ValueError("no engine-games file given")
    if workers > 1 and len(paths) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(workers, len(paths))) as pool:
            parts = list(pool.map(load_file_labels, paths, [cache_dir] * len(paths)))
    else:
        parts = [load_file_labels(p, cache_dir, progress) for p in paths]
    offsets = np.cumsum([0, *[len(p["first"]) for p in parts]])[:-1]
    game_offsets = np.cumsum([0, *[int(p["game"].max()) + 1 for p in parts]])[:-1]
    snaps = GameSnapshots(*(np.concatenate([p[f] for p in parts]) for f in _FIELDS))
    return EngineData(
        snapshots=snaps,
        first=np.concatenate([p["first"] + o for p, o in zip(parts, offsets, strict=True)]),
        game=np.concatenate([p["game"] + g for p, g in zip(parts, game_offsets, strict=True)]).astype(np.int32),
        pv_index=np.concatenate([p["pv_index"] for p in parts]),
        pv_cp=np.concatenate([p["pv_cp"] for p in parts]),
        wdl=np.concatenate([p["wdl"] for p in parts]),
        sources=[str(p) for p in paths],
        skipped=int(sum(int(p["skipped"]) for p in parts)),
        source_rows=[len(p["first"]) for p in parts],
    )


def append_game(path: str | Path, game: dict) -> None:
    """Append one game to an engine-games file as its own gzip member (a kill loses at most this game)."""
    with gzip.open(path, "at", encoding="utf-8") as fh:
        fh.write(json.dumps(game, separators=(",", ":")) + "\n")
