"""Load a tokenizer from a Hugging Face checkpoint folder (tokenizer.json or sentencepiece tokenizer.model)."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import tokenizers

from mrt_jax.tokenizers.backends import sentencepiece_backend, set_bos_eos_post_processor
from mrt_jax.tokenizers.hf_tokenizer import HFTokenizer

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
_SPM_MODEL_TYPES = {1: "unigram", 2: "bpe"}


def _read_json(path: pathlib.Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at top level, got {type(data).__name__}")
    return data


def _token_str(value: Any, where: str) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict with 'content'."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(f"{where}: special token must be a string or {{'content': str}}, got {value!r}")


def _chat_template(folder: pathlib.Path, config: dict) -> str | None:
    """chat_template.jinja, else tokenizer_config.json's chat_template (a string, or a list of named templates
    from which 'default' is taken), else chat_template.json."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if template is None and (folder / "chat_template.json").is_file():
        template = _read_json(folder / "chat_template.json").get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        if "default" not in named:
            raise ValueError(f"{folder}: chat_template is a list without a 'default' entry (names: {sorted(named)})")
        template = named["default"]
    if template is not None and not isinstance(template, str):
        raise ValueError(f"{folder}: chat_template must be a string, got {type(template).__name__}")
    return template


def _generation_eos_ids(folder: pathlib.Path) -> list[int]:
    path = folder / "generation_config.json"
    if not path.is_file():
        return []
    eos = _read_json(path).get("eos_token_id")
    ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    if not all(isinstance(i, int) for i in ids):
        raise ValueError(f"{path}: eos_token_id must be an int or a list of ints, got {eos!r}")
    return ids


def spm_model_backend(path: pathlib.Path) -> tuple[tokenizers.Tokenizer, bytes, dict]:
    """Backend from a sentencepiece `tokenizer.model`, the raw file, and its {bos,eos,unk,pad}_token pieces."""
    from sentencepiece import sentencepiece_model_pb2  # needs protobuf; only on this path

    raw = path.read_bytes()
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(raw)
    except Exception as e:  # protobuf raises its own DecodeError
        raise ValueError(f"{path}: not a sentencepiece model ({e})") from e
    if not proto.pieces:
        raise ValueError(f"{path}: sentencepiece model has no pieces")
    model_type = _SPM_MODEL_TYPES.get(proto.trainer_spec.model_type)
    if model_type is None:
        raise ValueError(
            f"{path}: sentencepiece model type {proto.trainer_spec.model_type} not supported "
            "(allowed: 1 unigram, 2 bpe)"
        )
    pieces = [p.piece for p in proto.pieces]
    types = [p.type for p in proto.pieces]
    spec = proto.trainer_spec

    def piece(i: int) -> str | None:
        return pieces[i] if 0 <= i < len(pieces) else None

    backend = sentencepiece_backend(
        pieces, [p.score for p in proto.pieces], types, model_type=model_type,
        add_dummy_prefix=proto.normalizer_spec.add_dummy_prefix, byte_fallback=spec.byte_fallback,
        unk_id=spec.unk_id, precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap or None,
    )
    specials = {"bos_token": piece(spec.bos_id), "eos_token": piece(spec.eos_id), "unk_token": piece(spec.unk_id),
                "pad_token": piece(spec.pad_id)}
    return backend, raw, specials


def load_tokenizer(folder: str | os.PathLike) -> HFTokenizer:
    """Tokenizer of a Hugging Face checkpoint folder (or of a `.gguf` file, via `tokenizer_from_gguf`).

    Uses tokenizer.json if present, else sentencepiece tokenizer.model; special tokens, add_bos/eos_token and
    the chat template come from tokenizer_config.json / special_tokens_map.json / chat_template.jinja, extra
    end-of-generation ids from generation_config.json.
    """
    folder = pathlib.Path(folder)
    if folder.is_file() and folder.suffix == ".gguf":
        from mrt_jax.tokenizers.gguf_tokenizer import tokenizer_from_gguf

        return tokenizer_from_gguf(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {folder}")
    config_path = folder / "tokenizer_config.json"
    config = _read_json(config_path) if config_path.is_file() else {}
    map_path = folder / "special_tokens_map.json"
    special_map = _read_json(map_path) if map_path.is_file() else {}
    names = ("bos_token", "eos_token", "unk_token", "pad_token")
    specials = {n: _token_str(config.get(n, special_map.get(n)), f"{config_path}: {n}") for n in names}
    add_bos, add_eos = config.get("add_bos_token"), config.get("add_eos_token")

    json_path, spm_path = folder / "tokenizer.json", folder / "tokenizer.model"
    spm_raw = None
    if json_path.is_file():
        try:
            backend = tokenizers.Tokenizer.from_file(str(json_path))
        except Exception as e:  # the Rust side raises a generic Exception on bad files
            raise ValueError(f"{json_path}: not a valid Hugging Face tokenizer.json ({e})") from e
        if spm_path.is_file():
            spm_raw = spm_path.read_bytes()
    elif spm_path.is_file():
        backend, spm_raw, spm_specials = spm_model_backend(spm_path)
        for n in names:
            if specials[n] is None and n not in config:
                specials[n] = spm_specials[n]
        # A bare sentencepiece model: add_bos_token as configured (transformers' Llama default is True).
        add_bos = True if add_bos is None else add_bos
        set_bos_eos_post_processor(backend, specials["bos_token"], specials["eos_token"], add_bos, bool(add_eos))
    else:
        raise FileNotFoundError(f"{folder}: no tokenizer file (need one of {', '.join(TOKENIZER_FILES)})")
    return HFTokenizer(
        backend, **specials, chat_template=_chat_template(folder, config), add_bos_token=bool(add_bos),
        add_eos_token=bool(add_eos), extra_eos_ids=_generation_eos_ids(folder), spm_model=spm_raw, source=str(folder),
    )
