"""The public load/save API: ``load_pretrained(path)`` and ``save_pretrained(model, tokenizer, out_dir)``.

``path`` may be a Hugging Face folder (config.json + safetensors), a ``.gguf`` file, or a folder written by
:func:`~mrt_jax.io.orbax_io.save_orbax`.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
from jax.sharding import Mesh

from mrt_jax.io.assemble import build_model
from mrt_jax.io.gguf_io import GGUFSource, gguf_config, open_gguf
from mrt_jax.io.hf_config import config_to_hf, read_hf_config
from mrt_jax.io.orbax_io import CONFIG_FILE as ORBAX_CONFIG
from mrt_jax.io.orbax_io import load_orbax
from mrt_jax.io.safetensors_io import DEFAULT_MAX_SHARD_BYTES, SafetensorsSource, save_safetensors
from mrt_jax.models import Decoder

log = logging.getLogger(__name__)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


def _folder_tokenizer(folder: str):
    if not any(os.path.isfile(os.path.join(folder, f)) for f in _TOKENIZER_FILES):
        log.warning("%s has no tokenizer (%s); returning tokenizer=None", folder, " / ".join(_TOKENIZER_FILES))
        return None
    from mrt_jax.tokenizer import load_tokenizer  # imported late: the tokenizer stack is optional for weights

    return load_tokenizer(folder)


def load_pretrained(
    path: str | os.PathLike,
    dtype: str = "float32",
    param_dtype: str | None = None,
    mesh: Mesh | None = None,
    remat: bool = False,
) -> tuple[Decoder, Any]:
    """Load ``(model, tokenizer)`` from a HF folder, a ``.gguf`` file or an Orbax folder.

    ``dtype`` is the compute dtype; ``param_dtype`` (default: ``dtype``) the storage dtype weights are cast to.
    With ``mesh`` every parameter is placed with its ``NamedSharding`` as it is read. ``tokenizer`` is None when
    a folder has no tokenizer files.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist (expected a model folder or a .gguf file)")
    overrides = dict(dtype=dtype, param_dtype=param_dtype or dtype, remat=remat)
    if os.path.isfile(path):
        if not path.endswith(".gguf"):
            raise ValueError(f"{path}: a single file must be a .gguf file; for Hugging Face weights pass the folder")
        reader = open_gguf(path)
        cfg = gguf_config(reader, path, **overrides)
        model = build_model(cfg, GGUFSource(reader, cfg, path), mesh)
        if "tokenizer.ggml.model" not in reader.fields:
            log.warning("%s has no tokenizer metadata; returning tokenizer=None", path)
            return model, None
        from mrt_jax.tokenizer import tokenizer_from_gguf

        return model, tokenizer_from_gguf(reader)
    if os.path.isfile(os.path.join(path, ORBAX_CONFIG)) and not os.path.isfile(os.path.join(path, "config.json")):
        return load_orbax(path, mesh, **overrides), _folder_tokenizer(path)
    cfg = read_hf_config(path, **overrides)
    model = build_model(cfg, SafetensorsSource(path), mesh)
    return model, _folder_tokenizer(path)


def _special_ids(tokenizer) -> dict[str, Any]:
    """bos/eos/pad ids; eos is the primary id first, then every other id that ends generation."""
    if tokenizer is None:
        return {}
    eos = getattr(tokenizer, "eos_id", None)
    eos_ids = [eos] if eos is not None else []
    eos_ids += [i for i in getattr(tokenizer, "eos_ids", ()) or () if i not in eos_ids]
    return {"bos_token_id": getattr(tokenizer, "bos_id", None),
            "eos_token_id": eos_ids[0] if len(eos_ids) == 1 else (eos_ids or None),
            "pad_token_id": getattr(tokenizer, "pad_id", None)}


def save_pretrained(model: Decoder, tokenizer, out_dir: str | os.PathLike,
                    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
    """Write a folder transformers loads: config.json, safetensors (sharded past ``max_shard_bytes``),
    generation_config.json and, when ``tokenizer`` is given, its files. Every process must call this."""
    out_dir = os.fspath(out_dir)
    save_safetensors(model, out_dir, max_shard_bytes)
    if jax.process_index() != 0:
        return
    ids = _special_ids(tokenizer)
    primary = {**ids, "eos_token_id": ids["eos_token_id"][0]} if isinstance(ids.get("eos_token_id"), list) else ids
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config_to_hf(model.cfg, **primary), f, indent=2)
    gen = {k: v for k, v in ids.items() if v is not None}
    with open(os.path.join(out_dir, "generation_config.json"), "w", encoding="utf-8") as f:
        json.dump(gen, f, indent=2)
    if tokenizer is not None:
        tokenizer.save(out_dir)
