"""Architecture presets: the shapes of models users train, by name (weights random unless loaded)."""

from __future__ import annotations

from mrt_jax.models.config import ModelConfig

_LLAMA3_ROPE_32 = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192}
_LLAMA3_ROPE_8 = dict(_LLAMA3_ROPE_32, factor=8.0)

PRESETS: dict[str, ModelConfig] = {
    # Random, tiny: for tests and smoke runs (seconds).
    "tiny": ModelConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                        num_kv_heads=2, max_position_embeddings=2048, tie_word_embeddings=True),
    "smollm2-135m": ModelConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
                                num_heads=9, num_kv_heads=3, rope_theta=100000.0, rms_norm_eps=1e-5,
                                tie_word_embeddings=True, max_position_embeddings=8192),
    "r1-distill-qwen-1.5b": ModelConfig(architecture="qwen2", vocab_size=151936, hidden_size=1536,
                                        intermediate_size=8960, num_layers=28, num_heads=12, num_kv_heads=2,
                                        rope_theta=10000.0, rms_norm_eps=1e-6, attention_bias=True,
                                        max_position_embeddings=131072),
    "r1-distill-qwen-7b": ModelConfig(architecture="qwen2", vocab_size=152064, hidden_size=3584,
                                      intermediate_size=18944, num_layers=28, num_heads=28, num_kv_heads=4,
                                      rope_theta=10000.0, rms_norm_eps=1e-6, attention_bias=True,
                                      max_position_embeddings=131072),
    "llama-3.2-1b": ModelConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_layers=16,
                                num_heads=32, num_kv_heads=8, head_dim=64, rope_theta=500000.0,
                                rope_scaling=_LLAMA3_ROPE_32, tie_word_embeddings=True,
                                max_position_embeddings=131072),
    "llama-3.2-3b": ModelConfig(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_layers=28,
                                num_heads=24, num_kv_heads=8, head_dim=128, rope_theta=500000.0,
                                rope_scaling=_LLAMA3_ROPE_32, tie_word_embeddings=True,
                                max_position_embeddings=131072),
    "llama-3.1-8b": ModelConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32,
                                num_heads=32, num_kv_heads=8, rope_theta=500000.0, rope_scaling=_LLAMA3_ROPE_8,
                                max_position_embeddings=131072),
}


def get_preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; allowed: {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]

# The demo's small from-scratch model (vocab of the procedural-task sentencepiece tokenizer).
PRESETS["demo"] = ModelConfig(vocab_size=512, hidden_size=128, intermediate_size=384, num_layers=4, num_heads=4,
                              num_kv_heads=2, max_position_embeddings=1024, tie_word_embeddings=True)
