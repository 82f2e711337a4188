"""The decoder's cached forward pass over *per-layer* weights, for fast generation (the sampler's own copy).

Why a second layout: the training layout stacks layer weights on a leading axis and scans over it. On XLA:CPU a
slice of a stacked weight (dynamic in a scan, static when unrolled) is materialised as a copy before every matmul,
so each decode step read and wrote every weight twice more than needed. Here each layer owns its arrays (the layer
loop is unrolled at trace time), q/k/v and gate/up are fused into one matmul each, the output projection is kept
[V, D] (for tied embeddings: the embedding itself, no copy; on XLA:CPU the [8, D] x [V, D]^T matmul was not slower
than x [D, V]), and the KV cache is one [B, K, S, E] pair per layer, so attention reads it without a transpose.

Shapes: B batch, T new tokens, S cache slots, D width, H query heads, K kv heads, G = H/K, E head dim, F ffn, V vocab.
Fused layouts: ``wqkv`` [D, K, G+2, E] (per kv head: its G query heads, then its key, then its value; sharded by
kv head like the cache), ``w_gate_up`` [D, F, 2] (gate and up interleaved; sharded by ``mlp``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mrt_jax.models.config import ModelConfig, resolve_dtype, rope_inv_freq
from mrt_jax.models.decoder import apply_rope, rms_norm

# Per-layer parameter name -> logical axes (the stacked PARAM_AXES without "layers", fused where noted above).
LAYER_AXES: dict[str, tuple[str | None, ...]] = {
    "attn_norm": ("norm",),
    "mlp_norm": ("norm",),
    "wqkv": ("embed", "kv_heads", None, "head_dim"),
    "bqkv": ("kv_heads", None, "head_dim"),
    "wo": ("q_heads", "embed"),  # [H*E, D]: flat, so XLA never transposes it to match the attention output
    "w_gate_up": ("embed", "mlp", None),
    "w_down": ("mlp", "embed"),
}
HEAD_AXES = ("vocab", "embed")
LAYER_CACHE_AXES = ("batch", "kv_heads", "cache_seq", "head_dim")


class LayerwiseWeights(NamedTuple):
    embed: jax.Array  # [V, D] (the input embedding; the same buffer as the model's)
    head: jax.Array  # [V, D] output projection (the embedding when tied, else lm_head transposed)
    final_norm: jax.Array  # [D]
    layers: tuple  # one dict per layer, names as in LAYER_AXES


def split_layers(cfg: ModelConfig, params: dict) -> LayerwiseWeights:
    """Per-layer, fused weights from the decoder's stacked parameters (a dict name -> array). Pure; jit it."""
    K, E = cfg.num_kv_heads, cfg.head_dim
    G = cfg.num_heads // K

    def fuse_qkv(q, k, v):  # q [..., H, E], k/v [..., K, E] -> [..., K, G+2, E]
        q = q.reshape(*q.shape[:-2], K, G, E)
        return jnp.concatenate([q, k[..., None, :], v[..., None, :]], axis=-2)

    wqkv = fuse_qkv(params["wq"], params["wk"], params["wv"])  # [L, D, K, G+2, E]
    w_gate_up = jnp.stack([params["w_gate"], params["w_up"]], axis=-1)  # [L, D, F, 2]
    bqkv = fuse_qkv(params["bq"], params["bk"], params["bv"]) if cfg.attention_bias else None
    layers = []
    for i in range(cfg.num_layers):
        layer = {"attn_norm": params["attn_norm"][i], "mlp_norm": params["mlp_norm"][i], "wqkv": wqkv[i],
                 "wo": params["wo"][i].reshape(-1, cfg.hidden_size), "w_gate_up": w_gate_up[i],
                 "w_down": params["w_down"][i]}
        if bqkv is not None:
            layer["bqkv"] = bqkv[i]
        layers.append(layer)
    head = params["embed"] if cfg.tie_word_embeddings else params["lm_head"].T
    return LayerwiseWeights(params["embed"], head, params["final_norm"], tuple(layers))


def layer_cache_zeros(cfg: ModelConfig, batch: int, slots: int, dtype=None) -> tuple:
    """An empty cache: one (keys, values) pair of [B, K, S, E] per layer."""
    dtype = resolve_dtype(cfg.dtype) if dtype is None else dtype
    shape = (batch, cfg.num_kv_heads, slots, cfg.head_dim)
    return tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(cfg.num_layers))


class SharedPrefix(NamedTuple):
    """A KV-cache prefix that groups of rows read in common (MRT's meta-prover branches of one trace), kept once
    instead of copied into every row. Rows are laid out group by group: row b belongs to group b // M, where
    M = B / U. ``valid_bs`` says which prefix slots row b attends (its own branch point)."""

    cache: tuple  # per layer (keys, values) [U, K, P, E]
    valid_bs: jax.Array  # bool [B, P]


