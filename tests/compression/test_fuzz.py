"""Untrusted bytes through `decode_payload`: a PayloadError every time, never another exception or a hang."""

import random

import numpy as np
import pytest
import safetensors.torch
import torch

from distrain.compression import CODECS, PayloadError, decode_payload, encode_payload

SHAPES = {"w": torch.Size([70, 90]), "b": torch.Size([90]), "e": torch.Size([4096 + 5])}
META = '{"codec": "%s", "round": 3}'


def _payload(codec: str) -> bytes:
    generator = torch.Generator().manual_seed(0)
    delta = {name: torch.randn(shape, generator=generator) for name, shape in SHAPES.items()}
    return encode_payload(delta, codec, {"round": 3})


def _byte_mutations(valid: bytes, rng: random.Random, count: int):
    """Random bytes, truncations, byte flips and spliced garbage anywhere in a valid payload."""
    for _ in range(count):
        kind = rng.randrange(4)
        if kind == 0:
            yield rng.randbytes(rng.randrange(0, 600))
        elif kind == 1:
            yield valid[: rng.randrange(len(valid))]
        elif kind == 2:
            data = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield bytes(data)
        else:
            cut = rng.randrange(len(valid))
            yield valid[:cut] + rng.randbytes(rng.randrange(1, 64)) + valid[cut:]


def _tensor_mutations(valid: bytes, codec: str, rng: random.Random, count: int):
    """Well-formed safetensors whose tensors lie: flipped, cut, lengthened or replaced bytes."""
    tensors = safetensors.torch.load(valid)
    for _ in range(count):
        forged = dict(tensors)
        key = rng.choice(sorted(forged))
        raw = bytearray(forged[key].contiguous().view(torch.uint8).flatten().numpy().tobytes())
        kind = rng.randrange(4)
        if kind == 0:
            for _ in range(rng.randrange(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        elif kind == 1:
            raw = raw[: rng.randrange(len(raw))]
        elif kind == 2:
            raw += rng.randbytes(rng.randrange(1, 40))
        else:
            raw = bytearray(rng.randbytes(rng.randrange(0, 2 * len(raw) + 1)))
        forged[key] = torch.from_numpy(np.frombuffer(bytes(raw), np.uint8).copy())
        if raw and len(raw) % tensors[key].element_size() == 0:  # keep the dtype where the size allows
            forged[key] = forged[key].view(tensors[key].dtype)
        yield safetensors.torch.save(forged, metadata={"distrain": META % codec})


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_mutated_payloads_raise_payload_error_only(codec):
    valid = _payload(codec)
    decode_payload(valid, SHAPES)  # the unmutated payload is fine
    rng, reasons = random.Random(codec), set()
    forged = [*_byte_mutations(valid, rng, 100), *_tensor_mutations(valid, codec, rng, 100)]
    for data in forged:
        try:
            _, delta = decode_payload(data, SHAPES)
        except PayloadError as error:
            reasons.add(error.reason)
        else:  # a flipped value can still make a valid payload: then it must be a usable one
            assert all(torch.isfinite(t).all() and t.shape == SHAPES[n] for n, t in delta.items())
    assert {"undecodable", "malformed"} <= reasons
    if codec not in ("fp32", "fp16", "bf16", "int8"):  # sparse decoders also count and bound indices
        assert reasons & {"bad_count", "index_out_of_range", "truncated"}, reasons


def test_payload_errors_carry_the_decoders_reason():
    stored = safetensors.torch.load(_payload("topk"))
    stored["b"] = stored["b"].clone()
    stored["b"][:4] = torch.tensor([0, 0, 192, 127], dtype=torch.uint8)  # a float32 NaN as first magnitude
    forged = safetensors.torch.save(stored, metadata={"distrain": META % "topk"})
    with pytest.raises(PayloadError, match="non_finite: b"):
        decode_payload(forged, SHAPES)
