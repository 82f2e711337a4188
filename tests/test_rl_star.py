"""MRT-STaR selection."""

import jax.numpy as jnp
import numpy as np

from mrt_jax.rl import select_star_traces

J = jnp.array([[[0.0, 0.5, 1.0], [0.0, 1.0, 7.0], [0.0, 1.0, 1.0], [0.0, 0.9, 0.6]]])
VALID = jnp.array([[[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 1]]], bool)
CORRECT = jnp.array([[True, True, False, True]])


def test_keeps_correct_traces_with_most_progress_per_episode():
    keep, score = select_star_traces(J, VALID, CORRECT, top_k=1)
    np.testing.assert_allclose(score[0], [0.5, 1.0, 0.5, 0.3], atol=1e-6)
    np.testing.assert_array_equal(keep[0], [False, True, False, False])  # trace 2 is better but incorrect
    keep2, _ = select_star_traces(J, VALID, CORRECT, top_k=2)
    np.testing.assert_array_equal(keep2[0], [True, True, False, False])


def test_require_monotone_drops_regressing_traces():
    keep, _ = select_star_traces(J, VALID, CORRECT, top_k=4, require_monotone=True)
    np.testing.assert_array_equal(keep[0], [True, True, False, False])
