"""Error feedback: what compression dropped this round is added back to the next round's delta.

A sparse codec sends ~1% of a pseudo-gradient; without feedback the other 99% is lost for good and
small but consistent directions are never sent. With it, every coordinate's unsent mass accumulates
until it is large enough to be picked. The decay forgets residuals that the model has moved past, so
stale directions cannot pile up forever. Templar keeps 0.95 of a residual a round; our default keeps
0.7 (`CompressionConfig.error_decay`): with `topk` it ended 6.5% lower at 25M parameters, 4.2% lower
at 3.2M, and level on the default model (docs/performance.md).

Per round, in the miner, `feedback.send(delta, codec, meta, shapes)`:

    delta = feedback.compensate_all(delta)                    # Δ + decay · residual
    payload = encode_payload(delta, codec, meta)
    feedback.update_all(decode_payload(payload, shapes, codec)[1])   # residual = compensated − sent

A lossless codec (fp32) sends everything, so `send` keeps no residual for it: it would be zeros the
size of the model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from distrain.compression.codecs import get_codec
from distrain.compression.payload import CompressedDelta, decode_payload, encode_payload


class ErrorFeedback:
    """Residuals of one peer's compressed deltas, one float32 tensor per parameter name (none with a
    lossless codec).

    `state_dict()` is a flat `dict[str, Tensor]`, ready for `safetensors.torch.save_file`.
    """

    def __init__(self, decay: float):
        if not 0 <= decay <= 1:
            raise ValueError(f"error feedback decay must lie in [0, 1], got {decay}")
        self.decay = decay
        self.residuals: dict[str, torch.Tensor] = {}
        self._compensated: dict[str, torch.Tensor] = {}

    def compensate(self, name: str, delta: torch.Tensor) -> torch.Tensor:
        """`delta + decay · residual`: what to compress for `name` this round."""
        delta = delta.detach().float()
        residual = self.residuals.get(name)
        compensated = delta if residual is None else delta + self.decay * residual
        self._compensated[name] = compensated
        return compensated

    def update(self, name: str, sent: torch.Tensor) -> None:
        """Keep what `compensate` asked for but the decoded payload did not carry (`sent`, dense)."""
        compensated = self._compensated.pop(name)
        if self.decay > 0:  # with no decay a residual would never be used again
            self.residuals[name] = compensated - sent.float()

    def compensate_all(self, delta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: self.compensate(name, tensor) for name, tensor in delta.items()}

    def update_all(self, sent: Mapping[str, torch.Tensor]) -> None:
        for name, tensor in sent.items():
            self.update(name, tensor)

    def send(
        self, delta: dict[str, torch.Tensor], codec_name: str, meta: dict, shapes: dict[str, torch.Size]
    ) -> tuple[dict[str, torch.Tensor], bytes, CompressedDelta]:
        """One round's payload: Δ plus the residual, compressed; what the payload did not carry becomes
        the next residual. Returns the compensated delta, the payload, and the payload as peers decode it."""
        compensated = self.compensate_all(delta)
        payload = encode_payload(compensated, codec_name, meta)
        sent = decode_payload(payload, shapes, codec_name)[1]  # decoded one parameter at a time
        if get_codec(codec_name).lossless:  # every residual would be zeros: a model's worth, a round's work
            self._compensated.clear()
            self.residuals.clear()
        else:
            self.update_all(sent)
        return compensated, payload, sent

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.residuals)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.residuals = {name: tensor.float() for name, tensor in state.items()}
