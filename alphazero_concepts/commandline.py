"""What every `azc` command module shares: the error exit, the app-wide error handler, path checks, and the model
loading behind `--model`/`--device`.

Errors, everywhere in `azc` (docs/cli-errors.md):

* a bad input (a missing or unreadable file, a record that cannot be used, a value out of range) prints one line,
  ``error: <file[:line]>: <what is wrong>``, on stderr and exits with status 2 (`fail`);
* an exception no command turned into such a line is caught by `AzcGroup`: input-like exceptions (`ValueError`
  and its subclasses such as `InputError`, `OSError`, SQLite errors, unreadable pickles and archives) print the same
  one line and exit 2; anything else is a bug, printed as one ``internal error:`` line with exit status 1;
* ``azc --debug …`` (or ``AZC_DEBUG=1``) lets the exception through, with its traceback.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from alphazero_concepts.core.rundir import CONCEPTS, RunDir

console = Console()
err_console = Console(stderr=True, soft_wrap=True, highlight=False)

EXIT_INPUT = 2  # bad input: the message says which file, line, field or value, and what was expected
EXIT_INTERNAL = 1  # a bug (an exception no command expected); `--debug` shows its traceback


MAX_MESSAGE = 1000  # characters of an error line (a message quoting a huge input field is cut)


def one_line(message: str) -> str:
    """`message` on one line (newlines and runs of blanks become one space), at most MAX_MESSAGE characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` (one line, on stderr) and return the exit (code 2) for the caller to raise."""
    err_console.print(f"[red]error:[/red] {escape(one_line(message))}")
    return typer.Exit(code=EXIT_INPUT)


def input_file(path: Path, what: str = "file") -> Path:
    """`path` if it is a readable file, else exit 2 saying what it is instead."""
    if not path.exists():
        raise fail(f"{path}: no such {what}")
    if not path.is_file():
        raise fail(f"{path}: is a directory, not a {what}" if path.is_dir() else f"{path}: not a {what}")
    return path


def _check_parents(path: Path, option: str) -> Path:
    """Exit 2 when the nearest existing parent of `path` is a file (nothing could be created below it)."""
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise fail(f"{option} {path}: {parent} is a file, not a directory")
    return path


def output_file(path: Path, option: str = "--out") -> Path:
    """Exit 2 before any work when `path` cannot be written as a file (it is a directory, or its parent is a file)."""
    if path.is_dir():
        raise fail(f"{option} {path}: is a directory (expected a file path)")
    return _check_parents(path, option)


def output_dir(path: Path, option: str = "--out") -> Path:
    """Exit 2 before any work when `path` exists and is not a directory (or lies under a file)."""
    if path.exists() and not path.is_dir():
        raise fail(f"{option} {path}: exists and is not a directory")
    return _check_parents(path, option)


def read_positions_or_fail(positions: Path, *, min_ply: int, limit: int | None) -> list:
    """The positions of a PGN/EPD/FEN/CSV file for `collect` (PGN: from `min_ply` on), at most `limit`; bad
    records are reported and skipped; exit 2 on a bad file or when no position is usable."""
    import itertools

    from rich.markup import escape

    from alphazero_concepts.chess.positions import InputError, ReadReport, read_positions

    report = ReadReport(str(positions))
    try:  # the positions first: a bad file fails before the network is loaded
        kw = {"min_ply": min_ply} if positions.suffix.lower() == ".pgn" else {}
        items = list(itertools.islice(read_positions(positions, report=report, **kw), limit))
    except InputError as exc:
        raise fail(str(exc)) from exc
    if report.skipped:
        console.print(f"[yellow]{escape(report.summary())}[/yellow]", soft_wrap=True)
    if not items:
        raise fail(f"{positions}: no usable positions ({report.summary()})")
    return items


def remove_empty_dirs(path: Path) -> None:
    """Remove `path` and the directories under it if they hold no file (what a failed command created and left
    empty); a directory with any file in it is kept."""
    if not path.is_dir():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def utf8_file(path: Path) -> Path:
    """Exit 2 naming the file and line when `path` is not UTF-8 text (readers that decode whole files would
    otherwise fail without saying which file)."""
    with open(path, "rb") as fh:
        for lineno, data in enumerate(fh, 1):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise fail(f"{path}:{lineno}: not UTF-8 text (byte {data[exc.start:exc.start + 1]!r})") from None
    return path


def run_dir(path: Path, option: str = "--run") -> Path:
    """A run directory given on the command line: it exists, is a directory, and its concept files (any layout
    `azc mine` writes) are UTF-8 text; else exit 2 naming what is wrong."""
    expected = "a run directory holding concepts.jsonl + vectors.npz from `azc mine`"
    if not path.exists():
        raise fail(f"{option} {path}: no such directory (expected {expected})")
    if not path.is_dir():
        raise fail(f"{option} {path}: not a directory (expected {expected})")
    for directory in RunDir(path).concept_dirs():
        utf8_file(directory / CONCEPTS)
    return path


def load_model(model: str | None, device: str):
    """`load_network(model)` on `device`; a bad spec or file exits with its message instead of a traceback."""
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import load_network
    from alphazero_concepts.nn.network import resolve_device

    try:
        return load_network(model, resolve_device(device))
    except (CheckpointError, ValueError, OSError) as exc:
        raise fail(describe_error(exc)) from exc


# ---------------------------------------------------------------------------------------------------------------
# JSONL inputs of the stages (roots.jsonl, rollouts.jsonl)


def read_records(path: Path, parse: Any, what: str) -> list:
    """`parse(record)` of each line of a JSONL input: bad lines are skipped and shown (file:line); exit 2 when no
    line is usable (a job on zero records fails rather than writing an empty artifact)."""
    from alphazero_concepts.chess.positions import InputError, ReadReport, read_jsonl

    input_file(path)
    report = ReadReport(str(path))
    try:
        items = list(read_jsonl(path, parse, report=report))
    except InputError as exc:
        raise fail(str(exc)) from exc
    for error in report.errors[:10]:
        err_console.print(f"[yellow]skipped:[/yellow] {escape(one_line(str(error)))}")
    if report.skipped > 10:
        err_console.print(f"[yellow]… and {report.skipped - 10} more[/yellow]")
    if report.skipped:
        err_console.print(f"[yellow]{report.skipped} records skipped[/yellow]")
    if not items:
        first = f"; first problem: {report.errors[0]}" if report.errors else " (the file has no records)"
        raise fail(f"{path}: no usable {what} ({report.skipped} lines skipped){first}")
    return items


def root_board(record: dict) -> Any:
    """The checked board (a legal position, legal moves) of a roots.jsonl record: `start_fen` + `moves`, or `fen`."""
    from alphazero_concepts.chess.positions import board_from_fen

    if "start_fen" in record:
        return board_from_fen(record["start_fen"], moves=record.get("moves", ()))
    return board_from_fen(record["fen"])


def checked_rollout(record: dict) -> Any:
    """A `Rollout` of a rollouts.jsonl record whose root is a legal position and whose lines are legal from it."""
    from alphazero_concepts.chess.positions import board_from_fen
    from alphazero_concepts.search.rollouts import Rollout

    item = Rollout.from_dict(record)
    board_from_fen(item.start_fen, moves=item.history)
    for line in [item.chosen, *item.subpar]:
        if line.branch is not None and (isinstance(line.branch, bool) or not isinstance(line.branch, int)):
            raise ValueError(f"branch must be a whole number, got {line.branch!r}")
        item.boards(line)
    if isinstance(item.root_index, bool) or not isinstance(item.root_index, int):
        raise ValueError(f"root_index must be a whole number, got {item.root_index!r}")
    return item


# ---------------------------------------------------------------------------------------------------------------
# The app-wide handler


def input_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "this input cannot be used" (exit 2), as opposed to a bug (exit 1)."""
    import pickle
    import sqlite3
    import zipfile

    return (ValueError, OSError, EOFError, sqlite3.DatabaseError, zipfile.BadZipFile, pickle.UnpicklingError,
            RecursionError)


def describe_error(exc: BaseException) -> str:
    """One line for an input-like exception: the file (when the exception knows it) and what went wrong."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return f"{where}: {exc.strerror.lower()}" if where else exc.strerror.lower()
    if isinstance(exc, RecursionError):
        return "input nested too deeply to read"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at offset {exc.start})"
    return one_line(str(exc)) or type(exc).__name__


def debug_enabled(ctx: Any = None) -> bool:
    """`azc --debug` was given (on `ctx` or an ancestor), or AZC_DEBUG is set to a true value."""
    if os.environ.get("AZC_DEBUG", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    while ctx is not None:
        if ctx.params.get("debug"):
            return True
        ctx = ctx.parent
    return False


def report_exception(exc: Exception) -> typer.Exit:
    """Print the one-line message for an exception that escaped a command; the exit to raise (2 or 1)."""
    if isinstance(exc, input_error_types()):
        return fail(describe_error(exc))
    err_console.print(f"[red]internal error:[/red] {escape(type(exc).__name__)}: {escape(one_line(str(exc)))} "
                      "(a bug; run `azc --debug …` for the traceback, and please report it)")
    return typer.Exit(code=EXIT_INTERNAL)


class AzcGroup(typer.core.TyperGroup):
    """The root `azc` group: every command runs inside this handler (see the module notes)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if debug_enabled(ctx):
                raise
            raise report_exception(exc) from exc
