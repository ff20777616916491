"""Strategic Test Suite (STS) scoring: which of the 15 strategic themes a network's chosen moves get right.

An STS EPD line gives a position, an ``id`` such as ``"STS(v1.0) Undermine.001"`` (theme number from ``vN``, theme
name before the position number) and ``c0 "f5=100, Bf2=46, …"``: the moves that score, with their points. Moves
may be written in SAN or in long algebraic/UCI notation (both are accepted). Files differ in scale (10 or 100 for
the best move), so each position's points are divided by its best move's points: a position scores 1 for the
best move, a fraction for a listed lesser move, and 0 for any move not listed. Lines without ``c0`` fall back to
``bm`` (each best move scores 1). A theme's score is the sum over its positions; `percent` is that over the
number of positions.

The model's move is the MCTS best move at fixed simulations (the raw policy's top move when `simulations=0`),
many positions searched at once. STS positions carry no move history: the network sees empty history planes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import chess

from alphazero_concepts.arena.players import MCTSPlayer
from alphazero_concepts.chess.positions import InputError, ReadReport, read_epd
from alphazero_concepts.engines import shared_data_dir
from alphazero_concepts.nn.network import HookedNet

STS_FILE = "STS1-STS15_LAN_v5.epd"


def default_sts_path() -> Path:
    """The STS suite beside this checkout (../shared/data/suites/STS1-STS15_LAN_v5.epd); it may not exist."""
    return shared_data_dir() / "suites" / STS_FILE


_ID = re.compile(r"^STS\(v(?P<num>\d+)(?:\.\d+)?\)\s*(?P<theme>.*?)\.(?P<pos>\d+)$")


@dataclass(frozen=True)
class STSPosition:
    """One test position: where it came from, its theme, and the points of each scoring move."""

    id: str
    theme: str
    number: int  # STS theme number (1–15); 0 when the id does not say
    fen: str
    points: dict[str, float]  # UCI move → points as written in the file
    source: str = ""
    line: int | None = None

    def board(self) -> chess.Board:
        return chess.Board(self.fen)

    @property
    def best_points(self) -> float:
        return max(self.points.values())

    def score(self, move: chess.Move | None) -> float:
        """Points of `move` divided by the best move's points; 0 for a move not listed (or no move)."""
        if move is None:
            return 0.0
        return self.points.get(move.uci(), 0.0) / self.best_points


def theme_of(position_id: str) -> tuple[int, str]:
    """(STS number, theme name) of an id like ``"STS(v1.0) Undermine.001"``; (0, id prefix) otherwise."""
    m = _ID.match(position_id.strip())
    if m:
        return int(m["num"]), m["theme"].strip()
    return 0, position_id.rsplit(".", 1)[0].strip()


def _parse_move(board: chess.Board, text: str) -> chess.Move:
    try:
        return board.parse_san(text)
    except ValueError:
        pass
    try:
        move = chess.Move.from_uci(text.replace("-", "").replace("x", "").lower().rstrip("+#"))
    except ValueError as exc:
        raise ValueError(f"unreadable move {text!r}") from exc
    if move not in board.legal_moves:
        raise ValueError(f"illegal move {text!r}")
    return move


def parse_c0(board: chess.Board, c0: str) -> dict[str, float]:
    """``"Qd2=10, Qe1=7"`` → {UCI move: points}; raises ValueError naming the bad item."""
    points: dict[str, float] = {}
    for item in c0.split(","):
        item = item.strip()
        if not item:
            continue
        move_text, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"c0 item {item!r} is not MOVE=POINTS")
        try:
            pts = float(value)
        except ValueError as exc:
            raise ValueError(f"c0 item {item!r}: points {value!r} are not a number") from exc
        points[_parse_move(board, move_text.strip()).uci()] = pts
    if not points or max(points.values()) <= 0:
        raise ValueError("c0 lists no move with positive points")
    return points


