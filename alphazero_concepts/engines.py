"""Where the Stockfish binary is: one lookup for every stage that talks to an engine (arena, puzzles, probes).

Each stage raises its own error with its own advice when the lookup finds nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: Searched after PATH (Debian installs Stockfish in /usr/games, which is not on root's PATH).
STOCKFISH_DIRS: tuple[str, ...] = ("/usr/games", "/usr/local/bin", "/usr/bin", "/opt/homebrew/bin")


def locate_stockfish(path: str | os.PathLike[str] | None = None) -> str | None:
    """The Stockfish binary, or None when absent.

    With `path`: that file when it is executable, or that command on PATH. Without: `stockfish` on PATH, then
    each of `STOCKFISH_DIRS`.
    """
    if path is not None:
        p = Path(path)
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
        return shutil.which(str(path))
    found = shutil.which("stockfish")
    if found:
        return found
    for directory in STOCKFISH_DIRS:
        candidate = Path(directory) / "stockfish"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None
