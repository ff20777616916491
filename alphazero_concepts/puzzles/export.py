"""Export a puzzle book as PGN, EPD, a Lichess-style CSV, JSON, and a printable HTML booklet.

Every ``to_*`` function takes a `PuzzleBook` and returns text; `export` writes the chosen formats to a directory
(atomically, one file each). Formats:

* **PGN** (``puzzles.pgn``): one game per puzzle. ``[SetUp "1"]``/``[FEN]`` = the position the solver faces; the
  main line is the answer followed by the machine line (the teacher's principal variation); the teacher's
  alternatives (next most-visited moves) are variations with their own lines and visit/Q comments. Headers:
  ``Concept``, ``ConceptLabel``, ``Layer``, ``Novelty``, ``Teachability``, ``PuzzleId``, ``Split``,
  ``PuzzleRating`` (estimate), ``HumanPolicyProb``, ``EngineDisagrees``, ``VisitShare``, ``QGap`` (``?`` when
  unknown); the game comment repeats concept, layer and scores in words.
* **EPD** (``puzzles.epd``): one line per puzzle with ``bm`` (the answer), ``id`` (puzzle id), ``pv`` (the machine
  line), ``c0`` (concept id), ``c1`` (concept label), ``c2`` (layer, novelty, teachability), ``c3`` (split,
  rating estimate, human-model probability, engine verdict), and ``hmvc``/``fmvn`` (the FEN's move counters).
* **CSV** (``puzzles.csv``): Lichess's puzzle columns, in Lichess's order (`LICHESS_COLUMNS`). When the opponent's
  last move is known, ``FEN`` is the position *before* it and ``Moves`` starts with it (Lichess's convention), then
  the answer and the machine line. When it is not known, ``unknown_last_move="solver"`` (default) writes the
  solver's own position as ``FEN`` with ``Moves`` starting at the answer, and adds the theme ``solverToMove`` so a
  reader can tell (a strict Lichess reader would take the answer for the opponent's move);
  ``unknown_last_move="skip"`` leaves such puzzles out of the CSV. A Lichess trainer asks for every solver move
  in ``Moves``, but only the answer is checked to be the one clear best move, so by default (``csv_plies=1``)
  ``Moves`` holds the answer alone and the theme ``oneMove`` is added; ``csv_plies=N`` adds the machine's
  continuation (cut to end on a solver move), whose later moves are the machine's choice, not checked as unique.
  ``Rating`` is the estimate of `rating.py`, ``RatingDeviation`` 500, ``Popularity``/``NbPlays`` 0,
  ``GameUrl``/``OpeningTags`` empty.
* **JSON** (``puzzles.json``): everything (`PuzzleBook.to_dict`); it is also a study puzzle set
  (``alphazero-concepts/puzzles/1``) that ``azc study create --puzzles`` loads as it is.
* **HTML** (``booklet.html``): a self-contained printable booklet: one SVG board per puzzle (python-chess
  `chess.svg`, from the solver's side, the last move highlighted when known) grouped under concept headings, and
  the answers with their lines at the back (on a new page when printed).
"""

from __future__ import annotations

import csv
import html
import io
import os
from collections.abc import Iterable
from pathlib import Path

import chess
import chess.pgn
import chess.svg

from alphazero_concepts.chess.positions import LICHESS_COLUMNS
from alphazero_concepts.core.files import atomic_write_bytes
from alphazero_concepts.core.rundir import PUZZLES
from alphazero_concepts.puzzles.book import ConceptPuzzle, PuzzleBook
from alphazero_concepts.puzzles.rating import RATING_DEVIATION, RATING_FORMULA, estimate_rating

__all__ = ["FILENAMES", "FORMATS", "UNKNOWN_LAST_MOVE", "csv_row", "export", "parse_formats", "puzzle_game",
           "render", "to_csv", "to_epd", "to_html", "to_json", "to_pgn", "write_text"]

FORMATS = ("pgn", "epd", "csv", "json", "html")
FILENAMES = {"pgn": "puzzles.pgn", "epd": "puzzles.epd", "csv": "puzzles.csv", "json": PUZZLES,
             "html": "booklet.html"}
UNKNOWN_LAST_MOVE = ("solver", "skip")
SPLIT_NAMES = {"train": "learning", "test": "unseen"}  # study phases 1–2 and phase 3


