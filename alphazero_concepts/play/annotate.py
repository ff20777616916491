"""Annotate PGN games with the network's view: evaluation, best move and concept scores after every move.

For each game all positions (the start and the position after every move) are evaluated together: one batched
network pass (or, with ``simulations > 0``, one batched MCTS over all of them), plus one pass capturing the
layers of the chosen concepts. Each move gets one PGN comment

    { [%eval 0.35] best Nf3 | root00012 +1.23 (+0.40), root00031 -0.20 (-0.05) }

* ``[%eval x.xx]``: the evaluation of the position after the move, in pawns from White's view (what Lichess
  and other tools read), from the network's value v (side to move) with lc0's mapping (`uci.value_to_cp`);
  a move that mates gets no eval tag (as Lichess exports), a drawn final position ``0.00``.
* ``best X``: the move the network (raw policy, or the search) prefers in the position *before* the move,
  so a reader sees where the game left the machine's choice.
* concept scores v·z at each concept's layer for the position after the move, and their change over the move.

Concepts come from a mining run (`ConceptSet.load(run, solved_only=True)`): the ids given, or else the `top` concepts
whose score varies most over the game (range max − min of v·z, computed per game). A matplotlib figure per game
shows the evaluation and each concept's score over the game, with the moves where each concept rises most
marked. Bad games in the PGN are skipped and reported with their file and line (`chess.positions`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chess
import chess.pgn
import numpy as np

from alphazero_concepts.chess.positions import GameRecord, InputError, ReadReport, read_pgn_games
from alphazero_concepts.concepts.conceptset import Concept
from alphazero_concepts.core.config import DictConfig
from alphazero_concepts.nn.network import predict
from alphazero_concepts.play.concept_scores import concept_scores
from alphazero_concepts.play.uci import value_to_cp
from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator, legal_softmax


@dataclass(frozen=True)
class AnnotateConfig(DictConfig):
    """What to compute per game; saved next to the output (`annotate.json`)."""

    concept_ids: tuple[str, ...] = ()  # empty: the `top` concepts that vary most over each game
    top: int = 3
    simulations: int = 0  # 0: raw network (value head, policy argmax); > 0: MCTS with this many simulations
    marks: int = 3  # moves marked per concept in the figure (largest rises)
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.top < 0 or self.marks < 0 or self.simulations < 0:
            raise ValueError("top, marks and simulations must be ≥ 0")
        if self.batch_size < 1:
            raise ValueError("batch_size must be ≥ 1")
        if not isinstance(self.concept_ids, tuple):
            object.__setattr__(self, "concept_ids", tuple(self.concept_ids))


@dataclass
class GameAnnotation:
    """One annotated game. Arrays are indexed by ply: 0 = the start position, i = after the i-th move."""

    record: GameRecord
    boards: list[chess.Board]
    values: np.ndarray  # (plies + 1,) value for the side to move, in [-1, 1]
    best: list[chess.Move | None]  # the preferred move in each position (None where the game is over)
    concepts: list[Concept] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (k, plies + 1)

    @property
    def plies(self) -> int:
        return len(self.record.moves)

    def white_values(self) -> np.ndarray:
        """Values from White's point of view."""
        sign = np.array([1.0 if b.turn == chess.WHITE else -1.0 for b in self.boards])
        return self.values * sign

    def rises(self, k: int) -> list[list[int]]:
        """Per concept, the plies (1 … plies) whose move raised its score most: up to `k`, largest first."""
        out = []
        for row in self.scores:
            diff = np.diff(row)
            order = [int(i) + 1 for i in np.argsort(-diff, kind="stable") if diff[i] > 0]
            out.append(order[:k])
        return out

    def move_label(self, ply: int) -> str:
        """``12. Nf3`` / ``12... Nf6`` for the move that led to ply `ply`."""
        board = self.boards[ply - 1]
        number = board.fullmove_number
        dots = "." if board.turn == chess.WHITE else "..."
        return f"{number}{dots} {board.san(self.record.moves[ply - 1])}"

    def comment(self, ply: int) -> str:
        """The PGN comment of the move that led to ply `ply` (1-based)."""
        parts = [_eval_tag(self.boards[ply], float(self.white_values()[ply]))]
        before, best = self.boards[ply - 1], self.best[ply - 1]
        if best is not None:
            parts.append(f"best {before.san(best)}")
        text = " ".join(p for p in parts if p)
        if self.concepts:
            items = [f"{c.short_id} {self.scores[j, ply]:+.2f} ({self.scores[j, ply] - self.scores[j, ply - 1]:+.2f})"
                     for j, c in enumerate(self.concepts)]
            text += " | " + ", ".join(items)
        return text

    def to_game(self, annotator: str) -> chess.pgn.Game:
        """A python-chess game with the record's headers and one comment per move."""
        game = chess.pgn.Game()
        for key, value in self.record.headers.items():
            game.headers[key] = value
        if self.record.start_fen != chess.STARTING_FEN:
            game.setup(chess.Board(self.record.start_fen))
        game.headers["Result"] = self.record.result
        game.headers["Annotator"] = annotator
        legend = "alphazero-concepts: [%eval] = network value after the move (White's view, pawns); " \
                 "best = the network's move before it"
        if self.concepts:
            legend += "; concept score v·z (change over the move): " + ", ".join(
                f"{c.short_id} = {c.id} @ {c.layer}" for c in self.concepts)
        game.comment = legend
        node: chess.pgn.GameNode = game
        for ply, move in enumerate(self.record.moves, 1):
            node = node.add_variation(move)
            node.comment = self.comment(ply)
        return game

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the game's origin, its concepts and the plies where each rises most."""
        marks = self.rises(3)
        return {
            "game": self.record.game, "line": self.record.line, "source": self.record.source,
            "white": self.record.headers.get("White"), "black": self.record.headers.get("Black"),
            "plies": self.plies,
            "concepts": [{"id": c.id, "layer": c.layer, "min": float(self.scores[j].min()),
                          "max": float(self.scores[j].max()),
                          "rises": [{"ply": p, "move": self.move_label(p),
                                     "change": float(self.scores[j, p] - self.scores[j, p - 1])} for p in marks[j]]}
                         for j, c in enumerate(self.concepts)],
        }


