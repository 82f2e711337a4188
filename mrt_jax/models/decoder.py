"""A Flax NNX decoder for the Llama and Qwen2 families, with layer parameters stacked on a leading axis.

Stacking keeps compile time flat in depth (one ``lax.scan`` over layers) and lets the KV cache be carried and
updated in place. Every parameter carries logical axis names (``axes`` metadata) that ``mrt_jax.sharding`` maps
onto the mesh.

Shapes: B batch, T new tokens, S cache slots, L layers, D width, H query heads, K kv heads, E head dim, F ffn, V vocab.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mrt_jax.models.config import ModelConfig, resolve_dtype, rope_inv_freq
from mrt_jax.sharding import constrain

# Parameter name -> logical axes. The single source of truth for layouts (sharding, checkpoint conversion).
PARAM_AXES: dict[str, tuple[str, ...]] = {
    "embed": ("vocab", "embed"),
    "lm_head": ("embed", "vocab"),
    "final_norm": ("norm",),
    "attn_norm": ("layers", "norm"),
    "mlp_norm": ("layers", "norm"),
    "wq": ("layers", "embed", "q_heads", "head_dim"),
    "wk": ("layers", "embed", "kv_heads", "head_dim"),
    "wv": ("layers", "embed", "kv_heads", "head_dim"),
    "bq": ("layers", "q_heads", "head_dim"),
    "bk": ("layers", "kv_heads", "head_dim"),
    "bv": ("layers", "kv_heads", "head_dim"),
    "wo": ("layers", "q_heads", "head_dim", "embed"),
    "w_gate": ("layers", "embed", "mlp"),
    "w_up": ("layers", "embed", "mlp"),
    "w_down": ("layers", "mlp", "embed"),
}

LAYER_PARAMS = ("attn_norm", "mlp_norm", "wq", "wk", "wv", "bq", "bk", "bv", "wo", "w_gate", "w_up", "w_down")


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter this config has."""
    L, D, H, K, E, F, V = (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                           cfg.intermediate_size, cfg.vocab_size)
    shapes = {
        "embed": (V, D), "final_norm": (D,), "attn_norm": (L, D), "mlp_norm": (L, D),
        "wq": (L, D, H, E), "wk": (L, D, K, E), "wv": (L, D, K, E), "wo": (L, H, E, D),
        "w_gate": (L, D, F), "w_up": (L, D, F), "w_down": (L, F, D),
    }
    if cfg.attention_bias:
        shapes.update(bq=(L, H, E), bk=(L, K, E), bv=(L, K, E))
    if not cfg.tie_word_embeddings:
        shapes["lm_head"] = (D, V)
    return shapes


class KVCache(NamedTuple):
    """Keys/values for S slots per row. ``valid_bs`` marks slots holding real tokens (not padding/unused)."""

    k: jax.Array  # [L, B, S, K, E]
    v: jax.Array  # [L, B, S, K, E]

    @staticmethod
    def zeros(cfg: ModelConfig, batch: int, slots: int, dtype=None) -> KVCache:
        dtype = resolve_dtype(cfg.dtype) if dtype is None else dtype
        shape = (cfg.num_layers, batch, slots, cfg.num_kv_heads, cfg.head_dim)
        return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


CACHE_AXES = ("layers", "batch", "cache_seq", "kv_heads", "head_dim")


def rms_norm(x: jax.Array, w: jax.Array, eps: float) -> jax.Array:
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (y * w.astype(jnp.float32)).astype(x.dtype)


def apply_rope(x_bthe: jax.Array, pos_bt: jax.Array, inv_freq: jax.Array) -> jax.Array:
    """Rotate-half RoPE (the Hugging Face convention), angles in float32."""
    ang = pos_bt.astype(jnp.float32)[..., None] * inv_freq  # [B, T, E/2]
    cos = jnp.concatenate([jnp.cos(ang)] * 2, -1)[:, :, None, :]
    sin = jnp.concatenate([jnp.sin(ang)] * 2, -1)[:, :, None, :]
    x = x_bthe.astype(jnp.float32)
    half = x.shape[-1] // 2
    rot = jnp.concatenate([-x[..., half:], x[..., :half]], -1)
    return (x * cos + rot * sin).astype(x_bthe.dtype)


