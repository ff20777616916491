"""One checkpoint against itself: its network under bfloat16 autocast (A) against float32 (B).

Measures what `--precision bf16` costs in play and buys in speed. Each side keeps its own search cache; the two
differ only in the precision of the network call.

    python scripts/precision_match.py --series teacher --checkpoint kd-036000 --sims 100 --games 40 \
        --out runs/teacher-series/precision-check
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from alphazero_concepts.arena.match import play_match
from alphazero_concepts.arena.players import MCTSPlayer
from alphazero_concepts.nn.loading import resolve_series
from alphazero_concepts.search.roots import bundled_openings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="teacher")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--sims", type=int, default=100)
    parser.add_argument("--games", type=int, default=40)
    parser.add_argument("--max-plies", type=int, default=300)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net, _ = resolve_series(args.series).load(args.checkpoint)
    a = MCTSPlayer(net, args.sims, name=f"{args.checkpoint}-bf16", precision="bf16")
    b = MCTSPlayer(net, args.sims, name=f"{args.checkpoint}-fp32")
    args.out.mkdir(parents=True, exist_ok=True)
    r = play_match(a, b, args.games, bundled_openings(), max_plies=args.max_plies,
                   pgn_path=args.out / f"{args.checkpoint}-bf16-vs-fp32.pgn")
    record = {"checkpoint": args.checkpoint, "sims": args.sims, "score": r.score, "wins": r.wins, "draws": r.draws,
              "losses": r.losses, "wall_s": r.wall_s, "stats_a": r.stats_a, "stats_b": r.stats_b,
              "bf16_seconds_per_move": r.stats_a["seconds"] / max(1, r.stats_a["moves"]),
              "fp32_seconds_per_move": r.stats_b["seconds"] / max(1, r.stats_b["moves"])}
    (args.out / f"{args.checkpoint}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
