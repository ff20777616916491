#!/usr/bin/env python3
"""Play a UCI engine (default: this project's `python -m alphazero_concepts.play.uci`) against Stockfish at a fixed
UCI_Elo, using python-chess alone: nothing of the project is imported here, so the harness measures the engine
exactly as a GUI or a tournament manager sees it.

    python scripts/uci_vs_stockfish.py --games 40 --nodes 100 --sf-movetime 100 --out runs/vs_sf1350.pgn
    python scripts/uci_vs_stockfish.py --engine "azc uci --model teacher" --tc 60+0.6 --games 20
    python scripts/uci_vs_stockfish.py --openings alphazero_concepts/data/openings.txt --games 52 --resume ...

Games alternate colours and walk through fixed openings (each opening is played once with each colour). An
openings file holds one opening per line: a FEN/EPD, or SAN moves from the start (an ECO code first is allowed,
``#`` starts a comment). The result is the engine's score with a 95% interval (the
Wilson score interval), and the Elo difference it implies, also as an absolute estimate anchored at Stockfish's
UCI_Elo. Games are appended to the PGN as they finish; ``--resume`` re-reads that PGN and plays only the rest.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import chess
import chess.engine
import chess.pgn

DEFAULT_OPENINGS = [  # (name, SAN moves): common, balanced main lines
    ("C60 Ruy Lopez", "e4 e5 Nf3 Nc6 Bb5 a6"),
    ("B90 Sicilian Najdorf", "e4 c5 Nf3 d6 d4 cxd4 Nxd4 Nf6 Nc3 a6"),
    ("C00 French", "e4 e6 d4 d5 Nc3 Nf6"),
    ("B12 Caro-Kann", "e4 c6 d4 d5 e5 Bf5"),
    ("D37 Queen's Gambit Declined", "d4 d5 c4 e6 Nc3 Nf6 Nf3 Be7"),
    ("E60 King's Indian", "d4 Nf6 c4 g6 Nc3 Bg7 e4 d6"),
    ("A30 English", "c4 c5 Nf3 Nf6 Nc3 Nc6"),
    ("C50 Italian", "e4 e5 Nf3 Nc6 Bc4 Bc5 c3 Nf6"),
]
ECO = re.compile(r"^[A-E]\d\d$")


@dataclass
class Opening:
    name: str
    board: chess.Board  # with the opening's moves on its stack (a FEN start has none)


def read_openings(path: Path | None) -> list[Opening]:
    """Openings from `path` (FEN/EPD or SAN lines), or the built-in list; errors name the file and line."""
    if path is None:
        return [Opening(name, _play_san(chess.Board(), moves, "built-in", 0)) for name, moves in DEFAULT_OPENINGS]
    out = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        if "/" in tokens[0]:
            full = len(tokens) >= 6 and tokens[4].isdigit() and tokens[5].isdigit()  # FEN, else EPD (4 fields)
            try:
                board = chess.Board(" ".join(tokens[:6]) if full else " ".join(tokens[:4]) + " 0 1")
            except ValueError as exc:
                sys.exit(f"{path}:{lineno}: invalid FEN/EPD: {exc}")
            out.append(Opening(f"{path.name}:{lineno}", board))
        else:
            name = tokens[0] if ECO.match(tokens[0]) else f"{path.name}:{lineno}"
            moves = " ".join(tokens[1:] if ECO.match(tokens[0]) else tokens)
            out.append(Opening(f"{name} {moves}", _play_san(chess.Board(), moves, str(path), lineno)))
    if not out:
        sys.exit(f"{path}: no openings")
    return out


def _play_san(board: chess.Board, moves: str, source: str, lineno: int) -> chess.Board:
    for san in moves.split():
        if re.fullmatch(r"\d+\.+", san):
            continue
        try:
            board.push_san(re.sub(r"^\d+\.+", "", san))
        except ValueError as exc:
            sys.exit(f"{source}:{lineno}: {san!r}: {exc}")
    return board


@dataclass
class TimeControl:
    base_s: float
    inc_s: float

    @classmethod
    def parse(cls, text: str) -> TimeControl:
        base, _, inc = text.partition("+")
        return cls(float(base), float(inc or 0))

    def pgn(self) -> str:
        return f"{self.base_s:g}+{self.inc_s:g}"


def score_interval(points: list[float]) -> tuple[float, float, float]:
    """Mean score and its 95% Wilson score interval.

    Each game counts as a trial worth its score; the binomial variance p(1 − p) is at least the variance of
    win/draw/loss scores with the same mean, so with draws the interval is a little conservative, and unlike the
    plain normal approximation it stays informative for a clean sweep or a handful of games.
    """
    n = len(points)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    p = sum(points) / n
    z = 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return p, max(0.0, centre - half), min(1.0, centre + half)


def elo_diff(score: float, eps: float = 1e-3) -> float:
    """Elo difference implied by a score, the score clipped to [eps, 1 − eps] so that 0 and 1 stay finite."""
    s = min(max(score, eps), 1 - eps)
    return -400.0 * math.log10(1.0 / s - 1.0)


def play_game(ours: chess.engine.SimpleEngine, sf: chess.engine.SimpleEngine, ours_white: bool, opening: Opening,
              args: argparse.Namespace, game_id: int) -> tuple[chess.Board, str, str]:
    """One game from `opening`; returns the final board, the result and how it ended."""
    board = opening.board.copy(stack=True)
    tc = TimeControl.parse(args.tc) if args.tc else None
    clock = {chess.WHITE: tc.base_s, chess.BLACK: tc.base_s} if tc else {}
    start_ply = board.ply()
    while True:
        outcome = board.outcome(claim_draw=True)
        if outcome is not None:
            return board, outcome.result(), outcome.termination.name.lower()
        if board.ply() - start_ply >= args.max_plies:
            return board, "1/2-1/2", "adjudicated (move limit)"
        side = board.turn
        engine = ours if (side == chess.WHITE) == ours_white else sf
        if tc:
            limit = chess.engine.Limit(white_clock=clock[chess.WHITE], black_clock=clock[chess.BLACK],
                                       white_inc=tc.inc_s, black_inc=tc.inc_s)
        elif engine is sf:
            limit = chess.engine.Limit(time=args.sf_movetime / 1000)
        else:
            limit = chess.engine.Limit(nodes=args.nodes) if args.nodes else chess.engine.Limit(
                time=args.movetime / 1000)
        loser = "0-1" if side == chess.WHITE else "1-0"
        t0 = time.perf_counter()
        try:
            result = engine.play(board, limit, game=game_id)
        except (chess.engine.EngineError, chess.engine.EngineTerminatedError) as exc:
            print(f"  game {game_id + 1}: {'white' if side else 'black'} engine failed: {exc}", file=sys.stderr)
            return board, loser, "engine failure"
        if tc:
            clock[side] -= time.perf_counter() - t0
            if clock[side] < -args.time_margin / 1000:
                return board, loser, "time forfeit"
            clock[side] += tc.inc_s
        if result.resigned:
            return board, loser, "resignation"
        if result.move is None or result.move not in board.legal_moves:
            return board, loser, f"illegal move {result.move}"
        board.push(result.move)


def open_engine(command: list[str], options: dict[str, str]) -> chess.engine.SimpleEngine:
    engine = chess.engine.SimpleEngine.popen_uci(command, timeout=120)
    if options:
        engine.configure(options)
    engine.ping()  # isready: the network is loaded before any clock runs
    return engine


def alive(engine: chess.engine.SimpleEngine) -> bool:
    try:
        engine.ping()
        return True
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--engine", default=None,
                        help="engine command (default: python -m alphazero_concepts.play.uci [--model M])")
    parser.add_argument("--model", default=None, help="--model for the default engine command")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="UCI option for the engine (repeat), e.g. Simulations=200 or MinibatchSize=8")
    parser.add_argument("--stockfish", default=None, help="Stockfish binary (default: stockfish on PATH or "
                                                          "/usr/games/stockfish)")
    parser.add_argument("--elo", type=int, default=1350, help="Stockfish UCI_Elo (UCI_LimitStrength on)")
    parser.add_argument("--games", type=int, default=20)
    parser.add_argument("--openings", type=Path, default=None, help="FEN/EPD or SAN lines (default: 8 built in)")
    parser.add_argument("--nodes", type=int, default=None, help="engine: nodes (simulations) per move")
    parser.add_argument("--movetime", type=float, default=1000, help="engine: ms per move when no --nodes/--tc")
    parser.add_argument("--sf-movetime", type=float, default=100, help="Stockfish: ms per move when no --tc")
    parser.add_argument("--tc", default=None, help="clock for both, BASE+INC in seconds (e.g. 60+0.6)")
    parser.add_argument("--time-margin", type=float, default=100, help="ms past zero before a time forfeit")
    parser.add_argument("--max-plies", type=int, default=300, help="adjudicate a draw after this many plies")
    parser.add_argument("--out", type=Path, default=Path("uci_vs_stockfish.pgn"), help="PGN written game by game")
    parser.add_argument("--resume", action="store_true", help="keep the games already in --out, play the rest")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = parser.parse_args(argv)

    stockfish = args.stockfish or shutil.which("stockfish") or shutil.which("stockfish", path="/usr/games")
    if not stockfish:
        print("error: Stockfish not found (install it, e.g. apt-get install stockfish, or pass --stockfish)",
              file=sys.stderr)
        return 2
    if args.engine:
        command = shlex.split(args.engine)
    else:
        command = [sys.executable, "-m", "alphazero_concepts.play.uci"] + (["--model", args.model]
                                                                           if args.model else [])
    options = {}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--option {item!r}: expected NAME=VALUE")
        options[name] = value
    openings = read_openings(args.openings)

    points: list[float] = []  # the engine's score per game
    done = 0
    if args.resume and args.out.is_file():
        with open(args.out) as fh:
            while (game := chess.pgn.read_game(fh)) is not None:
                ours_white = game.headers.get("White") != "Stockfish"
                result = game.headers.get("Result", "*")
                if result in ("1-0", "0-1", "1/2-1/2"):
                    points.append(0.5 if result == "1/2-1/2" else float((result == "1-0") == ours_white))
                    done += 1
        print(f"resuming after {done} games in {args.out}")
    elif args.out.exists() and not args.resume:
        args.out.unlink()

    sf_options = {"UCI_LimitStrength": "true", "UCI_Elo": str(args.elo), "Threads": "1", "Hash": "16"}
    engine = open_engine(command, options)
    sf = open_engine([stockfish], sf_options)
    name = engine.id.get("name", "engine") + (f" ({args.model})" if args.model else "")
    try:
        for g in range(done, args.games):
            opening = openings[(g // 2) % len(openings)]
            ours_white = g % 2 == 0
            board, result, termination = play_game(engine, sf, ours_white, opening, args, g)
            if termination == "engine failure":  # restart a crashed engine for the next game
                if not alive(engine):
                    engine = open_engine(command, options)
                if not alive(sf):
                    sf = open_engine([stockfish], sf_options)
            point = 0.5 if result == "1/2-1/2" else float((result == "1-0") == ours_white)
            points.append(point)
            game = chess.pgn.Game.from_board(board)
            game.headers.update({"Event": f"{name} vs Stockfish UCI_Elo {args.elo}", "Round": str(g + 1),
                                 "White": name if ours_white else "Stockfish",
                                 "Black": "Stockfish" if ours_white else name, "Result": result,
                                 "Opening": opening.name, "Termination": termination,
                                 "TimeControl": TimeControl.parse(args.tc).pgn() if args.tc else "-",
                                 "Date": time.strftime("%Y.%m.%d")})
            with open(args.out, "a") as fh:
                print(game, file=fh, end="\n\n")
            mean, lo, hi = score_interval(points)
            print(f"game {g + 1}/{args.games}: {'engine' if ours_white else 'Stockfish'} white, {result} "
                  f"({termination}, {board.ply()} plies); score {sum(points):g}/{len(points)} = {mean:.3f}",
                  flush=True)
    finally:
        engine.quit()
        sf.quit()

    n = len(points)
    mean, lo, hi = score_interval(points)
    # the point estimate of a clean sweep counts it as half a game short of one; the bounds are the interval's
    diff, diff_lo, diff_hi = elo_diff(mean, 0.5 / max(1, n)), elo_diff(lo), elo_diff(hi)
    summary = {"engine": name, "stockfish_elo": args.elo, "games": n, "points": sum(points),
               "wins_draws_losses": [points.count(1.0), points.count(0.5), points.count(0.0)],
               "score": mean, "score_95": [lo, hi],
               "elo_diff": diff, "elo_diff_95": [diff_lo, diff_hi], "elo_estimate": args.elo + diff,
               "elo_estimate_95": [args.elo + diff_lo, args.elo + diff_hi], "pgn": str(args.out),
               "limits": {"nodes": args.nodes, "movetime_ms": args.movetime, "sf_movetime_ms": args.sf_movetime,
                          "tc": args.tc}, "options": options}
    print(f"{name} vs Stockfish (UCI_Elo {args.elo}): {sum(points):g}/{n} = {mean:.3f} "
          f"(95% [{lo:.3f}, {hi:.3f}]); Elo difference {diff:+.0f} [{diff_lo:+.0f}, {diff_hi:+.0f}] "
          f"→ about {args.elo + diff:.0f} [{args.elo + diff_lo:.0f}, {args.elo + diff_hi:.0f}]")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
