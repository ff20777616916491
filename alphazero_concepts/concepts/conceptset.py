"""The concept format: one `Concept` type and `ConceptSet.load/save`, used by every stage that reads concepts.

A concept directory holds

    concepts.jsonl   one record per mined concept: {"id", "layer", "root", "status", ...}; an unsolved concept
                     (a refused or failed solve, a root without sub-par lines) has a record and no vector
    vectors.npz      one float32 vector per solved concept, keyed by its id

Ids are `<layer>/<name>` (e.g. "block5/root00012"); a record without `layer` takes its id's prefix. A run
directory keeps its concept set in RUN/concepts/ (`RunDir.concepts`); readers also accept the directory itself,
and one directory per layer (RUN/concepts/<layer>/).

Callers differ in what they need, and say so with `solved_only`:

- `ConceptSet.load(run)` (the filters, the funnel, the report): every concept, solved or not, from every layout;
  a bad record is skipped into a `ReadReport` (file and line named) so one bad line does not stop a stage.
- `ConceptSet.load(run, solved_only=True, ids=...)` (scores, annotation, steering): the solved concepts, or the
  ones named by `ids` in that order, from one directory; the first bad record raises `InputError`, and a named
  concept without a vector is an error naming its status.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alphazero_concepts.chess.positions import InputError, ReadReport
from alphazero_concepts.core.files import atomic_write_bytes, write_jsonl
from alphazero_concepts.core.rundir import CONCEPTS, VECTORS, RunDir


@dataclass
class Concept:
    """One concept: its record (as mined), its vector (None when unsolved) and where it was read."""

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

    @property
    def short_id(self) -> str:
        """The id without its layer prefix when it has one (``block3/root00012`` → ``root00012``)."""
        return self.id.split("/", 1)[1] if self.id.startswith(f"{self.layer}/") else self.id


def _read_vectors(npz: Path, report: ReadReport | None) -> dict[str, np.ndarray]:
    try:
        with np.load(npz, allow_pickle=False) as data:
            return {k: np.asarray(data[k], dtype=np.float32).ravel() for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if report is None:
            raise InputError(f"unreadable vectors: {exc}", source=str(npz), line=None) from None
        report.record_skip(InputError(f"unreadable vectors file: {exc or type(exc).__name__}",
                                      source=str(npz), line=None))
        return {}


def _read_records(jsonl: Path, report: ReadReport | None) -> Iterator[tuple[int, dict]]:
    """(line, record) of a concepts.jsonl; bad lines raise InputError (`report` None) or are skipped into it."""
    with open(jsonl, "rb") as fh:
        for lineno, data in enumerate(fh, 1):
            if not data.strip():
                continue
            try:
                rec = json.loads(data.decode("utf-8"))
                if not isinstance(rec, dict) or "id" not in rec:
                    raise KeyError("id")
            except UnicodeDecodeError:
                problem = InputError("not UTF-8 text", source=str(jsonl), line=lineno)
            except (json.JSONDecodeError, KeyError, TypeError, RecursionError) as exc:
                what = (f"invalid JSON: {exc}" if isinstance(exc, json.JSONDecodeError)
                        else f"a concept record needs 'id': {exc}")
                problem = InputError(what, source=str(jsonl), line=lineno)
            else:
                yield lineno, rec
                continue
            if report is None:
                raise problem
            report.record_skip(problem)


def _concept(rec: dict, vectors: dict[str, np.ndarray], where: str) -> Concept:
    cid = str(rec["id"])
    return Concept(cid, str(rec.get("layer") or cid.split("/", 1)[0]), rec, vectors.get(cid), where)


class ConceptSet(Sequence[Concept]):
    """An ordered set of concepts (file order, or the order asked for), with lookup by id."""

    def __init__(self, concepts: Iterable[Concept] = ()) -> None:
        self._items = list(concepts)
        self._by_id = {c.id: c for c in self._items}

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, cid: object) -> bool:
        return cid in self._by_id

    def get(self, cid: str) -> Concept | None:
        return self._by_id.get(cid)

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self._items]

    def solved(self) -> ConceptSet:
        return ConceptSet(c for c in self._items if c.solved)

    # ---------------------------------------------------------------------------------------------------------
    # reading

    @classmethod
    def load(cls, run: str | Path, *, solved_only: bool = False, ids: Sequence[str] | None = None,
             report: ReadReport | None = None) -> ConceptSet:
        """The concepts of a run or concept directory; `solved_only` chooses the reading (see the module notes)."""
        if solved_only:
            return cls._load_solved(Path(run), ids)
        return cls._load_all(Path(run), report)

    @classmethod
    def _load_all(cls, run: Path, report: ReadReport | None) -> ConceptSet:
        dirs = RunDir(run).concept_dirs()
        if not dirs:
            raise InputError(f"no {CONCEPTS} (expected RUN/{CONCEPTS} or RUN/concepts/[<layer>/]{CONCEPTS};"
                             " run `azc mine --out RUN` first)", source=str(run), line=None)
        report = report if report is not None else ReadReport(str(run))
        out: list[Concept] = []
        seen: set[str] = set()
        for directory in dirs:
            jsonl, npz = directory / CONCEPTS, directory / VECTORS
            vectors = _read_vectors(npz, report) if npz.is_file() else {}
            for lineno, rec in _read_records(jsonl, report):
                cid = str(rec["id"])
                if cid in seen:
                    report.record_skip(InputError(f"duplicate concept id {cid!r}", source=str(jsonl), line=lineno))
                    continue
                seen.add(cid)
                report.read += 1
                out.append(_concept(rec, vectors, f"{jsonl}:{lineno}"))
        return cls(out)

    @classmethod
    def _load_solved(cls, run: Path, ids: Sequence[str] | None) -> ConceptSet:
        directory = concept_directory(run)
        jsonl, npz = directory / CONCEPTS, directory / VECTORS
        if not npz.is_file():
            raise InputError(f"missing {VECTORS} next to {CONCEPTS}", source=str(directory), line=None)
        vectors = _read_vectors(npz, None)
        records = {str(rec["id"]): (lineno, rec) for lineno, rec in _read_records(jsonl, None)}
        if ids:
            unknown = [i for i in ids if i not in records]
            if unknown:
                known = [k for k in records if k in vectors]
                raise InputError(f"unknown concept id(s) {unknown}; mined ids include {known[:5]}",
                                 source=str(jsonl), line=None)
            chosen = list(ids)
        else:
            chosen = [k for k in records if k in vectors]
        out = []
        for cid in chosen:
            lineno, rec = records[cid]
            if cid not in vectors:
                raise InputError(f"concept {cid!r} has no vector in {VECTORS} ({rec.get('status', 'not mined')})",
                                 source=str(jsonl), line=lineno)
            out.append(_concept(rec, vectors, f"{jsonl}:{lineno}"))
        return cls(out)

    # ---------------------------------------------------------------------------------------------------------
    # writing

    @staticmethod
    def save(directory: str | Path, records: Sequence[dict], vectors: dict[str, np.ndarray]) -> Path:
        """Write `directory`/concepts.jsonl and vectors.npz atomically (vectors first: a set is readable only
        once its records exist). `records` in order, unsolved ones included; `vectors` keyed by id."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: np.asarray(v, dtype=np.float32) for k, v in vectors.items()})
        atomic_write_bytes(directory / VECTORS, buf.getvalue())
        write_jsonl(directory / CONCEPTS, records)
        return directory


def concept_directory(run: str | Path) -> Path:
    """The directory holding concepts.jsonl: `run` itself or `run/concepts`; `InputError` when neither."""
    run = Path(run)
    for candidate in (run, RunDir(run).concepts):
        if (candidate / CONCEPTS).is_file():
            return candidate
    raise InputError(f"no {CONCEPTS} here or in its concepts/ folder (write one with `azc mine`)",
                     source=str(run), line=None)
