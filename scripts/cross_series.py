"""A ladder series of checkpoints from several runs (other architectures allowed), for `azc arena`.

    python scripts/cross_series.py --out runs/teacher-series/cross-kd96/series \\
        --add runs/teacher-kd:kd-012500 --add runs/teacher-kd:kd-036000 \\
        --add runs/teacher-kd96:kd-012500=kd96-012500

Each `--add RUN:NAME[=NEW]` links checkpoint NAME of series RUN into `--out` under NEW (default NAME), in the
order given, which is the ladder's series order (neighbours play). The checkpoints are symbolic links, not
copies, and each keeps its own architecture: a checkpoint file carries its config, so a 6×64 and an 8×96 play
in one ladder. The manifest's `config` is null (mixed); the entries keep their metadata, renamed, without the
Elo fitted in their own series' ladder.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series


def parse_add(text: str) -> tuple[Path, str, str]:
    """RUN:NAME[=NEW] → (run directory, name, new name)."""
    run, sep, rest = text.rpartition(":")
    if not sep or not run or not rest:
        raise SystemExit(f"--add {text!r}: expected RUN:NAME or RUN:NAME=NEW")
    name, _, new = rest.partition("=")
    return Path(run), name, new or name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="directory of the new series (created)")
    ap.add_argument("--add", action="append", required=True, help="RUN:NAME[=NEW], in ladder order")
    args = ap.parse_args()
    adds = [parse_add(text) for text in args.add]
    if len({new for _, _, new in adds}) != len(adds):
        raise SystemExit("two --add entries have the same name: rename one with =NEW")
    out = Series(args.out, name=args.out.name)
    out.config = None  # mixed architectures: each checkpoint file carries its own
    out.directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for run, name, new in adds:
        source = Series.open(run)
        target = out.directory / f"{new}.pt"
        if target.is_symlink() or target.exists():
            target.unlink()
        os.symlink(os.path.relpath(source.path_of(name).resolve(), out.directory), target)
        meta = CheckpointMeta.from_dict({**source.meta(name).to_dict(), "name": new, "elo": None})  # other ladder
        meta.extra = {**meta.extra, "from": f"{run}:{name}",
                      "architecture": f"{source.config.blocks}x{source.config.channels}" if source.config else None}
        entries.append(meta)
    out.entries = entries
    out.write_manifest()
    print(f"{out.directory}: {', '.join(m.name for m in entries)}")


if __name__ == "__main__":
    main()
