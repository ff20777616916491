"""Self-play replay buffer on disk: one shard per iteration, read back as a window of the last K iterations.

A shard is a compressed `.npz` of plain arrays (loaded with `allow_pickle=False`, nothing executed), written
atomically (temporary file, then `os.replace`), so a killed job leaves either the whole shard or none:

    bitboards (N, 8, 12) uint64, repetitions (N, 8) int8, turn (N,) bool, castling (N, 4) bool,
    ply (N,) int32, halfmove (N,) int32      the network input of every searched position (`PositionArrays`)
    policy_offsets (N+1,) int64              row i's target is policy_index/prob[offsets[i]:offsets[i+1]]
    policy_index (M,) int32, policy_prob (M,) float32
                                             MCTS visit shares over the moves searched (sum 1), in the policy
                                             format of the network that played (`info["policy_format"]`)
    value (N,) float32                       the game's outcome z from the side to move's view (+1 win)
    root_value (N,) float32                  the search's value of the position, side to move's view
    game_offsets (G+1,) int64                the positions of game g are rows game_offsets[g]:game_offsets[g+1]
    meta                                     JSON text: {"version", "iteration", "info", "games": [...]}

Beside it, `games-XXX.pgn` holds the same games for people. `partial-XXX.npz` (same format) holds the games of an
iteration finished so far, so a killed iteration resumes without replaying them; it is removed when the shard
is written.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import chess
import chess.pgn
import numpy as np

from alphazero_concepts.chess.encoding import HISTORY_STEPS, PositionArrays
from alphazero_concepts.nn.checkpoints import atomic_write_bytes
from alphazero_concepts.training.supervised import concat_arrays, take_arrays

SHARD_VERSION = 1
_ARRAY_FIELDS = ("bitboards", "repetitions", "turn", "castling", "ply", "halfmove")
_SHARD_RE = re.compile(r"^shard-(\d{3,})\.npz$")


class ReplayError(ValueError):
    """A replay shard that cannot be used; the message names the file and what is wrong."""


@dataclass
class ReplayShard:
    """The searched positions of a set of finished self-play games, with their targets (see the module notes).

    `games` holds one dict per game: `start_fen`, `moves` (UCI, all plies from `start_fen`), `opening_plies`
    (how many of `moves` came from the opening and were not searched), `result`, `termination`, and the resign
    bookkeeping written by self-play. Position rows follow the games' order.
    """

    arrays: PositionArrays
    policy_offsets: np.ndarray
    policy_index: np.ndarray
    policy_prob: np.ndarray
    value: np.ndarray
    root_value: np.ndarray
    game_offsets: np.ndarray
    games: list[dict] = field(default_factory=list)
    iteration: int = 0
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.value)

    # ----------------------------------------------------------------------------------------------------------
    @classmethod
    def empty(cls, iteration: int = 0, info: dict | None = None) -> ReplayShard:
        arrays = PositionArrays(np.zeros((0, HISTORY_STEPS, 12), np.uint64), np.zeros((0, HISTORY_STEPS), np.int8),
                                np.zeros(0, bool), np.zeros((0, 4), bool), np.zeros(0, np.int32),
                                np.zeros(0, np.int32))
        return cls(arrays, np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32),
                   np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(1, np.int64), [], iteration,
                   dict(info or {}))

    @classmethod
    def concat(cls, shards: Sequence[ReplayShard], iteration: int = 0, info: dict | None = None) -> ReplayShard:
        """All positions and games of `shards`, in order (offsets renumbered)."""
        if not shards:
            return cls.empty(iteration, info)
        pol_sizes = np.array([len(s.policy_index) for s in shards])
        pos_sizes = np.array([len(s) for s in shards])
        pol_base = np.concatenate([[0], np.cumsum(pol_sizes)[:-1]])
        pos_base = np.concatenate([[0], np.cumsum(pos_sizes)[:-1]])
        policy_offsets = np.concatenate([[0]] + [s.policy_offsets[1:] + b for s, b in zip(shards, pol_base,
                                                                                           strict=True)])
        game_offsets = np.concatenate([[0]] + [s.game_offsets[1:] + b for s, b in zip(shards, pos_base,
                                                                                       strict=True)])
        return cls(
            arrays=concat_arrays([s.arrays for s in shards]),
            policy_offsets=policy_offsets.astype(np.int64),
            policy_index=np.concatenate([s.policy_index for s in shards]).astype(np.int32),
            policy_prob=np.concatenate([s.policy_prob for s in shards]).astype(np.float32),
            value=np.concatenate([s.value for s in shards]).astype(np.float32),
            root_value=np.concatenate([s.root_value for s in shards]).astype(np.float32),
            game_offsets=game_offsets.astype(np.int64),
            games=[g for s in shards for g in s.games],
            iteration=iteration or shards[-1].iteration,
            info=dict(info if info is not None else shards[-1].info),
        )

    # ----------------------------------------------------------------------------------------------------------
    def policy_dense(self, rows: np.ndarray, size: int) -> np.ndarray:
        """(len(rows), size) float32 target distributions of position rows `rows`."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(rows), size), dtype=np.float32)
        starts, ends = self.policy_offsets[rows], self.policy_offsets[rows + 1]
        lengths = ends - starts
        if lengths.sum() == 0:
            return out
        row_of = np.repeat(np.arange(len(rows)), lengths)
        flat = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
        out[row_of, self.policy_index[flat]] = self.policy_prob[flat]
        return out

    def policy_of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(policy indices, probabilities) of position row `row`."""
        s, e = int(self.policy_offsets[row]), int(self.policy_offsets[row + 1])
        return self.policy_index[s:e], self.policy_prob[s:e]

    def rows(self, idx: np.ndarray) -> PositionArrays:
        return take_arrays(self.arrays, np.asarray(idx, dtype=np.int64))

    # ----------------------------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        meta = {"version": SHARD_VERSION, "iteration": self.iteration, "info": self.info, "games": self.games}
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            **{f: getattr(self.arrays, f) for f in _ARRAY_FIELDS},
            policy_offsets=self.policy_offsets.astype(np.int64),
            policy_index=self.policy_index.astype(np.int32),
            policy_prob=self.policy_prob.astype(np.float32),
            value=self.value.astype(np.float32),
            root_value=self.root_value.astype(np.float32),
            game_offsets=self.game_offsets.astype(np.int64),
            meta=np.array(json.dumps(meta)),
        )
        return buf.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write the shard atomically (never half-written)."""
        path = Path(path)
        atomic_write_bytes(path, self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReplayShard:
        """Read and check a shard; ReplayError naming the file (and the field) when it is unusable."""
        path = Path(path)
        if not path.is_file():
            raise ReplayError(f"{path}: no such replay shard")
        try:
            with np.load(path, allow_pickle=False) as data:
                content = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise ReplayError(f"{path}: truncated or corrupt replay shard ({type(exc).__name__}: {exc})") from exc
        need = (*_ARRAY_FIELDS, "policy_offsets", "policy_index", "policy_prob", "value", "root_value",
                "game_offsets", "meta")
        missing = [k for k in need if k not in content]
        if missing:
            raise ReplayError(f"{path}: not a replay shard (missing {', '.join(missing)})")
        try:
            meta = json.loads(str(content["meta"]))
        except json.JSONDecodeError as exc:
            raise ReplayError(f"{path}: field 'meta' is not valid JSON ({exc.msg})") from exc
        if meta.get("version") != SHARD_VERSION:
            raise ReplayError(f"{path}: replay shard version {meta.get('version')!r}, this code reads {SHARD_VERSION}")
        shard = cls(
            arrays=PositionArrays(*(content[f] for f in _ARRAY_FIELDS)),
            policy_offsets=content["policy_offsets"], policy_index=content["policy_index"],
            policy_prob=content["policy_prob"], value=content["value"], root_value=content["root_value"],
            game_offsets=content["game_offsets"], games=list(meta.get("games", [])),
            iteration=int(meta.get("iteration", 0)), info=dict(meta.get("info", {})),
        )
        problem = shard.check()
        if problem:
            raise ReplayError(f"{path}: {problem}")
        return shard

    def check(self) -> str | None:
        """What is inconsistent in this shard (field named), or None when it is sound."""
        n = len(self.value)
        for f in _ARRAY_FIELDS:
            if len(getattr(self.arrays, f)) != n:
                return f"field '{f}' has {len(getattr(self.arrays, f))} rows, 'value' has {n}"
        if self.arrays.bitboards.shape[1:] != (HISTORY_STEPS, 12):
            return f"field 'bitboards' has shape {self.arrays.bitboards.shape}, expected (N, {HISTORY_STEPS}, 12)"
        for f in ("root_value",):
            if len(getattr(self, f)) != n:
                return f"field '{f}' has {len(getattr(self, f))} rows, 'value' has {n}"
        off = self.policy_offsets
        if len(off) != n + 1 or off[0] != 0 or off[-1] != len(self.policy_index) or np.any(np.diff(off) < 0):
            return "field 'policy_offsets' does not index 'policy_index'"
        if len(self.policy_prob) != len(self.policy_index):
            return "fields 'policy_index' and 'policy_prob' differ in length"
        size = self.info.get("policy_size")
        if len(self.policy_index) and (self.policy_index.min() < 0 or (size and self.policy_index.max() >= size)):
            return "field 'policy_index' holds indices outside the policy"
        if n:
            sums = np.add.reduceat(self.policy_prob.astype(np.float64), off[:-1]) if len(self.policy_prob) else \
                np.zeros(n)
            sums[np.diff(off) == 0] = 0.0
            bad = np.nonzero(np.abs(sums - 1.0) > 1e-3)[0]
            if len(bad):
                return f"field 'policy_prob': row {int(bad[0])} sums to {sums[bad[0]]:.4f}, not 1"
        if np.any(np.abs(self.value) > 1.0 + 1e-6):
            return "field 'value' holds outcomes outside [-1, 1]"
        g = self.game_offsets
        if len(g) != len(self.games) + 1 or g[0] != 0 or g[-1] != n or np.any(np.diff(g) < 0):
            return "field 'game_offsets' does not match the games in 'meta'"
        return None

    # ----------------------------------------------------------------------------------------------------------
    def to_pgn(self, event: str = "alphazero-concepts self-play") -> str:
        """The games as PGN text (headers: result, termination, opening, resign bookkeeping)."""
        out = io.StringIO()
        for g_index, g in enumerate(self.games):
            board = chess.Board(g["start_fen"])
            game = chess.pgn.Game()
            if g["start_fen"] != chess.STARTING_FEN:
                game.setup(board)
            game.headers["Event"] = event
            game.headers["Round"] = f"{self.iteration}.{g.get('index', g_index) + 1}"
            game.headers["White"] = game.headers["Black"] = str(self.info.get("network", "?"))
            game.headers["Result"] = g["result"]
            game.headers["Termination"] = g["termination"]
            if g.get("opening"):
                game.headers["Opening"] = str(g["opening"])
            if not g.get("resign_allowed", True):
                game.headers["NoResign"] = "1"
            node: chess.pgn.GameNode = game
            for uci in g["moves"]:
                node = node.add_variation(chess.Move.from_uci(uci))
            print(game, file=out, end="\n\n")
        return out.getvalue()


class ReplayBuffer:
    """A directory of shards `shard-XXX.npz` (one per self-play iteration), their PGNs and partial iterations."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def shard_path(self, iteration: int) -> Path:
        return self.directory / f"shard-{iteration:03d}.npz"

    def pgn_path(self, iteration: int) -> Path:
        return self.directory / f"games-{iteration:03d}.pgn"

    def partial_path(self, iteration: int) -> Path:
        return self.directory / f"partial-{iteration:03d}.npz"

    def iterations(self) -> list[int]:
        """Iterations with a shard file, ascending (files are not opened)."""
        found = (_SHARD_RE.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def has(self, iteration: int) -> bool:
        return self.shard_path(iteration).is_file()

    def write(self, shard: ReplayShard) -> Path:
        """Write the iteration's shard and PGN atomically; the iteration's partial file is then removed."""
        atomic_write_bytes(self.pgn_path(shard.iteration), shard.to_pgn().encode())
        path = shard.save(self.shard_path(shard.iteration))
        self.partial_path(shard.iteration).unlink(missing_ok=True)
        return path

    def read(self, iteration: int) -> ReplayShard:
        return ReplayShard.load(self.shard_path(iteration))

    def write_partial(self, shard: ReplayShard) -> Path:
        return shard.save(self.partial_path(shard.iteration))

    def read_partial(self, iteration: int) -> ReplayShard | None:
        """Games of an unfinished iteration saved so far, or None (also when the file is unusable: it is then
        renamed `*.corrupt` and its games are played again)."""
        path = self.partial_path(iteration)
        if not path.is_file():
            return None
        try:
            return ReplayShard.load(path)
        except ReplayError:
            path.replace(path.with_suffix(".corrupt"))
            return None

    def window(self, last: int, k: int) -> tuple[ReplayShard, list[str]]:
        """Positions of the shards of iterations last-k+1 … last that exist, concatenated, and the problems met.

        An unreadable shard is left out and its problem (naming the file) is returned, so training goes on with
        the rest; the caller reports it.
        """
        shards, problems = [], []
        for it in range(max(1, last - k + 1), last + 1):
            if not self.has(it):
                continue
            try:
                shards.append(self.read(it))
            except ReplayError as exc:
                problems.append(str(exc))
        return ReplayShard.concat(shards, iteration=last), problems