def _eval_tag(board: chess.Board, white_value: float) -> str:
    """``[%eval x.xx]`` in pawns from White's view; nothing for a checkmate on the board (as Lichess exports)."""
    if board.is_checkmate():
        return ""
    if board.is_game_over():
        return "[%eval 0.00]"
    return f"[%eval {value_to_cp(white_value) / 100:.2f}]"


def game_boards(record: GameRecord) -> list[chess.Board]:
    """The start position and the position after every move, each with its move history (for the input planes)."""
    board = chess.Board(record.start_fen)
    boards = [board.copy()]
    for move in record.moves:
        board.push(move)
        boards.append(board.copy())
    return boards


def evaluate_positions(net: Any, boards: Sequence[chess.Board], simulations: int = 0, batch_size: int = 256,
                       mcts: MCTS | None = None) -> tuple[np.ndarray, list[chess.Move | None]]:
    """Values (side to move's view) and preferred moves of positions, batched over all of them.

    Finished positions get the rule's value (checkmate −1, a draw 0) and no move. With `simulations` > 0 the
    values are the search's root values and the moves its most visited ones (one batched search of all trees).
    """
    values = np.zeros(len(boards), dtype=np.float64)
    best: list[chess.Move | None] = [None] * len(boards)
    live = [i for i, b in enumerate(boards) if not b.is_game_over()]
    for i, b in enumerate(boards):
        if i not in live:
            values[i] = -1.0 if b.is_checkmate() else 0.0
    if not live:
        return values, best
    if simulations > 0:
        mcts = mcts or MCTS(NetEvaluator(net, batch_size), MCTSConfig(simulations=simulations))
        for i, result in zip(live, mcts.search([boards[i] for i in live], simulations), strict=True):
            values[i] = result.root_value
            best[i] = result.best_move()
        return values, best
    fmt = net.format
    logits, raw = predict(net, fmt.encode([boards[i] for i in live]), batch_size)
    legal = [fmt.legal_move_indices(boards[i]) for i in live]
    priors = legal_softmax(logits, [idx for _, idx in legal])
    for j, i in enumerate(live):
        values[i] = float(raw[j])
        best[i] = legal[j][0][int(np.argmax(priors[j]))]
    return values, best


