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
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alphazero_concepts.chess.formats import BoardFormat, get_format
from alphazero_concepts.core.config import DictConfig

HookFn = Callable[[torch.Tensor], torch.Tensor | None]


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
    """A named point in the network whose output can be read or replaced by hooks."""


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
    """Named hook points with TransformerLens-style access; subclasses fill `_hook_points` in order.

    Every network of the project (native or converted from lc0 weights) derives from this, so activation
    capture, steering and teaching see the same interface whatever the weights' origin.
    """

    _hook_points: dict[str, HookPoint]

    @property
    def layer_names(self) -> list[str]:
        """Stable names of every readable layer, input to output."""
        return list(self._hook_points)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

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
        self._hook_points: dict[str, HookPoint] = {"stem": self.hook_stem}
        for i, block in enumerate(self.blocks):
            self._hook_points[f"block{i}.conv1"] = block.hook_conv1
            self._hook_points[f"block{i}.conv2"] = block.hook_conv2
            self._hook_points[f"block{i}"] = block.hook_out
        self._hook_points.update(
            {
                "policy.conv": self.hook_policy_conv,
                "policy.logits": self.hook_policy_logits,
                "value.conv": self.hook_value_conv,
                "value.fc1": self.hook_value_fc1,
                "value.out": self.hook_value_out,
            }
        )
        self.to(memory_format=torch.channels_last)  # faster convolutions on CPU, same results

    # ----------------------------------------------------------------------------------------------------------
    @property
    def format(self) -> BoardFormat:
        """The input encoder and move map this network was built for."""
        return get_format(self.config.format)

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
        raw = self.value_fc2(v)
        if self.config.wdl:
            out["wdl"] = raw
            probs = raw.softmax(dim=1)
            value = probs[:, 0] - probs[:, 2]
        else:
            value = torch.tanh(raw[:, 0])
        out["value"] = self.hook_value_out(value[:, None])[:, 0]
        return out

    def forward(self, planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy logits (N, 4672), value (N,)); the value is from the side to move's view."""
        out = self.forward_heads(planes)
        return out["policy"], out["value"]


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


@torch.inference_mode()
def predict(net: nn.Module, planes: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Policy logits (N, P) float32 and values (N,) of a batch of planes, side to move's view; no gradients."""
    net.eval()
    device = next(net.parameters()).device
    logits_out, values_out = [], []
    for start in range(0, len(planes), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(planes[start : start + batch_size])).to(device)
        logits, values = net(x)
        logits_out.append(logits.float().cpu().numpy())
        values_out.append(values.float().cpu().numpy())
    if not logits_out:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.float32)
    return np.concatenate(logits_out), np.concatenate(values_out)
