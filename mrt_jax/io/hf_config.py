"""Hugging Face ``config.json`` <-> :class:`ModelConfig` for LlamaForCausalLM and Qwen2ForCausalLM.

Both spellings of the RoPE settings are read: transformers 4.x (``rope_theta`` + ``rope_scaling``) and 5.x
(``rope_parameters`` holding ``rope_theta`` and ``rope_type``). Both are written, so either version loads the output.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mrt_jax.models import ModelConfig

# HF class name -> (model_type, our architecture)
SUPPORTED_HF_ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
_ROPE_KEYS = ("rope_type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def _arch_of(d: dict, where: str) -> str:
    archs = d.get("architectures") or []
    model_type = d.get("model_type")
    for a in archs:
        if a in SUPPORTED_HF_ARCHITECTURES:
            return SUPPORTED_HF_ARCHITECTURES[a]
    if not archs and model_type in SUPPORTED_HF_ARCHITECTURES.values():
        return model_type
    raise ValueError(
        f"{where}: architecture {archs or model_type!r} (model_type {model_type!r}) is not supported; "
        f"allowed: {sorted(SUPPORTED_HF_ARCHITECTURES)} (model_type {sorted(set(SUPPORTED_HF_ARCHITECTURES.values()))})"
    )


def _rope(d: dict) -> tuple[float, dict | None]:
    """(rope_theta, rope_scaling or None) from either the 4.x or the 5.x spelling."""
    params = d.get("rope_parameters")
    if isinstance(params, dict):
        theta = float(params.get("rope_theta", d.get("rope_theta", 10000.0)))
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    else:
        theta = float(d.get("rope_theta", 10000.0))
        scaling = dict(d.get("rope_scaling") or {})
    if "type" in scaling and "rope_type" not in scaling:
        scaling["rope_type"] = scaling.pop("type")
    if scaling.get("rope_type", "default") == "default":
        return theta, None
    return theta, {k: scaling[k] for k in _ROPE_KEYS if k in scaling}


def config_from_hf(d: dict[str, Any], *, where: str = "config.json", **overrides) -> ModelConfig:
    """A :class:`ModelConfig` from a parsed HF config dict; ``overrides`` (dtype, remat, ...) win.

    Raises ValueError naming ``where`` and the field for architectures or options we do not implement.
    """
    arch = _arch_of(d, where)
    missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                           "num_attention_heads") if k not in d]
    if missing:
        raise ValueError(f"{where}: required fields {missing} are missing")
    act = d.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"{where}: hidden_act {act!r} is not supported; allowed: 'silu'")
    if d.get("mlp_bias"):
        raise ValueError(f"{where}: mlp_bias=true is not supported; allowed: false")
    if arch == "llama" and d.get("attention_bias"):
        raise ValueError(f"{where}: attention_bias=true for llama (o_proj bias) is not supported; allowed: false")
    if arch == "qwen2" and d.get("use_sliding_window"):
        raise ValueError(f"{where}: use_sliding_window=true is not supported; allowed: false")
    theta, scaling = _rope(d)
    heads = int(d["num_attention_heads"])
    kw = dict(
        architecture=arch,
        vocab_size=int(d["vocab_size"]),
        hidden_size=int(d["hidden_size"]),
        intermediate_size=int(d["intermediate_size"]),
        num_layers=int(d["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(d.get("num_key_value_heads") or heads),
        head_dim=d.get("head_dim"),
        rope_theta=theta,
        rope_scaling=scaling,
        rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
        attention_bias=arch == "qwen2",  # Qwen2 always has q/k/v biases
        max_position_embeddings=int(d.get("max_position_embeddings", 8192)),
    )
    kw.update(overrides)
    try:
        return ModelConfig(**kw)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e


def config_to_hf(cfg: ModelConfig, *, bos_token_id: int | None = None, eos_token_id=None,
                 pad_token_id: int | None = None) -> dict[str, Any]:
    """The HF config dict of ``cfg`` (transformers 4.x and 5.x keys both present)."""
    hf_class = {v: k for k, v in SUPPORTED_HF_ARCHITECTURES.items()}[cfg.architecture]
    scaling = dict(cfg.rope_scaling) if cfg.rope_scaling else None
    rope_parameters = {"rope_theta": cfg.rope_theta, **(scaling or {"rope_type": "default"})}
    d = {
        "architectures": [hf_class],
        "model_type": cfg.architecture,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": scaling,
        "rope_parameters": rope_parameters,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "max_position_embeddings": cfg.max_position_embeddings,
        "torch_dtype": cfg.param_dtype,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        "use_cache": True,
    }
    if cfg.architecture == "llama":
        d.update(attention_bias=False, mlp_bias=False)
    else:
        d.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.num_layers)
    return d


def read_hf_config(folder: str, **overrides) -> ModelConfig:
    """Parse ``folder/config.json``; FileNotFoundError / ValueError say which file and what is wrong."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: a Hugging Face model folder needs config.json")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(d, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(d).__name__}")
    return config_from_hf(d, where=path, **overrides)
