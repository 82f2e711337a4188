"""MRT-STaR selection: which sampled traces to fine-tune on."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mrt_jax.rl._checks import check_rank
from mrt_jax.rl.mrt import episode_progress


def select_star_traces(
    j_bgk: jax.Array,
    j_valid_bgk: jax.Array,
    term_correct_bg: jax.Array,
    *,
    top_k: int = 1,
    require_monotone: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Keep, per prompt, the ``top_k`` traces with the highest progress score among those whose
    forced-termination answer at the end of the trace is correct (``term_correct_bg``).

    Score: mean progress per episode, ``(J_last - J_0) / n_episodes`` over the valid episodes: reaching the same J
    in fewer episodes scores higher (lower cumulative regret). ``require_monotone`` also drops traces with any
    episode of negative progress. Ties keep the lower index. Returns ``(keep_bg bool, score_bg)``; traces
    without a valid episode are never kept.
    """
    check_rank("term_correct_bg", term_correct_bg, 2, "[B, G]")
    progress_bge, valid_bge = episode_progress(j_bgk, j_valid_bgk)
    if term_correct_bg.shape != progress_bge.shape[:2]:
        raise ValueError(f"term_correct_bg shape {tuple(term_correct_bg.shape)} must be [B, G] = "
                         f"{tuple(progress_bge.shape[:2])} like j_bgk")
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    n_ep = jnp.sum(valid_bge, axis=2)
    score = jnp.sum(progress_bge, axis=2) / jnp.maximum(n_ep, 1)
    ok = term_correct_bg.astype(bool) & (n_ep > 0)
    if require_monotone:
        ok = ok & ~jnp.any(valid_bge & (progress_bge < 0), axis=2)
    ranked = jnp.where(ok, score, -jnp.inf)
    G = ranked.shape[1]
    # rank_i = number of traces strictly better, or equal with a lower index
    better = (ranked[:, None, :] > ranked[:, :, None]) | (
        (ranked[:, None, :] == ranked[:, :, None]) & (jnp.arange(G)[None, :] < jnp.arange(G)[:, None])[None])
    rank = jnp.sum(better, axis=2)
    return ok & (rank < top_k), score