def annotate_game(net: Any, record: GameRecord, concepts: Sequence[Concept], config: AnnotateConfig,
                  mcts: MCTS | None = None) -> GameAnnotation:
    """Evaluate every position of one game and score the concepts on them (see the module docstring)."""
    boards = game_boards(record)
    values, best = evaluate_positions(net, boards, config.simulations, config.batch_size, mcts)
    annotation = GameAnnotation(record, boards, values, best)
    if concepts:
        scores = concept_scores(net, boards, concepts, config.batch_size)
        if config.concept_ids:
            chosen = list(range(len(concepts)))
        else:
            spread = scores.max(axis=1) - scores.min(axis=1)
            chosen = [int(i) for i in np.argsort(-spread, kind="stable")[: config.top]]
        annotation.concepts = [concepts[i] for i in chosen]
        annotation.scores = scores[chosen]
    return annotation


def write_figure(annotation: GameAnnotation, path: str | Path, marks: int = 3, title: str = "") -> Path:
    """A PNG: the evaluation (White's view) over the game and, below it, each concept's score with its largest
    rises marked and labelled with the move."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plies = np.arange(annotation.plies + 1)
    n_panels = 2 if annotation.concepts else 1
    fig, axes = plt.subplots(n_panels, 1, figsize=(10, 3 + 3 * (n_panels - 1)), sharex=True, squeeze=False)
    ax = axes[0, 0]
    ax.plot(plies, annotation.white_values(), color="black", lw=1.5)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("value (White)")
    ax.set_title(title or _game_title(annotation.record))
    if annotation.concepts:
        ax = axes[1, 0]
        for j, (concept, rise) in enumerate(zip(annotation.concepts, annotation.rises(marks), strict=True)):
            row = annotation.scores[j]
            line, = ax.plot(plies, row, lw=1.2, label=f"{concept.short_id} ({concept.layer})")
            ax.scatter(rise, row[rise], color=line.get_color(), zorder=3, s=30)
            for p in rise:
                ax.annotate(annotation.move_label(p), (p, row[p]), textcoords="offset points", xytext=(3, 5),
                            fontsize=7, color=line.get_color())
        ax.set_ylabel("concept score v·z")
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("ply")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _game_title(record: GameRecord) -> str:
    h = record.headers
    players = f"{h.get('White', '?')} – {h.get('Black', '?')}"
    return f"{players}  {record.result}  ({h.get('Event', '?')}, {h.get('Date', '?')})"


@dataclass
class AnnotateResult:
    """What `annotate_pgn` did: games written, figures, and the reader's report (skipped games with errors)."""

    games: int
    out: Path
    figures: list[Path]
    report: ReadReport
    summaries: list[dict]


def annotate_pgn(net: Any, pgn: str | Path, out: str | Path, concepts: Sequence[Concept] = (),
                 config: AnnotateConfig | None = None, figures_dir: str | Path | None = None,
                 model_name: str = "network", max_games: int | None = None,
                 progress: Callable[[int], None] | None = None) -> AnnotateResult:
    """Annotate every readable game of `pgn` into `out` (written atomically) with one figure per game.

    Unreadable games are skipped and recorded in the result's `report` (file:line errors); `InputError` when the
    file is missing or holds no readable game. `annotate.json` (config, model, per-game concept rises) is written
    next to the figures.
    """
    config = config or AnnotateConfig()
    out = Path(out)
    figures_dir = Path(figures_dir) if figures_dir is not None else out.with_name(f"{out.stem}_figures")
    report = ReadReport(source=str(pgn))
    records: Iterable[GameRecord] = read_pgn_games(pgn, report=report, max_games=max_games)
    mcts = MCTS(NetEvaluator(net, config.batch_size), MCTSConfig(simulations=config.simulations)) \
        if config.simulations > 0 else None
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    figures: list[Path] = []
    summaries: list[dict] = []
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for n, record in enumerate(records, 1):
                annotation = annotate_game(net, record, concepts, config, mcts)
                exporter = chess.pgn.StringExporter(headers=True, variations=True, comments=True)
                fh.write(annotation.to_game(f"alphazero-concepts ({model_name})").accept(exporter) + "\n\n")
                figures.append(write_figure(annotation, figures_dir / f"game-{record.game + 1:04d}.png",
                                            config.marks))
                summaries.append(annotation.summary())
                if progress:
                    progress(n)
        if not summaries:
            first = f" (first error: {report.errors[0]})" if report.errors else ""
            raise InputError(f"no readable game{first}", source=str(pgn), line=None)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    meta = {"config": config.to_dict(), "model": model_name, "pgn": str(pgn), "out": str(out),
            "read": report.read, "skipped": report.skipped, "errors": [str(e) for e in report.errors[:20]],
            "games": summaries}
    (figures_dir / "annotate.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return AnnotateResult(len(summaries), out, figures, report, summaries)
