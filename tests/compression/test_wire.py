"""distrain's safetensors writer: the bytes the library would write, which the library reads back."""

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
    return tensors


@pytest.mark.parametrize("metadata", [None, {}, {"distrain": '{"codec": "fp32", "round": 3}'}])
def test_writes_the_bytes_the_library_writes(metadata):
    tensors = _every_dtype()
    expected = safetensors.torch.save({k: t.contiguous() for k, t in tensors.items()}, metadata=metadata)
    assert safetensors_bytes(tensors, metadata) == expected


def test_the_library_reads_back_every_tensor():
    tensors = _every_dtype()
    restored = safetensors.torch.load(safetensors_bytes(tensors))
    assert restored.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert restored[name].dtype == tensor.dtype and torch.equal(restored[name], tensor), name


def test_a_dtype_safetensors_lacks_is_refused():
    with pytest.raises(ValueError, match="complex64"):
        safetensors_bytes({"z": torch.zeros(2, dtype=torch.complex64)})
