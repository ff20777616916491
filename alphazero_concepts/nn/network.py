"""The AlphaZero-style residual network, with stable named layers and TransformerLens-style activation access.

Layer names (`AZNet.layer_names`) are the project's stable ids, used by every later stage:

    stem                     after the input convolution (+ batch norm, ReLU)
    block{i}.conv1           inside residual block i, after its first convolution (+ BN, ReLU)
    block{i}.conv2           after its second convolution (+ BN, and squeeze-excitation when enabled), before the skip
    block{i}                 the block's output (skip added, ReLU): the residual stream
    policy.conv              after the policy head's 3×3 convolution (+ BN, ReLU)
    policy.logits            the 4672 policy logits
    value.conv               after the value head's 1×1 convolution (+ BN, ReLU)
    value.fc1                the value head's hidden layer
    value.out                the value in [-1, 1]

Values are always from the side to move's perspective: +1 means the side to move wins. With a WDL head the
value is P(win) − P(loss), again for the side to move.

Both network families (`AZNet` here, `nn.lc0.Lc0Net`) derive from `HookedNet`, which finds their hook points by
module name and gives the one batched activation access every stage uses: `iter_latents` (batches) and
`latents` (whole arrays), over boards, positions, encoded planes or a sample that encodes itself.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import chess
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alphazero_concepts.chess.formats import BoardFormat, get_format
from alphazero_concepts.chess.positions import Position, boards_of
from alphazero_concepts.core.config import DictConfig

HookFn = Callable[[torch.Tensor], torch.Tensor | None]


@runtime_checkable
class PlaneSource(Protocol):
    """Positions that encode themselves by rows in a network's format (e.g. `concepts.samples.PositionSample`)."""

    def __len__(self) -> int: ...

    def planes(self, fmt: BoardFormat, rows: np.ndarray) -> np.ndarray: ...


# what `HookedNet.latents` reads: boards or (start FEN, moves) records (a one-pass iterable is enough), encoded
# planes (N, C, 8, 8), or a `PlaneSource`
Positions = Iterable[chess.Board | Position] | np.ndarray | PlaneSource


