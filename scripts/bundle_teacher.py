"""Make the bundled teacher series from a distillation run and its arena ladder.

    python scripts/bundle_teacher.py --run runs/teacher-kd --arena runs/teacher-series/arena \\
        --names kd-000100,kd-000250,kd-000500,kd-001000,kd-002000,kd-004000,kd-008000,kd-012000,kd-014000

    python scripts/bundle_teacher.py --evaluate runs/teacher-series --run runs/teacher-kd

Copies the named checkpoints (series order) into `alphazero_concepts/models/teacher/`, stores the ladder's fitted
Elos in its manifest (so `Series.strongest()` — every command's default model — is the best-rated checkpoint),
and copies `ladder.json` and `ladder.png` beside them. The series' `info` records where it came from.

`--evaluate SERIES` instead re-scores every checkpoint of SERIES on one held-out slice: that of the run's final
data (its `distill.json`). Checkpoints made before files were added to the run were scored on a smaller slice;
this makes their `value_mse` comparable, in the manifest and in the bundled `ladder.json`'s rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from alphazero_concepts.core.files import atomic_write_bytes
from alphazero_concepts.nn.checkpoints import Series
from alphazero_concepts.nn.loading import DEFAULT_SERIES, MODELS_DIR


def evaluate_series(directory: Path, run: Path) -> None:
    """Re-score every checkpoint of series `directory` on the held-out slice of run `run`'s final data."""
    from alphazero_concepts.training.distill import config_of, holdout_metrics, holdout_rows
    from alphazero_concepts.training.engine_data import load_engine_data

    config = config_of(run)
    data = load_engine_data(config.games, cache_dir=run / "cache")
    _, rows = holdout_rows(data, config)
    series = Series.open(directory)
    for meta in series.entries:
        net, _ = series.load(meta.name)
        held = holdout_metrics(net, data, rows, config.policy_temperature_cp)
        held["slice"] = f"every {config.holdout_every}th game of {', '.join(Path(g).name for g in config.games)}"
        meta.extra = {**(meta.extra or {}), "holdout": held, "value_mse": held["value_mse"]}
        print(f"{meta.name}: agreement {held['agree']:.3f}, value MSE {held['value_mse']:.4f} "
              f"(constant {held['value_mse_constant']:.4f})")
    series.write_manifest()
    ladder_path = directory / "ladder.json"
    if ladder_path.is_file():  # the bundled ladder's rows carry the same, comparable value MSE
        ladder = json.loads(ladder_path.read_text())
        mse = {meta.name: meta.extra["value_mse"] for meta in series.entries}
        for row in ladder["checkpoints"]:
            row["value_mse"] = mse.get(row["name"], row.get("value_mse"))
        atomic_write_bytes(ladder_path, (json.dumps(ladder, indent=2) + "\n").encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="distillation series directory")
    ap.add_argument("--arena", type=Path, help="arena output directory holding ladder.json (its Elos pick the "
                                               "strongest; without it, the last checkpoint)")
    ap.add_argument("--names", help="comma-separated checkpoint names to bundle")
    ap.add_argument("--out", type=Path, default=MODELS_DIR / DEFAULT_SERIES)
    ap.add_argument("--status", default="engine-distilled kick-start (see MODEL.md)")
    ap.add_argument("--evaluate", type=Path, help="re-score this series' checkpoints on the run's held-out slice")
    args = ap.parse_args()
    if args.evaluate is not None:
        evaluate_series(args.evaluate, args.run)
        return
    if not args.names:
        ap.error("--names is needed to bundle")

    names = [n.strip() for n in args.names.split(",") if n.strip()]
    elos: dict[str, float] = {}
    if args.arena is not None:  # without a ladder the series' last checkpoint counts as the strongest
        ladder = json.loads((args.arena / "ladder.json").read_text())
        elos = {row["name"]: row["elo"] for row in ladder["checkpoints"] if row.get("elo") is not None}
    card = (args.out / "MODEL.md").read_text() if (args.out / "MODEL.md").is_file() else None
    if args.out.exists():
        shutil.rmtree(args.out)
    series = Series.open(args.run).copy_to(args.out, names=names, name=DEFAULT_SERIES)
    series.info = {"status": args.status, "source": str(args.run), "ladder": "ladder.json"}
    series.set_elo({n: e for n, e in elos.items() if n in names})
    for name in ("ladder.json", "ladder.png") if args.arena is not None else ():
        if (args.arena / name).is_file():
            shutil.copyfile(args.arena / name, args.out / name)
    if card is not None:  # the model card is written by hand: keep it
        (args.out / "MODEL.md").write_text(card)
    size = sum(series.path_of(n).stat().st_size for n in series.names)
    print(f"{args.out}: {len(series)} checkpoints, {size / 2**20:.1f} MB; strongest {series.strongest()}")


if __name__ == "__main__":
    main()
