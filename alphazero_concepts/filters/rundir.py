"""Run-directory input and output for the filters: mined concepts in, filter results out (atomic, resumable).

Concepts are read from any of the layouts the mining stage writes:

    RUN/concepts.jsonl + RUN/vectors.npz                    (`azc mine --out RUN`)
    RUN/concepts/concepts.jsonl + RUN/concepts/vectors.npz  (DESIGN.md)
    RUN/concepts/<layer>/concepts.jsonl + vectors.npz       (one directory per layer)

Every record has an `id` (e.g. "block5/root00012") and a `layer` (taken from the id's prefix when missing); the
vector is `vectors.npz[id]`. A record without a vector (a refused or failed solve) is a mined but unsolved
concept. Bad lines are skipped and counted (`ReadReport`), with the file and line named.

Results are JSONL files (`teachability.jsonl`, `novelty.jsonl`) appended one record per concept, flushed and
fsynced, so a killed job loses at most the record being written; `ResultLog` drops a cut-off last line when it
reopens the file and reports which ids are done, so a re-run skips them. `write_json` replaces whole files
atomically (funnel.json, summaries).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alphazero_concepts.chess.positions import InputError, ReadReport
from alphazero_concepts.nn.checkpoints import atomic_write_bytes

TEACHABILITY = "teachability.jsonl"
NOVELTY = "novelty.jsonl"
FUNNEL = "funnel.json"
POOL = "pool.npz"
POOL_TOP1 = "pool_top1.npz"
BASIS_DIR = "novelty_basis"
FIGURES = "figures"
ORDERS = ("teachability-first", "novelty-first", "independent")


def safe_layer_name(layer: str) -> str:
    """A file-name-safe form of a layer name ("block5.conv2" stays, "/" and spaces become "_")."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in layer)


@dataclass
class ConceptEntry:
    """One mined concept: its record (as mined), its vector (None when unsolved) and where it was read."""

    id: str
    layer: str
    record: dict
    vector: np.ndarray | None
    source: str = ""

    @property
    def solved(self) -> bool:
        """A non-zero vector exists (mining never returns v = 0; this guards against other writers)."""
        return self.vector is not None and bool(np.any(self.vector != 0))

    @property
    def nonzeros(self) -> int:
        return 0 if self.vector is None else int(np.count_nonzero(self.vector))

    @property
    def kind(self) -> str:
        """"static", "dynamic" (the default of `azc mine`) or "control"; read from the record or its `extra`."""
        extra = self.record.get("extra") if isinstance(self.record.get("extra"), dict) else {}
        return str(self.record.get("kind") or extra.get("kind") or "dynamic")


def concept_files(run: str | Path) -> list[tuple[Path, Path]]:
    """(concepts.jsonl, vectors.npz) pairs of a run directory, in the order of the module notes."""
    run = Path(run)
    out = []
    for jsonl in [run / "concepts.jsonl", run / "concepts" / "concepts.jsonl",
                  *sorted((run / "concepts").glob("*/concepts.jsonl"))]:
        if jsonl.is_file():
            out.append((jsonl, jsonl.with_name("vectors.npz")))
    return out


def load_concepts(run: str | Path, report: ReadReport | None = None) -> list[ConceptEntry]:
    """Every concept of the run (all layouts), in file order; bad records are skipped into `report`."""
    files = concept_files(run)
    if not files:
        raise InputError("no concepts.jsonl (expected RUN/concepts.jsonl or RUN/concepts/[<layer>/]concepts.jsonl;"
                         " run `azc mine --out RUN` first)", source=str(run), line=None)
    report = report if report is not None else ReadReport(str(run))
    out: list[ConceptEntry] = []
    seen: set[str] = set()
    for jsonl, npz in files:
        vectors: dict[str, np.ndarray] = {}
        if npz.is_file():
            try:
                with np.load(npz, allow_pickle=False) as data:
                    vectors = {k: np.asarray(data[k], dtype=np.float32).ravel() for k in data.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                report.record_skip(InputError(f"unreadable vectors file: {exc or type(exc).__name__}",
                                              source=str(npz), line=None))
        with open(jsonl, "rb") as fh:
            for lineno, data in enumerate(fh, 1):
                if not data.strip():
                    continue
                try:
                    rec = json.loads(data.decode("utf-8"))
                    cid = str(rec["id"])
                except UnicodeDecodeError:
                    report.record_skip(InputError("not UTF-8 text", source=str(jsonl), line=lineno))
                    continue
                except (json.JSONDecodeError, KeyError, TypeError, RecursionError) as exc:
                    what = "invalid JSON" if isinstance(exc, json.JSONDecodeError) else "a record without 'id'"
                    report.record_skip(InputError(f"{what}: {exc}", source=str(jsonl), line=lineno))
                    continue
                if cid in seen:
                    report.record_skip(InputError(f"duplicate concept id {cid!r}", source=str(jsonl), line=lineno))
                    continue
                layer = str(rec.get("layer") or cid.split("/", 1)[0])
                seen.add(cid)
                report.read += 1
                out.append(ConceptEntry(cid, layer, rec, vectors.get(cid), f"{jsonl}:{lineno}"))
    return out


def count_roots(run: str | Path, concepts: list[ConceptEntry]) -> int:
    """Roots of the run: lines of roots.jsonl (else rollouts.jsonl), else distinct roots among the concepts."""
    run = Path(run)
    for name in ("roots.jsonl", "rollouts.jsonl"):
        path = run / name
        if path.is_file():
            with open(path, encoding="utf-8") as fh:
                return sum(1 for line in fh if line.strip())
    return len({c.record.get("root", c.id) for c in concepts})


# --------------------------------------------------------------------------------------------------------------
# Results


def _read_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                return  # a cut-off last record (killed while writing): it will be redone
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def read_results(path: str | Path) -> dict[str, dict]:
    """Records of a results file by id (the last record of an id wins); {} when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    return {str(rec["id"]): rec for rec in _read_jsonl(path) if "id" in rec}


@dataclass
class ResultLog:
    """An append-only JSONL results file: `done` holds the ids already written (skip them on a re-run)."""

    path: Path
    done: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):  # repair: drop the cut-off last line before appending
                atomic_write_bytes(self.path, data[: data.rfind(b"\n") + 1])
        self.done = read_results(self.path)

    def add(self, record: dict) -> None:
        """Append one record (flushed and fsynced: a killed job keeps every finished record)."""
        line = json.dumps(record, default=_json_default) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self.done[str(record["id"])] = record

    def compact(self) -> None:
        """Rewrite the file atomically with one record per id, sorted by id."""
        text = "".join(json.dumps(self.done[k], default=_json_default) + "\n" for k in sorted(self.done))
        atomic_write_bytes(self.path, text.encode())


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | Path, obj: object) -> Path:
    """Replace `path` atomically with `obj` as indented JSON."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())
    return path
