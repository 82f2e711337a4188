"""Checkpoints in and out: Hugging Face safetensors folders, GGUF files, Orbax."""

from mrt_jax.errors import CheckpointError
from mrt_jax.io.assemble import build_model
from mrt_jax.io.gguf_io import SUPPORTED_QUANT_TYPES, gguf_config
from mrt_jax.io.hf_config import config_from_hf, config_to_hf, read_hf_config
from mrt_jax.io.orbax_io import load_orbax, save_orbax
from mrt_jax.io.pretrained import load_pretrained, save_pretrained
from mrt_jax.io.safetensors_io import SafetensorsSource, save_safetensors

__all__ = [
    "SUPPORTED_QUANT_TYPES", "CheckpointError", "SafetensorsSource", "build_model", "config_from_hf",
    "config_to_hf", "gguf_config", "load_orbax", "load_pretrained", "read_hf_config", "save_orbax",
    "save_pretrained", "save_safetensors",
]
