"""What every `azc` command module shares: the error exit and the model loading behind `--model`/`--device`."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()


def fail(message: str) -> typer.Exit:
    """Print `error: message` and return the exit (code 2) for the caller to raise."""
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


def load_model(model: str | None, device: str):
    """`load_network(model)` on `device`; a bad spec or file exits with its message instead of a traceback."""
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.loading import load_network
    from alphazero_concepts.nn.network import resolve_device

    try:
        return load_network(model, resolve_device(device))
    except (CheckpointError, ValueError) as exc:
        raise fail(str(exc)) from exc
