"""Clipped surrogate, KL estimators, entropy, aggregation: hand values and invariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrt_jax.rl import (
    aggregation_weights,
    clipped_surrogate,
    entropy_from_logits,
    kl_penalty,
    policy_loss,
    sft_nll_loss,
)


def _row(*xs):
    return jnp.array([xs], jnp.float32)


def test_clipped_surrogate_hand_values():
    ratio = np.array([1.5, 0.5, 0.5, 5.0, 1.25])
    adv = _row(1.0, 1.0, -1.0, -1.0, 1.0)
    logp = jnp.log(jnp.asarray(ratio, jnp.float32))[None]
    old = jnp.zeros_like(logp)
    loss, clipped = clipped_surrogate(logp, old, adv, eps_low=0.2, eps_high=0.28)
    # -min(r A, clip(r) A): 1.5->-1.28 (clipped at 1.28), 0.5->-0.5, 0.5,A<0 -> 0.8 (clipped), 5,A<0 -> 5, 1.25 -> -1.25
    np.testing.assert_allclose(loss[0], [-1.28, -0.5, 0.8, 5.0, -1.25], rtol=1e-6)
    np.testing.assert_array_equal(clipped[0], [1, 0, 1, 0, 0])
    loss_dc, clipped_dc = clipped_surrogate(logp, old, adv, eps_low=0.2, eps_high=0.28, dual_clip=3.0)
    np.testing.assert_allclose(loss_dc[0], [-1.28, -0.5, 0.8, 3.0, -1.25], rtol=1e-6)  # capped at -c*A = 3
    assert clipped_dc[0, 3] == 1


def test_log_ratio_is_clamped_before_exp():
    loss, _ = clipped_surrogate(_row(500.0), _row(0.0), _row(-1.0))
    assert np.isfinite(loss[0, 0]) and np.isclose(loss[0, 0], np.exp(20.0), rtol=1e-5)


def test_kl_estimators_hand_values():
    logp, ref = _row(-1.0), _row(-2.0)  # d = ref - logp = -1
    assert np.isclose(kl_penalty(logp, ref, "k1")[0, 0], 1.0)
    assert np.isclose(kl_penalty(logp, ref, "k2")[0, 0], 0.5)
    assert np.isclose(kl_penalty(logp, ref, "k3")[0, 0], np.exp(-1.0), rtol=1e-6)
    assert np.all(kl_penalty(_row(-1.0, -3.0), _row(-1.0, -3.0), "k3") == 0)
    with pytest.raises(ValueError, match="k4"):
        kl_penalty(logp, ref, "k4")


def test_entropy_hand_value():
    h = entropy_from_logits(jnp.log(jnp.array([[[1.0, 3.0]]])))
    np.testing.assert_allclose(h[0, 0], -(0.25 * np.log(0.25) + 0.75 * np.log(0.75)), rtol=1e-6)


def test_aggregation_modes_hand_values():
    mask = jnp.array([[1, 1, 0], [1, 0, 0]])
    x = jnp.array([[1.0, 2.0, 9.0], [4.0, 9.0, 9.0]])
    agg = lambda mode, **kw: float(jnp.sum(aggregation_weights(mask, mode, **kw) * x))  # noqa: E731
    assert np.isclose(agg("token_mean"), 7 / 3)
    assert np.isclose(agg("seq_mean_token_mean"), (1.5 + 4.0) / 2)
    assert np.isclose(agg("seq_sum_norm", norm_len=4), (3.0 + 4.0) / (2 * 4))
    with pytest.raises(ValueError, match="norm_len"):
        aggregation_weights(mask, "seq_sum_norm")
    with pytest.raises(ValueError, match="aggregation"):
        aggregation_weights(mask, "mean")


def _grad_wrt_logits(adv, old_shift=0.0, **kw):
    tokens = jnp.array([[1, 0, 2, 1]])
    theta0 = jax.random.normal(jax.random.key(0), (1, 4, 3))

    def f(theta):
        logp = jnp.take_along_axis(jax.nn.log_softmax(theta), tokens[..., None], -1)[..., 0]
        w = aggregation_weights(jnp.ones((1, 4)), "token_mean")
        return policy_loss(logp, jax.lax.stop_gradient(logp) + old_shift, adv, w, **kw)[0]

    return jax.grad(f)(theta0)


def test_zero_advantage_and_ratio_one_give_zero_policy_gradient():
    g = _grad_wrt_logits(jnp.zeros((1, 4)))
    np.testing.assert_array_equal(g, 0.0)
    g = _grad_wrt_logits(jnp.ones((1, 4)))  # and a non-zero advantage does give a gradient
    assert np.abs(g).max() > 1e-3


def test_kl_coef_zero_never_needs_reference_and_entropy_bonus_moves_loss():
    logp, w = _row(-1.0, -2.0), jnp.full((1, 2), 0.5)
    loss0, m0 = policy_loss(logp, logp, jnp.zeros((1, 2)), w, ref_logp_bt=None, kl_coef=0.0)
    assert "kl" not in m0 and float(loss0) == 0.0
    with pytest.raises(ValueError, match="ref_logp_bt"):
        policy_loss(logp, logp, jnp.zeros((1, 2)), w, kl_coef=0.1)
    loss, m = policy_loss(logp, logp, jnp.zeros((1, 2)), w, ref_logp_bt=logp - 1.0, kl_coef=0.1,
                          entropy_bt=_row(2.0, 4.0), entropy_coef=0.01)
    k3 = np.exp(-1.0) + 1.0 - 1.0  # d = ref - logp = -1: exp(d) - d - 1
    np.testing.assert_allclose(m["kl"], k3, rtol=1e-6)
    np.testing.assert_allclose(loss, 0.1 * k3 - 0.01 * 3.0, rtol=1e-6)


def test_sft_nll():
    w = aggregation_weights(jnp.array([[1, 1, 0]]), "token_mean")
    assert np.isclose(sft_nll_loss(_row(-1.0, -3.0, -100.0), w), 2.0)
