"""Files written whole or not at all, and JSON / JSON-lines in one spelling for every stage.

Every artifact of a run is written through `atomic_write_bytes` (a temporary file in the same directory and a
rename), so a killed process leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write `data` to `path` via a temporary file in the same directory and a rename (never half-written).

    `fsync=False` skips forcing the bytes to disk (milliseconds a call): still atomic for a killed process, for
    files rewritten often whose durability is handled elsewhere (the activation store's progress file).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_default(obj: object) -> object:
    """`json.dumps(default=...)` for numpy scalars and arrays, tuples and paths (what artifacts hold)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | Path, obj: object) -> Path:
    """Replace `path` atomically with `obj` as indented JSON (numpy values allowed)."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=json_default) + "\n").encode())
    return path


def write_jsonl(path: str | Path, records: Iterable[Any], *, fsync: bool = True) -> Path:
    """Replace `path` atomically with one JSON record a line."""
    path = Path(path)
    text = "".join(json.dumps(r, default=json_default) + "\n" for r in records)
    atomic_write_bytes(path, text.encode(), fsync=fsync)
    return path


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None when it is missing or unreadable (a marker that is not there yet)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_jsonl(path: str | Path) -> list[dict]:
    """Every record of a JSON-lines file (blank lines skipped); errors propagate (the caller names the stage)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_npz(path: str | Path, header: dict, arrays: dict[str, np.ndarray], *, compressed: bool = False) -> Path:
    """Replace `path` atomically with `arrays` and a JSON `header` (the format's version and metadata) in one
    `.npz`; the formats that keep arrays with metadata (position samples, novelty bases) share this layout."""
    import io

    buf = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buf, **arrays, header=np.array(json.dumps(header)))
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def read_npz(path: str | Path, names: Iterable[str]) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, {name: array}) of a file written by `write_npz`; OSError, KeyError or ValueError when `path` is
    not one (the caller names the format in its error)."""
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["header"])), {name: data[name] for name in names}
