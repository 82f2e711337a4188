"""Per-token log-probabilities of given tokens under the model: the learner's view of the policy."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mrt_jax.models import Decoder


def default_positions(mask_bt: jax.Array) -> jax.Array:
    """Positions that skip padding: ``max(cumsum(mask) - 1, 0)`` (``arange`` for right-padded rows)."""
    return jnp.maximum(jnp.cumsum(mask_bt.astype(jnp.int32), axis=1) - 1, 0)


def logprobs_from_logits(logits_btv: jax.Array, tokens_bt: jax.Array, *, return_entropy: bool = False):
    """``logp_bt[:, t] = log softmax(logits[:, t-1])[tokens[:, t]]`` for t >= 1 and 0 at t = 0 (temperature 1).

    With ``return_entropy`` also the entropy of the same next-token distributions, aligned the same way.
    """
    z = logits_btv[:, :-1].astype(jnp.float32)
    lse = jax.nn.logsumexp(z, axis=-1)
    picked = jnp.take_along_axis(z, tokens_bt[:, 1:, None], axis=-1)[..., 0]
    pad = jnp.zeros((tokens_bt.shape[0], 1), jnp.float32)
    logp = jnp.concatenate([pad, picked - lse], axis=1)
    if not return_entropy:
        return logp
    ent = lse - jnp.sum(jnp.exp(z - lse[..., None]) * z, axis=-1)
    return logp, jnp.concatenate([pad, ent], axis=1)


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
