"""lc0 / Maia weight files (`.pb.gz`) as project networks: read, check, build an `Lc0Net`, and write back.

`load_lc0(path)` reads lc0's gzipped protobuf (see `lc0_proto`), checks its format enums, decodes the LINEAR16
weights and builds an `Lc0Net`: the project's own module tree and layer names, so activation capture, steering
and search treat it like a native `AZNet`. Supported (anything else is refused, naming the field and value):

    input       INPUT_CLASSICAL_112_PLANE (the encoder of `alphazero_concepts.chess.lc0_format`)
    network     NETWORK_CLASSICAL(_WITH_HEADFORMAT), NETWORK_SE(_WITH_HEADFORMAT): residual towers with or without
                squeeze-excitation
    policy      POLICY_CLASSICAL (1×1 conv + fully connected to 1858) or POLICY_CONVOLUTION (3×3 conv, 3×3 conv to
                80 planes, fixed map to 1858)
    value       VALUE_CLASSICAL (tanh) or VALUE_WDL (softmax over win, draw, loss; value = P(win) − P(loss))
    moves left  MOVES_LEFT_NONE or MOVES_LEFT_V1

Files without a network format are lc0's oldest (classical input, policy and value), as lc0 itself assumes.

lc0 stores a convolution with its batch norm as weights, biases, bn_means, bn_stddivs (which hold *variances*),
bn_gammas and bn_betas, any of biases/gammas/betas possibly absent (0/1/0). As lc0 does, the batch norm is folded
into the convolution: y = γ · (conv(x) + b − μ) / √(σ² + 1e-5) + β. Fully connected weights are [out][in], as
torch's. Squeeze-excitation: two fully connected layers on the channel means, the second giving 2C outputs,
gamma (first C) and beta: out = sigmoid(gamma) · x + beta, before the skip connection.

Layer names (`Lc0Net.layer_names`) are those of `AZNet`: stem, block{i}.conv1, block{i}.conv2, block{i},
policy.conv (the first policy convolution, + ReLU), policy.logits (1858), value.conv, value.fc1, value.out, and
with a moves-left head mlh.conv, mlh.fc1, mlh.out (plies left). Values are from the side to move's view.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alphazero_concepts.chess.lc0_format import CONV_POLICY_MAP, CONV_POLICY_PLANES, N_PLANES, POLICY_SIZE
from alphazero_concepts.core.config import DictConfig
from alphazero_concepts.nn import lc0_proto
from alphazero_concepts.nn.checkpoints import (
    CheckpointError,
    CheckpointMeta,
    atomic_write_bytes,
    code_version,
    file_sha256,
)
from alphazero_concepts.nn.lc0_proto import ProtobufError, decode_layer, encode_layer, enum_name, enum_value
from alphazero_concepts.nn.network import HookedNet, HookPoint, SqueezeExcitation, resolve_device

BN_EPSILON = 1e-5  # lc0's batch-norm epsilon


class Lc0FormatError(CheckpointError):
    """An lc0 weight file that cannot be used: unreadable, truncated, or a format this reader does not support."""


@dataclass(frozen=True)
class Lc0Config(DictConfig):
    """Architecture of an `Lc0Net`, as read from a weight file. `to_dict`/`from_dict` reject unknown keys."""

    blocks: int = 6
    channels: int = 64
    se: bool = True
    se_channels: int = 8
    policy_head: str = "convolution"  # or "classical"
    policy_channels: int = 64  # channels of the policy.conv layer
    value_channels: int = 32
    value_hidden: int = 128
    wdl: bool = True
    moves_left: bool = False
    mlh_channels: int = 8
    mlh_hidden: int = 128
    input_planes: int = N_PLANES
    policy_size: int = POLICY_SIZE
    format: str = "lc0"

    def __post_init__(self) -> None:
        if self.policy_head not in ("classical", "convolution"):
            raise ValueError(f"policy_head must be 'classical' or 'convolution', got {self.policy_head!r}")
        for name in ("blocks", "channels", "policy_channels", "value_channels", "value_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"Lc0Config.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.se and self.se_channels < 1:
            raise ValueError(f"Lc0Config.se_channels must be ≥ 1, got {self.se_channels}")
        if self.policy_head == "convolution" and self.policy_channels != self.channels:
            raise ValueError("a convolutional policy head's first convolution keeps the tower's channels")
        if (self.input_planes, self.policy_size, self.format) != (N_PLANES, POLICY_SIZE, "lc0"):
            raise ValueError("Lc0Net reads lc0's 112 planes and writes its 1858-move policy")



class Lc0Block(nn.Module):
    """lc0 residual block: conv-BN-ReLU, conv-BN, optional squeeze-excitation, skip, ReLU (BN folded in the convs)."""

    def __init__(self, channels: int, se_channels: int | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.se: SqueezeExcitation | None = None
        if se_channels:
            self.se = SqueezeExcitation(channels, max(1, channels // se_channels))
            self.se.fc1 = nn.Linear(channels, se_channels)
            self.se.fc2 = nn.Linear(se_channels, 2 * channels)
        self.hook_conv1 = HookPoint()
        self.hook_conv2 = HookPoint()
        self.hook_out = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.hook_conv1(F.relu(self.conv1(x)))
        y = self.conv2(y)
        if self.se is not None:
            y = self.se(y)
        y = self.hook_conv2(y)
        return self.hook_out(F.relu(x + y))


class Lc0Net(HookedNet):
    """A network of lc0's family with the project's layer names; `forward(planes)` → (logits (N, 1858), value (N,)).

    Reads lc0's 112 input planes (`net.format`); the value is from the side to move's view, in [-1, 1].
    """

    def __init__(self, config: Lc0Config | None = None) -> None:
        super().__init__()
        self.config = c = config or Lc0Config()
        self.stem_conv = nn.Conv2d(c.input_planes, c.channels, 3, padding=1)
        self.hook_stem = HookPoint()
        self.blocks = nn.ModuleList(Lc0Block(c.channels, c.se_channels if c.se else None) for _ in range(c.blocks))
        if c.policy_head == "convolution":
            self.policy_conv = nn.Conv2d(c.channels, c.channels, 3, padding=1)
            self.policy_out: nn.Module = nn.Conv2d(c.channels, CONV_POLICY_PLANES, 3, padding=1)
            # output position (plane · 64 + square) of each of the 1858 policy indices
            gather = np.argsort(np.where(CONV_POLICY_MAP < 0, np.iinfo(np.int64).max, CONV_POLICY_MAP))[:POLICY_SIZE]
            self.register_buffer("policy_gather", torch.from_numpy(gather), persistent=False)
        else:
            self.policy_conv = nn.Conv2d(c.channels, c.policy_channels, 1)
            self.policy_out = nn.Linear(c.policy_channels * 64, c.policy_size)
        self.hook_policy_conv = HookPoint()
        self.hook_policy_logits = HookPoint()
        self.value_conv = nn.Conv2d(c.channels, c.value_channels, 1)
        self.value_fc1 = nn.Linear(c.value_channels * 64, c.value_hidden)
        self.value_fc2 = nn.Linear(c.value_hidden, 3 if c.wdl else 1)
        self.hook_value_conv = HookPoint()
        self.hook_value_fc1 = HookPoint()
        self.hook_value_out = HookPoint()
        if c.moves_left:
            self.mlh_conv = nn.Conv2d(c.channels, c.mlh_channels, 1)
            self.mlh_fc1 = nn.Linear(c.mlh_channels * 64, c.mlh_hidden)
            self.mlh_fc2 = nn.Linear(c.mlh_hidden, 1)
            self.hook_mlh_conv = HookPoint()
            self.hook_mlh_fc1 = HookPoint()
            self.hook_mlh_out = HookPoint()
        self.to(memory_format=torch.channels_last)  # faster convolutions on CPU, same results

    def layer_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one position's activation at layer `name` (without the batch dimension)."""
        c = self.config
        shapes: dict[str, tuple[int, ...]] = {
            "policy.conv": (c.policy_channels, 8, 8),
            "policy.logits": (c.policy_size,),
            "value.conv": (c.value_channels, 8, 8),
            "value.fc1": (c.value_hidden,),
            "value.out": (1,),
            "mlh.conv": (c.mlh_channels, 8, 8),
            "mlh.fc1": (c.mlh_hidden,),
            "mlh.out": (1,),
        }
        if name not in self._hook_points:
            raise KeyError(self._unknown(name))
        return shapes.get(name, (c.channels, 8, 8))

    def forward_heads(self, planes: torch.Tensor) -> dict[str, torch.Tensor]:
        """All head outputs: `policy` (N, 1858), `value` (N,), plus `wdl` logits (N, 3) and `moves_left` (N,) if any."""
        x = planes.to(memory_format=torch.channels_last)
        x = self.hook_stem(F.relu(self.stem_conv(x)))
        for block in self.blocks:
            x = block(x)
        p = self.hook_policy_conv(F.relu(self.policy_conv(x)))
        if self.config.policy_head == "convolution":
            logits = self.policy_out(p).flatten(1).index_select(1, self.policy_gather)
        else:
            logits = self.policy_out(p.flatten(1))
        out = {"policy": self.hook_policy_logits(logits)}
        v = self.hook_value_conv(F.relu(self.value_conv(x)))
        v = self.hook_value_fc1(F.relu(self.value_fc1(v.flatten(1))))
        self._value_head(self.value_fc2(v), out)
        if self.config.moves_left:
            m = self.hook_mlh_conv(F.relu(self.mlh_conv(x)))
            m = self.hook_mlh_fc1(F.relu(self.mlh_fc1(m.flatten(1))))
            out["moves_left"] = self.hook_mlh_out(F.relu(self.mlh_fc2(m)))[:, 0]
        return out

    def forward(self, planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy logits (N, 1858), value (N,)); the value is from the side to move's view."""
        out = self.forward_heads(planes)
        return out["policy"], out["value"]


