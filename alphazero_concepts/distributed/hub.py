"""The meeting point of Ray self-play: weights (with a version number), finished games, game ids, the stop flag.

One `SelfPlayHub` actor per run. The learner publishes each new network as an object-store reference with its
version; workers poll between batches of games and load a newer version when there is one. Workers push every
finished game as the bytes of a one-game replay shard (`training.replay` format) tagged with the weights version
that played it; the driver takes them and is the only writer of the run directory. Game ids come from one counter,
so every game has a unique seed even when a worker is restarted.

This module imports nothing heavy (no torch): the hub process stays small and starts fast.
"""

from __future__ import annotations

import time
from typing import Any


class SelfPlayHub:
    """Weights store + game queue + id counter + stop flag (methods are called through Ray)."""

    def __init__(self, first_game: int = 0) -> None:
        self.version = -1
        self.weights: list[Any] = []  # [ObjectRef] (wrapped in a list so that Ray passes the reference itself)
        self.queue: list[tuple[int, int, bytes]] = []  # (weights version, worker, shard bytes)
        self.next_game = first_game
        self.stopped = False
        self.received = 0
        self.pickups: dict[int, int] = {}  # worker → last version it loaded

    def publish(self, version: int, weights: list[Any]) -> int:
        """Make `weights` ([ref to a state dict]) version `version` (versions only grow)."""
        if version <= self.version:
            raise ValueError(f"weights version {version} is not newer than {self.version}")
        self.version, self.weights = version, weights
        return version

    def poll(self, known: int, worker: int = -1) -> tuple[bool, int, list[Any] | None]:
        """(stop, latest version, [ref] when newer than `known` else None)."""
        if self.version > known and worker >= 0:
            self.pickups[worker] = self.version
        return self.stopped, self.version, (self.weights if self.version > known else None)

    def next_ids(self, n: int) -> list[int]:
        """`n` fresh game indices (unique over the run, also across worker restarts)."""
        ids = list(range(self.next_game, self.next_game + n))
        self.next_game += n
        return ids

    def add(self, version: int, worker: int, data: bytes) -> None:
        self.queue.append((version, worker, data))
        self.received += 1

    def take(self) -> list[tuple[int, int, bytes]]:
        """Every game received since the last call (the driver's pull)."""
        items, self.queue = self.queue, []
        return items

    def stop(self) -> None:
        self.stopped = True

    def status(self) -> dict:
        return {"version": self.version, "queued": len(self.queue), "received": self.received,
                "next_game": self.next_game, "stopped": self.stopped, "pickups": dict(self.pickups),
                "time": time.time()}
