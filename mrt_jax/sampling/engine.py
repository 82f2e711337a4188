"""The device side of generation: one jitted prefill and one jitted decode loop over a preallocated KV cache.

Layout (shared by plain generation and prefix forks). Every row owns S cache slots. A row's sequence is the
ordered list of its *valid* slots (``valid_bs``); the new tokens of a call are written as one block of A slots
starting at the same slot ``start`` for every row, right-aligned (a row with fewer new tokens leaves invalid slots
at the left of the block: that is left padding for prompts, and the gap for forks). Generated token i (i >= 1) is
fed back at slot ``start + A + i - 1`` with position ``pos0_b + i - 1``; the causal mask (key slot <= query slot)
hides slots not yet written, so ``valid_bs`` never changes during decoding.

The cache is one (keys, values) pair of [B, K, S, E] per layer (``mrt_jax.models.layerwise``).

Shapes: B rows, A block length, S slots, N generated-token buffer, V vocab.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mrt_jax.models.config import ModelConfig
from mrt_jax.models.layerwise import LayerwiseWeights, forward_cached, layerwise_logits
from mrt_jax.sampling.sample_logits import SamplingParams, sample_tokens


class DecodeState(NamedTuple):
    """Per-row generation state carried through the decode loop."""

    tokens_bn: jax.Array  # int32 generated tokens (pad after a row stops)
    logp_bn: jax.Array  # float32 log p_model(token) (unmodified distribution), 0 after a row stops
    slogp_bn: jax.Array  # float32 log p under the sampling distribution
    length_b: jax.Array  # int32 tokens generated so far
    done_b: jax.Array  # bool
    budget_b: jax.Array  # int32 max new tokens for the row
    pos0_b: jax.Array  # int32 position of generated token 0
    keys_b: jax.Array  # uint32 [B, 2] raw PRNG key data, one stream per row
    step: jax.Array  # int32 [] index of the next token to sample


def init_state(n_rows: int, n_buf: int, budget_b, pos0_b, keys_b, pad_id: int) -> DecodeState:
    return DecodeState(
        tokens_bn=jnp.full((n_rows, n_buf), pad_id, jnp.int32),
        logp_bn=jnp.zeros((n_rows, n_buf), jnp.float32),
        slogp_bn=jnp.zeros((n_rows, n_buf), jnp.float32),
        length_b=jnp.zeros((n_rows,), jnp.int32),
        done_b=jnp.asarray(budget_b) <= 0,
        budget_b=jnp.asarray(budget_b, jnp.int32),
        pos0_b=jnp.asarray(pos0_b, jnp.int32),
        keys_b=jnp.asarray(keys_b, jnp.uint32),
        step=jnp.zeros((), jnp.int32),
    )


def _record(st: DecodeState, i, logits_bv, params, stop_ids, pad_id, greedy, use_filter) -> DecodeState:
    """Sample token i for every row and record it where the row is still active."""
    keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.wrap_key_data(k), i))(st.keys_b)
    tok_b, lp_b, slp_b = sample_tokens(logits_bv, keys, params, greedy=greedy, use_filter=use_filter)
    active_b = ~st.done_b
    length_b = st.length_b + active_b.astype(jnp.int32)
    is_stop_b = jnp.any(tok_b[:, None] == stop_ids[None, :], axis=-1)
    done_b = st.done_b | (active_b & (is_stop_b | (length_b >= st.budget_b)))

    def put(buf, val, fill):
        col = jnp.where(active_b, val, fill).astype(buf.dtype)
        return jax.lax.dynamic_update_index_in_dim(buf, col, i, axis=1)

    return st._replace(
        tokens_bn=put(st.tokens_bn, tok_b, pad_id), logp_bn=put(st.logp_bn, lp_b, 0.0),
        slogp_bn=put(st.slogp_bn, slp_b, 0.0), length_b=length_b, done_b=done_b, step=i + 1,
    )


_ENGINES: dict[tuple[str, int], tuple] = {}
_FAN: dict[tuple[str, int], object] = {}


def make_engine(cfg: ModelConfig, *, pad_id: int):
    """Jitted ``prefill`` and ``decode`` functions for one architecture (the weights are arguments, in the
    per-layer layout of ``mrt_jax.models.layerwise``; the cache is its tuple of per-layer [B, K, S, E] pairs).

    Cached per (config, pad id) so that several Samplers over the same architecture share compiled programs.
    """
    key = (repr(cfg), pad_id)
    if key not in _ENGINES:
        _ENGINES[key] = _build_engine(cfg, pad_id)
    return _ENGINES[key]


def _build_engine(cfg: ModelConfig, pad_id: int):
    @functools.partial(jax.jit, static_argnames=("greedy", "use_filter"), donate_argnums=(1, 6))
    def prefill(w: LayerwiseWeights, cache: tuple, block_ba, pos_ba, valid_bs, start, st: DecodeState,
                params: SamplingParams, stop_ids, prefix=None, *, greedy: bool, use_filter: bool):
        """Write the block at slots start..start+A-1 and sample generated token 0 from its last position."""
        h, cache = forward_cached(cfg, w, block_ba, pos_ba, cache, start, valid_bs, prefix)
        logits_bv = layerwise_logits(cfg, w, h[:, -1:])[:, 0]
        return cache, _record(st, jnp.int32(0), logits_bv, params, stop_ids, pad_id, greedy, use_filter)

    @functools.partial(jax.jit, static_argnames=("greedy", "use_filter"), donate_argnums=(1, 2))
    def decode(w: LayerwiseWeights, cache: tuple, st: DecodeState, valid_bs, dec_start, stop_at,
               params: SamplingParams, stop_ids, prefix=None, *, greedy: bool, use_filter: bool):
        """Sample tokens st.step .. stop_at-1 (fewer if every row is done). One while_loop, cache carried in place."""
        def cond(carry):
            _, s = carry
            return (s.step < stop_at) & ~jnp.all(s.done_b)

        def body(carry):
            cache, s = carry
            i = s.step
            prev_b = jax.lax.dynamic_index_in_dim(s.tokens_bn, i - 1, axis=1, keepdims=False)
            h, cache = forward_cached(cfg, w, prev_b[:, None], (s.pos0_b + i - 1)[:, None], cache,
                                      dec_start + i - 1, valid_bs, prefix)
            logits_bv = layerwise_logits(cfg, w, h)[:, 0]
            return cache, _record(s, i, logits_bv, params, stop_ids, pad_id, greedy, use_filter)

        return jax.lax.while_loop(cond, body, (cache, st))

    return prefill, decode


def make_fan_prefill(cfg: ModelConfig, *, pad_id: int):
    """A jitted ``prefill`` whose block is fed once per *distinct* row: output row r then takes fed row ``fan_r[r]``'s
    cache and next-token logits (a fork's n copies of one branch share its prefill; their keys differ).
    Cached like ``make_engine``."""
    key = (repr(cfg), pad_id)
    if key not in _FAN:
        @functools.partial(jax.jit, static_argnames=("greedy", "use_filter"), donate_argnums=(6,))
        def prefill_fan(w: LayerwiseWeights, cache: tuple, block_ba, pos_ba, valid_bs, start, st: DecodeState,
                        params: SamplingParams, stop_ids, fan_r, prefix=None, *, greedy: bool, use_filter: bool):
            h, cache = forward_cached(cfg, w, block_ba, pos_ba, cache, start, valid_bs, prefix)
            logits_bv = layerwise_logits(cfg, w, h[:, -1:])[:, 0]
            cache = jax.tree.map(lambda x: jnp.take(x, fan_r, axis=0), cache)
            return cache, _record(st, jnp.int32(0), logits_bv[fan_r], params, stop_ids, pad_id, greedy, use_filter)

        _FAN[key] = prefill_fan
    return _FAN[key]