def _moves(ucis: Iterable[str]) -> list[chess.Move]:
    return [chess.Move.from_uci(u) for u in ucis]


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "?" if x is None else format(x, fmt)


def _rating(p: ConceptPuzzle) -> int:
    return p.rating if p.rating is not None else estimate_rating(p.candidate.answer_prior)


def _engine_text(p: ConceptPuzzle) -> str:
    v = p.engine
    if v is None:
        return "no engine cross-check"
    if not v.disagrees:
        return f"{v.engine} depth {v.depth} agrees ({v.best_cp:+d} cp)"
    return (f"{v.engine} depth {v.depth} prefers {chess.Board(p.candidate.fen).san(chess.Move.from_uci(v.best))} "
            f"({v.best_cp:+d} cp); the answer scores {v.answer_cp:+d} cp ({v.cp_loss} cp less)")


def _scores_text(p: ConceptPuzzle) -> str:
    c = p.candidate
    return f"layer {c.layer or '?'}, novelty {_num(c.novelty)}, teachability {_num(c.teachability)}"


# ---------------------------------------------------------------------------------------------------------------
# PGN


def puzzle_game(p: ConceptPuzzle, round_no: int, event: str) -> chess.pgn.Game:
    """One puzzle as a PGN game (see the module docstring)."""
    c = p.candidate
    board = c.board()
    game = chess.pgn.Game()
    game.headers["Event"] = event
    game.headers["Site"] = "?"
    game.headers["Date"] = "????.??.??"
    game.headers["Round"] = str(round_no)
    game.headers["White"] = "?"
    game.headers["Black"] = "?"
    game.headers["Result"] = "*"
    game.setup(board)
    extra = {
        "PuzzleId": c.id, "Concept": c.concept, "ConceptLabel": c.label, "Layer": c.layer or "?",
        "Novelty": _num(c.novelty, ".4f"), "Teachability": _num(c.teachability, ".4f"), "Split": c.split,
        "PuzzleRating": str(_rating(p)), "HumanPolicyProb": _num(p.human_policy_prob, ".4f"),
        "EngineDisagrees": "?" if p.engine_disagrees is None else str(p.engine_disagrees).lower(),
        "VisitShare": _num(c.visit_share), "QGap": _num(c.q_gap), "Themes": " ".join(p.themes),
    }
    for key, value in extra.items():
        game.headers[key] = value
    side = "White" if board.turn == chess.WHITE else "Black"
    game.comment = (f"{c.label} [{c.concept}]; {_scores_text(p)}. {side} to move: find the machine's move. "
                    f"Rating ≈ {_rating(p)} (estimate).")
    line = _moves(c.line)
    total = sum(m.visits for m in c.moves) or 1
    answer_stat = c.moves[0]
    node = game.add_variation(line[0], comment=(
        f"answer: visits {answer_stat.visits}/{c.simulations or total} ({c.visit_share:.0%}), "
        f"Q {_num(answer_stat.q, '+.3f')}, prior {answer_stat.prior:.3f}; {_engine_text(p)}"))
    for move in line[1:]:
        node = node.add_variation(move)
    for alt in c.moves[1:]:
        alt_line = _moves(alt.line)
        if not alt_line or not board.is_legal(alt_line[0]):
            continue
        var = game.add_variation(alt_line[0], comment=(
            f"alternative: visits {alt.visits} ({alt.visits / total:.0%}), Q {_num(alt.q, '+.3f')}, "
            f"prior {alt.prior:.3f}"))
        for move in alt_line[1:]:
            var = var.add_variation(move)
    return game


def to_pgn(book: PuzzleBook) -> str:
    """All puzzles as PGN games, separated by blank lines."""
    exporter_games = []
    for i, p in enumerate(book.puzzles, 1):
        exporter = chess.pgn.StringExporter(headers=True, variations=True, comments=True)
        exporter_games.append(puzzle_game(p, i, book.name).accept(exporter))
    return "\n\n".join(exporter_games) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# EPD


def _epd_text(text: str) -> str:
    """EPD strings cannot hold a semicolon or a line break; replace them."""
    return text.replace(";", ",").replace("\n", " ")


