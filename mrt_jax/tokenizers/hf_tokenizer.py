"""`HFTokenizer`: the one concrete `Tokenizer`, over a Hugging Face `tokenizers.Tokenizer` backend.

Every source (tokenizer.json, sentencepiece tokenizer.model, GGUF metadata) is turned into such a backend, so
encoding, special-token matching and decoding behave the same way everywhere and match transformers.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import tokenizers

from mrt_jax.tokenizers.chat_template import render_chat_template

# Tokens that end a turn or a document in common chat checkpoints; counted as eos when present as special tokens.
END_OF_TURN_TOKENS = (
    "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|endoftext|>", "<end_of_turn>", "<|end|>",
    "</s>", "<\uff5cend\u2581of\u2581sentence\uff5c>",
)


class HFTokenizer:
    """Tokenizer over a `tokenizers.Tokenizer` (see `mrt_jax.tokenizers.protocol.Tokenizer`).

    Args:
      backend: the pipeline; its truncation and padding are switched off (we always want every id).
      bos_token, eos_token, pad_token, unk_token: special token strings (None when the checkpoint has none).
      chat_template: jinja template from the checkpoint, or None.
      add_bos_token, add_eos_token: what `encode(add_special_tokens=True)` adds; only recorded for `save`, the
        backend's post-processor does the adding.
      extra_eos_ids: further ids that end generation (generation_config.json, GGUF eot/eom ids).
      spm_model: serialized sentencepiece model this was built from, written back by `save`.
      source: where it came from, for error messages.
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        unk_token: str | None = None,
        chat_template: str | None = None,
        add_bos_token: bool = False,
        add_eos_token: bool = False,
        extra_eos_ids: Sequence[int] = (),
        spm_model: bytes | None = None,
        source: str = "<in memory>",
    ):
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        self.source = source
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self.bos_token, self.eos_token, self.unk_token = bos_token, eos_token, unk_token
        self.bos_id = self._special_id(bos_token, "bos_token")
        self.eos_id = self._special_id(eos_token, "eos_token")
        self.unk_id = self._special_id(unk_token, "unk_token")
        pad_id = self._special_id(pad_token, "pad_token")
        self.pad_token = pad_token if pad_id is not None else eos_token
        self.pad_id = pad_id if pad_id is not None else (self.eos_id if self.eos_id is not None else 0)
        self.chat_template = chat_template
        self.add_bos_token, self.add_eos_token = bool(add_bos_token), bool(add_eos_token)
        self._spm_model = spm_model
        specials = {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
        ends = [self.eos_id] + [int(i) for i in extra_eos_ids]
        ends += [backend.token_to_id(t) for t in END_OF_TURN_TOKENS if t in specials]
        for i in ends:
            if i is not None and not 0 <= i < self.vocab_size:
                raise ValueError(f"{source}: end-of-generation id {i} outside the vocabulary [0, {self.vocab_size})")
        self.eos_ids: tuple[int, ...] = tuple(sorted({i for i in ends if i is not None}))

    def _special_id(self, token: str | None, name: str) -> int | None:
        if token is None:
            return None
        i = self._backend.token_to_id(token)
        if i is None:
            raise ValueError(f"{self.source}: {name} {token!r} is not in the vocabulary")
        return i

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The underlying `tokenizers.Tokenizer` (batch encoding, offsets)."""
        return self._backend

    def __repr__(self) -> str:
        return f"HFTokenizer(source={self.source!r}, vocab_size={self.vocab_size}, eos_ids={self.eos_ids})"

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; special tokens written in the text become their single id. With
        `add_special_tokens`, bos/eos are added as the checkpoint's post-processor says."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        return self._backend.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        """`[encode(t) for t in texts]`, encoded in parallel by the Rust backend."""
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"encode_batch expects strings; texts[{bad[0]}] is {type(texts[bad[0]]).__name__}")
        return [e.ids for e in self._backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of a 1-D id sequence (list, numpy or jax array); special tokens dropped if `skip_special_tokens`."""
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"decode expects a 1-D sequence of ints, got shape {arr.shape} dtype {arr.dtype}")
        bad = np.flatnonzero((arr < 0) | (arr >= self.vocab_size))
        if bad.size:
            raise ValueError(
                f"decode: id {int(arr[bad[0]])} at position {int(bad[0])} outside the vocabulary [0, {self.vocab_size})"
            )
        return self._backend.decode(arr.tolist(), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """Id of the token string (vocabulary spelling, e.g. 'Ġthe' or '▁the'), or None."""
        return self._backend.token_to_id(token)

    def id_to_token(self, i: int) -> str:
        """Token string of id `i`; ValueError when `i` is not an id."""
        tok = self._backend.id_to_token(int(i)) if 0 <= int(i) < self.vocab_size else None
        if tok is None:
            raise ValueError(f"id_to_token: {i} is not a token id of {self.source} (vocabulary [0, {self.vocab_size}))")
        return tok

    def apply_chat_template(
        self,
        messages: list[dict],
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        tokenize: bool = False,
        **template_kwargs: Any,
    ) -> str | list[int]:
        """Render `messages` with the checkpoint's chat template (text, or ids when `tokenize`).

        `continue_final_message=True` ends the text right after the last message's content (no end-of-turn
        tokens) and ignores `add_generation_prompt`. The template sees bos_token/eos_token/pad_token/unk_token
        and any `template_kwargs` (e.g. tools, enable_thinking).
        """
        if self.chat_template is None:
            raise ValueError(f"{self.source} has no chat template (set one with `tok.chat_template = ...`)")
        kwargs = {"bos_token": self.bos_token, "eos_token": self.eos_token, "pad_token": self.pad_token,
                  "unk_token": self.unk_token, "tools": None, "documents": None}
        kwargs.update(template_kwargs)
        text = render_chat_template(
            self.chat_template, messages, add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message, **kwargs,
        )
        return self.encode(text, add_special_tokens=False) if tokenize else text

    def save(self, out_dir: str | os.PathLike) -> None:
        """Write tokenizer.json, tokenizer_config.json (special tokens, chat_template), special_tokens_map.json
        and, when built from one, tokenizer.model, so that `transformers.AutoTokenizer.from_pretrained(out_dir)`
        and `load_tokenizer(out_dir)` load an equivalent tokenizer."""
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self._backend.save(str(out / "tokenizer.json"))
        if self._spm_model is not None:
            (out / "tokenizer.model").write_bytes(self._spm_model)
        specials = {k: v for k, v in (("bos_token", self.bos_token), ("eos_token", self.eos_token),
                                      ("unk_token", self.unk_token), ("pad_token", self.pad_token)) if v is not None}
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **specials,
            "add_bos_token": self.add_bos_token,
            "add_eos_token": self.add_eos_token,
            "clean_up_tokenization_spaces": False,
            "model_max_length": 1 << 30,
        }
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2, ensure_ascii=False) + "\n")
