"""Where the outside players are: the Stockfish binary (one lookup for every stage that talks to an engine:
arena, puzzles, probes) and the folder of Maia's human-play networks (arena yardsticks, the puzzles' human model).

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


def shared_data_dir() -> Path:
    """`../shared/data` beside this checkout: where outside data (Maia weights, test suites) is looked for when no
    path is given; it may not exist (a user's clone has none)."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


#: Where Maia's lc0 weight files (maia-1100.pb.gz … maia-1900.pb.gz) are looked for when no folder is given:
#: $AZC_MAIA_DIR, then the shared data folder beside a checkout. Nothing is ever downloaded.
MAIA_LEVELS: tuple[str, ...] = tuple(f"maia-{r}" for r in range(1100, 2000, 100))


def locate_maia_dir(directory: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder holding Maia weights (`directory`, $AZC_MAIA_DIR, or ../shared/data/models/maia beside this
    checkout), or None when none of them has any `maia-*.pb.gz`."""
    candidates = [Path(directory)] if directory else []
    if os.environ.get("AZC_MAIA_DIR"):
        candidates.append(Path(os.environ["AZC_MAIA_DIR"]))
    candidates.append(shared_data_dir() / "models" / "maia")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("maia-*.pb.gz")):
            return folder
    return None
