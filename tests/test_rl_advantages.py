"""GRPO / Dr.GRPO / RLOO advantages against hand-computed values."""

import jax.numpy as jnp
import numpy as np
import pytest

from mrt_jax.rl import dr_grpo_advantages, grpo_advantages, rloo_advantages

R = jnp.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
MASK = jnp.ones((2, 4, 3)).at[0, 1, 2].set(0.0)


def test_grpo_group_std_hand_values():
    adv = grpo_advantages(R, MASK, eps=0.0)
    # group 0: mean 0.5, unbiased std sqrt(1/3) -> +-0.5 / 0.57735 = +-0.866025; group 1: all equal -> 0
    want = np.array([0.866025, -0.866025, -0.866025, 0.866025])
    np.testing.assert_allclose(adv[0, :, 0], want, rtol=1e-5)
    np.testing.assert_array_equal(adv[1], 0.0)
    assert adv[0, 1, 2] == 0.0  # masked token
    assert adv.shape == (2, 4, 3)


def test_grpo_batch_std_hand_values():
    adv = grpo_advantages(R, MASK, std_scale="batch", eps=0.0)
    # batch: 6 ones, 2 zeros, unbiased var 1.5/7 -> std 0.462910; group 0 centred +-0.5
    np.testing.assert_allclose(adv[0, :, 1], 0.5 / 0.46291005 * np.array([1, -1, -1, 1]), rtol=1e-5)


def test_dr_grpo_and_rloo_hand_values():
    np.testing.assert_allclose(dr_grpo_advantages(R, MASK)[0, :, 0], [0.5, -0.5, -0.5, 0.5])
    # RLOO: A_0 = 1 - (0 + 0 + 1)/3 = 2/3
    np.testing.assert_allclose(rloo_advantages(R, MASK)[0, :, 0], [2 / 3, -2 / 3, -2 / 3, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(rloo_advantages(R, MASK)[1], 0.0)


def test_eps_keeps_equal_group_finite():
    adv = grpo_advantages(jnp.ones((1, 4)), jnp.ones((1, 4, 2)))
    assert np.all(np.isfinite(adv)) and np.all(adv == 0)


def test_bad_input_errors_name_the_problem():
    with pytest.raises(ValueError, match="r_bg"):
        grpo_advantages(jnp.ones((4,)), MASK)
    with pytest.raises(ValueError, match="mask_bgt"):
        grpo_advantages(R, jnp.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="std_scale"):
        grpo_advantages(R, MASK, std_scale="global")
    with pytest.raises(ValueError, match="G=1"):
        rloo_advantages(jnp.ones((2, 1)), jnp.ones((2, 1, 3)))
