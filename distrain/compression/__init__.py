"""Codecs for pseudo-gradients and the safetensors wire format of payloads."""

from distrain.compression.codecs import CODECS, Codec, DenseCodec, get_codec
from distrain.compression.payload import PayloadError, decode_payload, encode_payload

__all__ = ["CODECS", "Codec", "DenseCodec", "get_codec", "PayloadError", "decode_payload", "encode_payload"]
