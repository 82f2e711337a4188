"""mrt-jax: JAX-native RL fine-tuning of language models for reasoning (MRT, GRPO, MRT-STaR).

The curated public API. Submodules are imported lazily so ``import mrt_jax`` stays cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ModelConfig": "mrt_jax.models",
    "Decoder": "mrt_jax.models",
    "KVCache": "mrt_jax.models",
    "create_model": "mrt_jax.models",
    "get_preset": "mrt_jax.models",
    "make_mesh": "mrt_jax.sharding",
    "load_pretrained": "mrt_jax.io",
    "save_pretrained": "mrt_jax.io",
    "load_tokenizer": "mrt_jax.tokenizer",
    "tokenizer_from_gguf": "mrt_jax.tokenizer",
    "Tokenizer": "mrt_jax.tokenizer",
    "save_orbax": "mrt_jax.io",
    "load_orbax": "mrt_jax.io",
    "LearnerConfig": "mrt_jax.learner",
    "TrainState": "mrt_jax.learner",
    "create_train_state": "mrt_jax.learner",
    "make_train_step": "mrt_jax.learner",
    "MathScorer": "mrt_jax.rewards",
    "score_math": "mrt_jax.rewards",
    "Checkpointer": "mrt_jax.checkpointing",
    "PreemptionGuard": "mrt_jax.checkpointing",
    "MetricsLogger": "mrt_jax.metrics",
    "plan_mesh": "mrt_jax.distributed",
    "get_slice": "mrt_jax.distributed",
    "init_distributed": "mrt_jax.distributed",
    "Sampler": "mrt_jax.sampling",
    "SampleOutput": "mrt_jax.sampling",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mrt_jax' has no attribute {name!r}")


def __dir__():
    return __all__
