"""The lc0 weight file (`pblczero.Net`, a protobuf message) read and written without protoc or the protobuf package.

The schema below is written from the field numbers of lczero-common's `net.proto` (the copy in
`../shared/data/models/maia/net.proto`); only the protobuf wire format itself is implemented here:

    varint (wire type 0)  uint32 and enum fields
    fixed64 (1)           not used by the schema; skipped when met as an unknown field
    length-delimited (2)  bytes, string and nested messages
    fixed32 (5)           float and fixed32 fields

A decoded message is a plain dict: field name → value (a list for repeated fields), nested messages are dicts.
Fields the schema does not know are kept under the key `UNKNOWN` as {field number: [raw values]}, so callers can
refuse a file that uses them instead of silently ignoring weights. Malformed or truncated input raises
`ProtobufError` naming the message path and byte offset.

Weights are stored as `Layer` messages; with the file's LINEAR16 encoding a layer holds little-endian uint16
values u and the float range [min_val, max_val], and the weight is min_val + u / 65535 · (max_val − min_val).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

UNKNOWN = "_unknown"
LC0_MAGIC = 0x1C0  # Net.magic of every lc0 weight file

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


class ProtobufError(ValueError):
    """Bytes that are not a valid encoding of the message they are read as (the message says where)."""


@dataclass(frozen=True)
class Field:
    """One field of a message: its name, scalar kind or nested message type, and whether it repeats."""

    name: str
    kind: str  # "uint32", "enum", "fixed32", "float", "bytes", "string" or "message"
    message: str | None = None
    repeated: bool = False


def _msg(name: str, message: str, repeated: bool = False) -> Field:
    return Field(name, "message", message, repeated)


_CONV_BLOCK = ("weights", "biases", "bn_means", "bn_stddivs", "bn_gammas", "bn_betas")

SCHEMA: dict[str, dict[int, Field]] = {
    "Net": {
        1: Field("magic", "fixed32"),
        2: Field("license", "string"),
        3: _msg("min_version", "EngineVersion"),
        4: _msg("format", "Format"),
        5: _msg("training_params", "TrainingParams"),
        10: _msg("weights", "Weights"),
    },
    "EngineVersion": {1: Field("major", "uint32"), 2: Field("minor", "uint32"), 3: Field("patch", "uint32")},
    "Format": {1: Field("weights_encoding", "enum"), 2: _msg("network_format", "NetworkFormat")},
    "NetworkFormat": {
        1: Field("input", "enum"),
        2: Field("output", "enum"),
        3: Field("network", "enum"),
        4: Field("policy", "enum"),
        5: Field("value", "enum"),
        6: Field("moves_left", "enum"),
    },
    "TrainingParams": {
        1: Field("training_steps", "uint32"),
        2: Field("learning_rate", "float"),
        3: Field("mse_loss", "float"),
        4: Field("policy_loss", "float"),
        5: Field("accuracy", "float"),
        6: Field("lc0_params", "string"),
    },
    "Layer": {1: Field("min_val", "float"), 2: Field("max_val", "float"), 3: Field("params", "bytes")},
    "ConvBlock": {i + 1: _msg(name, "Layer") for i, name in enumerate(_CONV_BLOCK)},
    "SEunit": {1: _msg("w1", "Layer"), 2: _msg("b1", "Layer"), 3: _msg("w2", "Layer"), 4: _msg("b2", "Layer")},
    "Residual": {1: _msg("conv1", "ConvBlock"), 2: _msg("conv2", "ConvBlock"), 3: _msg("se", "SEunit")},
    "Weights": {
        1: _msg("input", "ConvBlock"),
        2: _msg("residual", "Residual", repeated=True),
        11: _msg("policy1", "ConvBlock"),
        3: _msg("policy", "ConvBlock"),
        4: _msg("ip_pol_w", "Layer"),
        5: _msg("ip_pol_b", "Layer"),
        6: _msg("value", "ConvBlock"),
        7: _msg("ip1_val_w", "Layer"),
        8: _msg("ip1_val_b", "Layer"),
        9: _msg("ip2_val_w", "Layer"),
        10: _msg("ip2_val_b", "Layer"),
        12: _msg("moves_left", "ConvBlock"),
        13: _msg("ip1_mov_w", "Layer"),
        14: _msg("ip1_mov_b", "Layer"),
        15: _msg("ip2_mov_w", "Layer"),
        16: _msg("ip2_mov_b", "Layer"),
    },
}

# Enum values of net.proto, by the NetworkFormat / Format field that holds them (for checks and error messages).
ENUMS: dict[str, dict[int, str]] = {
    "weights_encoding": {0: "UNKNOWN", 1: "LINEAR16"},
    "input": {0: "INPUT_UNKNOWN", 1: "INPUT_CLASSICAL_112_PLANE", 2: "INPUT_112_WITH_CASTLING_PLANE"},
    "output": {0: "OUTPUT_UNKNOWN", 1: "OUTPUT_CLASSICAL", 2: "OUTPUT_WDL"},
    "network": {
        0: "NETWORK_UNKNOWN",
        1: "NETWORK_CLASSICAL",
        2: "NETWORK_SE",
        3: "NETWORK_CLASSICAL_WITH_HEADFORMAT",
        4: "NETWORK_SE_WITH_HEADFORMAT",
    },
    "policy": {0: "POLICY_UNKNOWN", 1: "POLICY_CLASSICAL", 2: "POLICY_CONVOLUTION"},
    "value": {0: "VALUE_UNKNOWN", 1: "VALUE_CLASSICAL", 2: "VALUE_WDL"},
    "moves_left": {0: "MOVES_LEFT_NONE", 1: "MOVES_LEFT_V1"},
}


def enum_name(field: str, value: int) -> str:
    """`NAME (value)` of an enum value, or `value (not in net.proto)` for a value this schema does not know."""
    name = ENUMS[field].get(value)
    return f"{name} ({value})" if name else f"{value} (not in net.proto)"


def enum_value(field: str, name: str) -> int:
    """The number of enum value `name` of `field` (KeyError listing the known names otherwise)."""
    for value, known in ENUMS[field].items():
        if known == name:
            return value
    raise KeyError(f"{field} has no value {name!r}; known: {', '.join(ENUMS[field].values())}")


# --------------------------------------------------------------------------------------------------------------
# Decoding


def _read_varint(data: memoryview, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    start = pos
    while True:
        if pos >= len(data):
            raise ProtobufError(f"{where}: truncated varint at byte {start}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError(f"{where}: varint longer than 10 bytes at byte {start}")


def _take(data: memoryview, pos: int, n: int, where: str, what: str) -> tuple[memoryview, int]:
    if n > len(data) - pos:
        raise ProtobufError(f"{where}: truncated: {what} needs {n} bytes at byte {pos}, only {len(data) - pos} left")
    return data[pos : pos + n], pos + n


def decode(data: bytes | memoryview, message: str = "Net", where: str = "") -> dict[str, Any]:
    """Decode `data` as the schema's message `message` (see the module docstring for the result's shape)."""
    schema = SCHEMA[message]
    where = where or message
    view = memoryview(data)
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(view):
        key, pos = _read_varint(view, pos, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError(f"{where}: field number 0 at byte {pos} (not a {message} message)")
        field = schema.get(number)
        label = f"{where}.{field.name}" if field else f"{where}.<field {number}>"
        if wire == _VARINT:
            raw: Any
            raw, pos = _read_varint(view, pos, label)
        elif wire == _FIXED64:
            chunk, pos = _take(view, pos, 8, label, "fixed64 value")
            raw = bytes(chunk)
        elif wire == _LEN:
            length, pos = _read_varint(view, pos, label)
            raw, pos = _take(view, pos, length, label, f"length-delimited value of {length} bytes")
        elif wire == _FIXED32:
            chunk, pos = _take(view, pos, 4, label, "fixed32 value")
            raw = bytes(chunk)
        else:
            raise ProtobufError(f"{label}: unsupported wire type {wire} at byte {pos} (not a {message} message)")
        if field is None:
            out.setdefault(UNKNOWN, {}).setdefault(number, []).append(bytes(raw) if wire == _LEN else raw)
            continue
        value = _convert(field, wire, raw, label)
        if field.repeated:
            out.setdefault(field.name, []).append(value)
        elif field.kind == "message" and field.name in out:
            out[field.name] = _merge(out[field.name], value)  # protobuf merges repeated occurrences of a message
        else:
            out[field.name] = value
    return out


_WIRE_OF = {"uint32": _VARINT, "enum": _VARINT, "fixed32": _FIXED32, "float": _FIXED32,
            "bytes": _LEN, "string": _LEN, "message": _LEN}


def _convert(field: Field, wire: int, raw: Any, label: str) -> Any:
    expected = _WIRE_OF[field.kind]
    if wire != expected:
        raise ProtobufError(f"{label}: wire type {wire} where {field.kind} (wire type {expected}) is expected")
    if field.kind in ("uint32", "enum"):
        return raw
    if field.kind == "fixed32":
        return struct.unpack("<I", raw)[0]
    if field.kind == "float":
        return struct.unpack("<f", raw)[0]
    if field.kind == "bytes":
        return bytes(raw)
    if field.kind == "string":
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtobufError(f"{label}: string is not UTF-8 ({exc})") from None
    assert field.message is not None
    return decode(raw, field.message, label)


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + value
        elif isinstance(value, dict) and isinstance(merged.get(key), dict) and key != UNKNOWN:
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------------------------------------------
# Encoding (writing small networks in lc0's format: tests and export)


def _varint(value: int) -> bytes:
    if value < 0:
        raise ProtobufError(f"cannot encode negative varint {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(msg: dict[str, Any], message: str = "Net") -> bytes:
    """Encode the dict `msg` as the schema's message `message` (fields in field-number order; None is skipped)."""
    schema = SCHEMA[message]
    by_name = {f.name: (number, f) for number, f in schema.items()}
    unknown = set(msg) - set(by_name) - {UNKNOWN}
    if unknown:
        raise ProtobufError(f"{message} has no field(s) {sorted(unknown)}")
    out = bytearray()
    for number, field in sorted(schema.items()):
        value = msg.get(field.name)
        if value is None:
            continue
        for item in value if field.repeated else [value]:
            out += _varint(number << 3 | _WIRE_OF[field.kind])
            out += _encode_value(field, item)
    return bytes(out)


