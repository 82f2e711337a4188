"""Per-token log-probabilities of given tokens under the model: the learner's view of the policy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mrt_jax.models import Decoder


def default_positions(mask_bt: jax.Array) -> jax.Array:
    """Positions that skip padding: ``max(cumsum(mask) - 1, 0)`` (``arange`` for right-padded rows)."""
    return jnp.maximum(jnp.cumsum(mask_bt.astype(jnp.int32), axis=1) - 1, 0)


def picked_logprobs(logits_btv: jax.Array, targets_bt: jax.Array, *, return_entropy: bool = False):
    """``log softmax(logits[:, t])[targets[:, t]]`` for every t (logits already aligned with their targets), and with
    ``return_entropy`` the entropy of each of those distributions (temperature 1, float32)."""
    z = logits_btv.astype(jnp.float32)
    lse = jax.nn.logsumexp(z, axis=-1)
    logp = jnp.take_along_axis(z, targets_bt[..., None], axis=-1)[..., 0] - lse
    if not return_entropy:
        return logp
    return logp, lse - jnp.sum(jnp.exp(z - lse[..., None]) * z, axis=-1)


def logprobs_from_logits(logits_btv: jax.Array, tokens_bt: jax.Array, *, return_entropy: bool = False):
    """``logp_bt[:, t] = log softmax(logits[:, t-1])[tokens[:, t]]`` for t >= 1 and 0 at t = 0 (temperature 1).

    With ``return_entropy`` also the entropy of the same next-token distributions, aligned the same way.
    """
    pad = jnp.zeros((tokens_bt.shape[0], 1), jnp.float32)
    out = picked_logprobs(logits_btv[:, :-1], tokens_bt[:, 1:], return_entropy=return_entropy)
    if not return_entropy:
        return jnp.concatenate([pad, out], axis=1)
    return tuple(jnp.concatenate([pad, x], axis=1) for x in out)


def loss_window(loss_mask_bt: jax.Array, width: int) -> tuple[jax.Array, jax.Array]:
    """Per row the ``width`` token columns from its first loss-mask token on -> (columns [B, W] int32, in_range
    [B, W] bool; columns past the row's end are clamped and marked out of range). Every loss token of a row lies in
    its window when the row's loss tokens span at most ``width`` columns (``check_loss_span``)."""
    T = loss_mask_bt.shape[1]
    first = jnp.argmax(loss_mask_bt > 0, axis=1).astype(jnp.int32)  # 0 for a row without loss tokens
    cols = first[:, None] + jnp.arange(width, dtype=jnp.int32)[None]
    return jnp.minimum(cols, T - 1), (cols <= T - 1) & (cols >= 1)


def check_loss_span(loss_mask, width: int) -> None:
    """Raise ValueError naming the first row whose loss tokens span more than ``width`` columns (host arrays)."""
    m = np.asarray(loss_mask) > 0
    any_b = m.any(axis=1)
    T = m.shape[1]
    first = np.argmax(m, axis=1)
    last = T - 1 - np.argmax(m[:, ::-1], axis=1)
    span = np.where(any_b, last - first + 1, 0)
    bad = np.flatnonzero(span > width)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"batch row {i}: loss tokens span {int(span[i])} columns ({int(first[i])}..{int(last[i])}) "
                         f"but LearnerConfig.loss_window={width}; set loss_window to the longest completion "
                         f"(or None)")


def token_logprobs(
    model_or_state,
    tokens_bt: jax.Array,
    mask_bt: jax.Array | None = None,
    positions_bt: jax.Array | None = None,
    *,
    return_entropy: bool = False,
):
    """Log-probabilities [B, T] of ``tokens_bt`` under a ``Decoder`` or a ``TrainState``.

    ``logp_bt[:, t] = log p(tokens[t] | tokens[<t])`` (0 at t = 0), the plain softmax at temperature 1, the same
    quantity the sampler returns for the tokens it sampled. ``mask_bt`` marks non-padding tokens (attention keys);
    positions default to ``default_positions(mask_bt)``.
    """
    from flax import nnx

    from mrt_jax.learner.state import TrainState

    if isinstance(model_or_state, TrainState):
        model = nnx.merge(model_or_state.graphdef, model_or_state.params)
    elif isinstance(model_or_state, Decoder):
        model = model_or_state
    else:
        raise TypeError(f"token_logprobs needs a Decoder or a TrainState, got {type(model_or_state).__name__}")
    if tokens_bt.ndim != 2:
        raise ValueError(f"tokens_bt must be [B, T], got shape {tuple(tokens_bt.shape)}")
    if mask_bt is None:
        mask_bt = jnp.ones(tokens_bt.shape, bool)
    if positions_bt is None:
        positions_bt = default_positions(mask_bt)
    logits = model(tokens_bt, positions_bt, mask_bt=mask_bt.astype(bool))
    return logprobs_from_logits(logits, tokens_bt, return_entropy=return_entropy)