# --------------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Lc0Formats:
    """The format enums of a weight file, after lc0's own defaults for old files (names as in net.proto)."""

    weights_encoding: str
    input: str
    output: str
    network: str
    policy: str
    value: str
    moves_left: str

    def to_dict(self) -> dict:
        return asdict(self)


_SUPPORTED = {
    "weights_encoding": ("LINEAR16",),
    "input": ("INPUT_CLASSICAL_112_PLANE",),
    "network": ("NETWORK_CLASSICAL_WITH_HEADFORMAT", "NETWORK_SE_WITH_HEADFORMAT"),
    "policy": ("POLICY_CLASSICAL", "POLICY_CONVOLUTION"),
    "value": ("VALUE_CLASSICAL", "VALUE_WDL"),
    "moves_left": ("MOVES_LEFT_NONE", "MOVES_LEFT_V1"),
}


def read_formats(msg: dict[str, Any]) -> Lc0Formats:
    """Check the format enums of a decoded `Net` and return them; Lc0FormatError naming any unsupported one."""
    fmt = msg.get("format", {})
    _refuse_unknown_fields(fmt, "Format")
    has_nf = "network_format" in fmt
    nf = dict(fmt.get("network_format", {}))
    _refuse_unknown_fields(nf, "NetworkFormat")
    # lc0's treatment of old files: no network format = classical everything; NETWORK_CLASSICAL / NETWORK_SE
    # predate the head-format fields and mean classical policy and value heads
    if not has_nf:
        nf = {"input": 1, "output": 1, "network": 3, "policy": 1, "value": 1}
    elif nf.get("network", 0) in (1, 2):
        nf.update(network=nf["network"] + 2, policy=1, value=1)
    values = {"weights_encoding": fmt.get("weights_encoding", 0)} | {
        name: nf.get(name, 0) for name in ("input", "output", "network", "policy", "value", "moves_left")}
    for name, supported in _SUPPORTED.items():
        if lc0_proto.ENUMS[name].get(values[name]) not in supported:
            owner = "Format" if name == "weights_encoding" else "NetworkFormat"
            raise Lc0FormatError(f"unsupported {owner}.{name} = {enum_name(name, values[name])}; "
                                 f"this reader supports {', '.join(supported)}")
    return Lc0Formats(**{name: lc0_proto.ENUMS[name].get(v, str(v)) for name, v in values.items()})