def to_epd(book: PuzzleBook) -> str:
    """One EPD line per puzzle: bm, id, pv, c0–c3, hmvc, fmvn."""
    lines = []
    for p in book.puzzles:
        c = p.candidate
        board = c.board()
        info = (f"{c.split}; rating {_rating(p)} (estimate); human p {_num(p.human_policy_prob)}; "
                f"engine disagrees {'?' if p.engine_disagrees is None else str(p.engine_disagrees).lower()}")
        lines.append(board.epd(bm=chess.Move.from_uci(c.answer), id=c.id, pv=_moves(c.line), c0=c.concept,
                               c1=_epd_text(c.label), c2=_epd_text(_scores_text(p)), c3=_epd_text(info),
                               hmvc=board.halfmove_clock, fmvn=board.fullmove_number))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Lichess-style CSV


def _solver_line(line: tuple[str, ...]) -> list[str]:
    """The line cut to end on a solver move (odd length)."""
    n = len(line) if len(line) % 2 == 1 else len(line) - 1
    return list(line[: max(1, n)])


def csv_row(p: ConceptPuzzle, unknown_last_move: str = "solver", plies: int = 1) -> dict[str, str] | None:
    """One puzzle as a Lichess CSV row (None when skipped: last move unknown and ``unknown_last_move="skip"``)."""
    c = p.candidate
    themes = list(p.themes)
    solution = _solver_line(c.line[: max(1, plies)])
    if len(solution) == 1:
        themes.append("oneMove")
    if c.prev_fen and c.last_move:
        fen, moves = c.prev_fen, [c.last_move, *solution]
    elif unknown_last_move == "skip":
        return None
    else:
        fen, moves = c.fen, solution
        themes.append("solverToMove")
    return {"PuzzleId": c.id, "FEN": fen, "Moves": " ".join(moves), "Rating": str(_rating(p)),
            "RatingDeviation": str(RATING_DEVIATION), "Popularity": "0", "NbPlays": "0", "Themes": " ".join(themes),
            "GameUrl": "", "OpeningTags": ""}


