"""GGUF (llama.cpp) files in: config from the metadata, tensors dequantised to float32 one at a time.

Names are mapped onto Hugging Face's (``blk.N.attn_q.weight`` -> ``model.layers.N.self_attn.q_proj.weight``), so
the same layout table and validation as for safetensors apply. llama.cpp's converter permutes the q/k rows of
llama models for its interleaved RoPE; we undo that to get back HF's rotate-half layout. Qwen2 uses the
rotate-half ("neox") RoPE in llama.cpp and its tensors are stored unpermuted.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from mrt_jax.errors import CheckpointError
from mrt_jax.models import ModelConfig

if TYPE_CHECKING:  # imported on use at run time
    import gguf

SUPPORTED_QUANT_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K")
SUPPORTED_GGUF_ARCHITECTURES = ("llama", "qwen2")

_GLOBAL = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
_BLOCK = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
          "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
          "attn_v.weight": "self_attn.v_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
          "attn_k.bias": "self_attn.k_proj.bias", "attn_v.bias": "self_attn.v_proj.bias",
          "attn_output.weight": "self_attn.o_proj.weight", "ffn_gate.weight": "mlp.gate_proj.weight",
          "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight"}
_BLOCK_RE = re.compile(r"blk\.(\d+)\.(.+)")


def open_gguf(path: str) -> gguf.GGUFReader:
    import gguf  # imported on use: hosts that never read GGUF files need not install it

    try:
        return gguf.GGUFReader(path)
    except Exception as e:  # the reader raises ValueError/struct errors/IndexError on garbage
        raise CheckpointError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from e


def _field(reader: gguf.GGUFReader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def gguf_config(reader: gguf.GGUFReader, path: str = "gguf", **overrides) -> ModelConfig:
    """A :class:`ModelConfig` from GGUF metadata (``{arch}.block_count`` etc.); ``overrides`` win."""
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_GGUF_ARCHITECTURES:
        raise ValueError(f"{path}: general.architecture {arch!r} is not supported; "
                         f"allowed: {list(SUPPORTED_GGUF_ARCHITECTURES)}")
    if any(t.name == "rope_freqs.weight" for t in reader.tensors):
        raise ValueError(f"{path}: per-frequency RoPE factors (rope_freqs.weight, llama3 scaling) are not supported")

    def need(key):
        v = _field(reader, f"{arch}.{key}")
        if v is None:
            raise ValueError(f"{path}: metadata key {arch}.{key} is missing")
        return v

    embd = [t for t in reader.tensors if t.name == "token_embd.weight"]
    vocab = _field(reader, f"{arch}.vocab_size")
    if vocab is None:
        tokens = _field(reader, "tokenizer.ggml.tokens")
        vocab = len(tokens) if tokens is not None else int(embd[0].shape[-1]) if embd else None
    if vocab is None:
        raise ValueError(f"{path}: cannot tell the vocabulary size ({arch}.vocab_size and the tokens are missing)")
    heads = int(need("attention.head_count"))
    hidden = int(need("embedding_length"))
    head_dim = _field(reader, f"{arch}.attention.key_length") or _field(reader, f"{arch}.rope.dimension_count")
    scaling = None
    kind = _field(reader, f"{arch}.rope.scaling.type")
    if kind == "linear":
        scaling = {"rope_type": "linear", "factor": float(need("rope.scaling.factor"))}
    elif kind not in (None, "none"):
        raise ValueError(f"{path}: {arch}.rope.scaling.type {kind!r} is not supported; allowed: none, linear")
    kw = dict(
        architecture=arch, vocab_size=int(vocab), hidden_size=hidden,
        intermediate_size=int(need("feed_forward_length")), num_layers=int(need("block_count")),
        num_heads=heads, num_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", heads)),
        head_dim=int(head_dim) if head_dim else None,
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)), rope_scaling=scaling,
        # stored as float32 in the file: round to the float64 it was converted from (9.99999e-06 -> 1e-05)
        rms_norm_eps=float(f"{float(need('attention.layer_norm_rms_epsilon')):.6g}"),
        tie_word_embeddings=not any(t.name == "output.weight" for t in reader.tensors),
        attention_bias=arch == "qwen2",
        max_position_embeddings=int(_field(reader, f"{arch}.context_length", 8192)),
    )
    kw.update(overrides)
    return ModelConfig(**kw)


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (interleaved RoPE pairs -> rotate-half halves)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


class GGUFSource:
    """A :class:`~mrt_jax.io.assemble.TensorSource` over a GGUF file, in HF names and float32."""

    def __init__(self, reader: gguf.GGUFReader, cfg: ModelConfig, path: str):
        self.description = path
        self._cfg = cfg
        self._tensors = {}
        for t in reader.tensors:
            if t.name in _GLOBAL:
                self._tensors[_GLOBAL[t.name]] = t
                continue
            m = _BLOCK_RE.fullmatch(t.name)
            if m and m.group(2) in _BLOCK:
                self._tensors[f"model.layers.{m.group(1)}.{_BLOCK[m.group(2)]}"] = t
            else:
                raise CheckpointError(f"{path}: tensor {t.name!r} is not one a llama/qwen2 decoder uses")
        for name, t in self._tensors.items():  # fail before streaming anything
            if t.tensor_type.name not in SUPPORTED_QUANT_TYPES:
                raise CheckpointError(f"{self.where(name)}: quantisation type {t.tensor_type.name} is not "
                                      f"supported; allowed: {list(SUPPORTED_QUANT_TYPES)}")

    def names(self) -> set[str]:
        return set(self._tensors)

    def where(self, name: str) -> str:
        return f"{self.description} [{self._tensors[name].name}]"

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(s) for s in reversed(self._tensors[name].shape))  # GGUF lists dims innermost first

    def get(self, name: str) -> np.ndarray:
        t = self._tensors[name]
        qtype = t.tensor_type.name
        try:
            import gguf

            w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float32).reshape(self.shape(name))
        except (ValueError, NotImplementedError) as e:
            raise CheckpointError(f"{self.where(name)}: cannot dequantise {qtype} data ({e})") from e
        if self._cfg.architecture == "llama":
            if name.endswith("q_proj.weight"):
                w = _unpermute(w, self._cfg.num_heads)
            elif name.endswith("k_proj.weight"):
                w = _unpermute(w, self._cfg.num_kv_heads)
        return w