def _attend(q_bkgte, k_bkse, v_bkse, mask_bts, prefix_kv=None, prefix_valid_bs=None) -> jax.Array:
    """Grouped-query attention over the cache (and a shared prefix), softmax in float32. Returns [B, K, G, T, E]."""
    E = q_bkgte.shape[-1]
    scores = jnp.einsum("bkgte,bkse->bkgts", q_bkgte, k_bkse, preferred_element_type=jnp.float32) / np.sqrt(E)
    scores = jnp.where(mask_bts[:, None, None], scores, jnp.finfo(jnp.float32).min)
    if prefix_kv is None:
        probs = jax.nn.softmax(scores, axis=-1).astype(v_bkse.dtype)
        return jnp.einsum("bkgts,bkse->bkgte", probs, v_bkse)
    # One softmax over [prefix slots | own slots]; the prefix is read once per group, not once per row.
    pk_ukpe, pv_ukpe = prefix_kv
    B, K, G, T, _ = q_bkgte.shape
    U, P = pk_ukpe.shape[0], pk_ukpe.shape[2]
    q_umkgte = q_bkgte.reshape(U, B // U, K, G, T, E)
    pscores = jnp.einsum("umkgte,ukpe->umkgtp", q_umkgte, pk_ukpe, preferred_element_type=jnp.float32) / np.sqrt(E)
    pmask = prefix_valid_bs.reshape(U, B // U, 1, 1, 1, P)
    pscores = jnp.where(pmask, pscores, jnp.finfo(jnp.float32).min).reshape(B, K, G, T, P)
    probs = jax.nn.softmax(jnp.concatenate([pscores, scores], axis=-1), axis=-1).astype(v_bkse.dtype)
    pprobs = probs[..., :P].reshape(U, B // U, K, G, T, P)
    out = jnp.einsum("bkgts,bkse->bkgte", probs[..., P:], v_bkse)
    return out + jnp.einsum("umkgtp,ukpe->umkgte", pprobs, pv_ukpe).reshape(B, K, G, T, E)


def forward_cached(cfg: ModelConfig, w: LayerwiseWeights, tokens_bt, positions_bt, cache: tuple, cache_index,
                   valid_bs, prefix: SharedPrefix | None = None) -> tuple[jax.Array, tuple]:
    """Write the T tokens at slots ``cache_index .. cache_index+T-1`` of every row and return the final normed
    hidden states [B, T, D] and the updated cache. A token at slot i attends slots j <= i with ``valid_bs[b, j]``
    (and, with a ``prefix``, every prefix slot its row's ``prefix.valid_bs`` allows, as if they came first); the
    same contract as ``Decoder.__call__`` with a cache (``return_hidden=True``)."""
    dt = resolve_dtype(cfg.dtype)
    B, T = tokens_bt.shape
    K, E = cfg.num_kv_heads, cfg.head_dim
    G = cfg.num_heads // K
    inv_freq = jnp.asarray(rope_inv_freq(cfg), jnp.float32)
    start = jnp.asarray(cache_index, jnp.int32)
    S = cache[0][0].shape[2]
    mask_bts = (jnp.arange(S)[None, :] <= (start + jnp.arange(T))[:, None])[None] & valid_bs[:, None, :].astype(bool)

    def rope(x_btne):
        return apply_rope(x_btne, positions_bt, inv_freq)

    x = jnp.take(w.embed, tokens_bt, axis=0).astype(dt)
    new_cache = []
    prefix_valid = None if prefix is None else prefix.valid_bs.astype(bool)
    for i, (p, (ck, cv)) in enumerate(zip(w.layers, cache)):
        pkv = None if prefix is None else tuple(x.astype(dt) for x in prefix.cache[i])
        h = rms_norm(x, p["attn_norm"], cfg.rms_norm_eps)
        qkv = jnp.einsum("btd,dkje->btkje", h, p["wqkv"].astype(dt))  # j: G query heads, key, value
        if "bqkv" in p:
            qkv = qkv + p["bqkv"].astype(dt)
        q = rope(qkv[:, :, :, :G].reshape(B, T, K * G, E)).reshape(B, T, K, G, E)
        k = rope(qkv[:, :, :, G])
        v = qkv[:, :, :, G + 1]
        ck = jax.lax.dynamic_update_slice(ck, k.transpose(0, 2, 1, 3).astype(ck.dtype), (0, 0, start, 0))
        cv = jax.lax.dynamic_update_slice(cv, v.transpose(0, 2, 1, 3).astype(cv.dtype), (0, 0, start, 0))
        a = _attend(q.transpose(0, 2, 3, 1, 4), ck.astype(dt), cv.astype(dt), mask_bts, pkv, prefix_valid)
        a = a.transpose(0, 3, 1, 2, 4).reshape(B, T, K * G * E)
        x = x + jnp.einsum("btc,cd->btd", a, p["wo"].astype(dt))
        h = rms_norm(x, p["mlp_norm"], cfg.rms_norm_eps)
        gu = jnp.einsum("btd,dfj->btfj", h, p["w_gate_up"].astype(dt))
        x = x + jnp.einsum("btf,fd->btd", jax.nn.silu(gu[..., 0]) * gu[..., 1], p["w_down"].astype(dt))
        new_cache.append((ck, cv))
    return rms_norm(x, w.final_norm, cfg.rms_norm_eps), tuple(new_cache)


def layerwise_logits(cfg: ModelConfig, w: LayerwiseWeights, hidden_btd) -> jax.Array:
    """Float32 logits [B, T, V] from final hidden states."""
    dt = resolve_dtype(cfg.dtype)
    return jnp.einsum("btd,vd->btv", hidden_btd, w.head.astype(dt), preferred_element_type=jnp.float32)
