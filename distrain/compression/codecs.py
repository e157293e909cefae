"""The codec presets a recipe can name in `compression.codec`, the one we recommend, and the outer
step each sparse preset was measured with.

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
from distrain.config import CompressionConfig, Recipe, RecipeError

PRESETS: list[Codec] = [
    DenseCodec("fp32", torch.float32),  # 32 bits, lossless
    DenseCodec("fp16", torch.float16),  # 16 bits
    DenseCodec("bf16", torch.bfloat16),  # 16 bits, fp32's range
    BlockwiseInt8("int8", block=256),  # 8.125 bits
    # Templar's configuration, ideally packed: 64 of each 4096 values (1.56%), 12-bit indices, 2-bit
    # values from a per-tensor table of 2 magnitudes: 64·14/4096 ≈ 0.22 bits.
    ChunkedTopK("templar", chunk=4096, k=64, value_bits=2, index_coding="fixed"),
    # 56 of each 4096 values (1.37%), Rice-coded indices (~8 bits), 2-bit values: ~0.135 bits. Packed
    # payloads (see `payload`) left room for 40% more values than in a header per tensor. Recommended
    # until topk-sign ran at 25M; at H = 16 it ended 5.6% above topk-sign there with 3.2x its bytes.
    ChunkedTopK("topk", chunk=4096, k=56, value_bits=2, index_coding="rice"),
    # 16 of each 1024 2-D DCT coefficients (32×32 chunks, 1.56%), a sign each and one magnitude per
    # tensor: ~0.14 bits. Best on the tiny default model; at 25M parameters the worst sparse preset,
    # 7.9% above topk at H = 16 and above uncompressed DiLoCo too (docs/performance.md).
    ChunkedTopK("dct-sign", chunk=1024, k=16, value_bits=1, index_coding="rice", dct=True),
    # Recommended: 4 of each 1024 values (0.39%), a sign each, one magnitude per tensor, Rice-coded
    # indices: ~0.043 bits, the fewest bytes and the lowest loss at 3.2M and 25M parameters
    # (docs/performance.md).
    # Small chunks spread the few values evenly: with 3.2M parameters at H = 16 (`PRESET_INNER_STEPS`) and
    # lr 6, 19 of 4096 ended at 2.218 with 0.049 bits, 9 of 2048 at 2.196 with 0.047, 4 of 1024 at 2.194;
    # at its lr of 10, 2.147, 4.4% below per-step fp32 averaging with about 12,000x fewer bytes (mean of
    # seeds 0-2, docs/performance.md). Validators judge it by rerunning (`THIN_PAYLOADS`).
    ChunkedTopK("topk-sign", chunk=1024, k=4, value_bits=1, index_coding="rice"),
    # Rank-r int8 factors of every matrix, r from a budget of 0.1 bits/value; vectors as int8.
    LowRank("lowrank", bits_per_value=0.1),
]

CODECS: dict[str, Codec] = {codec.name: codec for codec in PRESETS}

RECOMMENDED = "topk-sign"
"""The preset with the lowest loss per byte at ≤ 0.15 bits a value, at its H of 16 (`PRESET_INNER_STEPS`).

With 25M parameters, 4 miners and 576 steps each on a GPU (`bench rounds --scale gpu`, docs/performance.md),
it ended at 1.565 (mean of seeds 0-2; the others, of 0-1) with 0.041 bits a value, where `topk` at the same H
ended at 1.652 with 0.134 bits, templar's configuration at 1.604 with 0.219, and uncompressed DiLoCo with
averaging at 1.703; from its second round to step 432 of 576, where per-step fp32 averaging (ddp) stopped, it
stayed within 3% of ddp (level at 432). With 3.2M parameters: 2.147 against 2.199, 2.205 and 2.333. On the
tiny default model it is level with topk and templar (2.351, 2.360, 2.344) and 6% above uncompressed DiLoCo
(2.214). It wants short rounds: there it ended 2.7% above topk at H = 24 and 12% above at H = 48, so recipes
whose rounds are long keep topk. Validators judge its thin payloads by rerunning (`THIN_PAYLOADS`)."""

SPARSE_OUTER_LR: dict[str, float] = {
    "templar": 3.0,
    "topk": 3.0,
    "dct-sign": 3.0,
    "topk-sign": 10.0,
    "lowrank": 1.0,
}
"""The outer learning rate of each sparse preset, with plain SGD as the outer step (as SparseLoCo does).

A sparse codec sends ~1.4% of a delta and keeps the rest in the error-feedback residual, which carries
across rounds what DiLoCo's outer momentum would: momentum on top of it overshoots. A coordinate is
sent once, averaged with the zeros of the miners that did not pick it (`outer.average: all`, the
default), so a step of several times the average pays. `distrain bench rounds --only topk --codec-steps 24
--set outer.lr=L` on the default model (error decay 0.95): topk ends at 2.93 (lr 1), 2.53 (lr 2), 2.49 (lr 3),
and 2.80 with DiLoCo's Nesterov step (lr 0.7, momentum 0.9); with 25M parameters and 4 miners on a GPU,
lr 3 and 4 ended within 0.5% of each other. Low-rank factors re-send the dominant directions every round
and overshoot at any lr above 1 (2.95 at lr 1, 3.85 at lr 2). topk-sign's lr was chosen at its H of 16 with
3.2M parameters (`--scale mid`, mean of seeds 0-2): 2.235, 2.194, 2.162, 2.147, 2.143, 2.176, 2.219 at lr 5,
6, 8, 10, 12, 14, 16, where 12 split its seeds (2.190 / 2.123 / 2.115); on the default model 2.448, 2.374,
2.351, 2.322, 2.319 at lr 6, 8, 10, 12, 14. It takes lr 10, at the edge of the plateau: larger models
wanted smaller sparse steps so far. (19 values of each 4096, first shipped, took lr 6: 2.240, 2.218, 2.239
at lr 5, 6, 8.)
"""

PRESET_INNER_STEPS: dict[str, int] = {"topk-sign": 16}
"""The H (`inner.steps`) a preset was measured at, where it is not the recipe's 24.

