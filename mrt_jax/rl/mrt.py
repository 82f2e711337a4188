"""MRT advantages: the outcome advantage plus ``alpha`` times a progress bonus that group normalisation cannot cancel.

Progress of episode j (MRT.md): ``r_prg(z_j) = J(mu | x, z_{0:j}) - J(mu | x, z_{0:j-1})``, J the meta-prover's
expected 0/1 reward when forced to answer after a prefix (``J_0`` from the prompt alone). Three forms:

- ``mrt_dense_advantages``: per-episode progress as dense, per-token credit (each episode its own bonus).
- ``termination_baseline_advantages``: ``A = A_outcome + alpha * (R - R_term)`` (the pseudo-code's
  termination-reward baseline; ``include_outcome=False, alpha=1`` gives exactly ``A = R - R_term``).
- ``mixed_group_advantages``: a group of rollouts from one prefix, some terminated at once by mu, some continuing.

Why not simply add ``alpha * (R - J_prefix)`` to every reward of a GRPO group? J_prefix is the same for the whole
group, so mean-centering and std-scaling cancel it exactly (``tests/test_rl_mrt.py`` keeps that as a negative test).
Every form here adds the bonus *after* the group statistics, or varies it within a group or a sequence.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mrt_jax.rl._checks import check_choice, check_prefix, check_rank
from mrt_jax.rl.advantages import STD_SCALES, broadcast_to_tokens, grpo_sequence_advantages

PROGRESS_NORMS = ("std", "none")


def episode_progress(j_bgk: jax.Array, j_valid_bgk: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-episode progress from J estimates at episode boundaries.

    ``j_bgk`` [B, G, K]: ``j[..., 0]`` is J from the prompt alone, ``j[..., e]`` J after episode e (K = E + 1).
    Returns ``progress_bge = j[..., 1:] - j[..., :-1]`` [B, G, E] and its validity (both ends valid).
    """
    check_rank("j_bgk", j_bgk, 3, "[B, G, K] (J estimates at K = episodes + 1 boundaries)")
    check_rank("j_valid_bgk", j_valid_bgk, 3, "[B, G, K]")
    if j_valid_bgk.shape != j_bgk.shape:
        raise ValueError(f"j_valid_bgk shape {tuple(j_valid_bgk.shape)} must equal j_bgk shape {tuple(j_bgk.shape)}")
    if j_bgk.shape[2] < 2:
        raise ValueError(f"j_bgk needs K >= 2 boundaries (J_0 and at least one episode end), got K={j_bgk.shape[2]}")
    j = j_bgk.astype(jnp.float32)
    valid = j_valid_bgk.astype(bool)
    valid_bge = valid[..., 1:] & valid[..., :-1]
    return jnp.where(valid_bge, j[..., 1:] - j[..., :-1], 0.0), valid_bge


def _masked_stats(x: jax.Array, valid: jax.Array, prefix: str) -> dict[str, jax.Array]:
    n = jnp.sum(valid)
    mean = jnp.sum(jnp.where(valid, x, 0.0)) / jnp.maximum(n, 1)
    var = jnp.sum(jnp.where(valid, (x - mean) ** 2, 0.0)) / jnp.maximum(n, 1)
    big = jnp.finfo(jnp.float32).max
    return {
        f"{prefix}_mean": mean,
        f"{prefix}_std": jnp.sqrt(var),
        f"{prefix}_min": jnp.where(n > 0, jnp.min(jnp.where(valid, x, big)), 0.0),
        f"{prefix}_max": jnp.where(n > 0, jnp.max(jnp.where(valid, x, -big)), 0.0),
        f"{prefix}_count": n.astype(jnp.float32),
    }


def normalize_progress(
    progress_bge: jax.Array, valid_bge: jax.Array, *, norm: str = "std", eps: float = 1e-6
) -> tuple[jax.Array, jax.Array]:
    """Scale progress to advantage units: ``p / (s + eps)`` with s the population std of all valid episodes of
    the batch (``norm='std'``), or ``p`` unchanged (``'none'``).

    Scale only, no centring: an episode that raised J keeps a positive bonus, one that lowered it a negative one.
    Returns ``(normalised_bge, scale)``; invalid episodes are 0.
    """
    check_choice("progress norm", norm, PROGRESS_NORMS)
    valid = valid_bge.astype(bool)
    if norm == "none":
        return jnp.where(valid, progress_bge, 0.0), jnp.float32(1.0)
    stats = _masked_stats(progress_bge, valid, "p")
    scale = stats["p_std"] + eps
    scale = jnp.where(scale > 0, scale, 1.0)  # all-equal progress with eps=0: keep it finite
    return jnp.where(valid, progress_bge / scale, 0.0), scale


