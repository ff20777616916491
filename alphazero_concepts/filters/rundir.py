"""Filter results in a run directory: append-only JSONL logs (resumable) and whole JSON files (atomic).

Concepts are read with `ConceptSet.load` (`alphazero_concepts.concepts.conceptset`); the run directory's file
names come from `RunDir` (`alphazero_concepts.core.rundir`).

Results are JSONL files (`teachability.jsonl`, `novelty.jsonl`) appended one record per concept, flushed and
fsynced, so a killed job loses at most the record being written; `ResultLog` drops a cut-off last line when it
reopens the file and reports which ids are done, so a re-run skips them. `write_json` replaces whole files
atomically (funnel.json, summaries).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alphazero_concepts.concepts.conceptset import Concept
from alphazero_concepts.core.files import atomic_write_bytes, json_default
from alphazero_concepts.core.rundir import RunDir

ORDERS = ("teachability-first", "novelty-first", "independent")


def safe_layer_name(layer: str) -> str:
    """A file-name-safe form of a layer name ("block5.conv2" stays, "/" and spaces become "_")."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in layer)


def count_roots(run: str | Path, concepts: Sequence[Concept]) -> int:
    """Roots of the run: lines of roots.jsonl (else rollouts.jsonl), else distinct roots among the concepts."""
    rd = RunDir(run)
    for path in (rd.roots, rd.rollouts):
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
        line = json.dumps(record, default=json_default) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self.done[str(record["id"])] = record

    def compact(self) -> None:
        """Rewrite the file atomically with one record per id, sorted by id."""
        text = "".join(json.dumps(self.done[k], default=json_default) + "\n" for k in sorted(self.done))
        atomic_write_bytes(self.path, text.encode())
