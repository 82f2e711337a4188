"""Truncation treatment, length penalty and DAPO overlong shaping: hand-computed values, numpy and jax (jit)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrt_jax.rewards import apply_truncation, length_penalty, overlong_penalty, overlong_shaped_reward

R = np.array([1.0, 0.0, 1.0, 0.5], np.float32)
T = np.array([False, True, True, False])


def test_truncation_modes():
    r, m = apply_truncation(R, T, "zero")
    np.testing.assert_array_equal(r, [1.0, 0.0, 0.0, 0.5])
    np.testing.assert_array_equal(m, [1, 1, 1, 1])
    r, m = apply_truncation(R, T, "mask")
    np.testing.assert_array_equal(r, R)
    np.testing.assert_array_equal(m, [1, 0, 0, 1])
    r, m = apply_truncation(R, T, "none")
    np.testing.assert_array_equal(r, R)
    np.testing.assert_array_equal(m, [1, 1, 1, 1])
    assert isinstance(r, np.ndarray) and r.dtype == np.float32 and m.dtype == np.float32


def test_truncation_errors():
    with pytest.raises(ValueError, match="allowed: \\('zero', 'mask', 'none'\\)"):
        apply_truncation(R, T, "drop")
    with pytest.raises(ValueError, match="truncated_b must have shape \\[4\\]"):
        apply_truncation(R, T[:3], "zero")
    with pytest.raises(ValueError, match="must be bool"):
        apply_truncation(R, T.astype(np.int32), "zero")


def test_truncation_jit():
    f = jax.jit(apply_truncation, static_argnames="mode")
    r, m = f(jnp.asarray(R), jnp.asarray(T), mode="mask")
    assert isinstance(r, jax.Array)
    np.testing.assert_array_equal(np.asarray(m), [1, 0, 0, 1])


def test_length_penalty():
    lengths = np.array([0, 50, 100, 400])
    out = length_penalty(R, lengths, coef=0.2, max_length=100)
    # r - 0.2 * min(L, 100) / 100
    np.testing.assert_allclose(out, [1.0, -0.1, 0.8, 0.3], rtol=1e-6)
    out = length_penalty(R, lengths, coef=0.2, max_length=100, only_correct=True)
    np.testing.assert_allclose(out, [1.0, 0.0, 0.8, 0.3], rtol=1e-6)
    jitted = jax.jit(lambda r, n: length_penalty(r, n, coef=0.2, max_length=100))(jnp.asarray(R), jnp.asarray(lengths))
    np.testing.assert_allclose(np.asarray(jitted), [1.0, -0.1, 0.8, 0.3], rtol=1e-6)
    with pytest.raises(ValueError, match="max_length > 0"):
        length_penalty(R, lengths, coef=0.1, max_length=0)


def test_overlong_penalty():
    # L_max 100, buffer 20: 0 up to 80, then (80 - L) / 20, -1 at 100 and beyond.
    lengths = np.array([10, 80, 85, 90, 100, 130])
    np.testing.assert_allclose(overlong_penalty(lengths, max_length=100, buffer_length=20),
                               [0, 0, -0.25, -0.5, -1, -1], atol=1e-7)
    np.testing.assert_allclose(overlong_penalty(lengths, max_length=100, buffer_length=20, factor=0.5),
                               [0, 0, -0.125, -0.25, -0.5, -0.5], atol=1e-7)
    shaped = overlong_shaped_reward(np.ones(6), lengths, max_length=100, buffer_length=20)
    np.testing.assert_allclose(shaped, [1, 1, 0.75, 0.5, 0, 0], atol=1e-7)
    jitted = jax.jit(lambda n: overlong_penalty(n, max_length=100, buffer_length=20))(jnp.asarray(lengths))
    np.testing.assert_allclose(np.asarray(jitted), [0, 0, -0.25, -0.5, -1, -1], atol=1e-7)
    with pytest.raises(ValueError, match="0 < buffer_length <= max_length"):
        overlong_penalty(lengths, max_length=100, buffer_length=200)
    with pytest.raises(ValueError, match="lengths_b must have shape \\[3\\]"):
        overlong_shaped_reward(np.ones(3), lengths, max_length=100, buffer_length=20)