A sign and ~0.5% of the values leave so little of each round's delta that the run needs more rounds:
with 3.2M parameters (`bench rounds --scale mid`, mean of seeds 0-2, lr 6) 19 values of each 4096, a sign
each, ended at 2.218 at H = 16 and 2.358 at H = 24; on the default model 2.433 and 2.673.
"""


def get_codec(name: str) -> Codec:
    if name not in CODECS:
        raise RecipeError(f"recipe key 'compression.codec' is '{name}', expected one of {sorted(CODECS)}")
    return CODECS[name]


def outer_overrides(name: str) -> dict[str, float | bool]:
    """Recipe overrides of the outer step that suit preset `name`: none for a dense codec (the recipe's
    Nesterov step, as in DiLoCo), plain SGD at `SPARSE_OUTER_LR` for a sparse one."""
    if name not in SPARSE_OUTER_LR:
        return {}
    return {"outer.lr": SPARSE_OUTER_LR[name], "outer.momentum": 0.0, "outer.nesterov": False}


SPARSE_ASSIGNMENT_MARGIN = 0.007
"""The proof-of-work margin (`validator.assignment_margin`, nats) that suits a sparse codec.

A sparse payload carries little of what is specific to the miner's pages. In two 8-round swarms with
`topk`, 4 honest miners and a `wrongdata` one, an honest margin (own-page gain minus random-page
gain, less the page bias of the round's average delta, its own then in it) was 0.011-0.014 nats,
where fp16 payloads gave 0.07-0.09; with 0.007, 7 of 64 honest submissions were flagged and 1 of 16
of the cheater's passed (docs/performance.md)."""


SPARSE_MAX_ERROR_DECAY = 0.85
"""Above this error-feedback decay a sparse codec measured worse: with `topk` at 25M parameters and
three seeds, final loss 1.745 (decay 0.7), 1.792 (0.8), 1.803 (0.85), 1.840 (0.9), 1.867 (0.95)."""


THIN_PAYLOADS = frozenset({"topk-sign"})
"""Presets whose payloads carry too little of a miner's pages for the loss proof of work: validators
judge them by rerunning the miner's steps (`validator.proof_of_work: rerun`).

In two 8-round swarms of topk-sign at its H and lr, 4 honest miners and a `wrongdata` one
(docs/performance.md), the loss margins were 0.005 ± 0.003 nats for honest rounds and 0.001 ± 0.004 for the
cheater's: at the sparse bar of 0.007, 47 of 64 honest rounds were flagged and 2 of 16 of the cheater's passed
(it ended with 26% of the weight in one run); no bar flagged under a fifth of the honest rounds while passing
under half of the cheater's. With the rerun proof, two such swarms at lr 10 flagged none of 61 honest rounds
and passed none of 15 cheating ones (docs/performance.md, proof of work)."""


def recipe_advice(recipe: Recipe) -> list[str]:
    """Settings of `recipe` that measured badly with its codec, each with the measured better value."""
    if recipe.compression.codec not in SPARSE_OUTER_LR:
        return []
    advice, codec = [], recipe.compression.codec
    if recipe.outer.momentum > 0:
        suggested = " ".join(f"--{key} {str(value).lower()}" for key, value in outer_overrides(codec).items())
        advice.append(
            f"codec {codec} is sparse: its error feedback already plays outer momentum, and outer momentum "
            f"{recipe.outer.momentum} on top of it overshoots; measured best: {suggested}"
        )
    judged_by_loss = recipe.validator.proof_of_work == "loss"
    if judged_by_loss and recipe.validator.assignment_margin > 2 * SPARSE_ASSIGNMENT_MARGIN:
        advice.append(
            f"codec {codec} is sparse: validator.assignment_margin {recipe.validator.assignment_margin} "
            f"flags most honest miners as wrong_data; measured: {SPARSE_ASSIGNMENT_MARGIN}"
        )
    steps = PRESET_INNER_STEPS.get(codec, recipe.inner.steps)
    if recipe.inner.steps != steps:
        advice.append(
            f"codec {codec} was measured at inner.steps {steps}, not this recipe's {recipe.inner.steps}; "
            f"at 24 it ended higher (`PRESET_INNER_STEPS`, docs/performance.md); "
            f"measured best: --inner.steps {steps}"
        )
    if codec in THIN_PAYLOADS and judged_by_loss:
        advice.append(
            f"codec {codec} sends too little of a miner's pages for the loss proof of work to tell honest "
            f"miners from ones that train on other pages (docs/performance.md, proof of work); measured: "
            f"--validator.proof_of_work rerun"
        )
    if recipe.compression.error_decay > SPARSE_MAX_ERROR_DECAY:
        advice.append(
            f"codec {codec} is sparse: compression.error_decay {recipe.compression.error_decay} is above "
            f"{SPARSE_MAX_ERROR_DECAY}; at 25M parameters 0.85, 0.9 and 0.95 ended 3.3%, 5.4% and 7.0% above "
            f"the default {CompressionConfig.error_decay} (docs/performance.md)"
        )
    return advice