def attention(q_bthe, k_bske, v_bske, mask_bts) -> jax.Array:
    """Grouped-query attention; softmax in float32. ``mask_bts`` True where a query may attend a key."""
    B, T, H, E = q_bthe.shape
    K = k_bske.shape[2]
    q = q_bthe.reshape(B, T, K, H // K, E)
    scores = jnp.einsum("btkge,bske->bkgts", q, k_bske, preferred_element_type=jnp.float32) / np.sqrt(E)
    scores = jnp.where(mask_bts[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v_bske.dtype)
    out = jnp.einsum("bkgts,bske->btkge", probs, v_bske)
    return out.reshape(B, T, H, E)


class Decoder(nnx.Module):
    """Llama / Qwen2 decoder. ``model(tokens_bt)`` returns float32 logits [B, T, V]."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        pdt = resolve_dtype(cfg.param_dtype)
        init = jax.nn.initializers.normal(0.02)
        for name, shape in param_shapes(cfg).items():
            if name.endswith("norm"):
                value = jnp.ones(shape, pdt)
            elif name.startswith("b"):
                value = jnp.zeros(shape, pdt)
            else:
                value = init(rngs.params(), shape, pdt)
            setattr(self, name, nnx.Param(value, axes=PARAM_AXES[name]))

    def __call__(
        self,
        tokens_bt: jax.Array,
        positions_bt: jax.Array | None = None,
        *,
        mask_bt: jax.Array | None = None,
        cache: KVCache | None = None,
        cache_index: jax.Array | int | None = None,
        valid_bs: jax.Array | None = None,
        return_hidden: bool = False,
    ):
        """Forward pass.

        Without ``cache``: causal attention over the T tokens; ``mask_bt`` (default all True) excludes padding keys;
        ``positions_bt`` defaults to ``arange(T)``. Returns logits [B, T, V] (or hidden states [B, T, D]).

        With ``cache``: the T tokens are written at slots ``cache_index .. cache_index+T-1`` (same for every row);
        a token at slot i attends slots j <= i with ``valid_bs[b, j]`` True (``valid_bs`` must already mark the
        new slots). ``positions_bt`` is required. Returns ``(logits_or_hidden, new_cache)``.
        """
        cfg = self.cfg
        dt = resolve_dtype(cfg.dtype)
        B, T = tokens_bt.shape
        if positions_bt is None:
            if cache is not None:
                raise ValueError("positions_bt is required when decoding with a KV cache")
            positions_bt = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
        inv_freq = jnp.asarray(rope_inv_freq(cfg), jnp.float32)

        if cache is None:
            causal = jnp.tril(jnp.ones((T, T), bool))[None]
            mask_bts = causal if mask_bt is None else causal & mask_bt[:, None, :].astype(bool)
            mask_bts = jnp.broadcast_to(mask_bts, (B, T, T))
            start = None
        else:
            if valid_bs is None or cache_index is None:
                raise ValueError("decoding with a KV cache needs cache_index and valid_bs")
            S = cache.k.shape[2]
            start = jnp.asarray(cache_index, jnp.int32)
            q_slot = start + jnp.arange(T)
            mask_bts = (jnp.arange(S)[None, :] <= q_slot[:, None])[None] & valid_bs[:, None, :].astype(bool)

        x = jnp.take(self.embed[...], tokens_bt, axis=0).astype(dt)
        x = constrain(x, ("batch", "seq", "act_embed"))
        layer_params = {n: getattr(self, n)[...] for n in LAYER_PARAMS if hasattr(self, n)}

        def project_qkv(x, p):
            h = rms_norm(x, p["attn_norm"], cfg.rms_norm_eps)
            q = jnp.einsum("btd,dhe->bthe", h, p["wq"].astype(dt))
            k = jnp.einsum("btd,dke->btke", h, p["wk"].astype(dt))
            v = jnp.einsum("btd,dke->btke", h, p["wv"].astype(dt))
            if cfg.attention_bias:
                q, k, v = q + p["bq"].astype(dt), k + p["bk"].astype(dt), v + p["bv"].astype(dt)
            return apply_rope(q, positions_bt, inv_freq), apply_rope(k, positions_bt, inv_freq), v

        def attend_and_mlp(x, p, q, keys, vals):
            a = attention(q, keys, vals, mask_bts)
            x = x + jnp.einsum("bthe,hed->btd", a, p["wo"].astype(dt))
            # The MLP on [B*T, D] rows: XLA:CPU ran the backward pass of the same [B, T, D] einsums slower
            # (learn_s of benchmarks.rl_step_cpu, BUILD.md "RL step on CPU"); same values.
            x2 = x.reshape(B * T, -1)
            h = rms_norm(x2, p["mlp_norm"], cfg.rms_norm_eps)
            g = jnp.dot(h, p["w_gate"].astype(dt))
            u = jnp.dot(h, p["w_up"].astype(dt))
            x = (x2 + jnp.dot(jax.nn.silu(g) * u, p["w_down"].astype(dt))).reshape(x.shape)
            return constrain(x, ("batch", "seq", "act_embed"))

        if cache is None:
            def body(x, p):
                q, k, v = project_qkv(x, p)
                return attend_and_mlp(x, p, q, k, v), None

            if cfg.remat:
                body = jax.checkpoint(body)
            x, _ = jax.lax.scan(body, x, layer_params)
            new_cache = None
        else:
            def body(carry, inputs):
                # The cache is carried and written in place: only the T new slots of layer i change.
                x, ck, cv = carry
                p, i = inputs
                q, k, v = project_qkv(x, p)
                ck = jax.lax.dynamic_update_slice(ck, k[None].astype(ck.dtype), (i, 0, start, 0, 0))
                cv = jax.lax.dynamic_update_slice(cv, v[None].astype(cv.dtype), (i, 0, start, 0, 0))
                keys = jax.lax.dynamic_index_in_dim(ck, i, 0, keepdims=False).astype(dt)
                vals = jax.lax.dynamic_index_in_dim(cv, i, 0, keepdims=False).astype(dt)
                return (attend_and_mlp(x, p, q, keys, vals), ck, cv), None

            (x, ck, cv), _ = jax.lax.scan(body, (x, cache.k, cache.v), (layer_params, jnp.arange(cfg.num_layers)))
            new_cache = KVCache(ck, cv)

        x = rms_norm(x, self.final_norm[...], cfg.rms_norm_eps)
        out = x if return_hidden else self.logits(x)
        return out if cache is None else (out, new_cache)

    def logits(self, hidden_btd: jax.Array) -> jax.Array:
        """Project final hidden states to float32 logits."""
        dt = resolve_dtype(self.cfg.dtype)
        if self.cfg.tie_word_embeddings:
            w = self.embed[...].astype(dt)
            out = jnp.einsum("btd,vd->btv", hidden_btd, w, preferred_element_type=jnp.float32)
        else:
            w = self.lm_head[...].astype(dt)
            out = jnp.einsum("btd,dv->btv", hidden_btd, w, preferred_element_type=jnp.float32)
        return constrain(out, ("batch", "seq", "vocab"))
