"""Normalised regret, comparator regret, token efficiency and J-curves against hand-computed values."""

import numpy as np
import pytest

from mrt_jax.rl import (
    j_curve_by_episode,
    j_curve_by_tokens,
    mean_normalized_regret,
    normalized_regret,
    tokens_to_accuracy,
)


def test_normalized_regret_hand_values():
    # area: 0-100 from 0 to 0.5 -> 25; 100-200 0.5 to 1 -> 75; 200-400 flat 1 -> 200; 1 - 300/400
    assert np.isclose(normalized_regret([100, 200], [0.5, 1.0], 400), 0.25)
    # budget inside a segment: 25 + 50 * (0.5 + 0.75)/2 = 56.25 over 150
    assert np.isclose(normalized_regret([100, 200], [0.5, 1.0], 150), 1 - 56.25 / 150)
    assert np.isclose(normalized_regret([10], [1.0], 10), 0.5)


def test_best_of_comparator_regret_hand_value():
    # comparator max(maj, pass): maj 0->0.8 then flat; pass 0->0.5->1 crosses maj at t=160
    # comparator area 40 + 48 + 36 = 124; pass area 100; (124 - 100) / 200
    r = normalized_regret([100, 200], [0.5, 1.0], 200,
                          comparators=[([100, 200], [0.8, 0.8]), ([100, 200], [0.5, 1.0])])
    assert np.isclose(r, 0.12)


def test_mean_regret_averages_traces_then_problems():
    p0 = [([10], [1.0]), ([10], [0.0])]  # regrets 0.5, 1.0 -> 0.75
    p1 = [([10], [1.0])]  # 0.5
    assert np.isclose(mean_normalized_regret([p0, p1], 10), (0.75 + 0.5) / 2)


def test_tokens_to_accuracy():
    assert np.isclose(tokens_to_accuracy([100, 200], [0.5, 1.0], 0.75), 150)
    assert np.isclose(tokens_to_accuracy([100, 200], [0.5, 1.0], 0.25), 50)
    assert tokens_to_accuracy([100, 200], [0.5, 1.0], 1.5) == float("inf")


def test_j_curves():
    mean, count = j_curve_by_episode([[0.0, 0.5, 1.0], [0.2, 0.4, 9.0]], [[1, 1, 1], [1, 1, 0]])
    np.testing.assert_allclose(mean, [0.1, 0.45, 1.0])
    np.testing.assert_array_equal(count, [2, 2, 1])
    curve = j_curve_by_tokens([[0, 100, 200], [0, 50, 0]], [[0.0, 1.0, 1.0], [0.5, 0.5, 0.0]],
                              [[1, 1, 1], [1, 1, 0]], [0, 50, 300])
    np.testing.assert_allclose(curve, [0.25, 0.5, 0.75])


def test_bad_curves_raise():
    with pytest.raises(ValueError, match="strictly increasing"):
        normalized_regret([200, 100], [0.5, 1.0], 400)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        normalized_regret([100], [1.5], 400)
    with pytest.raises(ValueError, match="budget"):
        normalized_regret([100], [0.5], 0)
