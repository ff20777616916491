"""Make the bundled teacher series from a distillation run and its arena ladder.

    python scripts/bundle_teacher.py --run runs/teacher-kd --arena runs/teacher-series/arena \\
        --names kd-000100,kd-000250,kd-000500,kd-001000,kd-002000,kd-004000,kd-008000,kd-012000,kd-014000

Copies the named checkpoints (series order) into `alphazero_concepts/models/teacher/`, stores the ladder's fitted
Elos in its manifest (so `Series.strongest()` — every command's default model — is the best-rated checkpoint),
and copies `ladder.json` and `ladder.png` beside them. The series' `info` records where it came from.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from alphazero_concepts.nn.checkpoints import Series
from alphazero_concepts.nn.loading import DEFAULT_SERIES, MODELS_DIR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="distillation series directory")
    ap.add_argument("--arena", type=Path, required=True, help="arena output directory holding ladder.json")
    ap.add_argument("--names", required=True, help="comma-separated checkpoint names to bundle")
    ap.add_argument("--out", type=Path, default=MODELS_DIR / DEFAULT_SERIES)
    ap.add_argument("--status", default="engine-distilled kick-start (see MODEL.md)")
    args = ap.parse_args()

    names = [n.strip() for n in args.names.split(",") if n.strip()]
    ladder = json.loads((args.arena / "ladder.json").read_text())
    elos = {row["name"]: row["elo"] for row in ladder["checkpoints"] if row.get("elo") is not None}
    if args.out.exists():
        shutil.rmtree(args.out)
    series = Series.open(args.run).copy_to(args.out, names=names, name=DEFAULT_SERIES)
    series.info = {"status": args.status, "source": str(args.run), "ladder": "ladder.json"}
    series.set_elo({n: e for n, e in elos.items() if n in names})
    for name in ("ladder.json", "ladder.png"):
        if (args.arena / name).is_file():
            shutil.copyfile(args.arena / name, args.out / name)
    size = sum(series.path_of(n).stat().st_size for n in series.names)
    print(f"{args.out}: {len(series)} checkpoints, {size / 2**20:.1f} MB; strongest {series.strongest()}")


if __name__ == "__main__":
    main()
