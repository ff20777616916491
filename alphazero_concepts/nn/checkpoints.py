"""Checkpoints with metadata, atomic writes and clear errors; a series is a directory of them with a manifest.

A checkpoint file is a `torch.save` of plain data (loaded with `weights_only=True`, nothing executed):

    {"format_version": 1, "config": NetConfig dict, "meta": CheckpointMeta dict, "state_dict": {name: tensor}}

A series directory holds `manifest.json` (`{"name", "config", "checkpoints": [meta, ...]}` in training order)
and one `<name>.pt` per checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from alphazero_concepts.core.files import atomic_write_bytes
from alphazero_concepts.nn.network import AZNet, NetConfig, resolve_device

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint or series that cannot be used; the message names the file and what is wrong."""


@dataclass
class CheckpointMeta:
    """What a checkpoint is: where it came from and how strong it is (Elo relative to the series' first)."""

    name: str = "checkpoint"
    step: int = 0
    positions_seen: int = 0
    games_seen: int = 0
    parent: str | None = None
    stage: str = ""  # e.g. "supervised", "selfplay"
    elo: float | None = None
    seed: int | None = None
    code_version: str = ""
    wall_time_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CheckpointMeta:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def code_version() -> str:
    from alphazero_concepts import __version__

    return __version__


