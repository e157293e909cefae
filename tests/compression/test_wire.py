"""distrain's safetensors writer: the bytes the library would write, which the library reads back."""

import json

import pytest
import safetensors.torch
import torch

from distrain.compression.wire import DTYPE_CODES, safetensors_bytes


def _every_dtype() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tensors = {
        f"{str(dtype).removeprefix('torch.')}/{i}": (torch.randn(shape, generator=generator) * 50).to(dtype)
        for dtype in DTYPE_CODES
        for i, shape in enumerate([(3, 5), (7,), (), (0, 4)])
    }
    tensors["transposed"] = torch.randn(4, 6, generator=generator).t()  # not contiguous
    tensors["θ.wte"] = torch.randn(2, 3, generator=generator)  # a name beyond ASCII
    return tensors


@pytest.mark.parametrize("metadata", [None, {}, {"distrain": '{"codec": "fp32", "round": 3}'}])
def test_writes_the_bytes_the_library_writes(metadata):
    """A tripwire as much as a check: a safetensors release that lays files out otherwise fails here,
    though what this module writes would still be read (next test)."""
    tensors = _every_dtype()
    expected = safetensors.torch.save({k: t.contiguous() for k, t in tensors.items()}, metadata=metadata)
    assert safetensors_bytes(tensors, metadata) == expected


def test_the_library_reads_back_every_tensor_and_each_starts_aligned():
    tensors = _every_dtype()
    data = safetensors_bytes(tensors, {"k": "v"})
    restored = safetensors.torch.load(data)
    assert restored.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert restored[name].dtype == tensor.dtype and torch.equal(restored[name], tensor), name
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    assert header.pop("__metadata__") == {"k": "v"} and (8 + length) % 8 == 0
    for name, entry in header.items():
        assert entry["data_offsets"][0] % tensors[name].element_size() == 0, name


def test_a_dtype_safetensors_lacks_is_refused():
    with pytest.raises(ValueError, match="complex64"):
        safetensors_bytes({"z": torch.zeros(2, dtype=torch.complex64)})


def test_metadata_must_map_strings_to_strings():
    with pytest.raises(ValueError, match="strings to strings"):
        safetensors_bytes({"a": torch.zeros(2)}, {"round": 3})