def _encode_value(field: Field, value: Any) -> bytes:
    if field.kind in ("uint32", "enum"):
        return _varint(int(value))
    if field.kind == "fixed32":
        return struct.pack("<I", int(value))
    if field.kind == "float":
        return struct.pack("<f", float(value))
    if field.kind == "message":
        assert field.message is not None
        payload = encode(value, field.message)
    elif field.kind == "string":
        payload = str(value).encode("utf-8")
    else:
        payload = bytes(value)
    return _varint(len(payload)) + payload


# --------------------------------------------------------------------------------------------------------------
# LINEAR16 layers


def decode_layer(layer: dict[str, Any], where: str = "layer") -> np.ndarray:
    """The float32 values of a LINEAR16 `Layer`: min_val + u / 65535 · (max_val − min_val), u little-endian uint16."""
    params = layer.get("params", b"")
    if len(params) % 2:
        raise ProtobufError(f"{where}: LINEAR16 params have an odd number of bytes ({len(params)})")
    u = np.frombuffer(params, dtype="<u2").astype(np.float64)
    lo, hi = float(layer.get("min_val", 0.0)), float(layer.get("max_val", 0.0))
    return (lo + u / 65535.0 * (hi - lo)).astype(np.float32)


def encode_layer(values: np.ndarray) -> dict[str, Any]:
    """A LINEAR16 `Layer` of `values` (quantised to 65536 levels between their minimum and maximum)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size == 0:
        return {"min_val": 0.0, "max_val": 0.0, "params": b""}
    # the range as stored (float32), so the decoder's arithmetic starts from exactly these numbers
    lo, hi = float(np.float32(flat.min())), float(np.float32(flat.max()))
    scale = (hi - lo) or 1.0
    u = np.clip(np.rint((flat - lo) / scale * 65535.0), 0, 65535).astype("<u2")
    return {"min_val": lo, "max_val": hi, "params": u.tobytes()}
