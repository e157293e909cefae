"""Codecs for pseudo-gradients, error feedback, and the safetensors wire format of payloads."""

from distrain.compression.base import Codec
from distrain.compression.blockwise import BlockwiseInt8
from distrain.compression.codecs import (
    CODECS,
    PRESET_INNER_STEPS,
    RECOMMENDED,
    SPARSE_ASSIGNMENT_MARGIN,
    SPARSE_OUTER_LR,
    get_codec,
    outer_overrides,
    recipe_advice,
)
from distrain.compression.dense import DenseCodec
from distrain.compression.feedback import ErrorFeedback
from distrain.compression.payload import (
    CompressedDelta,
    PayloadError,
    decode_payload,
    encode_payload,
    estimated_payload_bytes,
)
from distrain.compression.topk import ChunkedTopK

__all__ = [
    "CODECS",
    "PRESET_INNER_STEPS",
    "RECOMMENDED",
    "SPARSE_ASSIGNMENT_MARGIN",
    "SPARSE_OUTER_LR",
    "BlockwiseInt8",
    "ChunkedTopK",
    "Codec",
    "CompressedDelta",
    "DenseCodec",
    "ErrorFeedback",
    "PayloadError",
    "decode_payload",
    "encode_payload",
    "estimated_payload_bytes",
    "get_codec",
    "outer_overrides",
    "recipe_advice",
]
