"""The activation store: float16 memory-mapped arrays, one per layer, one row per position, with a JSONL index.

    <dir>/index.jsonl        one record per row: fen, start_fen, moves (UCI), source, game, ply, turn
    <dir>/<layer>.npy        (N, d) float16, numpy .npy format (opened with mmap, never loaded whole)
    <dir>/progress.json      rows finished, layers, dimensions, model sha256: the resume point

Collection streams batches through `HookedNet.iter_latents` and writes each batch's rows before advancing the progress
file (atomically), so memory does not grow with N and a killed collection resumes at the first unfinished batch
without redoing finished rows. Rows written to the memory map are in the page cache at once (a killed process
loses none of them); they are synced to disk every `SYNC_EVERY_S` seconds and at the end, each time before a
progress file that is itself forced to disk (in between, the progress file is replaced atomically but not forced:
an fsync per batch cost as much as a tenth of the batch's forward pass). The index is written by
a background thread while the first batches run through the network (FEN strings are slow to make: `fast_fens`
builds a chunk's at once), into a temporary file renamed into place when complete; a resumed collection rewrites
a missing index. Positions given as `Position` records (start FEN + moves, e.g. from a PGN) become boards through
`boards_of`, which pushes one move per position when they come in game order instead of replaying each game
(3.7 times the collection rate on master-game positions).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import chess
import numpy as np
import torch

from alphazero_concepts.chess.positions import Position, boards_of, fast_fen, fast_fens
from alphazero_concepts.core.files import atomic_write_bytes
from alphazero_concepts.nn.network import HookedNet

PROGRESS = "progress.json"
INDEX = "index.jsonl"
SYNC_EVERY_S = 30.0


class StoreError(ValueError):
    """An activation store that cannot be read or resumed; the message names the file."""


def _layer_file(directory: Path, layer: str) -> Path:
    return directory / f"{layer}.npy"


_UCI_FROM_TO = [a + b for a in chess.SQUARE_NAMES for b in chess.SQUARE_NAMES]  # index from * 64 + to
INDEX_CHUNK = 64  # records made together (their FENs in one numpy pass); the GIL is given up between chunks


def _uci_moves(board: chess.Board) -> list[str]:
    """``[m.uci() for m in board.move_stack]``, a table lookup for the plain moves (no promotion, null or drop)."""
    return [_UCI_FROM_TO[m.from_square * 64 + m.to_square] if m.promotion is None and m.from_square != m.to_square
            else m.uci() for m in board.move_stack]


def _start_fen(board: chess.Board, fen: str, roots: dict[tuple, str]) -> str:
    """FEN of the position before the board's first move (`fen` itself when it has none), cached in `roots`:
    the positions of one store mostly share a few start positions, and a root board is slow to rebuild."""
    if not board.move_stack:
        return fen
    if type(board) is not chess.Board:  # variants keep more state than the key holds (pockets, check counts)
        return board.root().fen()
    st = board._stack[0]  # python-chess's saved state before the first move (what `root()` restores)
    key = (st.pawns, st.knights, st.bishops, st.rooks, st.queens, st.kings, st.occupied_w, st.occupied_b, st.turn,
           st.castling_rights, st.ep_square, st.halfmove_clock, st.fullmove_number, board.chess960)
    start = roots.get(key)
    if start is None:
        start = roots[key] = fast_fen(board.root())
    return start


def _index_lines(positions: Sequence[Position | chess.Board], boards: Sequence[chess.Board],
                 roots: dict[tuple, str]) -> list[str]:
    """The JSON index line of each position, given its board (see the module docstring for the keys)."""
    lines = []
    for p, board, fen in zip(positions, boards, fast_fens(boards), strict=True):
        turn = "w" if board.turn == chess.WHITE else "b"
        if isinstance(p, chess.Board):  # FENs and UCI moves need no JSON escaping: the line is written directly
            ucis = _uci_moves(board)
            moves = '"' + '", "'.join(ucis) + '"' if ucis else ""
            lines.append(f'{{"start_fen": "{_start_fen(board, fen, roots)}", "moves": [{moves}], '
                         f'"source": "", "fen": "{fen}", "turn": "{turn}"}}')
        else:
            lines.append(json.dumps({**p.to_dict(), "fen": fen, "turn": turn}))
    return lines


def _write_index(path: Path, positions: Sequence[Position | chess.Board]) -> None:
    """One JSON record per position, into a temporary file renamed to `path` when every record is written.

    Runs beside the network loop: it gives up the GIL after each chunk of records (`time.sleep(0)`), so that the
    loop's Python between operator calls does not wait for it (a thread holding the GIL keeps it up to 5 ms).
    """
    tmp = path.with_suffix(".jsonl.tmp")
    roots: dict[tuple, str] = {}
    boards = boards_of(positions)
    with open(tmp, "w") as fh:
        for lo in range(0, len(positions), INDEX_CHUNK):
            chunk = positions[lo : lo + INDEX_CHUNK]
            lines = _index_lines(chunk, list(itertools.islice(boards, len(chunk))), roots)
            fh.write("".join(line + "\n" for line in lines))
            time.sleep(0)
    tmp.replace(path)


class ActivationStore:
    """Read side of a finished (or partial) collection: numpy views by layer and row selection."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        path = self.directory / PROGRESS
        if not path.is_file():
            raise StoreError(f"{self.directory}: not an activation store (no {PROGRESS})")
        try:
            self.meta = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
        self.layers: list[str] = list(self.meta["layers"])
        self.n = int(self.meta["n"])
        self.rows_done = int(self.meta["rows_done"])
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def complete(self) -> bool:
        return self.rows_done >= self.n

    def dim(self, layer: str) -> int:
        return int(self.meta["dims"][layer])

    def array(self, layer: str) -> np.ndarray:
        """The whole (N, d) float16 memory map of `layer` (rows past `rows_done` are not yet written)."""
        if layer not in self.layers:
            raise StoreError(f"{self.directory}: no layer {layer!r} (have {', '.join(self.layers)})")
        if layer not in self._arrays:
            self._arrays[layer] = np.load(_layer_file(self.directory, layer), mmap_mode="r")
        return self._arrays[layer]

    def read(self, layer: str, rows: Sequence[int] | np.ndarray | slice | None = None,
             dtype: type = np.float32) -> np.ndarray:
        """Rows of `layer` as a (k, d) array (float32 by default); only finished rows may be read."""
        arr = self.array(layer)
        if rows is None:
            rows = slice(0, self.rows_done)
        if not isinstance(rows, slice):
            rows = np.asarray(rows, dtype=np.int64)
            if rows.size and (rows.min() < 0 or rows.max() >= self.rows_done):
                raise StoreError(f"{self.directory}: rows outside the {self.rows_done} finished rows")
        return np.asarray(arr[rows], dtype=dtype)

    def index(self) -> list[dict]:
        """The index records, one per row."""
        with open(self.directory / INDEX) as fh:
            return [json.loads(line) for line in fh]