def to_csv(book: PuzzleBook, unknown_last_move: str = "solver", plies: int = 1) -> str:
    """The Lichess puzzle CSV (header row, Lichess's column order); see the module docstring.

    `plies` is how much of the machine line ``Moves`` holds after the setup move: 1 (default) the answer only,
    more for the answer and the machine's continuation (cut to end on a solver move).
    """
    if unknown_last_move not in UNKNOWN_LAST_MOVE:
        raise ValueError(f"unknown_last_move must be one of {UNKNOWN_LAST_MOVE}, got {unknown_last_move!r}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(LICHESS_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for p in book.puzzles:
        row = csv_row(p, unknown_last_move, plies)
        if row is not None:
            writer.writerow(row)
    return buf.getvalue()


def to_json(book: PuzzleBook) -> str:
    """Everything, as a study puzzle set with extras (`PuzzleBook.to_dict`)."""
    return book.to_json()


# ---------------------------------------------------------------------------------------------------------------
# HTML booklet

_CSS = """
body { font-family: Georgia, 'Times New Roman', serif; margin: 2em auto; max-width: 60em; color: #111; }
h1 { font-size: 1.8em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #999; margin-top: 1.5em; }
.note, .meta { color: #555; font-size: .9em; }
.grid { display: flex; flex-wrap: wrap; gap: 1.2em; }
figure.puzzle { margin: 0; width: 17em; break-inside: avoid; page-break-inside: avoid; }
figure.puzzle svg { width: 100%; height: auto; display: block; }
figcaption { font-size: .9em; margin-top: .3em; }
.answers li { margin-bottom: .6em; break-inside: avoid; page-break-inside: avoid; }
.answers .line { font-family: 'DejaVu Sans Mono', monospace; font-size: .9em; }
@page { size: A4; margin: 15mm; }
@media print {
  body { margin: 0; max-width: none; }
  section.concept { break-before: page; page-break-before: always; }
  section.concept:first-of-type { break-before: auto; page-break-before: auto; }
  section.answers { break-before: page; page-break-before: always; }
  a { color: inherit; text-decoration: none; }
}
"""


def _board_svg(p: ConceptPuzzle, size: int) -> str:
    c = p.candidate
    board = c.board()
    last = chess.Move.from_uci(c.last_move) if c.last_move and c.prev_fen else None
    return chess.svg.board(board, size=size, orientation=board.turn, lastmove=last, coordinates=True)


def to_html(book: PuzzleBook, board_size: int = 260) -> str:
    """A printable booklet: boards under concept headings, answers at the back (see the module docstring)."""
    esc = html.escape
    concepts = book.concepts()
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{esc(book.name)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           f"<header><h1>{esc(book.name)}</h1>",
           f'<p class="note">{len(book.puzzles)} puzzles on {len(concepts)} concepts. In every diagram the side '
           "at the bottom is to move: find the move the machine (the teacher network) plays. Ratings are "
           f"estimates ({esc(RATING_FORMULA)}), not measured on players. Answers are at the back.</p></header>"]
    number = {p.id: i for i, p in enumerate(book.puzzles, 1)}
    for info in concepts:
        group = [p for p in book.puzzles if p.candidate.concept == info["concept"]]
        out.append(f'<section class="concept"><h2>{esc(info["label"])}</h2>')
        out.append(f'<p class="meta">concept {esc(info["concept"])} · layer {esc(info["layer"] or "?")} · novelty '
                   f'{_num(info["novelty"])} · teachability {_num(info["teachability"])} · '
                   f'{info["train"]} learning, {info["test"]} unseen puzzles</p>')
        out.append('<div class="grid">')
        for p in group:
            c = p.candidate
            side = "White" if chess.Board(c.fen).turn == chess.WHITE else "Black"
            out.append(f'<figure class="puzzle" id="puzzle-{number[p.id]}">{_board_svg(p, board_size)}'
                       f'<figcaption><b>{number[p.id]}.</b> {side} to move · {esc(SPLIT_NAMES[c.split])} · '
                       f"rating ≈ {_rating(p)}</figcaption></figure>")
        out.append("</div></section>")
    out.append('<section class="answers"><h2>Answers</h2><ol>')
    for p in book.puzzles:
        c = p.candidate
        board = c.board()
        answer_san = board.variation_san([chess.Move.from_uci(c.answer)])
        line = board.variation_san(_moves(c.line))
        human = "?" if p.human_policy_prob is None else f"{p.human_policy_prob:.3f}"
        alts = ", ".join(f"{board.san(chess.Move.from_uci(m.uci))} ({m.visits})" for m in c.moves[1:])
        out.append(f'<li value="{number[p.id]}"><b>{esc(answer_san)}</b> '
                   f"<span class=\"meta\">({esc(c.label)}; id {esc(c.id)})</span><br>"
                   f'<span class="line">{esc(line)}</span><br>'
                   f'<span class="meta">visit share {c.visit_share:.0%}, Q gap {_num(c.q_gap, "+.3f")}; '
                   f"human model p = {human}; {esc(_engine_text(p))}"
                   + (f"; next moves by visits: {esc(alts)}" if alts else "") + "</span></li>")
    out.append("</ol></section>")
    model = ", ".join(f"{k}: {v}" for k, v in book.model.items() if isinstance(v, str | int | float))
    if model:
        out.append(f'<footer class="note"><p>Made with {esc(model)}.</p></footer>')
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------------


def render(book: PuzzleBook, fmt: str, *, unknown_last_move: str = "solver", csv_plies: int = 1) -> str:
    """The text of one format."""
    if fmt == "pgn":
        return to_pgn(book)
    if fmt == "epd":
        return to_epd(book)
    if fmt == "csv":
        return to_csv(book, unknown_last_move, csv_plies)
    if fmt == "json":
        return to_json(book)
    if fmt == "html":
        return to_html(book)
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def parse_formats(text: str) -> list[str]:
    """``"pgn,csv"`` → ``["pgn", "csv"]``; ValueError naming an unknown format."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown format(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(FORMATS)}")
    return formats


def export(book: PuzzleBook, out_dir: str | os.PathLike[str], formats: Iterable[str] = FORMATS, *,
           unknown_last_move: str = "solver", csv_plies: int = 1) -> dict[str, Path]:
    """Write the chosen formats into `out_dir` (file names in `FILENAMES`); returns format → path."""
    out = Path(out_dir)
    written: dict[str, Path] = {}
    for fmt in formats:
        path = out / FILENAMES[fmt]
        write_text(path, render(book, fmt, unknown_last_move=unknown_last_move, csv_plies=csv_plies))
        written[fmt] = path
    return written


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text atomically, readable by others as a normal file would be (0o666 less the umask)."""
    path = Path(path)
    atomic_write_bytes(path, text.encode("utf-8"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
