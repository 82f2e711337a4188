"""Drawing the next token: the inverse-CDF draw matches the distribution it is given, never picks a zero-weight
entry, and ``sample_tokens`` samples softmax(logits / T) restricted by top-k / top-p."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrt_jax.sampling.sample_logits import BLOCK, SamplingParams, inverse_cdf, sample_tokens


def test_stratified_uniforms_give_each_entry_its_share():
    rng = np.random.default_rng(0)
    V, n = 3 * BLOCK + 17, 20000  # several blocks and a partial one
    w = rng.random(V) ** 4
    w[rng.random(V) < 0.3] = 0.0  # zero-weight entries in every block
    w[BLOCK:2 * BLOCK] = 0.0  # and a whole empty block
    u = (np.arange(n) + 0.5) / n
    tok = np.asarray(inverse_cdf(jnp.asarray(np.tile(w, (n, 1)), jnp.float32), jnp.asarray(u, jnp.float32)))
    counts = np.bincount(tok, minlength=V)
    assert len(counts) == V and counts[w == 0].sum() == 0
    np.testing.assert_allclose(counts, w / w.sum() * n, atol=1.5)  # each entry's count within rounding


@pytest.mark.parametrize("u", [0.0, np.nextafter(np.float32(1), np.float32(0))])
def test_extreme_uniforms_pick_the_first_and_last_entries_with_weight(u):
    w = np.zeros((1, 2 * BLOCK + 5), np.float32)
    w[0, [3, BLOCK + 7]] = [0.25, 0.75]
    tok = int(inverse_cdf(jnp.asarray(w), jnp.asarray([u], jnp.float32))[0])
    assert tok == (3 if u == 0 else BLOCK + 7)


def draws(logits_v, params, use_filter, n=6000):
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(1), i))(jnp.arange(n))
    x = jnp.tile(jnp.asarray(logits_v, jnp.float32), (n, 1))
    tok, lp_model, lp_sample = sample_tokens(x, keys, params, greedy=False, use_filter=use_filter)
    return np.asarray(tok), np.asarray(lp_model), np.asarray(lp_sample)


def test_sampled_frequencies_follow_the_tempered_softmax():
    logits = np.random.default_rng(1).normal(size=300) * 2
    params = SamplingParams(jnp.float32(0.7), jnp.int32(0), jnp.float32(1.0))
    tok, lp_model, lp_sample = draws(logits, params, use_filter=False)
    p = np.exp(logits / 0.7 - np.logaddexp.reduce(logits / 0.7))
    freq = np.bincount(tok, minlength=300) / len(tok)
    top = np.argsort(-p)[:10]
    z = (freq[top] - p[top]) / np.sqrt(p[top] * (1 - p[top]) / len(tok))
    assert np.all(np.abs(z) < 4), z  # within 4 standard errors
    np.testing.assert_allclose(lp_sample, np.log(p[tok]), atol=1e-4)  # the sampled distribution's logprob
    np.testing.assert_allclose(lp_model, logits[tok] - np.logaddexp.reduce(logits), atol=1e-4)  # the model's


def test_top_k_and_top_p_keep_only_their_tokens():
    logits = np.random.default_rng(2).normal(size=300)
    order = np.argsort(-logits)
    tok, *_ = draws(logits, SamplingParams(jnp.float32(1.0), jnp.int32(5), jnp.float32(1.0)), use_filter=True)
    assert set(tok) == set(order[:5])
    p = np.exp(logits - np.logaddexp.reduce(logits))
    k = int(np.searchsorted(np.cumsum(p[order]), 0.5)) + 1  # the smallest prefix reaching mass 0.5
    tok, *_ = draws(logits, SamplingParams(jnp.float32(1.0), jnp.int32(0), jnp.float32(0.5)), use_filter=True)
    assert set(tok) <= set(order[:k]) and len(set(tok)) > 1
