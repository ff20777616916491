"""Find and load a network from what a user types: a checkpoint file, a series directory, or a bundled name.

    load_network(None)                    the bundled default series' strongest checkpoint
    load_network("teacher")               a bundled series by name (alphazero_concepts/models/<name>/)
    load_network("runs/series")           a series directory: its strongest checkpoint
    load_network("runs/series:sup-001000")  one checkpoint of a series
    load_network("path/to/net.pt")        one checkpoint file
    load_network("path/to/net.pb.gz")     an lc0 / Maia weight file (`.pb.gz` or `.pb`), see `nn.lc0`
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from alphazero_concepts.nn.checkpoints import CheckpointError, CheckpointMeta, Series, load_checkpoint
from alphazero_concepts.nn.network import AZNet

if TYPE_CHECKING:
    from alphazero_concepts.nn.lc0 import Lc0Net

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_SERIES = "teacher"
HUMAN_SERIES = "human"  # a network trained on human master games only: the human model when Maia is absent


def bundled_series(name: str = DEFAULT_SERIES) -> Series:
    """The bundled checkpoint series `name`; CheckpointError listing what is bundled when absent."""
    directory = MODELS_DIR / name
    if not (directory / "manifest.json").is_file():
        have = sorted(p.name for p in MODELS_DIR.iterdir() if (p / "manifest.json").is_file()) \
            if MODELS_DIR.is_dir() else []
        raise CheckpointError(f"no bundled series {name!r} in {MODELS_DIR} (bundled: {', '.join(have) or 'none'})")
    return Series.open(directory)


def resolve_series(spec: str | Path | None) -> Series:
    """A series from a directory path or a bundled name (None → the bundled default)."""
    if spec is None:
        return bundled_series()
    path = Path(spec)
    if path.is_dir():
        return Series.open(path)
    return bundled_series(str(spec))


def human_model_spec(series: Series, teacher: str | None = None) -> str | None:
    """A network of human play to set beside `series`' checkpoint `teacher` when no Maia weights are present.

    The series' latest human-games-only checkpoint before the teacher (`Series.human_model`) when it has one;
    for a series trained on machine play only (no "supervised" stage), the bundled `human` series; None when
    neither exists. Returned as a `load_network` spec.
    """
    if any(m.stage == "supervised" for m in series):
        name = series.human_model(teacher if teacher in series.names else None)
        return f"{series.directory}:{name}" if name else None
    if (MODELS_DIR / HUMAN_SERIES / "manifest.json").is_file():
        return HUMAN_SERIES
    return None


def load_network(spec: str | Path | None = None, device: str | torch.device | None = "cpu"
                 ) -> tuple[AZNet | Lc0Net, CheckpointMeta]:
    """Load the network `spec` names (see the module docstring) onto `device`, in eval mode."""
    if spec is None:
        return bundled_series().load(device=device)
    text = str(spec)
    path = Path(text)
    if path.name.endswith((".pb.gz", ".pb")):
        from alphazero_concepts.nn.lc0 import load_lc0

        return load_lc0(path, device)
    if path.is_file():
        return load_checkpoint(path, device)
    if ":" in text and not path.exists():
        series_spec, name = text.rsplit(":", 1)
        return resolve_series(series_spec).load(name, device)
    if path.is_dir():
        return Series.open(path).load(device=device)
    if (MODELS_DIR / text / "manifest.json").is_file():
        return bundled_series(text).load(device=device)
    raise CheckpointError(f"{text}: no such checkpoint file, series directory or bundled series")