def read_sts(path: str | Path, report: ReadReport | None = None) -> list[STSPosition]:
    """STS positions of an EPD file. Bad lines are skipped, each recorded in `report` with file:line and why."""
    report = report if report is not None else ReadReport(str(path))
    out: list[STSPosition] = []
    for pos in read_epd(path, report=report):
        board = pos.board()
        pid = pos.meta.get("id") or f"{Path(path).stem}.{pos.line}"
        try:
            if pos.meta.get("c0"):
                points = parse_c0(board, pos.meta["c0"])
            elif pos.meta.get("bm"):
                points = {_parse_move(board, san).uci(): 1.0 for san in pos.meta["bm"].split()}
            else:
                raise ValueError("no c0 or bm opcode")
        except ValueError as exc:
            report.read -= 1
            report.record_skip(InputError(f"{pid}: {exc}", source=pos.source, line=pos.line))
            continue
        number, theme = theme_of(pid)
        out.append(STSPosition(pid, theme, number, board.fen(), points, pos.source, pos.line))
    return out


@dataclass
class STSScore:
    """Scores of one model on a suite: total and per theme, in suite order.

    Themes are keyed ``STS1`` … ``STS15`` (the name of the theme's first position kept as ``name``; one v5 id spells
    theme 3's name differently), or by the theme name when the id carries no STS number.
    """

    model: str
    simulations: int
    positions: int
    score: float  # sum of normalised position scores, out of `positions`
    best: int  # positions where the model chose a best-scoring move
    themes: dict[str, dict] = field(default_factory=dict)
    moves: list[str] = field(default_factory=list)  # the model's move per position (UCI), suite order

    @property
    def percent(self) -> float:
        return 100.0 * self.score / self.positions if self.positions else float("nan")

    def to_dict(self, with_moves: bool = False) -> dict:
        data = {"model": self.model, "simulations": self.simulations, "positions": self.positions,
                "score": self.score, "percent": self.percent, "best_move_rate": self.best / max(1, self.positions),
                "themes": self.themes}
        if with_moves:
            data["moves"] = self.moves
        return data


def score_moves(positions: Sequence[STSPosition], moves: Sequence[chess.Move | None], *, model: str = "",
                simulations: int = 0) -> STSScore:
    """Score `moves` (one per position, in order) against the suite: totals and per-theme sums."""
    if len(positions) != len(moves):
        raise ValueError(f"{len(moves)} moves for {len(positions)} positions")
    themes: dict[str, dict] = {}
    total, best = 0.0, 0
    for pos, move in zip(positions, moves, strict=True):
        s = pos.score(move)
        key = f"STS{pos.number}" if pos.number else pos.theme
        row = themes.setdefault(key, {"name": pos.theme, "number": pos.number, "positions": 0, "score": 0.0,
                                      "best": 0})
        row["positions"] += 1
        row["score"] += s
        row["best"] += s >= 1.0
        total += s
        best += s >= 1.0
    for row in themes.values():
        row["percent"] = 100.0 * row["score"] / row["positions"]
    return STSScore(model, simulations, len(positions), total, best, themes,
                    [m.uci() if m is not None else "" for m in moves])


def choose_sts_moves(player: MCTSPlayer, positions: Sequence[STSPosition], *, chunk: int = 256,
                     progress: Callable[[int, int], None] | None = None) -> list[chess.Move]:
    """The player's move in every position, searched `chunk` positions at a time (batched within a chunk)."""
    boards = [p.board() for p in positions]
    moves: list[chess.Move] = []
    for start in range(0, len(boards), chunk):
        moves.extend(player.choose_moves(boards[start : start + chunk]))
        if progress is not None:
            progress(len(moves), len(boards))
    return moves


def run_sts(net: HookedNet, positions: Sequence[STSPosition], simulations: int, *, model: str = "",
            chunk: int = 256, progress: Callable[[int, int], None] | None = None,
            precision: str = "fp32") -> STSScore:
    """Score a network on the suite with MCTS at `simulations` (0: the raw policy's top move); `precision` of
    the network call as for `MCTSPlayer`."""
    player = MCTSPlayer(net, simulations, name=model or "model", precision=precision)
    moves = choose_sts_moves(player, positions, chunk=chunk, progress=progress)
    return score_moves(positions, moves, model=model, simulations=simulations)
