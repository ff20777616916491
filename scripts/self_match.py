"""One checkpoint against itself with one search or network setting changed on side A.

Measures what a setting costs or buys in play: the network's precision (`--precision bf16`: bfloat16 autocast)
or a search constant (`--c-init`, `--fpu-reduction`). Side B keeps the defaults (float32, `MCTSConfig()`); each
side has its own search cache.

    python scripts/self_match.py --checkpoint kd-036000 --precision bf16 --out runs/teacher-series/precision-check
    python scripts/self_match.py --checkpoint kd-036000 --c-init 2.0 --out runs/teacher-series/search-check
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from alphazero_concepts.arena.match import play_match
from alphazero_concepts.arena.players import PLAYER_CACHE_SIZE, MCTSPlayer
from alphazero_concepts.nn.loading import resolve_series
from alphazero_concepts.nn.network import PRECISIONS
from alphazero_concepts.search.mcts import MCTSConfig
from alphazero_concepts.search.roots import bundled_openings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="teacher")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--sims", type=int, default=100)
    parser.add_argument("--games", type=int, default=40)
    parser.add_argument("--max-plies", type=int, default=300)
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="side A's network precision")
    parser.add_argument("--c-init", type=float, help="side A's PUCT c_init (default: MCTSConfig's)")
    parser.add_argument("--fpu-reduction", type=float, help="side A's first-play-urgency reduction")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    changed = {k: v for k, v in (("c_init", args.c_init), ("fpu_reduction", args.fpu_reduction)) if v is not None}
    if not changed and args.precision == "fp32":
        raise SystemExit("nothing differs between the sides: pass --precision bf16, --c-init or --fpu-reduction")
    torch.set_num_threads(1)
    net, _ = resolve_series(args.series).load(args.checkpoint)
    label = ",".join([f"{k}={v:g}" for k, v in changed.items()]
                     + ([args.precision] if args.precision != "fp32" else []))
    base = MCTSConfig(cache_size=PLAYER_CACHE_SIZE)
    a = MCTSPlayer(net, args.sims, name=f"{args.checkpoint}[{label}]", precision=args.precision,
                   config=MCTSConfig(**{**base.to_dict(), **changed}))
    b = MCTSPlayer(net, args.sims, name=f"{args.checkpoint}[default]", config=base)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.checkpoint}-{label.replace(',', '-')}-vs-default-sims{args.sims}"
    r = play_match(a, b, args.games, bundled_openings(), max_plies=args.max_plies, pgn_path=args.out / f"{stem}.pgn")
    record = {"checkpoint": args.checkpoint, "sims": args.sims, "a": {"precision": args.precision, **changed},
              "b": "defaults (fp32, MCTSConfig())", "score": r.score, "wins": r.wins, "draws": r.draws,
              "losses": r.losses, "wall_s": r.wall_s, "stats_a": r.stats_a, "stats_b": r.stats_b,
              "a_seconds_per_move": r.stats_a["seconds"] / max(1, r.stats_a["moves"]),
              "b_seconds_per_move": r.stats_b["seconds"] / max(1, r.stats_b["moves"])}
    (args.out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
