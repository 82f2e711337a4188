"""MRT advantages: hand values, and proofs that alpha changes the policy gradient in every MRT form while the
naive prompt-constant bonus under std-normalised GRPO does not (MRT.md "A trap")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrt_jax.rl import (
    aggregation_weights,
    episode_progress,
    grpo_advantages,
    mixed_group_advantages,
    mrt_dense_advantages,
    policy_loss,
    termination_baseline_advantages,
)

B, G, T, V = 2, 4, 6, 5
TOKENS = jax.random.randint(jax.random.key(1), (B * G, T), 0, V)
THETA = jax.random.normal(jax.random.key(2), (B * G, T, V))
R = jnp.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
MASK = jnp.ones((B, G, T))


def policy_grad(adv_bgt):
    """Gradient of the clipped surrogate (ratio 1) w.r.t. the logits of a toy tabular policy."""

    def f(theta):
        logp = jnp.take_along_axis(jax.nn.log_softmax(theta), TOKENS[..., None], -1)[..., 0]
        w = aggregation_weights(jnp.ones((B * G, T)), "token_mean")
        return policy_loss(logp, jax.lax.stop_gradient(logp), adv_bgt.reshape(B * G, T), w)[0]

    return jax.grad(f)(THETA)


def assert_alpha_changes_gradient(adv_fn):
    g0, g1 = policy_grad(adv_fn(0.0)), policy_grad(adv_fn(0.5))
    assert np.abs(np.asarray(g1 - g0)).max() > 1e-4, "alpha had no effect on the policy gradient"


def test_episode_progress_hand_values():
    j = jnp.array([[[0.2, 0.6, 0.5], [0.2, 0.2, 1.0]]])
    valid = jnp.array([[[1, 1, 1], [1, 1, 0]]], bool)
    p, v = episode_progress(j, valid)
    np.testing.assert_allclose(p[0], [[0.4, -0.1], [0.0, 0.0]], atol=1e-6)
    np.testing.assert_array_equal(v[0], [[True, True], [True, False]])


def test_dense_advantages_hand_values_and_metrics():
    j = jnp.array([[[0.2, 0.6, 0.5], [0.2, 0.2, 1.0]]])
    valid = jnp.ones((1, 2, 3), bool)
    episode = jnp.array([[[0, 0, 1, -1], [0, 1, 1, 1]]])
    mask = jnp.array([[[1, 1, 1, 1], [1, 1, 1, 0]]], jnp.float32)
    outcome = jnp.full((1, 2, 4), 0.1) * mask
    adv, m = mrt_dense_advantages(outcome, j, valid, episode, mask, alpha=0.5, norm="none")
    # progress g0 = [0.4, -0.1], g1 = [0.0, 0.8]; bonus = 0.5 * progress of the token's episode
    np.testing.assert_allclose(adv[0, 0], [0.3, 0.3, 0.05, 0.1], atol=1e-6)
    np.testing.assert_allclose(adv[0, 1], [0.1, 0.5, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(m["progress_mean"], 0.275, atol=1e-6)  # un-normalised
    adv_s, m_s = mrt_dense_advantages(outcome, j, valid, episode, mask, alpha=0.5, norm="std", eps=0.0)
    std = np.std([0.4, -0.1, 0.0, 0.8])  # population std of the valid episodes, 0.356195
    np.testing.assert_allclose(m_s["progress_scale"], std, rtol=1e-5)
    np.testing.assert_allclose(adv_s[0, 0, 0], 0.1 + 0.5 * 0.4 / std, rtol=1e-5)
    np.testing.assert_allclose(m_s["progress_mean"], 0.275, atol=1e-6)  # metrics stay un-normalised


def test_dense_rejects_bad_episode_ids():
    j, valid = jnp.zeros((1, 1, 3)), jnp.ones((1, 1, 3), bool)
    with pytest.raises(ValueError, match="episode_bgt ids"):
        mrt_dense_advantages(jnp.zeros((1, 1, 2)), j, valid, jnp.array([[[0, 2]]]), jnp.ones((1, 1, 2)), alpha=1.0)
    with pytest.raises(ValueError, match="integer"):
        mrt_dense_advantages(jnp.zeros((1, 1, 2)), j, valid, jnp.zeros((1, 1, 2)), jnp.ones((1, 1, 2)), alpha=1.0)


def test_termination_baseline_hand_values():
    r, r_term = jnp.array([[1.0, 0.0]]), jnp.array([[0.5, 0.5]])
    adv, _ = termination_baseline_advantages(r, r_term, jnp.ones((1, 2, 1)), alpha=1.0, include_outcome=False)
    np.testing.assert_allclose(adv[0, :, 0], [0.5, -0.5])  # A = R - R_term
    adv, m = termination_baseline_advantages(r, r_term, jnp.ones((1, 2, 1)), alpha=0.4, eps=0.0)
    np.testing.assert_allclose(adv[0, :, 0], [1 / np.sqrt(2) + 0.2, -1 / np.sqrt(2) - 0.2], rtol=1e-6)
    assert np.isclose(m["progress_mean"], 0.0)


def test_mixed_group_hand_values():
    r = jnp.array([[1.0, 1.0, 0.0, 1.0]])
    term = jnp.array([[False, False, True, True]])
    adv, m = mixed_group_advantages(r, term, jnp.ones((1, 4, 1)), alpha=0.4, eps=0.0)
    # c = 1, t = 0.5, progress 0.5, s = unbiased std of [1, 1, 0, 1] = 0.5
    np.testing.assert_allclose(adv[0, :, 0], [0.4, 0.4, -1.0, 1.0], rtol=1e-6)
    assert np.isclose(m["progress_mean"], 0.5) and np.isclose(m["mixed_groups_frac"], 1.0)
    # plain normalisation over the mixed set equals alpha = n_t / M for the continuing rollouts
    adv_half, _ = mixed_group_advantages(r, term, jnp.ones((1, 4, 1)), alpha=0.5, eps=0.0)
    plain = (r - r.mean()) / jnp.std(r, ddof=1)
    np.testing.assert_allclose(adv_half[0, :2, 0], plain[0, :2], rtol=1e-6)


def test_alpha_changes_gradient_dense_form():
    j = jax.random.uniform(jax.random.key(3), (B, G, 4))
    valid = jnp.ones((B, G, 4), bool)
    episode = jnp.broadcast_to(jnp.array([0, 0, 1, 1, 2, 2]), (B, G, T))
    outcome = grpo_advantages(R, MASK)
    assert_alpha_changes_gradient(lambda a: mrt_dense_advantages(outcome, j, valid, episode, MASK, alpha=a)[0])


def test_alpha_changes_gradient_termination_baseline():
    r_term = jnp.array([[0.5, 0.25, 0.75, 0.0], [0.5, 0.5, 0.25, 1.0]])
    assert_alpha_changes_gradient(lambda a: termination_baseline_advantages(R, r_term, MASK, alpha=a)[0])


def test_alpha_changes_gradient_mixed_group():
    term = jnp.array([[False, False, True, True], [False, True, False, True]])
    assert_alpha_changes_gradient(lambda a: mixed_group_advantages(R, term, MASK, alpha=a)[0])


def test_naive_prompt_constant_bonus_is_cancelled_by_grpo():
    """Negative test (the trap): r' = r + alpha * (r - J_prefix) with J_prefix shared by the group is an affine
    map of r within the group, so GRPO's mean-centering and std-scaling give the same advantages: alpha does
    nothing. This is why every MRT form above adds its bonus after the group statistics."""
    j_prefix_b1 = jnp.array([[0.3], [0.7]])

    def naive(alpha):
        return grpo_advantages(R + alpha * (R - j_prefix_b1), MASK, eps=0.0)

    np.testing.assert_allclose(naive(0.5), naive(0.0), atol=1e-6)
    np.testing.assert_allclose(policy_grad(naive(0.5)), policy_grad(naive(0.0)), atol=1e-7)
