"""Helpers for I/O tests: tiny random Llama / Qwen2 checkpoints written by transformers itself, and GGUF files."""

from __future__ import annotations

import os

import numpy as np

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5)
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}
LINEAR_ROPE = {"rope_type": "linear", "factor": 2.0}


def hf_model(arch: str = "llama", *, tie: bool = False, rope_scaling: dict | None = None, seed: int = 0, **kw):
    """A tiny random transformers model (float32, eval mode); every parameter drawn from N(0, 0.2^2)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    cfg_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[arch]
    rope = {"rope_theta": 1000.0, **(rope_scaling or {"rope_type": "default"})}
    config = cfg_cls(**{**TINY, **kw}, tie_word_embeddings=tie, rope_parameters=rope)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # random norms and biases too, so a mix-up cannot hide behind ones/zeros
            p.normal_(0.0, 0.2)
        if tie:
            model.tie_weights()
    return model


def write_hf(folder, arch: str = "llama", max_shard_size: str | None = None, **kw):
    """Write ``hf_model(arch, **kw)`` to ``folder`` with ``save_pretrained``; return the torch model."""
    model = hf_model(arch, **kw)
    extra = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(os.fspath(folder), **extra)
    return model


def hf_logits(model, tokens_bt: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(tokens_bt), dtype=torch.long)).logits.float().numpy()


def tokens(batch: int = 2, length: int = 12, vocab: int = TINY["vocab_size"], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, (batch, length)).astype(np.int32)


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter permutation of q/k rows (rotate-half -> interleaved pairs); our loader undoes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, model, *, quant: str = "F32", extra_tensors: dict | None = None, arch: str = "llama") -> None:
    """Write a torch Llama/Qwen2 model as a GGUF file the way llama.cpp's converter lays it out.

    ``quant`` ('F32', 'F16', 'Q8_0', ...) is applied to 2-D weights; norms and biases stay F32.
    """
    import gguf

    c = model.config
    w = gguf.GGUFWriter(os.fspath(path), arch)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    block = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
             "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
             "self_attn.v_proj.weight": "attn_v.weight", "self_attn.q_proj.bias": "attn_q.bias",
             "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias",
             "self_attn.o_proj.weight": "attn_output.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
             "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
    qtype = gguf.GGMLQuantizationType[quant]
    state = model.state_dict()
    if c.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    for name, t in state.items():
        x = t.float().numpy()
        if name.startswith("model.layers."):
            _, _, i, rest = name.split(".", 3)
            gname = f"blk.{i}.{block[rest]}"
            if arch == "llama" and rest == "self_attn.q_proj.weight":
                x = permute_qk(x, c.num_attention_heads)
            elif arch == "llama" and rest == "self_attn.k_proj.weight":
                x = permute_qk(x, c.num_key_value_heads)
        else:
            gname = names[name]
        if x.ndim == 2 and quant != "F32":
            w.add_tensor(gname, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(gname, np.ascontiguousarray(x, np.float32))
    for gname, (arr, raw) in (extra_tensors or {}).items():
        w.add_tensor(gname, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