def latents(net: HookedNet, boards: Sequence[chess.Board], layer: str) -> np.ndarray:
    """(len(boards), d) float32 activations of one layer for a few boards in one pass (e.g. one rollout line)."""
    return net.latents(boards, [layer], batch_size=max(1, len(boards)))[layer]


def fill_rows(net: HookedNet, positions: Sequence[Position | chess.Board], layers: Sequence[str],
              arrays: dict[str, np.ndarray], *, start: int = 0, batch_size: int = 256) -> Iterator[int]:
    """Write the float16 rows of `positions[start:]` into `arrays` ({layer: (N, d) float16}), `batch_size` at a
    time in eval mode; yields the rows done after each batch.

    The collection driver's work, shared by `collect` (a memory-mapped store) and the sharded collection (one
    shard's arrays): the same batches give the same rows on every path.
    """
    net.eval()
    with torch.inference_mode():  # game-ordered positions cost one move pushed each (`boards_of`), no replays
        for batch in net.iter_latents(positions[start:], layers, batch_size):
            lo, hi = start + int(batch.rows[0]), start + int(batch.rows[-1]) + 1
            for name in layers:  # float32 activations to float16 rows, in one pass on a CPU
                acts = batch.acts[name]
                acts = acts if acts.device.type == "cpu" else acts.half()  # GPU: half the bytes
                torch.from_numpy(arrays[name][lo:hi]).view(acts.shape).copy_(acts)
            yield hi


def collect(
    net: HookedNet,
    positions: Sequence[Position | chess.Board],
    layers: Sequence[str],
    out: str | Path,
    *,
    batch_size: int = 256,
    model_id: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> ActivationStore:
    """Capture `layers` for every position into the store at `out` (resuming a partial one)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layers = list(layers)
    unknown = [name for name in layers if name not in net.layer_names]
    if unknown:
        raise StoreError(f"unknown layers {unknown}; the network has: {', '.join(net.layer_names)}")
    dims = {name: int(np.prod(net.layer_shape(name))) for name in layers}
    n = len(positions)
    progress_path = out / PROGRESS
    meta = {"n": n, "layers": layers, "dims": dims, "model": model_id, "rows_done": 0, "dtype": "float16"}
    arrays: dict[str, np.ndarray] = {}
    if progress_path.is_file():
        old = json.loads(progress_path.read_text())
        same = {k: old.get(k) for k in ("n", "layers", "dims", "model")} == \
               {k: meta[k] for k in ("n", "layers", "dims", "model")}
        if not same:
            raise StoreError(f"{progress_path}: an existing store with other positions, layers or model; "
                             "use a new directory")
        meta["rows_done"] = int(old["rows_done"])
        for name in layers:
            arrays[name] = np.load(_layer_file(out, name), mmap_mode="r+")
    else:
        for name in layers:
            arrays[name] = np.lib.format.open_memmap(_layer_file(out, name), mode="w+", dtype=np.float16,
                                                     shape=(n, dims[name]))
        atomic_write_bytes(progress_path, json.dumps(meta).encode())
    index_writer = None
    if not (out / INDEX).is_file():
        index_writer = threading.Thread(target=_write_index, args=(out / INDEX, positions), daemon=True,
                                        name="activation-index")
        index_writer.start()
    start = meta["rows_done"]
    synced = time.monotonic()
    for hi in fill_rows(net, positions, layers, arrays, start=start, batch_size=batch_size):
            meta["rows_done"] = hi
            durable = time.monotonic() - synced > SYNC_EVERY_S
            if durable:  # rows to disk first, then the progress that counts them
                for name in layers:
                    arrays[name].flush()
                synced = time.monotonic()
            atomic_write_bytes(progress_path, json.dumps(meta).encode(), fsync=durable)
            if progress:
                progress(hi, n)
    for name in layers:
        arrays[name].flush()
    atomic_write_bytes(progress_path, json.dumps(meta).encode())
    if index_writer is not None:
        index_writer.join()
        if not (out / INDEX).is_file():
            raise StoreError(f"{out / INDEX}: the index could not be written (see the error above)")
    return ActivationStore(out)
