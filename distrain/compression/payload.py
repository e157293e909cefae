"""Payloads: a miner's compressed pseudo-gradient as safetensors bytes plus JSON metadata.

safetensors is the only format we parse from the network: it cannot execute code, and its header
states every tensor's dtype, shape and offsets, so malformed input fails loudly instead of silently.

Codecs whose parameters each encode to one uint8 blob (the sparse ones) travel packed: one uint8
tensor holding every blob in the order of the model's parameters, and an int32 tensor of their lengths.
A safetensors header entry costs ~80 bytes per tensor, which at 0.14 bits a value would be a fifth of
a small model's payload; dense codecs keep one entry per parameter, where it is noise.

A decoded payload stays compact (`CompressedDelta`): a node gathering dozens of submissions would
otherwise hold a dense copy of the model for each. Everything is validated when it is decoded; a
parameter becomes a dense tensor only when it is read, one at a time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping

import safetensors.torch
import torch

from distrain.compression.base import Parsed
from distrain.compression.codecs import get_codec
from distrain.compression.wire import safetensors_bytes

_META_KEY = "distrain"
PACKED, LENGTHS = "packed", "packed.lengths"


class PayloadError(Exception):
    """A payload that cannot be used; `reason` is a short code recorded by validators."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class CompressedDelta(Mapping[str, torch.Tensor]):
    """A validated pseudo-gradient kept as its codec's compact data; `delta[name]` decodes one parameter.

    Each read decodes anew into a tensor the caller owns: use it and let it go, and no more than one
    parameter of the delta is ever dense. Its norm and finiteness are known from validation.
    """

    def __init__(self, parsed: dict[str, Parsed]):
        self._parsed = parsed
        self._norm = math.sqrt(sum(p.squared_norm for p in parsed.values()))

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._parsed[name].dense()

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed)

    def __len__(self) -> int:
        return len(self._parsed)

    def norm(self) -> float:
        """The global L2 norm over every parameter."""
        return self._norm


def encode_payload(delta: Mapping[str, torch.Tensor], codec_name: str, meta: dict) -> bytes:
    """Compress every tensor of `delta` with the codec and pack it with `meta` (must be JSON-able).

    A codec with `blob` parameters is packed in the order of `delta`, which must be the model's."""
    codec = get_codec(codec_name)
    encoded = codec.encode_all(delta.values())
    if codec.blob:
        blobs = [stored[""] for stored in encoded]
        lengths = torch.tensor([blob.numel() for blob in blobs], dtype=torch.int32)
        tensors = {PACKED: torch.cat(blobs), LENGTHS: lengths}
    else:
        tensors = {
            f"{name}{'/' + suffix if suffix else ''}": stored
            for name, parts in zip(delta, encoded)
            for suffix, stored in parts.items()
        }
    header = json.dumps({**meta, "codec": codec_name}, sort_keys=True)
    return safetensors_bytes(tensors, metadata={_META_KEY: header})


def estimated_payload_bytes(codec_name: str, shapes: Mapping[str, torch.Size]) -> int:
    """At most how many bytes of tensor data `encode_payload` makes of a delta of these shapes; the
    safetensors header adds about 100 bytes a tensor."""
    codec = get_codec(codec_name)
    lengths = 4 * len(shapes) if codec.blob else 0  # the int32 length of each parameter's blob
    return lengths + sum(codec.estimated_bytes(shape) for shape in shapes.values())


def decode_payload(
    data: bytes, shapes: dict[str, torch.Size], codec_name: str
) -> tuple[dict, CompressedDelta]:
    """Parse and validate a payload of codec `codec_name` against the expected parameter shapes; raise
    PayloadError.

    The codec is the run's, never the payload's own word: a payload that names another is refused
    (`wrong_codec`), or a miner could pick whichever decoder suits it and skip the run's compression.
    The delta's parameters come in the order of `shapes`.
    """
    codec = get_codec(codec_name)
    try:
        tensors = safetensors.torch.load(data)
        metadata = _header(data).get("__metadata__") or {}
    except Exception as error:  # safetensors raises several types on garbage; all mean one thing
        raise PayloadError("undecodable", type(error).__name__) from None
    try:
        meta = json.loads(metadata[_META_KEY])
    except (KeyError, TypeError, ValueError):
        raise PayloadError("malformed", "metadata") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("codec"), str):
        raise PayloadError("malformed", "metadata")
    if meta["codec"] != codec_name:
        raise PayloadError("wrong_codec", f"{meta['codec']!r}, the run's is {codec_name!r}")
    grouped = _unpack(tensors, shapes) if codec.blob else _group(tensors)
    if set(grouped) != set(shapes):
        raise PayloadError("malformed", "parameter names differ from the model's")
    parsed = {}
    for name, shape in shapes.items():
        try:
            parsed[name] = codec.parse(grouped[name], shape)
        except ValueError as error:
            raise PayloadError(str(error), name) from None
    return meta, CompressedDelta(parsed)


def _group(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """`{name: {suffix: tensor}}` from the `name/suffix` keys of an unpacked payload. The encoder writes
    a lone tensor as `name`, never `name/`, which would stand for the same tensor and overwrite it."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        name, slash, suffix = key.partition("/")
        if slash and not suffix:
            raise PayloadError("malformed", f"tensor key {key!r}")
        grouped.setdefault(name, {})[suffix] = tensor
    return grouped


def _unpack(
    tensors: dict[str, torch.Tensor], shapes: dict[str, torch.Size]
) -> dict[str, dict[str, torch.Tensor]]:
    """Each parameter's blob of a packed payload, in the order of `shapes`; PayloadError if the lengths
    do not split the packed bytes exactly into one blob per parameter."""
    packed, lengths = tensors.get(PACKED), tensors.get(LENGTHS)
    if (
        set(tensors) != {PACKED, LENGTHS}
        or packed.dtype != torch.uint8
        or packed.dim() != 1
        or lengths.dtype != torch.int32
        or lengths.shape != (len(shapes),)
        or bool((lengths < 0).any())
        or int(lengths.sum(dtype=torch.int64)) != packed.numel()
    ):
        raise PayloadError("malformed", "packed layout")
    blobs = packed.split(lengths.tolist())
    return {name: {"": blob} for name, blob in zip(shapes, blobs)}


def _header(data: bytes) -> dict:
    """The JSON header of a safetensors blob: 8 bytes of little-endian length, then the header."""
    length = int.from_bytes(data[:8], "little")
    if not 0 < length <= len(data) - 8:
        raise ValueError("header length out of range")
    return json.loads(data[8 : 8 + length])
