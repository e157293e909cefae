"""Untrusted bytes through `decode_payload`: a PayloadError every time, never another exception or a hang."""

import random

import numpy as np
import pytest
import safetensors.torch
import torch

from distrain.compression import CODECS, PayloadError, decode_payload, encode_payload
from distrain.compression.payload import LENGTHS, PACKED

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


def _mutate(raw: bytearray, rng: random.Random) -> bytearray:
    """Flipped, cut, lengthened or replaced bytes."""
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
    return raw


def _as_tensor(raw: bytes, like: torch.Tensor) -> torch.Tensor:
    tensor = torch.from_numpy(np.frombuffer(bytes(raw), np.uint8).copy())
    if raw and len(raw) % like.element_size() == 0:  # keep the dtype where the size allows
        tensor = tensor.view(like.dtype)
    return tensor


def _tensor_mutations(valid: bytes, codec: str, rng: random.Random, count: int):
    """Well-formed safetensors whose tensors lie; in a packed payload, half of them lie about one
    parameter's blob with lengths that still add up, so that the codec's own decoder is reached."""
    tensors = safetensors.torch.load(valid)
    for _ in range(count):
        forged = dict(tensors)
        if PACKED in tensors and rng.random() < 0.5:
            blobs = [bytearray(b.numpy().tobytes()) for b in tensors[PACKED].split(tensors[LENGTHS].tolist())]
            index = rng.randrange(len(blobs))
            blobs[index] = _mutate(blobs[index], rng)
            forged[PACKED] = torch.from_numpy(np.frombuffer(b"".join(blobs), np.uint8).copy())
            forged[LENGTHS] = torch.tensor([len(b) for b in blobs], dtype=torch.int32)
        else:
            key = rng.choice(sorted(forged))
            raw = bytearray(forged[key].contiguous().view(torch.uint8).flatten().numpy().tobytes())
            forged[key] = _as_tensor(_mutate(raw, rng), tensors[key])
        yield safetensors.torch.save(forged, metadata={"distrain": META % codec})


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_mutated_payloads_raise_payload_error_only(codec):
    valid = _payload(codec)
    decode_payload(valid, SHAPES, codec)  # the unmutated payload is fine
    rng, reasons = random.Random(codec), set()
    forged = [*_byte_mutations(valid, rng, 100), *_tensor_mutations(valid, codec, rng, 100)]
    for data in forged:
        try:
            _, delta = decode_payload(data, SHAPES, codec)
        except PayloadError as error:
            reasons.add(error.reason)
        else:  # a flipped value can still make a valid payload: then it must be a usable one
            assert all(torch.isfinite(t).all() and t.shape == SHAPES[n] for n, t in delta.items())
    assert {"undecodable", "malformed"} <= reasons
    if codec not in ("fp32", "fp16", "bf16", "int8"):  # sparse decoders also count and bound indices
        assert reasons & {"bad_count", "index_out_of_range", "truncated"}, reasons


def test_payload_errors_carry_the_decoders_reason():
    stored = safetensors.torch.load(_payload("topk"))
    lengths = stored[LENGTHS].tolist()
    b = sum(lengths[: list(SHAPES).index("b")])  # where parameter b's blob starts
    stored[PACKED] = stored[PACKED].clone()
    stored[PACKED][b : b + 4] = torch.tensor([0, 0, 192, 127], dtype=torch.uint8)  # NaN first magnitude
    forged = safetensors.torch.save(stored, metadata={"distrain": META % "topk"})
    with pytest.raises(PayloadError, match="non_finite: b"):
        decode_payload(forged, SHAPES, "topk")


def test_packed_lengths_must_split_the_blob_exactly():
    stored = safetensors.torch.load(_payload("dct-sign"))
    for lengths in ([1, 2], [-1, *stored[LENGTHS].tolist()[1:]], [x + 1 for x in stored[LENGTHS].tolist()]):
        forged = dict(stored, **{LENGTHS: torch.tensor(lengths, dtype=torch.int32)})
        with pytest.raises(PayloadError, match="malformed: packed layout"):
            decode_payload(
                safetensors.torch.save(forged, metadata={"distrain": META % "dct-sign"}), SHAPES, "dct-sign"
            )
    # The packed layout of a sparse codec is the only one its decoder accepts.
    unpacked = {name: torch.zeros(4, dtype=torch.uint8) for name in SHAPES}
    with pytest.raises(PayloadError, match="malformed"):
        decode_payload(
            safetensors.torch.save(unpacked, metadata={"distrain": META % "dct-sign"}), SHAPES, "dct-sign"
        )
