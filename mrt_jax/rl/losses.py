"""Policy losses: clipped surrogate (clip-higher, dual clip), KL to a reference, entropy, SFT NLL, aggregation.

Per-token terms are ``*_bt`` arrays; ``aggregation_weights`` turns a mask into weights ``w_bt`` so that every
aggregation mode is a plain weighted sum ``sum_bt(w_bt * x_bt)``. Computing the weights once over the *global*
batch makes gradient accumulation over micro-batches exact (the learner sums micro-batch losses).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mrt_jax.rl._checks import check_choice, check_rank

AGGREGATIONS = ("token_mean", "seq_mean_token_mean", "seq_sum_norm")
KL_ESTIMATORS = ("k1", "k2", "k3")


def aggregation_weights(mask_bt: jax.Array, mode: str, *, norm_len: int | None = None) -> jax.Array:
    """Weights [N, T] such that ``loss = sum(w_bt * loss_bt)`` aggregates in the named mode.

    - ``token_mean``: ``w = m / sum(m)``, the mean over all active tokens of the batch (DAPO, verl default).
    - ``seq_mean_token_mean``: ``w_nt = m_nt / (len_n * N_nonempty)``, the mean over sequences of their token
      means (original GRPO); sequences without active tokens are left out.
    - ``seq_sum_norm``: ``w = m / (N * norm_len)``, each sequence's token sum over a constant length, averaged
      over the N rows (Dr.GRPO); ``norm_len`` is required (e.g. the maximum completion length).
    """
    check_rank("mask_bt", mask_bt, 2, "[N, T]")
    check_choice("aggregation", mode, AGGREGATIONS)
    m = mask_bt.astype(jnp.float32)
    if mode == "token_mean":
        return m / jnp.maximum(jnp.sum(m), 1.0)
    if mode == "seq_mean_token_mean":
        len_n = jnp.sum(m, axis=1, keepdims=True)
        n_seq = jnp.sum(len_n > 0)
        return m / jnp.maximum(len_n, 1.0) / jnp.maximum(n_seq, 1)
    if norm_len is None or norm_len < 1:
        raise ValueError(f"aggregation 'seq_sum_norm' needs norm_len >= 1 (a constant length), got {norm_len!r}")
    return m / (m.shape[0] * float(norm_len))


def clipped_surrogate(
    logp_bt: jax.Array,
    old_logp_bt: jax.Array,
    adv_bt: jax.Array,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
    max_log_ratio: float = 20.0,
) -> tuple[jax.Array, jax.Array]:
    """Per-token PPO loss and a clipped-token indicator.

    ``rho = exp(clip(logp - old_logp, -max_log_ratio, max_log_ratio))``;
    ``loss = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)``; with ``dual_clip = c`` (> 1), tokens with
    A < 0 have their loss capped at ``-c * A``. The indicator is 1 where the clipped branch (or the dual cap) is
    the one in effect, i.e. where the token gives no gradient through rho.
    """
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (e.g. 3.0) or None, got {dual_clip}")
    log_ratio = jnp.clip(logp_bt - old_logp_bt, -max_log_ratio, max_log_ratio)
    rho = jnp.exp(log_ratio)
    adv = adv_bt.astype(jnp.float32)
    unclipped = rho * adv
    clipped = jnp.clip(rho, 1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -jnp.minimum(unclipped, clipped)
    is_clipped = clipped < unclipped
    if dual_clip is not None:
        cap = -dual_clip * adv
        capped = (adv < 0) & (loss > cap)
        loss = jnp.where(capped, cap, loss)
        is_clipped = is_clipped | capped
    return loss, is_clipped.astype(jnp.float32)


def kl_penalty(logp_bt: jax.Array, ref_logp_bt: jax.Array, estimator: str = "k3", max_log_ratio: float = 20.0
               ) -> jax.Array:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi, with ``d = logp_ref - logp`` (clamped):

    k1 = ``-d``;  k2 = ``d^2 / 2``;  k3 = ``exp(d) - d - 1`` (unbiased, non-negative, low variance).
    """
    check_choice("kl estimator", estimator, KL_ESTIMATORS)
    d = jnp.clip(ref_logp_bt - logp_bt, -max_log_ratio, max_log_ratio)
    if estimator == "k1":
        return -d
    if estimator == "k2":
        return 0.5 * d * d
    return jnp.exp(d) - d - 1.0


def entropy_from_logits(logits_btv: jax.Array) -> jax.Array:
    """Entropy of softmax(logits) per position [B, T]: ``H = logsumexp(z) - sum_v softmax(z)_v z_v``."""
    z = logits_btv.astype(jnp.float32)
    lse = jax.nn.logsumexp(z, axis=-1)
    return lse - jnp.sum(jax.nn.softmax(z, axis=-1) * z, axis=-1)


def policy_loss(
    logp_bt: jax.Array,
    old_logp_bt: jax.Array,
    adv_bt: jax.Array,
    weights_bt: jax.Array,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
    ref_logp_bt: jax.Array | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    entropy_bt: jax.Array | None = None,
    entropy_coef: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``loss = sum w * (pg + kl_coef * kl - entropy_coef * H)`` with ``w`` from ``aggregation_weights``.

    ``kl_coef == 0`` never reads ``ref_logp_bt`` (no reference model is needed). Metrics give every part
    (weighted sums, so they add up over micro-batches): ``pg_loss``, ``kl``, ``entropy``, ``clip_frac``,
    ``ratio_mean`` and, for the caller, ``loss``.
    """
    w = weights_bt.astype(jnp.float32)
    pg_bt, clipped_bt = clipped_surrogate(logp_bt, old_logp_bt, adv_bt, eps_low=eps_low, eps_high=eps_high,
                                          dual_clip=dual_clip)
    pg = jnp.sum(w * pg_bt)
    loss = pg
    metrics = {"pg_loss": pg, "clip_frac": jnp.sum(w * clipped_bt),
               "ratio_mean": jnp.sum(w * jnp.exp(jnp.clip(logp_bt - old_logp_bt, -20.0, 20.0)))}
    if kl_coef != 0.0:
        if ref_logp_bt is None:
            raise ValueError("kl_coef != 0 needs ref_logp_bt (reference-policy logprobs of the same tokens)")
        kl = jnp.sum(w * kl_penalty(logp_bt, ref_logp_bt, kl_estimator))
        loss = loss + kl_coef * kl
        metrics["kl"] = kl
    if entropy_bt is not None:
        ent = jnp.sum(w * entropy_bt)
        metrics["entropy"] = ent
        if entropy_coef != 0.0:
            loss = loss - entropy_coef * ent
    metrics["loss"] = loss
    return loss, metrics


def sft_nll_loss(logp_bt: jax.Array, weights_bt: jax.Array) -> jax.Array:
    """STaR / MRT-STaR update: masked negative log-likelihood ``-sum w * logp`` on the selected traces' tokens
    (``w`` from ``aggregation_weights`` of their completion mask)."""
    return -jnp.sum(weights_bt.astype(jnp.float32) * logp_bt)
