"""The codec presets a recipe can name in `compression.codec`, and the one we recommend.

Every preset is a fixed, named configuration: a payload names its preset, and a decoder rebuilds the
codec from the name alone. Bits per parameter below are for large tensors (header overhead aside).
"""

from __future__ import annotations

import torch

from distrain.compression.base import Codec
from distrain.compression.blockwise import BlockwiseInt8
from distrain.compression.dense import DenseCodec
from distrain.compression.lowrank import LowRank
from distrain.compression.topk import ChunkedTopK
from distrain.config import RecipeError

PRESETS: list[Codec] = [
    DenseCodec("fp32", torch.float32),  # 32 bits, lossless
    DenseCodec("fp16", torch.float16),  # 16 bits
    DenseCodec("bf16", torch.bfloat16),  # 16 bits, fp32's range
    BlockwiseInt8("int8", block=256),  # 8.125 bits
    # Templar's configuration, ideally packed: 64 of each 4096 values (1.56%), 12-bit indices, 2-bit
    # values from a per-tensor table of 2 magnitudes: 64·14/4096 ≈ 0.22 bits.
    ChunkedTopK("templar", chunk=4096, k=64, value_bits=2, index_coding="fixed"),
    # Recommended: 40 of each 4096 (0.98%), Rice-coded indices (~8.6 bits), 2-bit values: ~0.105 bits.
    ChunkedTopK("topk", chunk=4096, k=40, value_bits=2, index_coding="rice"),
    # The same budget spent on the largest 2-D DCT coefficients of each 64×64 chunk (DeMo).
    ChunkedTopK("topk-dct", chunk=4096, k=40, value_bits=2, index_coding="rice", dct=True),
    # Finer values at the same density, for quality comparisons: ~0.125 bits.
    ChunkedTopK("topk-q4", chunk=4096, k=40, value_bits=4, index_coding="rice"),
    # Rank-r int8 factors of every matrix, r from a budget of 0.1 bits/value; vectors as int8.
    LowRank("lowrank", bits_per_value=0.1),
]

CODECS: dict[str, Codec] = {codec.name: codec for codec in PRESETS}

RECOMMENDED = "topk"
"""The preset we expect to match uncompressed DiLoCo with error feedback on, at ~1/300 of fp32's bytes."""


def get_codec(name: str) -> Codec:
    if name not in CODECS:
        raise RecipeError(f"recipe key 'compression.codec' is '{name}', expected one of {sorted(CODECS)}")
    return CODECS[name]