def _refuse_unknown_fields(msg: dict[str, Any], where: str) -> None:
    unknown = msg.get(lc0_proto.UNKNOWN)
    if unknown:
        numbers = ", ".join(str(n) for n in sorted(unknown))
        raise Lc0FormatError(f"unsupported {where} field number(s) {numbers} (not in this reader's net.proto): "
                             "the file comes from a newer lc0 with features this reader does not implement")


class _Weights:
    """Decoded layers of a `Weights` message with shape checks that name the layer."""

    def __init__(self, weights: dict[str, Any]) -> None:
        self.msg = weights

    def layer(self, msg: dict[str, Any] | None, where: str, size: int | None = None) -> np.ndarray | None:
        if not msg or not msg.get("params"):
            return None
        values = decode_layer(msg, where)
        if size is not None and values.size != size:
            raise Lc0FormatError(f"layer {where} has {values.size} values, expected {size}")
        return values

    def required(self, msg: dict[str, Any] | None, where: str, size: int | None = None) -> np.ndarray:
        values = self.layer(msg, where, size)
        if values is None:
            raise Lc0FormatError(f"layer {where} is missing")
        return values

    def conv(self, name: str, msg: dict[str, Any] | None, in_ch: int, kernel: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """(weight (out, in, k, k), bias (out,)) of a conv block with its batch norm folded in, as lc0 does."""
        msg = msg or {}
        _refuse_unknown_fields(msg, name)
        means = self.layer(msg.get("bn_means"), f"{name}.bn_means")
        biases = self.layer(msg.get("biases"), f"{name}.biases")
        out_ch = len(means) if means is not None else len(biases) if biases is not None else 0
        if out_ch == 0:
            raise Lc0FormatError(f"conv block {name} has neither biases nor batch-norm means (missing or empty)")
        w = self.required(msg.get("weights"), f"{name}.weights")
        k2, rest = divmod(w.size, out_ch * in_ch)
        k = round(k2**0.5)
        if rest or k * k != k2 or (kernel is not None and k != kernel):
            want = f"{out_ch}×{in_ch}×{kernel}×{kernel}" if kernel else f"{out_ch}×{in_ch}×k×k"
            raise Lc0FormatError(f"layer {name}.weights has {w.size} values, expected {want}")
        weight = w.reshape(out_ch, in_ch, k, k).astype(np.float64)
        bias = biases.astype(np.float64) if biases is not None else np.zeros(out_ch)
        if biases is not None and len(biases) != out_ch:
            raise Lc0FormatError(f"layer {name}.biases has {len(biases)} values, expected {out_ch}")
        if means is not None:
            var = self.required(msg.get("bn_stddivs"), f"{name}.bn_stddivs", out_ch).astype(np.float64)
            gammas = self.layer(msg.get("bn_gammas"), f"{name}.bn_gammas", out_ch)
            betas = self.layer(msg.get("bn_betas"), f"{name}.bn_betas", out_ch)
            gamma = (gammas.astype(np.float64) if gammas is not None else np.ones(out_ch)) / np.sqrt(var + BN_EPSILON)
            beta = betas.astype(np.float64) if betas is not None else np.zeros(out_ch)
            weight = weight * gamma[:, None, None, None]
            bias = gamma * (bias - means.astype(np.float64)) + beta
        return weight.astype(np.float32), bias.astype(np.float32)

    def fc(self, name: str, w_msg: dict | None, b_msg: dict | None, in_dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(weight (out, in), bias (out,)) of a fully connected layer stored as `name`_w / `name`_b."""
        b = self.required(b_msg, f"{name}_b")
        w = self.required(w_msg, f"{name}_w", len(b) * in_dim)
        return w.reshape(len(b), in_dim), b


def net_from_message(msg: dict[str, Any]) -> tuple[Lc0Net, Lc0Formats]:
    """Build the `Lc0Net` of a decoded `Net` message (checked formats, folded batch norms, shape checks)."""
    magic = msg.get("magic")
    if magic is not None and magic != lc0_proto.LC0_MAGIC:
        raise Lc0FormatError(f"bad magic number {magic:#x} (lc0 weight files have {lc0_proto.LC0_MAGIC:#x})")
    _refuse_unknown_fields(msg, "Net")
    formats = read_formats(msg)
    if "weights" not in msg:
        raise Lc0FormatError("the file has no weights")
    wmsg = msg["weights"]
    _refuse_unknown_fields(wmsg, "Weights")
    reader = _Weights(wmsg)
    state: dict[str, np.ndarray] = {}

    def put(prefix: str, pair: tuple[np.ndarray, np.ndarray]) -> None:
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = pair

    put("stem_conv", reader.conv("input", wmsg.get("input"), N_PLANES, 3))
    channels = len(state["stem_conv.bias"])
    residual = wmsg.get("residual", [])
    if not residual:
        raise Lc0FormatError("the file has no residual blocks")
    se_flags = {bool(block.get("se")) for block in residual}
    se = se_flags == {True}
    if len(se_flags) > 1:
        raise Lc0FormatError("some residual blocks have a squeeze-excitation unit and others do not")
    if se != (formats.network == "NETWORK_SE_WITH_HEADFORMAT"):
        raise Lc0FormatError(f"NetworkFormat.network = {formats.network} but the residual blocks "
                             f"{'have' if se else 'lack'} squeeze-excitation units")
    se_channels = 0
    for i, block in enumerate(residual):
        _refuse_unknown_fields(block, f"residual[{i}]")
        put(f"blocks.{i}.conv1", reader.conv(f"residual[{i}].conv1", block.get("conv1"), channels, 3))
        put(f"blocks.{i}.conv2", reader.conv(f"residual[{i}].conv2", block.get("conv2"), channels, 3))
        if se:
            unit = block["se"]
            where = f"residual[{i}].se"
            b1 = reader.required(unit.get("b1"), f"{where}.b1")
            se_channels = se_channels or len(b1)
            if len(b1) != se_channels:
                raise Lc0FormatError(f"layer {where}.b1 has {len(b1)} values, expected {se_channels}")
            state[f"blocks.{i}.se.fc1.weight"] = reader.required(unit.get("w1"), f"{where}.w1",
                                                                 se_channels * channels).reshape(se_channels, channels)
            state[f"blocks.{i}.se.fc1.bias"] = b1
            state[f"blocks.{i}.se.fc2.bias"] = reader.required(unit.get("b2"), f"{where}.b2", 2 * channels)
            state[f"blocks.{i}.se.fc2.weight"] = reader.required(
                unit.get("w2"), f"{where}.w2", 2 * channels * se_channels).reshape(2 * channels, se_channels)
    if formats.policy == "POLICY_CONVOLUTION":
        put("policy_conv", reader.conv("policy1", wmsg.get("policy1"), channels, 3))
        put("policy_out", reader.conv("policy", wmsg.get("policy"), channels, 3))
        if len(state["policy_out.bias"]) != CONV_POLICY_PLANES:
            raise Lc0FormatError(f"conv policy layer has {len(state['policy_out.bias'])} planes, "
                                 f"expected {CONV_POLICY_PLANES}")
        policy_channels = channels
    else:
        put("policy_conv", reader.conv("policy", wmsg.get("policy"), channels, 1))
        policy_channels = len(state["policy_conv.bias"])
        put("policy_out", reader.fc("ip_pol", wmsg.get("ip_pol_w"), wmsg.get("ip_pol_b"), policy_channels * 64))
        if len(state["policy_out.bias"]) != POLICY_SIZE:
            raise Lc0FormatError(f"layer ip_pol_b has {len(state['policy_out.bias'])} values, expected {POLICY_SIZE}")
    put("value_conv", reader.conv("value", wmsg.get("value"), channels, 1))
    value_channels = len(state["value_conv.bias"])
    put("value_fc1", reader.fc("ip1_val", wmsg.get("ip1_val_w"), wmsg.get("ip1_val_b"), value_channels * 64))
    value_hidden = len(state["value_fc1.bias"])
    put("value_fc2", reader.fc("ip2_val", wmsg.get("ip2_val_w"), wmsg.get("ip2_val_b"), value_hidden))
    wdl = formats.value == "VALUE_WDL"
    if len(state["value_fc2.bias"]) != (3 if wdl else 1):
        raise Lc0FormatError(f"layer ip2_val_b has {len(state['value_fc2.bias'])} values, expected "
                             f"{3 if wdl else 1} for {formats.value}")
    moves_left = formats.moves_left == "MOVES_LEFT_V1"
    mlh_channels = mlh_hidden = 1
    if moves_left:
        put("mlh_conv", reader.conv("moves_left", wmsg.get("moves_left"), channels, 1))
        mlh_channels = len(state["mlh_conv.bias"])
        put("mlh_fc1", reader.fc("ip1_mov", wmsg.get("ip1_mov_w"), wmsg.get("ip1_mov_b"), mlh_channels * 64))
        mlh_hidden = len(state["mlh_fc1.bias"])
        put("mlh_fc2", reader.fc("ip2_mov", wmsg.get("ip2_mov_w"), wmsg.get("ip2_mov_b"), mlh_hidden))
        if len(state["mlh_fc2.bias"]) != 1:
            raise Lc0FormatError(f"layer ip2_mov_b has {len(state['mlh_fc2.bias'])} values, expected 1")
    config = Lc0Config(
        blocks=len(residual), channels=channels, se=se, se_channels=se_channels or 1,
        policy_head="convolution" if formats.policy == "POLICY_CONVOLUTION" else "classical",
        policy_channels=policy_channels, value_channels=value_channels, value_hidden=value_hidden, wdl=wdl,
        moves_left=moves_left, mlh_channels=mlh_channels, mlh_hidden=mlh_hidden,
    )
    net = Lc0Net(config)
    net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)
    return net.eval(), formats


def read_lc0_file(path: str | Path) -> dict[str, Any]:
    """The decoded `Net` message of a `.pb.gz` (or uncompressed `.pb`) file; Lc0FormatError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise Lc0FormatError(f"{path}: no such lc0 weight file")
    raw = path.read_bytes()
    if not raw:
        raise Lc0FormatError(f"{path}: empty file (truncated lc0 weight file)")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise Lc0FormatError(f"{path}: truncated or corrupt gzip data ({type(exc).__name__}: {exc})") from exc
    try:
        return lc0_proto.decode(raw, "Net")
    except ProtobufError as exc:
        raise Lc0FormatError(f"{path}: not a readable lc0 weight file ({exc})") from exc


def load_lc0(path: str | Path, device: str | torch.device | None = "cpu") -> tuple[Lc0Net, CheckpointMeta]:
    """Load an lc0/Maia weight file as an `Lc0Net` on `device`, in eval mode, with its `CheckpointMeta`.

    meta.name is the file name without `.pb.gz`; meta.extra holds sha256, path, source "lc0", the format enums,
    and the file's license, minimum lc0 version and training steps when it records them.
    """
    path = Path(path)
    msg = read_lc0_file(path)
    try:
        net, formats = net_from_message(msg)
    except Lc0FormatError as exc:
        raise Lc0FormatError(f"{path}: {exc}") from exc
    name = path.name.removesuffix(".gz").removesuffix(".pb")
    extra: dict[str, Any] = {"sha256": file_sha256(path), "path": str(path), "source": "lc0", **formats.to_dict()}
    if "license" in msg:
        extra["license"] = msg["license"]
    if "min_version" in msg:
        v = msg["min_version"]
        extra["min_version"] = f"{v.get('major', 0)}.{v.get('minor', 0)}.{v.get('patch', 0)}"
    steps = msg.get("training_params", {}).get("training_steps")
    if steps is not None:
        extra["training_steps"] = steps
    meta = CheckpointMeta(name=name, step=int(steps or 0), stage="lc0", code_version=code_version(), extra=extra)
    return net.to(resolve_device(device)), meta


# --------------------------------------------------------------------------------------------------------------
# Writing


def net_to_message(net: Lc0Net) -> dict[str, Any]:
    """A `Net` message holding `net`'s weights (LINEAR16; batch norms are already folded: weights and biases only)."""
    c = net.config
    sd = {k: v.detach().cpu().double().numpy() for k, v in net.state_dict().items()}

    def conv(prefix: str) -> dict[str, Any]:
        return {"weights": encode_layer(sd[f"{prefix}.weight"]), "biases": encode_layer(sd[f"{prefix}.bias"])}

    weights: dict[str, Any] = {"input": conv("stem_conv"), "residual": []}
    for i in range(c.blocks):
        block: dict[str, Any] = {"conv1": conv(f"blocks.{i}.conv1"), "conv2": conv(f"blocks.{i}.conv2")}
        if c.se:
            block["se"] = {"w1": encode_layer(sd[f"blocks.{i}.se.fc1.weight"]),
                           "b1": encode_layer(sd[f"blocks.{i}.se.fc1.bias"]),
                           "w2": encode_layer(sd[f"blocks.{i}.se.fc2.weight"]),
                           "b2": encode_layer(sd[f"blocks.{i}.se.fc2.bias"])}
        weights["residual"].append(block)
    if c.policy_head == "convolution":
        weights["policy1"], weights["policy"] = conv("policy_conv"), conv("policy_out")
    else:
        weights["policy"] = conv("policy_conv")
        weights["ip_pol_w"], weights["ip_pol_b"] = encode_layer(sd["policy_out.weight"]), \
            encode_layer(sd["policy_out.bias"])
    weights["value"] = conv("value_conv")
    for src, dst in (("value_fc1", "ip1_val"), ("value_fc2", "ip2_val"), ("mlh_fc1", "ip1_mov"),
                     ("mlh_fc2", "ip2_mov")):
        if f"{src}.weight" in sd:
            weights[f"{dst}_w"], weights[f"{dst}_b"] = encode_layer(sd[f"{src}.weight"]), \
                encode_layer(sd[f"{src}.bias"])
    if c.moves_left:
        weights["moves_left"] = conv("mlh_conv")
    network_format = {
        "input": enum_value("input", "INPUT_CLASSICAL_112_PLANE"),
        "output": enum_value("output", "OUTPUT_WDL" if c.wdl else "OUTPUT_CLASSICAL"),
        "network": enum_value("network", "NETWORK_SE_WITH_HEADFORMAT" if c.se else
                              "NETWORK_CLASSICAL_WITH_HEADFORMAT"),
        "policy": enum_value("policy", "POLICY_CONVOLUTION" if c.policy_head == "convolution" else
                             "POLICY_CLASSICAL"),
        "value": enum_value("value", "VALUE_WDL" if c.wdl else "VALUE_CLASSICAL"),
        "moves_left": enum_value("moves_left", "MOVES_LEFT_V1" if c.moves_left else "MOVES_LEFT_NONE"),
    }
    return {"magic": lc0_proto.LC0_MAGIC, "format": {"weights_encoding": enum_value("weights_encoding", "LINEAR16"),
                                                     "network_format": network_format}, "weights": weights}


def save_lc0(path: str | Path, net: Lc0Net) -> Path:
    """Write `net` as a gzipped lc0 weight file (weights quantised to LINEAR16, 16 bits per layer range)."""
    path = Path(path)
    atomic_write_bytes(path, gzip.compress(lc0_proto.encode(net_to_message(net), "Net"), mtime=0))
    return path
