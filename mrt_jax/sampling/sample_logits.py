"""Choosing the next token from logits: greedy, temperature, top-k, top-p, with per-row reproducible keys.

Two log-probabilities are returned for every sampled token:
- ``logp_model``: ``log_softmax(logits)[token]``, the *unmodified* model distribution (temperature 1, no top-k/p).
  This is what a learner needs for the PPO ratio ``exp(logp_new - logp_old)``.
- ``logp_sample``: the log-probability under the distribution actually sampled from (after temperature, top-k and
  top-p); 0 for greedy decoding.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class SamplingParams(NamedTuple):
    """Dynamic sampling knobs (traced, so changing them does not recompile). ``top_k`` <= 0 means off."""

    temperature: jax.Array  # [] float32, > 0 (greedy is a static flag instead)
    top_k: jax.Array  # [] int32
    top_p: jax.Array  # [] float32 in (0, 1]


def validate_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise ValueError for knobs outside their allowed range."""
    if not isinstance(temperature, (int, float)) or temperature != temperature or temperature < 0:
        raise ValueError(f"temperature must be a float >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        raise ValueError(f"top_k must be a non-negative int or None (0/None = off), got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] or None (1/None = off), got {top_p!r}")


def filtered_logits(logits_bv: jax.Array, params: SamplingParams, use_filter: bool) -> jax.Array:
    """Temperature-scaled logits with top-k / top-p tokens kept and the rest set to -inf.

    top-k keeps tokens whose logit is >= the k-th largest; top-p keeps the smallest prefix of the sorted
    distribution whose mass reaches p (the token that crosses p is kept), computed after top-k.
    """
    x = logits_bv.astype(jnp.float32) / params.temperature
    if not use_filter:
        return x
    V = x.shape[-1]
    sorted_bv = jnp.sort(x, axis=-1)[:, ::-1]  # descending
    k = jnp.where(params.top_k > 0, jnp.minimum(params.top_k, V), V)
    kth = jax.lax.dynamic_index_in_dim(sorted_bv, k - 1, axis=1, keepdims=True)  # [B, 1]
    sorted_bv = jnp.where(jnp.arange(V)[None] < k, sorted_bv, -jnp.inf)
    probs = jax.nn.softmax(sorted_bv, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly better tokens
    keep = mass_before < params.top_p
    # Threshold = smallest kept logit; ties with it are kept too (deterministic, order-free).
    p_thresh = jnp.min(jnp.where(keep, sorted_bv, jnp.inf), axis=-1, keepdims=True)
    thresh = jnp.maximum(kth, p_thresh)
    return jnp.where(x >= thresh, x, -jnp.inf)


BLOCK = 256  # vocab entries per block of the two-level inverse CDF


def inverse_cdf(probs_bv: jax.Array, uniform_b: jax.Array) -> jax.Array:
    """Token ``i`` of each row with ``cdf[i-1] <= u * total < cdf[i]``: a draw from ``probs_bv`` (any non-negative
    weights) with one uniform per row. Why not ``jax.random.categorical``: its Gumbel trick draws V random numbers
    per row, which on CPU cost more than the rest of a decode step's sampling at a few hundred rows (49k vocab).
    Two levels (blocks of ``BLOCK`` entries, then inside the chosen block) keep the scans short. A zero-weight
    entry is never chosen, also when float rounding leaves ``u * total`` past the last partial sum. Returns int32 [B].
    """
    B, V = probs_bv.shape
    nb = -(-V // BLOCK)
    p = jnp.pad(probs_bv.astype(jnp.float32), ((0, 0), (0, nb * BLOCK - V))).reshape(B, nb, BLOCK)
    mass_bk = p.sum(-1)
    upto_bk = jnp.cumsum(mass_bk, axis=-1)
    total_b = upto_bk[:, -1]
    u_b = jnp.minimum(uniform_b * total_b, jnp.nextafter(total_b, 0.0))  # strictly below the total
    blk_b = jnp.minimum(jnp.sum(upto_bk <= u_b[:, None], axis=-1), nb - 1)
    inner_bj = jnp.take_along_axis(p, blk_b[:, None, None], axis=1)[:, 0]
    before_b = jnp.take_along_axis(upto_bk, blk_b[:, None], axis=-1)[:, 0] - jnp.take_along_axis(
        mass_bk, blk_b[:, None], axis=-1)[:, 0]
    within_b = jnp.sum(jnp.cumsum(inner_bj, axis=-1) + before_b[:, None] <= u_b[:, None], axis=-1)
    last_b = BLOCK - 1 - jnp.argmax((inner_bj > 0)[:, ::-1], axis=-1)  # the block's last entry with weight
    return (blk_b * BLOCK + jnp.minimum(within_b, last_b)).astype(jnp.int32)


def sample_tokens(
    logits_bv: jax.Array, keys_b: jax.Array, params: SamplingParams, *, greedy: bool, use_filter: bool
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One token per row. Returns (token_b int32, logp_model_b, logp_sample_b), all [B].

    ``keys_b`` holds one PRNG key per row, so a row's draw does not depend on the batch it sits in.
    """
    # Log-probabilities only of the drawn tokens (picked logit - logsumexp): no [B, V] log_softmax is materialised.
    z_bv = logits_bv.astype(jnp.float32)
    if greedy:
        tok_b = jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
        logp_sample_b = jnp.zeros(tok_b.shape, jnp.float32)
    else:
        x_bv = filtered_logits(logits_bv, params, use_filter)
        lse_x_b = jax.nn.logsumexp(x_bv, axis=-1)
        uniform_b = jax.vmap(jax.random.uniform)(keys_b)
        tok_b = inverse_cdf(jnp.exp(x_bv - lse_x_b[:, None]), uniform_b)
        logp_sample_b = jnp.take_along_axis(x_bv, tok_b[:, None], axis=-1)[:, 0] - lse_x_b
    logp_model_b = jnp.take_along_axis(z_bv, tok_b[:, None], axis=-1)[:, 0] - jax.nn.logsumexp(z_bv, axis=-1)
    return tok_b, logp_model_b, logp_sample_b
