"""Error feedback: what was not sent comes back, decayed, and the state saves with safetensors."""

import pytest
import safetensors.torch
import torch

from distrain.compression import CODECS, ChunkedTopK, ErrorFeedback


def test_the_residual_is_what_was_not_sent_and_returns_decayed():
    feedback = ErrorFeedback(decay=0.5)
    delta = torch.tensor([4.0, -2.0, 1.0])
    sent = torch.tensor([4.0, 0.0, 0.0])  # a top-1 codec would send only the largest
    assert torch.equal(feedback.compensate("w", delta), delta)  # nothing owed yet
    feedback.update("w", sent)
    assert torch.equal(feedback.residuals["w"], torch.tensor([0.0, -2.0, 1.0]))
    assert torch.equal(feedback.compensate("w", torch.zeros(3)), torch.tensor([0.0, -1.0, 0.5]))


def test_small_consistent_directions_get_through_a_sparse_codec():
    """Without feedback top-k never sends the small coordinates; with it, all of them arrive over rounds."""
    codec = ChunkedTopK("t", chunk=64, k=8, value_bits=2)
    delta = torch.linspace(0.2, 1.0, 256)  # the same step every round
    feedback, received = ErrorFeedback(decay=1.0), torch.zeros(256)
    for _ in range(100):
        sent = codec.decode(codec.encode(feedback.compensate("w", delta)), delta.shape)
        feedback.update("w", sent)
        received += sent
    assert (received > 0).all()
    # Everything owed has either arrived or waits in the residual.
    assert torch.allclose(received + feedback.residuals["w"], 100 * delta, rtol=1e-4)
    assert (codec.decode(codec.encode(delta), delta.shape) == 0).sum() == 256 - 4 * 8


def test_state_round_trips_through_safetensors(tmp_path):
    feedback = ErrorFeedback(decay=0.95)
    delta = {"a": torch.randn(300), "b": torch.randn(4, 5)}
    compensated = feedback.compensate_all(delta)
    feedback.update_all(
        {n: CODECS["int8"].decode(CODECS["int8"].encode(t), t.shape) for n, t in compensated.items()}
    )
    safetensors.torch.save_file(feedback.state_dict(), tmp_path / "ef.safetensors")
    restored = ErrorFeedback(decay=0.95)
    restored.load_state_dict(safetensors.torch.load_file(tmp_path / "ef.safetensors"))
    assert restored.residuals.keys() == feedback.residuals.keys()
    assert all(torch.equal(restored.residuals[n], feedback.residuals[n]) for n in delta)


def test_decay_must_be_a_fraction():
    with pytest.raises(ValueError, match="decay"):
        ErrorFeedback(decay=1.5)


@pytest.mark.parametrize("codec, keeps_residuals", [("fp32", False), ("fp16", True), ("topk-sign", True)])
def test_only_a_lossy_codec_leaves_residuals(codec, keeps_residuals):
    """fp32 payloads carry every value exactly, so the residuals would be zeros the size of the model;
    a residual left from a lossy codec before is sent with them and gone."""
    delta = {"w": torch.randn(64, 64)}
    feedback = ErrorFeedback(decay=0.7)
    feedback.residuals["w"] = torch.randn(64, 64)
    compensated, _, sent = feedback.send(delta, codec, {}, {"w": torch.Size([64, 64])})
    assert bool(feedback.residuals) == keeps_residuals
    if keeps_residuals:
        assert torch.allclose(feedback.residuals["w"], compensated["w"] - sent["w"])
    else:
        assert torch.equal(sent["w"], compensated["w"])
