"""Decoder models: config, presets, the NNX decoder, and sharded construction."""

from mrt_jax.models.config import ModelConfig, resolve_dtype
from mrt_jax.models.decoder import CACHE_AXES, PARAM_AXES, Decoder, KVCache, param_shapes
from mrt_jax.models.numerics import cast_model
from mrt_jax.models.presets import PRESETS, get_preset
from mrt_jax.models.sharded import create_model, param_shardings, shard_model

__all__ = [
    "CACHE_AXES", "PARAM_AXES", "PRESETS", "Decoder", "KVCache", "ModelConfig", "cast_model", "create_model",
    "get_preset", "param_shapes", "param_shardings", "resolve_dtype", "shard_model",
]