def mrt_dense_advantages(
    outcome_adv_bgt: jax.Array,
    j_bgk: jax.Array,
    j_valid_bgk: jax.Array,
    episode_bgt: jax.Array,
    mask_bgt: jax.Array,
    *,
    alpha: float,
    norm: str = "std",
    eps: float = 1e-6,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Dense MRT advantages [B, G, T]: ``adv_t = outcome_adv_t + alpha * p_hat[e(t)]`` on active tokens.

    ``episode_bgt`` [B, G, T] int gives the episode index e (0-based, 0 <= e < E) of each completion token, or -1
    for tokens outside any episode (they get the outcome advantage only). ``p_hat`` is
    ``normalize_progress(episode_progress(j, valid))``; episodes with an invalid J at either end get no bonus.
    Metrics hold the *un-normalised* progress statistics (``progress_mean/std/min/max/count``), the scale and the
    mean absolute bonus per active token.
    """
    check_rank("outcome_adv_bgt", outcome_adv_bgt, 3, "[B, G, T]")
    check_rank("episode_bgt", episode_bgt, 3, "[B, G, T]")
    check_rank("mask_bgt", mask_bgt, 3, "[B, G, T]")
    for name, x in (("episode_bgt", episode_bgt), ("mask_bgt", mask_bgt)):
        if x.shape != outcome_adv_bgt.shape:
            raise ValueError(f"{name} shape {tuple(x.shape)} must equal outcome_adv_bgt {tuple(outcome_adv_bgt.shape)}")
    check_prefix("j_bgk", j_bgk, "outcome_adv_bgt", outcome_adv_bgt, 2)
    if not jnp.issubdtype(episode_bgt.dtype, jnp.integer):
        raise ValueError(f"episode_bgt must hold integer episode ids (-1 = none), got dtype {episode_bgt.dtype}")
    progress_bge, valid_bge = episode_progress(j_bgk, j_valid_bgk)
    E = progress_bge.shape[2]
    try:  # concrete input: check the ids on the host; under jit they are clipped instead
        ids = np.asarray(episode_bgt)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        ids = None
    if ids is not None and ids.size and (ids.max() >= E or ids.min() < -1):
        raise ValueError(f"episode_bgt ids must lie in [-1, {E - 1}] (E={E} episodes from j_bgk), "
                         f"found min {ids.min()} max {ids.max()}")
    p_hat_bge, scale = normalize_progress(progress_bge, valid_bge, norm=norm, eps=eps)
    ep = jnp.clip(episode_bgt, 0, E - 1)
    bonus_bgt = jnp.take_along_axis(p_hat_bge, ep, axis=2)
    has_bonus = (episode_bgt >= 0) & jnp.take_along_axis(valid_bge, ep, axis=2) & mask_bgt.astype(bool)
    bonus_bgt = jnp.where(has_bonus, bonus_bgt, 0.0)
    m = mask_bgt.astype(jnp.float32)
    adv_bgt = outcome_adv_bgt.astype(jnp.float32) * m + alpha * bonus_bgt
    metrics = _masked_stats(progress_bge, valid_bge, "progress")
    metrics["progress_scale"] = jnp.asarray(scale, jnp.float32)
    metrics["progress_bonus_abs_mean"] = alpha * jnp.sum(jnp.abs(bonus_bgt)) / jnp.maximum(jnp.sum(m), 1.0)
    return adv_bgt, metrics


def termination_baseline_advantages(
    r_bg: jax.Array,
    r_term_bg: jax.Array,
    mask_bgt: jax.Array,
    *,
    alpha: float,
    include_outcome: bool = True,
    std_scale: str = "group",
    eps: float = 1e-6,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Termination-reward baseline [B, G, T]: ``A_i = A_grpo(r)_i + alpha * (r_i - r_term_i)`` per completion.

    ``r_term_bg`` is the reward (or J estimate) of terminating completion i's own prefix at once with mu, so the
    bonus is that completion's progress. It is added after the GRPO statistics, in reward units, so alpha is
    never normalised away. ``include_outcome=False`` drops the GRPO term: ``A_i = alpha * (r_i - r_term_i)``.
    """
    check_rank("rewards r_bg", r_bg, 2, "[B, G]")
    check_rank("mask_bgt", mask_bgt, 3, "[B, G, T]")
    if r_term_bg.shape != r_bg.shape:
        raise ValueError(f"r_term_bg shape {tuple(r_term_bg.shape)} must equal r_bg shape {tuple(r_bg.shape)}")
    check_prefix("mask_bgt", mask_bgt, "rewards r_bg", r_bg, 2)
    r = r_bg.astype(jnp.float32)
    progress_bg = r - r_term_bg.astype(jnp.float32)
    a_bg = alpha * progress_bg
    if include_outcome:
        a_bg = a_bg + grpo_sequence_advantages(r, std_scale=std_scale, eps=eps)
    metrics = _masked_stats(progress_bg, jnp.ones_like(progress_bg, bool), "progress")
    return broadcast_to_tokens(a_bg, mask_bgt), metrics


def mixed_group_advantages(
    r_bm: jax.Array,
    terminated_bm: jax.Array,
    mask_bmt: jax.Array,
    *,
    alpha: float,
    std_scale: str = "group",
    train_terminated: bool = True,
    eps: float = 1e-6,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """MRT-RL mixed group [B, M, T]: M rollouts from one prefix, ``terminated_bm`` True where mu answered at once.

    With ``c``/``t`` the mean reward of the continuing/terminated rollouts of a group and ``s`` the unbiased std of
    all M rewards (``std_scale='group'``; 'batch': over the batch; 'none': s + eps = 1):

    - continuing i: ``A_i = ((r_i - c) + alpha * (c - t)) / (s + eps)``;  ``c - t`` is the progress of continuing.
    - terminated i: ``A_i = (r_i - t) / (s + eps)`` (trains the forced answer; 0 if ``train_terminated=False``).

    Plain normalisation over the mixed set, ``(r_i - mean_all)``, equals the continuing form with
    ``alpha = n_t / M``. A group lacking either kind gets no bonus (counted in ``mixed_groups_frac``).
    """
    check_rank("rewards r_bm", r_bm, 2, "[B, M]")
    check_rank("mask_bmt", mask_bmt, 3, "[B, M, T]")
    if terminated_bm.shape != r_bm.shape:
        raise ValueError(f"terminated_bm shape {tuple(terminated_bm.shape)} must equal r_bm {tuple(r_bm.shape)}")
    check_prefix("mask_bmt", mask_bmt, "rewards r_bm", r_bm, 2)
    check_choice("std_scale", std_scale, STD_SCALES)
    if std_scale != "none" and r_bm.shape[1] < 2:
        raise ValueError(f"std scaling needs M >= 2 rollouts per group, got M={r_bm.shape[1]}")
    r = r_bm.astype(jnp.float32)
    term = terminated_bm.astype(bool)
    n_t = jnp.sum(term, axis=1, keepdims=True)
    n_c = r.shape[1] - n_t
    t_mean = jnp.sum(jnp.where(term, r, 0.0), axis=1, keepdims=True) / jnp.maximum(n_t, 1)
    c_mean = jnp.sum(jnp.where(term, 0.0, r), axis=1, keepdims=True) / jnp.maximum(n_c, 1)
    mixed = (n_t > 0) & (n_c > 0)
    progress_b1 = jnp.where(mixed, c_mean - t_mean, 0.0)
    if std_scale == "group":
        s = jnp.std(r, axis=1, keepdims=True, ddof=1)
    elif std_scale == "batch":
        s = jnp.std(r, ddof=1)
    else:
        s = 1.0 - eps
    cont = (r - c_mean) + alpha * progress_b1
    terminated_adv = (r - t_mean) if train_terminated else jnp.zeros_like(r)
    a_bm = jnp.where(term, terminated_adv, cont) / (s + eps)
    metrics = _masked_stats(progress_b1[:, 0], mixed[:, 0], "progress")
    metrics["mixed_groups_frac"] = jnp.mean(mixed.astype(jnp.float32))
    return a_bm[..., None] * mask_bmt.astype(jnp.float32), metrics
