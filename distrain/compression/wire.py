"""safetensors bytes, written with one copy of the tensors.

`safetensors.torch.save` (0.8) copies every tensor twice on its way to the Python `bytes` it returns,
once into the Rust serializer's buffer and once out of it: on an H200 that was 45% of a ddp round of
the 25M benchmark (four 97 MiB fp32 payloads a round). Here the header is built in Python and
`bytes.join` copies each tensor's memory once, straight into the result: on this project's 2-core
machine 50 ms instead of 110 ms for 97 MiB, the same bytes (README, Performance).

This module only writes; everything read, above all from the network, is parsed and validated by the
library itself (`safetensors.torch.load`). Tests check that these are the library's own bytes.
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
"""safetensors' name of each dtype we write, in the order the library lays tensors out: widest first."""


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors file of `tensors` (and the string `metadata`) as bytes, as
    `safetensors.torch.save` would write it.

    The same bytes, too: the tensors are laid out in the library's order, by dtype (widest first, so
    that every tensor starts at a multiple of its item size) and then by name.
    """
    rank = {dtype: i for i, dtype in enumerate(DTYPE_CODES)}
    entries = sorted(tensors.items(), key=lambda entry: (rank.get(entry[1].dtype, -1), entry[0]))
    header: dict[str, object] = {} if metadata is None else {"__metadata__": metadata}
    offset = 0
    for name, tensor in entries:
        if tensor.dtype not in DTYPE_CODES:
            raise ValueError(f"{name}: safetensors has no dtype {tensor.dtype}")
        end = offset + tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": DTYPE_CODES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, end],
        }
        offset = end
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # spaces, as the library pads: the data then starts 8-aligned
    return b"".join([len(text).to_bytes(8, "little"), text, *(_memory(tensor) for _, tensor in entries)])


def _memory(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's bytes in C order, a view where it is already a contiguous CPU tensor."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
