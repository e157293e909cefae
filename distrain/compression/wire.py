"""safetensors bytes, written with one copy of the tensors.

`safetensors.torch.save` (0.8) copies every tensor twice on its way to the Python `bytes` it returns,
once into the Rust serializer's buffer and once out of it: on an H200 that was 45% of a ddp round of
the 25M benchmark (four 97 MiB fp32 payloads a round). Here the header is built in Python and
`bytes.join` copies each tensor's memory once, straight into the result: fp32 payloads are encoded
about twice as fast (docs/performance.md, "Codecs"), and the bytes are the same.

This module only writes; everything read, above all from the network, is parsed and validated by the
library itself (`safetensors.torch.load`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import torch

DTYPE_CODES = {
    torch.int64: "I64",
    torch.float64: "F64",
    torch.float32: "F32",
    torch.int32: "I32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
"""safetensors' name of each dtype this writer knows, in the order the library lays tensors out (its
dtype enum's, descending: the widest first, so that every tensor starts at a multiple of its size)."""
_LAYOUT_RANK = {dtype: rank for rank, dtype in enumerate(DTYPE_CODES)}


def safetensors_bytes(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> bytes:
    """The safetensors file of `tensors` and the string-to-string `metadata`, as bytes: those
    `safetensors.torch.save` returns for them, tensors laid out in the library's order (by dtype, then by
    name) and the header's JSON alike, where `metadata` has at most one key (the library writes several
    in a random order). Unlike the library, it writes tensors that share memory once each.
    """
    for name, tensor in tensors.items():
        if tensor.dtype not in DTYPE_CODES:
            raise ValueError(f"{name}: this writer has no safetensors code for {tensor.dtype}")
    if metadata is not None and not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("safetensors metadata maps strings to strings")
    entries = sorted(tensors.items(), key=lambda entry: (_LAYOUT_RANK[entry[1].dtype], entry[0]))
    header: dict[str, object] = {} if metadata is None else {"__metadata__": dict(metadata)}
    offset = 0
    for name, tensor in entries:
        end = offset + tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": DTYPE_CODES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, end],
        }
        offset = end
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # spaces, as the library pads: the data then starts 8-aligned
    return b"".join([len(text).to_bytes(8, "little"), text, *(_memory(tensor) for _, tensor in entries)])


def _memory(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's bytes in C order, a view where it is already a contiguous CPU tensor."""
    return tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
