"""Tokenizer from GGUF metadata: byte-level BPE ("gpt2") and sentencepiece-style ("llama") vocabularies."""

from __future__ import annotations

import os
from typing import Any

from mrt_jax.tokenizers.backends import (
    BYTE,
    byte_level_backend,
    sentencepiece_backend,
    set_bos_eos_post_processor,
)
from mrt_jax.tokenizers.gguf_metadata import read_gguf_metadata
from mrt_jax.tokenizers.hf_tokenizer import HFTokenizer

SUPPORTED_GGUF_MODELS = ("gpt2", "llama")


def _metadata_from_reader(reader: Any) -> dict[str, Any]:
    """Tokenizer keys of a `gguf.GGUFReader` as plain Python values."""
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.") or key == "general.architecture":
            value = field.contents()
            out[key] = value.tolist() if hasattr(value, "tolist") else value
    return out


def tokenizer_from_gguf(path_or_reader: str | os.PathLike | Any) -> HFTokenizer:
    """Build the tokenizer a GGUF file describes (path, or an open `gguf.GGUFReader`).

    Reads `tokenizer.ggml.{model, pre, tokens, token_type, merges, scores, *_token_id, add_bos_token,
    add_eos_token, add_space_prefix}` and `tokenizer.chat_template`. Raises ValueError naming the file when the
    tokenizer model is not one of SUPPORTED_GGUF_MODELS or a required key is missing.
    """
    if isinstance(path_or_reader, (str, os.PathLike)):
        where = os.fspath(path_or_reader)
        meta = read_gguf_metadata(where)
    elif hasattr(path_or_reader, "fields"):
        where = str(getattr(path_or_reader, "path", "<GGUFReader>"))
        meta = _metadata_from_reader(path_or_reader)
    else:
        raise TypeError(f"tokenizer_from_gguf expects a path or a gguf.GGUFReader, got {type(path_or_reader).__name__}")

    def get(key: str, default: Any = None, required: bool = False) -> Any:
        full = f"tokenizer.ggml.{key}"
        if required and full not in meta:
            raise ValueError(f"{where}: GGUF metadata lacks {full!r}, needed to build the tokenizer")
        return meta.get(full, default)

    model = get("model", required=True)
    if model not in SUPPORTED_GGUF_MODELS:
        raise ValueError(
            f"{where}: GGUF tokenizer model {model!r} is not supported (allowed: {', '.join(SUPPORTED_GGUF_MODELS)})"
        )
    tokens = get("tokens", required=True)
    types = get("token_type") or [1] * len(tokens)
    if model == "gpt2":
        backend = byte_level_backend(tokens, types, get("merges", required=True), pre=get("pre"), where=where)
        add_bos_default = False
    else:
        scores = get("scores") or [0.0] * len(tokens)
        merges = get("merges")
        backend = sentencepiece_backend(
            tokens, scores, types, model_type="bpe", add_dummy_prefix=bool(get("add_space_prefix", True)),
            byte_fallback=BYTE in types, unk_id=get("unknown_token_id", 0),
            merges=[tuple(m.split(" ", 1)) for m in merges] if merges else None,
        )
        add_bos_default = True  # llama.cpp adds BOS to sentencepiece vocabularies unless told otherwise

    def token(key: str) -> str | None:
        i = get(key)
        if i is None:
            return None
        if not 0 <= i < len(tokens):
            raise ValueError(f"{where}: tokenizer.ggml.{key} = {i} outside the vocabulary [0, {len(tokens)})")
        return tokens[i]

    bos, eos = token("bos_token_id"), token("eos_token_id")
    add_bos, add_eos = bool(get("add_bos_token", add_bos_default)), bool(get("add_eos_token", False))
    set_bos_eos_post_processor(backend, bos, eos, add_bos, add_eos)
    extra = [get(k) for k in ("eot_token_id", "eom_token_id") if get(k) is not None]
    return HFTokenizer(
        backend, bos_token=bos, eos_token=eos, pad_token=token("padding_token_id"), unk_token=token("unknown_token_id"),
        chat_template=meta.get("tokenizer.chat_template"), add_bos_token=add_bos, add_eos_token=add_eos,
        extra_eos_ids=extra, source=where,
    )