def save_checkpoint(path: str | Path, net: AZNet, meta: CheckpointMeta, *, half: bool = False) -> Path:
    """Save `net` with `meta` atomically; `half=True` stores float16 weights (half the size)."""
    path = Path(path)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in net.state_dict().items()}
    if not meta.code_version:
        meta = replace(meta, code_version=code_version())
    payload = {"format_version": FORMAT_VERSION, "config": net.config.to_dict(), "meta": meta.to_dict(),
               "state_dict": state}
    import io

    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint(path: str | Path, device: str | torch.device | None = "cpu") -> tuple[AZNet, CheckpointMeta]:
    """Load a checkpoint; raises CheckpointError naming the file for missing, truncated, corrupt or mismatched ones."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (truncated checkpoint)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        kind = "truncated or corrupt" if "zip" in str(exc).lower() or isinstance(exc, EOFError) else "unreadable"
        raise CheckpointError(f"{path}: {kind} checkpoint ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # weights_only refusals and other unpickling errors
        raise CheckpointError(f"{path}: not a checkpoint of this project ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or not {"config", "state_dict"} <= set(payload):
        raise CheckpointError(f"{path}: not a checkpoint of this project (missing 'config' or 'state_dict')")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format_version {version!r}, this code reads {FORMAT_VERSION}")
    try:
        config = NetConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid architecture config: {exc}") from exc
    net = AZNet(config)
    state = payload["state_dict"]
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the architecture {config.blocks}x{config.channels}: "
            f"missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''}"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path}: wrong architecture: {key} has shape {tuple(tensor.shape)}, "
                f"config expects {tuple(expected[key].shape)}"
            )
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    meta = CheckpointMeta.from_dict(payload.get("meta", {}))
    meta.extra = {**meta.extra, "sha256": file_sha256(path), "path": str(path)}
    net.to(resolve_device(device))
    net.eval()
    return net, meta


class Series:
    """A directory of checkpoints of one architecture, in training order, with `manifest.json`."""

    def __init__(self, directory: str | Path, name: str | None = None, config: NetConfig | None = None) -> None:
        self.directory = Path(directory)
        manifest = self.directory / MANIFEST
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text())
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"{manifest}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
            self.name = data.get("name", self.directory.name)
            self.config = NetConfig.from_dict(data["config"]) if data.get("config") else config
            self.entries = [CheckpointMeta.from_dict(m) for m in data.get("checkpoints", [])]
            self.info: dict = data.get("info", {})
        else:
            self.name = name or self.directory.name
            self.config = config
            self.entries = []
            self.info = {}

    @classmethod
    def open(cls, directory: str | Path) -> Series:
        """Open an existing series; CheckpointError when the directory has no manifest."""
        if not (Path(directory) / MANIFEST).is_file():
            raise CheckpointError(f"{directory}: not a checkpoint series (no {MANIFEST})")
        return cls(directory)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[CheckpointMeta]:
        return iter(self.entries)

    def path_of(self, name: str) -> Path:
        if name not in self.names:
            raise CheckpointError(f"{self.directory}: no checkpoint named {name!r} (have {', '.join(self.names)})")
        return self.directory / f"{name}.pt"

    def meta(self, name: str) -> CheckpointMeta:
        self.path_of(name)
        return next(m for m in self.entries if m.name == name)

    def add(self, net: AZNet, meta: CheckpointMeta, *, half: bool = False) -> Path:
        """Save `net` as the next checkpoint (replacing one of the same name) and rewrite the manifest."""
        if self.config is None:
            self.config = net.config
        elif self.config != net.config:
            raise CheckpointError(f"{self.directory}: series architecture differs from the checkpoint's")
        path = save_checkpoint(self.directory / f"{meta.name}.pt", net, meta, half=half)
        self.entries = [m for m in self.entries if m.name != meta.name] + [meta]
        self.write_manifest()
        return path

    def write_manifest(self) -> None:
        data = {"name": self.name, "config": self.config.to_dict() if self.config else None,
                "checkpoints": [m.to_dict() for m in self.entries], "info": self.info}
        atomic_write_bytes(self.directory / MANIFEST, (json.dumps(data, indent=2) + "\n").encode())

    def load(self, name: str | None = None, device: str | torch.device | None = "cpu") -> tuple[AZNet, CheckpointMeta]:
        """Load checkpoint `name` (default: the strongest), named as in this series' manifest (a series of links
        or copies may rename a checkpoint of another run, e.g. kd-022000 as kd96-022000)."""
        key = name or self.strongest()
        net, meta = load_checkpoint(self.path_of(key), device)
        meta.name = key
        return net, meta

    def strongest(self) -> str:
        """The checkpoint with the highest Elo; the last one when no Elo is known."""
        if not self.entries:
            raise CheckpointError(f"{self.directory}: empty series")
        rated = [m for m in self.entries if m.elo is not None]
        if rated:
            return max(rated, key=lambda m: m.elo).name
        return self.entries[-1].name

    def human_model(self, before: str | None = None) -> str | None:
        """A model of human play from this series: the latest checkpoint before `before` (default: the strongest)
        trained on human games only (stage "supervised"); the first checkpoint when none is; None when empty."""
        if not self.entries:
            return None
        names = self.names
        before = before or self.strongest()
        stop = names.index(before) if before in names else len(names)
        supervised = [m.name for m in self.entries[:stop] if m.stage == "supervised"]
        return supervised[-1] if supervised else names[0]

    def copy_to(self, directory: str | Path, names: list[str] | None = None, name: str | None = None) -> Series:
        """A new series at `directory` holding copies of checkpoints `names` (default all), in series order."""
        import shutil

        keep = [m for m in self.entries if names is None or m.name in names]
        missing = set(names or []) - {m.name for m in keep}
        if missing:
            raise CheckpointError(f"{self.directory}: no checkpoints named {sorted(missing)}")
        out = Series(directory, name=name or Path(directory).name, config=self.config)
        out.directory.mkdir(parents=True, exist_ok=True)
        for meta in keep:
            shutil.copyfile(self.path_of(meta.name), out.directory / f"{meta.name}.pt")
        out.entries = [CheckpointMeta.from_dict(m.to_dict()) for m in keep]
        out.info = dict(self.info)
        out.write_manifest()
        return out

    def set_elo(self, elos: dict[str, float]) -> None:
        for m in self.entries:
            if m.name in elos:
                m.elo = float(elos[m.name])
        self.write_manifest()
