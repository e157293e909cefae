import numpy as np
import pytest

from distrain.chain.weights import U16_MAX, clip_to_limit, from_u16, to_u16


def test_max_upscale_to_u16():
    # 1/7 * 65535 = 9362.14, 2/7 * 65535 = 18724.29
    assert to_u16(np.array([0.1, 0.2, 0.7])) == [9362, 18724, 65535]


def test_clip_hands_the_excess_to_the_others():
    limit = 0.5
    w = clip_to_limit(np.array([1.0, 2.0, 7.0]), limit)
    # 0.7 is cut to 0.5, the other 0.5 is split 1:2.
    np.testing.assert_allclose(w, [1 / 6, 2 / 6, 0.5])


def test_clip_leaves_a_vector_within_the_limit_alone():
    np.testing.assert_allclose(clip_to_limit(np.array([1.0, 1.0, 2.0]), 0.5), [0.25, 0.25, 0.5])


def test_clip_several_entries():
    # Limit 0.3 on [0.5, 0.3, 0.1, 0.1]: two entries clip to 0.3, the last two share 0.4 equally.
    np.testing.assert_allclose(clip_to_limit(np.array([5.0, 3.0, 1.0, 1.0]), 0.3), [0.3, 0.3, 0.2, 0.2])


@pytest.mark.parametrize("weights, limit", [([1.0, 1.0, 0.0, 0.0], 0.3), ([1.0], 0.99)])
def test_clip_impossible(weights, limit):
    assert clip_to_limit(np.array(weights), limit) is None


def test_clip_exact_uniform():
    np.testing.assert_allclose(clip_to_limit(np.array([3.0, 1.0]), 0.5), [0.5, 0.5])


def test_from_u16():
    assert from_u16({2: U16_MAX, 3: U16_MAX}) == {2: 0.5, 3: 0.5}
    assert from_u16({}) == {}
