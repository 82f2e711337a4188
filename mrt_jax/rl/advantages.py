"""Outcome advantages over groups of completions: GRPO, Dr.GRPO, RLOO.

All functions take rewards ``r_bg`` [B, G] (B prompts, G completions each) and a completion-token mask
``mask_bgt`` [B, G, T], and return per-token advantages ``adv_bgt`` [B, G, T] (zero where the mask is 0): the
sequence-level advantage broadcast to every active token of its completion.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mrt_jax.rl._checks import check_choice, check_prefix, check_rank

STD_SCALES = ("group", "batch", "none")


def _check(r_bg: jax.Array, mask_bgt: jax.Array, min_group: int) -> None:
    check_rank("rewards r_bg", r_bg, 2, "[B, G]")
    check_rank("mask_bgt", mask_bgt, 3, "[B, G, T]")
    check_prefix("mask_bgt", mask_bgt, "rewards r_bg", r_bg, 2)
    if r_bg.shape[1] < min_group:
        raise ValueError(f"group size G={r_bg.shape[1]} is too small: need G >= {min_group} completions per prompt")


def broadcast_to_tokens(a_bg: jax.Array, mask_bgt: jax.Array) -> jax.Array:
    """``adv_bgt = a_bg[..., None] * mask_bgt``: one advantage per completion, on its active tokens."""
    return a_bg.astype(jnp.float32)[..., None] * mask_bgt.astype(jnp.float32)


def grpo_sequence_advantages(r_bg: jax.Array, *, std_scale: str = "group", eps: float = 1e-6) -> jax.Array:
    """GRPO advantage per completion [B, G].

    ``A_bg = (r_bg - mean_g r_bg) / (s + eps)`` with ``s`` the unbiased (ddof=1) standard deviation of the
    rewards of the same group (``std_scale='group'``), of all B*G rewards (``'batch'``), or ``s + eps = 1``
    (``'none'``: Dr.GRPO, mean-centering only).
    """
    check_choice("std_scale", std_scale, STD_SCALES)
    r = r_bg.astype(jnp.float32)
    centred = r - jnp.mean(r, axis=1, keepdims=True)
    if std_scale == "none":
        return centred
    if std_scale == "group":
        s = jnp.std(r, axis=1, keepdims=True, ddof=1)
    else:
        s = jnp.std(r, ddof=1)
    denom = s + eps
    return centred / jnp.where(denom > 0, denom, 1.0)  # a constant group is centred to 0: keep it 0, not NaN


def grpo_advantages(
    r_bg: jax.Array, mask_bgt: jax.Array, *, std_scale: str = "group", eps: float = 1e-6
) -> jax.Array:
    """GRPO per-token advantages [B, G, T]: ``(r - mean_group r) / (std + eps)`` on every active token.

    ``std_scale``: 'group' (per-group unbiased std, the original GRPO), 'batch' (one std over the batch), or
    'none' (Dr.GRPO). A group whose rewards are all equal gets advantage 0.
    """
    _check(r_bg, mask_bgt, 2)
    return broadcast_to_tokens(grpo_sequence_advantages(r_bg, std_scale=std_scale, eps=eps), mask_bgt)


def dr_grpo_advantages(r_bg: jax.Array, mask_bgt: jax.Array) -> jax.Array:
    """Dr.GRPO per-token advantages [B, G, T]: ``r - mean_group r`` (no std scaling)."""
    _check(r_bg, mask_bgt, 1)
    return broadcast_to_tokens(grpo_sequence_advantages(r_bg, std_scale="none"), mask_bgt)


def rloo_advantages(r_bg: jax.Array, mask_bgt: jax.Array) -> jax.Array:
    """RLOO per-token advantages [B, G, T]: leave-one-out baseline.

    ``A_i = r_i - (1/(G-1)) * sum_{j != i} r_j = G/(G-1) * (r_i - mean_g r)``. Needs G >= 2.
    """
    _check(r_bg, mask_bgt, 2)
    r = r_bg.astype(jnp.float32)
    G = r.shape[1]
    loo_mean = (jnp.sum(r, axis=1, keepdims=True) - r) / (G - 1)
    return broadcast_to_tokens(r - loo_mean, mask_bgt)