@dataclass(frozen=True)
class NetConfig(DictConfig):
    """Architecture of an `AZNet`. Serialises with `to_dict`/`from_dict` (unknown keys are rejected)."""

    blocks: int = 6
    channels: int = 64
    se: bool = False
    se_ratio: int = 4
    value_channels: int = 32
    value_hidden: int = 128
    wdl: bool = False
    input_planes: int = 119
    policy_planes: int = 73
    format: str = "alphazero"

    def __post_init__(self) -> None:
        for name in ("blocks", "channels", "value_channels", "value_hidden", "input_planes", "policy_planes"):
            if getattr(self, name) < 1:
                raise ValueError(f"NetConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.se and self.channels % self.se_ratio:
            raise ValueError(f"channels ({self.channels}) must be divisible by se_ratio ({self.se_ratio})")



class HookPoint(nn.Identity):
    """A named point in the network whose output can be read or replaced by hooks.

    Its layer name comes from where it sits in the module tree (`hook_layer_name`): `hook_stem` → stem,
    `hook_value_fc1` → value.fc1, `blocks.3.hook_conv1` → block3.conv1, `blocks.3.hook_out` → block3.
    """


def hook_layer_name(path: str) -> str:
    """The project's layer name of the `HookPoint` at module path `path` (see `HookPoint`)."""
    *owner, leaf = path.split(".")
    part = leaf.removeprefix("hook_")
    if owner[:1] == ["blocks"] and len(owner) == 2:
        return f"block{owner[1]}" + ("" if part == "out" else f".{part}")
    if owner or part == leaf:
        raise ValueError(f"{path}: a HookPoint must be a `hook_*` attribute of the network or of one of its blocks")
    return part.replace("_", ".", 1)


@dataclass
class LatentBatch:
    """One forward pass of `HookedNet.iter_latents`: the rows it covers and what the network gave for them."""

    rows: np.ndarray  # indices into the positions given
    policy: torch.Tensor  # (b, P) logits
    value: torch.Tensor  # (b,) from the side to move's view
    acts: dict[str, torch.Tensor]  # {layer: activation in its natural shape}, detached, on the network's device

    def flat(self, layer: str) -> torch.Tensor:
        """(b, d) activations of `layer` on the network's device (each position's activation flattened)."""
        return self.acts[layer].reshape(len(self.rows), -1)

    def numpy(self, layer: str, dtype: torch.dtype = torch.float32) -> np.ndarray:
        """(b, d) activations of `layer` as a numpy array of `dtype` (float32, or float16 for stores)."""
        return self.flat(layer).to("cpu", dtype).numpy()


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // ratio)
        self.fc2 = nn.Linear(channels // ratio, 2 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.fc1(x.mean(dim=(2, 3))))
        gamma, beta = self.fc2(s).chunk(2, dim=1)
        return torch.sigmoid(gamma)[..., None, None] * x + beta[..., None, None]


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, se: bool, se_ratio: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.se = SqueezeExcitation(channels, se_ratio) if se else None
        self.hook_conv1 = HookPoint()
        self.hook_conv2 = HookPoint()
        self.hook_out = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.hook_conv1(F.relu(self.bn1(self.conv1(x))))
        y = self.bn2(self.conv2(y))
        if self.se is not None:
            y = self.se(y)
        y = self.hook_conv2(y)
        return self.hook_out(F.relu(x + y))


class HookedNet(nn.Module):
    """Named hook points with TransformerLens-style access; a subclass names its `HookPoint`s as `HookPoint` says.

    Every network of the project (native or converted from lc0 weights) derives from this, so activation
    capture, steering and teaching see the same interface whatever the weights' origin. A subclass has a
    `config` with `format` and `wdl`, and a `hook_value_out` hook point.
    """

    config: Any  # NetConfig, or nn.lc0.Lc0Config

    @property
    def _hook_points(self) -> dict[str, HookPoint]:
        """{layer name: hook point}, input to output: every `HookPoint` of the module tree, named by its path."""
        found = self.__dict__.get("_hook_point_index")
        if found is None:
            found = {hook_layer_name(path): m for path, m in self.named_modules() if isinstance(m, HookPoint)}
            self.__dict__["_hook_point_index"] = found
        return found

    @property
    def layer_names(self) -> list[str]:
        """Stable names of every readable layer, input to output."""
        return list(self._hook_points)

    def layer_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one position's activation at layer `name` (without the batch dimension)."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def format(self) -> BoardFormat:
        """The input encoder and move map this network was built for (its config's `format`)."""
        return get_format(self.config.format)

    def _value_head(self, raw: torch.Tensor, out: dict[str, torch.Tensor]) -> None:
        """`out["value"]` (N,) from the value head's last layer, side to move's view, through the `value.out`
        hook: P(win) − P(loss) of a WDL head (its logits also as `out["wdl"]`), else tanh of the one output."""
        if self.config.wdl:
            out["wdl"] = raw
            probs = raw.softmax(dim=1)
            value = probs[:, 0] - probs[:, 2]
        else:
            value = torch.tanh(raw[:, 0])
        out["value"] = self.hook_value_out(value[:, None])[:, 0]

    def _unknown(self, name: str) -> str:
        return f"unknown layer {name!r}; known layers: {', '.join(self.layer_names)}"

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[str, HookFn]] = ()) -> Iterator[HookedNet]:
        """Run with forward hooks on named layers; every hook is removed on exit, even after an error.

        A hook receives the layer's output tensor; returning a tensor replaces the output (steering).
        """
        handles = []
        try:
            for name, fn in fwd_hooks:
                if name not in self._hook_points:
                    raise KeyError(self._unknown(name))
                handles.append(self._hook_points[name].register_forward_hook(_wrap(fn)))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def run_with_cache(
        self, planes: torch.Tensor, layers: Sequence[str] | None = None
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
        """One forward pass returning the outputs and the activations of `layers` (all layers when None).

        Cached activations are detached and keep their natural shape (N, C, 8, 8) or (N, D).
        """
        names = list(self.layer_names if layers is None else layers)
        cache: dict[str, torch.Tensor] = {}

        def saver(name: str) -> HookFn:
            def save(t: torch.Tensor) -> None:
                cache[name] = t.detach()

            return save

        with self.hooks([(n, saver(n)) for n in names]):
            outputs = self(planes)
        return outputs, cache

    def hook_count(self) -> int:
        """Number of forward hooks currently attached anywhere in the network (0 outside `hooks()`)."""
        return sum(len(m._forward_hooks) for m in self.modules())

    @torch.inference_mode()
    def iter_latents(self, positions: Positions, layers: Sequence[str] = (), batch_size: int = 256, *,
                     rows: np.ndarray | None = None) -> Iterator[LatentBatch]:
        """Run `positions` through the network `batch_size` at a time (no gradients), one `LatentBatch` each.

        Boards and `Position` records are encoded in the network's own format (`boards_of`: game-ordered
        positions cost one move each); planes are used as they are; a `PlaneSource` encodes its `rows` (all
        when None; `rows` needs planes or a source). The network runs in the mode it is in (callers set eval).
        """
        layers = list(layers)
        if isinstance(positions, np.ndarray | PlaneSource):
            order = np.arange(len(positions)) if rows is None else np.asarray(rows, dtype=np.int64)
            for lo in range(0, len(order), batch_size):
                chunk = order[lo:lo + batch_size]
                if isinstance(positions, np.ndarray):
                    x = np.ascontiguousarray(positions[lo:lo + len(chunk)] if rows is None else positions[chunk])
                else:
                    x = positions.planes(self.format, chunk)
                yield self._latent_batch(chunk, x, layers)
            return
        if rows is not None:
            raise TypeError("rows selects from planes or a PlaneSource, not from boards")
        boards = boards_of(positions)
        for lo in itertools.count(0, batch_size):
            batch = list(itertools.islice(boards, batch_size))
            if not batch:
                return
            yield self._latent_batch(np.arange(lo, lo + len(batch)), self.format.encode(batch), layers)

    def _latent_batch(self, rows: np.ndarray, planes: np.ndarray, layers: list[str]) -> LatentBatch:
        (policy, value), cache = self.run_with_cache(torch.from_numpy(planes).to(self.device), layers)
        return LatentBatch(rows, policy, value, cache)

    def latents(self, positions: Positions, layers: Sequence[str], batch_size: int = 256, *,
                dtype: torch.dtype = torch.float32, progress: Callable[[int, int], None] | None = None
                ) -> dict[str, np.ndarray]:
        """{layer: (N, d) activations} of every position, in memory (see `iter_latents` for the inputs).

        For the few thousand positions of a sample, a rollout line or a probe set; `concepts.activations.collect`
        streams larger sets to disk through `iter_latents`. `progress(done, total)` after each batch (total -1
        when the positions are a one-pass iterable).
        """
        layers = list(layers)
        sized = isinstance(positions, Sequence | np.ndarray | PlaneSource)
        total = len(positions) if sized else -1  # type: ignore[arg-type]
        parts: dict[str, list[np.ndarray]] = {name: [] for name in layers}
        for batch in self.iter_latents(positions, layers, batch_size):
            for name in layers:
                parts[name].append(batch.numpy(name, dtype))
            if progress:
                progress(int(batch.rows[-1]) + 1, total)
        empty = {name: np.zeros((0, int(np.prod(self.layer_shape(name)))), dtype=_NUMPY[dtype]) for name in layers}
        return {name: np.concatenate(p) if p else empty[name] for name, p in parts.items()}


class AZNet(HookedNet):
    """Residual tower with a convolutional policy head (73 planes × 64 squares) and a value head.

    `forward(planes)` returns `(policy_logits (N, 4672), value (N,))`, value from the side to move's view.
    """

    def __init__(self, config: NetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or NetConfig()
        c = config.channels
        self.stem_conv = nn.Conv2d(config.input_planes, c, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(c)
        self.hook_stem = HookPoint()
        self.blocks = nn.ModuleList(ResidualBlock(c, config.se, config.se_ratio) for _ in range(config.blocks))
        self.policy_conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.policy_bn = nn.BatchNorm2d(c)
        self.policy_out = nn.Conv2d(c, config.policy_planes, 1)
        self.hook_policy_conv = HookPoint()
        self.hook_policy_logits = HookPoint()
        self.value_conv = nn.Conv2d(c, config.value_channels, 1, bias=False)
        self.value_bn = nn.BatchNorm2d(config.value_channels)
        self.value_fc1 = nn.Linear(config.value_channels * 64, config.value_hidden)
        self.value_fc2 = nn.Linear(config.value_hidden, 3 if config.wdl else 1)
        self.hook_value_conv = HookPoint()
        self.hook_value_fc1 = HookPoint()
        self.hook_value_out = HookPoint()
        self.to(memory_format=torch.channels_last)  # faster convolutions on CPU, same results

    # ----------------------------------------------------------------------------------------------------------
    def layer_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one position's activation at layer `name` (without the batch dimension)."""
        c = self.config
        if name == "policy.logits":
            return (c.policy_planes * 64,)
        if name == "value.fc1":
            return (c.value_hidden,)
        if name == "value.out":
            return (1,)
        if name == "value.conv":
            return (c.value_channels, 8, 8)
        if name in self._hook_points:
            return (c.channels, 8, 8)
        raise KeyError(self._unknown(name))

    def forward_heads(self, planes: torch.Tensor) -> dict[str, torch.Tensor]:
        """All head outputs: `policy` logits (N, 4672), `value` (N,) in [-1, 1], and `wdl` logits (N, 3) if any."""
        x = planes.to(memory_format=torch.channels_last)
        x = self.hook_stem(F.relu(self.stem_bn(self.stem_conv(x))))
        for block in self.blocks:
            x = block(x)
        p = self.hook_policy_conv(F.relu(self.policy_bn(self.policy_conv(x))))
        logits = self.hook_policy_logits(self.policy_out(p).flatten(1))
        v = self.hook_value_conv(F.relu(self.value_bn(self.value_conv(x))))
        v = self.hook_value_fc1(F.relu(self.value_fc1(v.flatten(1))))
        out = {"policy": logits}
        self._value_head(self.value_fc2(v), out)
        return out

    def forward(self, planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy logits (N, 4672), value (N,)); the value is from the side to move's view."""
        out = self.forward_heads(planes)
        return out["policy"], out["value"]


_NUMPY = {torch.float32: np.float32, torch.float16: np.float16}


def _wrap(fn: HookFn) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]:
    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        return fn(output)

    return hook


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`cpu`, `cuda`, `cuda:1`, … or None/"auto" (CUDA when available); clear error when CUDA is missing."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str, what: str = "precision") -> str:
    """`precision` if it is one of `PRECISIONS`; ValueError naming `what` otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"{what} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a precision: "fp32" (none) or "bf16" (bfloat16 matrix products and convolutions,
    float32 weights). bf16 is faster where the hardware has bfloat16 units (AVX-512 BF16 or AMX CPUs, GPUs:
    `azc bench`'s `net_bf16_speedup`), and moves a network's value by about 0.003 on average, enough to cost a
    searching player about 90 Elo (docs/arena.md, "Precision")."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=check_precision(precision) == "bf16")


@torch.inference_mode()
def predict(net: nn.Module, planes: np.ndarray, batch_size: int = 512,
            precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """Policy logits (N, P) float32 and values (N,) of a batch of planes, side to move's view; no gradients.
    `precision` "bf16" runs the network under bfloat16 autocast (see `precision_context`)."""
    check_precision(precision)
    net.eval()
    device = next(net.parameters()).device
    logits_out, values_out = [], []
    for start in range(0, len(planes), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(planes[start : start + batch_size])).to(device)
        with precision_context(device, precision):
            logits, values = net(x)
        logits_out.append(logits.float().cpu().numpy())
        values_out.append(values.float().cpu().numpy())
    if not logits_out:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.float32)
    return np.concatenate(logits_out), np.concatenate(values_out)
