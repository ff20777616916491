"""What a small run produces for a fixed seed, as plain JSON: the fixture `tests/data/same_seed.json` and its check.

The fixture was written by the code before the stage refactor (issue #21); `test_pipeline.py` runs the tiny
pipeline and the `azc roots/rollouts/mine` commands again and compares with it, so a refactor that changes
which concepts or puzzles a seed gives fails. Regenerate (only for an intended change of results) with

    OMP_NUM_THREADS=1 python tests/same_seed.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "data" / "same_seed.json"
TIMING = ("solve_time_s", "seconds", "created", "finished", "started")
DIGITS = 4  # vectors and scores are compared rounded (solver noise well below this)
PACKAGE = "<package>"  # the installed package's directory in paths (bundled data files), which differs per clone


def _round(obj: object) -> object:
    if isinstance(obj, float):
        return round(obj, DIGITS)
    if isinstance(obj, str):
        import alphazero_concepts

        return obj.replace(str(Path(alphazero_concepts.__file__).resolve().parent), PACKAGE)
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_round(v) for v in obj]
    return obj


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def concepts_snapshot(directory: Path) -> dict:
    """concepts.jsonl (without timing) and each vector's non-zero entries, rounded."""
    records = [_round(r) for r in _jsonl(directory / "concepts.jsonl")]
    vectors = {}
    with np.load(directory / "vectors.npz") as data:
        for key in sorted(data.files):
            v = np.asarray(data[key], dtype=np.float64)
            nz = np.flatnonzero(np.round(v, DIGITS))
            vectors[key] = {"dim": int(v.size), "index": nz.tolist(), "value": [round(float(v[i]), DIGITS)
                                                                              for i in nz]}
    return {"records": records, "vectors": vectors}


def run_snapshot(run: Path) -> dict:
    """Roots, rollouts, concepts, kept concepts, prototypes and puzzles of a finished pipeline run."""
    candidates = _jsonl(run / "puzzles" / "candidates.jsonl")
    summary = json.loads((run / "puzzles" / "summary.json").read_text())
    return {
        "roots": _round(_jsonl(run / "roots.jsonl")),
        "rollouts": _round(_jsonl(run / "rollouts.jsonl")),
        "concepts": concepts_snapshot(run / "concepts"),
        "kept": json.loads((run / "kept.json").read_text()),
        "prototypes": _round(_jsonl(run / "prototypes.jsonl")),
        # lift_comparison came after the fixture (an addition, tested in test_filters.py)
        "funnel": _round({k: v for k, v in json.loads((run / "funnel.json").read_text()).items()
                          if k != "lift_comparison"}),
        "puzzle_candidates": _round([{k: p.get(k) for k in ("id", "concept", "fen", "split", "answer", "line")}
                                     for p in candidates]),
        "puzzles": _round({k: v for k, v in summary.items() if k != "files"}),
    }


def cli_snapshot(series: Path, run: Path, work: Path) -> dict:
    """`azc roots` and `azc rollouts` on the tiny series (small settings), `azc mine` on the run's rollouts."""
    from typer.testing import CliRunner

    from alphazero_concepts.cli import app

    runner = CliRunner()
    steps = [
        ["roots", "--out", str(work / "roots.jsonl"), "--model", str(series), "--games", "2", "--max-roots", "3"],
        ["rollouts", "--roots", str(work / "roots.jsonl"), "--out", str(work / "rollouts.jsonl"), "--model",
         str(series), "--length", "5", "--subpar", "2", "--sims", "48", "--limit", "2"],
        ["mine", "--rollouts", str(run / "rollouts.jsonl"), "--layer", "block0", "--out", str(work / "concepts"),
         "--model", str(series)],
    ]
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    return {"roots": _round(_jsonl(work / "roots.jsonl")), "rollouts": _round(_jsonl(work / "rollouts.jsonl")),
            "concepts": concepts_snapshot(work / "concepts")}


def snapshot(series: Path, run: Path, work: Path) -> dict:
    return {"pipeline": run_snapshot(run), "cli": cli_snapshot(series, run, work)}


def main() -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from test_pipeline import tiny_config, tiny_series

    from alphazero_concepts.pipeline import run_pipeline

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        series = tiny_series(root / "series")
        run_pipeline(tiny_config(series), root / "run", until="puzzles", log=lambda s: None)
        data = snapshot(series, root / "run", root / "cli")
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
