"""Copy and replay detection: who copied whom, and that honest miners' similar deltas are not copies."""

from __future__ import annotations

import math

import pytest
import torch

from distrain.validation.copies import Sketcher, find_copies, similarity

THRESHOLD = 0.95  # the recipe's default validator.copy_similarity
SHAPES = {"embed": torch.Size([300, 1000]), "bias": torch.Size([1000])}  # 301 000 parameters


def random_delta(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) for name, shape in SHAPES.items()}


def unit(seed: int, size: int = 4096) -> torch.Tensor:
    vector = torch.randn(size, generator=torch.Generator().manual_seed(seed))
    return vector / vector.norm()


def test_the_later_of_two_identical_announcements_is_the_copy():
    original = unit(0)
    sketches = {"honest": original, "copier": original.clone(), "other": unit(1)}
    first_seen = {"honest": 1.0, "copier": 2.5, "other": 0.5}
    assert find_copies(sketches, first_seen, {}, THRESHOLD) == {"copier": "copy"}


def test_identical_announcements_seen_at_the_same_moment_are_both_flagged():
    sketches = {"a": unit(0), "b": unit(0)}
    assert find_copies(sketches, {"a": 1.0, "b": 1.0}, {}, THRESHOLD) == {"a": "copy", "b": "copy"}


def test_a_submission_of_the_previous_round_published_again_is_replayed():
    previous = {"victim": unit(0), "lazy": unit(1)}
    sketches = {"thief": unit(0), "lazy": unit(1), "honest": unit(2)}
    first_seen = {"thief": 1.0, "lazy": 2.0, "honest": 3.0}
    # Replaying one's own last delta counts too: it is no new work either.
    assert find_copies(sketches, first_seen, previous, THRESHOLD) == {"thief": "replayed", "lazy": "replayed"}


def test_honest_deltas_with_cosine_087_are_not_copies():
    # Honest miners share a common direction (the same corpus): x_i = √0.87·c + √0.13·n_i.
    common = unit(100)
    sketches = {f"miner{i}": math.sqrt(0.87) * common + math.sqrt(0.13) * unit(i) for i in range(4)}
    assert similarity(sketches["miner0"], sketches["miner1"]) == pytest.approx(0.87, abs=0.03)
    first_seen = {hotkey: float(i) for i, hotkey in enumerate(sketches)}
    assert find_copies(sketches, first_seen, {"miner0": unit(200)}, THRESHOLD) == {}


def test_sketches_are_the_same_for_every_peer_and_every_equal_delta():
    delta = random_delta(0)
    a, b = Sketcher(SHAPES, seed=7), Sketcher(SHAPES, seed=7)
    assert len(a(delta)) == 65_536
    assert torch.equal(a(delta), b(delta))
    assert torch.equal(a(delta), a({name: tensor.clone() for name, tensor in delta.items()}))
    assert not torch.equal(a(delta), Sketcher(SHAPES, seed=8)(delta))


def test_a_model_smaller_than_the_sketch_is_sketched_whole():
    delta = {"w": torch.arange(6.0).reshape(2, 3)}
    assert sorted(Sketcher({"w": torch.Size([2, 3])}, size=100)(delta).tolist()) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("cosine", [0.0, 0.5, 0.9])
def test_sketches_estimate_the_cosine_of_whole_deltas(cosine):
    x, noise = random_delta(1), random_delta(2)
    y = {name: cosine * x[name] + math.sqrt(1 - cosine**2) * noise[name] for name in SHAPES}
    exact = similarity(
        torch.cat([t.flatten() for t in x.values()]), torch.cat([t.flatten() for t in y.values()])
    )
    sketch = Sketcher(SHAPES, size=65_536, seed=3)
    assert similarity(sketch(x), sketch(y)) == pytest.approx(exact, abs=0.05)
