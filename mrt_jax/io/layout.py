"""Our stacked parameters <-> Hugging Face per-layer tensors (names, shapes and the reshapes between them).

HF stores linear weights as ``[out, in]`` (torch ``nn.Linear``); we store ``[in, out]`` with heads split out:
  q_proj [H*E, D] -> wq [D, H, E]      o_proj [D, H*E] -> wo [H, E, D]
  gate/up_proj [F, D] -> [D, F]        down_proj [D, F] -> w_down [F, D]
  lm_head [V, D] -> [D, V]             q/k/v biases [H*E] -> [H, E]
Layer tensors are stacked on a leading axis L. GGUF files are read through the same table after renaming.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from mrt_jax.models import ModelConfig, param_shapes

_LAYER = "model.layers.{i}."


@dataclasses.dataclass(frozen=True)
class TensorMap:
    """How one of our parameters is made from HF tensors (one per layer when ``per_layer``)."""

    hf_name: str  # with ``{i}`` for the layer index when per_layer
    hf_shape: tuple[int, ...]
    per_layer: bool
    to_ours: Callable[[np.ndarray], np.ndarray]  # one HF tensor -> our (per-layer) slice
    to_hf: Callable[[np.ndarray], np.ndarray]  # our (per-layer) slice -> one HF tensor

    def names(self, num_layers: int) -> list[str]:
        return [self.hf_name.format(i=i) for i in range(num_layers)] if self.per_layer else [self.hf_name]


def _ident(x):
    return x


def _t(x):
    return x.T


def hf_layout(cfg: ModelConfig) -> dict[str, TensorMap]:
    """Our parameter name -> :class:`TensorMap`, for exactly the parameters ``cfg`` has."""
    D, H, K, E, F, V = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size,
                        cfg.vocab_size)

    def in_heads(n):  # [n*E, D] -> [D, n, E] and back
        return (lambda w: w.T.reshape(D, n, E)), (lambda w: w.reshape(D, n * E).T)

    def bias(n):
        return (lambda b: b.reshape(n, E)), (lambda b: b.reshape(n * E))

    q, kv, bq, bkv = in_heads(H), in_heads(K), bias(H), bias(K)
    maps = {
        "embed": TensorMap("model.embed_tokens.weight", (V, D), False, _ident, _ident),
        "lm_head": TensorMap("lm_head.weight", (V, D), False, _t, _t),
        "final_norm": TensorMap("model.norm.weight", (D,), False, _ident, _ident),
        "attn_norm": TensorMap(_LAYER + "input_layernorm.weight", (D,), True, _ident, _ident),
        "mlp_norm": TensorMap(_LAYER + "post_attention_layernorm.weight", (D,), True, _ident, _ident),
        "wq": TensorMap(_LAYER + "self_attn.q_proj.weight", (H * E, D), True, *q),
        "wk": TensorMap(_LAYER + "self_attn.k_proj.weight", (K * E, D), True, *kv),
        "wv": TensorMap(_LAYER + "self_attn.v_proj.weight", (K * E, D), True, *kv),
        "bq": TensorMap(_LAYER + "self_attn.q_proj.bias", (H * E,), True, *bq),
        "bk": TensorMap(_LAYER + "self_attn.k_proj.bias", (K * E,), True, *bkv),
        "bv": TensorMap(_LAYER + "self_attn.v_proj.bias", (K * E,), True, *bkv),
        "wo": TensorMap(_LAYER + "self_attn.o_proj.weight", (D, H * E), True,
                        lambda w: w.T.reshape(H, E, D), lambda w: w.reshape(H * E, D).T),
        "w_gate": TensorMap(_LAYER + "mlp.gate_proj.weight", (F, D), True, _t, _t),
        "w_up": TensorMap(_LAYER + "mlp.up_proj.weight", (F, D), True, _t, _t),
        "w_down": TensorMap(_LAYER + "mlp.down_proj.weight", (D, F), True, _t, _t),
    }
    return {n: maps[n] for n in param_shapes(cfg)}


def expected_hf_tensors(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every HF tensor name ``cfg`` needs -> its shape, in HF's usual order (layer-major)."""
    layout = hf_layout(cfg)
    out = {m.hf_name: m.hf_shape for m in layout.values() if not m.per_layer and m.hf_name != "lm_head.weight"}
    for i in range(cfg.num_layers):
        out.update({m.hf_name.format(i=i): m.hf_shape for m in layout.values() if m.per_layer})
    if "lm_head" in layout:
        out["lm_head.weight"] = layout["lm_head"].hf_shape
    return out
