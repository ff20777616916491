"""Strength against training: Elo on Stockfish's `UCI_Elo` scale by positions seen, one line per architecture.

    python scripts/strength_figure.py --ladder runs/teacher-series/arena-stage2/ladder.json \\
        --ladder runs/teacher-series/cross-kd96/ladder/ladder.json --out docs/img/teacher-strength.png

Reads each ladder's `elo_stockfish_scale` (the fit anchored on the Stockfish levels) and the checkpoints'
`positions_seen`; a checkpoint in several ladders is drawn from the first that has it. Lines join the checkpoints
of one architecture (the rows' `architecture`, "blocks x channels"; ladders written before it existed were all
6x64). The first target of the teacher issue is drawn as a horizontal line for scale.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alphazero_concepts.plotting import pyplot, save_figure


def points(ladder_path: Path) -> list[dict]:
    """(name, architecture, positions seen, Elo and interval on the Stockfish scale) of a ladder's checkpoints."""
    ladder = json.loads(ladder_path.read_text())
    scale = {r["name"]: r for r in ladder.get("elo_stockfish_scale", {}).get("checkpoints", [])}
    out = []
    for row in ladder["checkpoints"]:
        fit = scale.get(row["name"])
        if fit is None or fit.get("elo") is None or not row.get("positions_seen"):
            continue
        out.append({"name": row["name"], "arch": row.get("architecture") or "6x64", "positions": row["positions_seen"],
                    "elo": fit["elo"], "ci": fit["elo_ci"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ladder", type=Path, action="append", required=True, help="ladder.json (repeatable)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    seen: dict[str, dict] = {}
    for path in args.ladder:
        for p in points(path):
            seen.setdefault(p["name"], p)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for arch in sorted({p["arch"] for p in seen.values()}):
        rows = sorted((p for p in seen.values() if p["arch"] == arch), key=lambda p: p["positions"])
        x = [p["positions"] / 1e6 for p in rows]
        y = [p["elo"] for p in rows]
        err = [[p["elo"] - p["ci"][0] for p in rows], [p["ci"][1] - p["elo"] for p in rows]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=arch.replace("x", "×"))
    for level, label in ((2200, "Stockfish UCI_Elo 2200 (target: ≥ 50% at ≤ 800 simulations)"),):
        ax.axhline(level, color="grey", linestyle="--", linewidth=1)
        ax.text(ax.get_xlim()[0], level + 8, label, fontsize=8, color="grey")
    ax.set_xlabel("positions seen in training (millions)")
    ax.set_ylabel("Elo on Stockfish's UCI_Elo scale (100 simulations a move)")
    ax.set_title("Engine-distilled teachers: strength by training, 95% intervals")
    ax.legend(title="blocks × channels")
    print(save_figure(fig, args.out))


if __name__ == "__main__":
    main()
