"""The tokenizer interface the rest of mrt_jax codes against."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Tokenizer(Protocol):
    """Text <-> token ids, special tokens and chat templates of one checkpoint.

    `eos_ids` holds every id that ends generation (the eos id plus end-of-turn tokens such as `<|im_end|>` or
    `<|eot_id|>`). `pad_id` is always an int (the pad token, else eos, else 0).
    """

    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    pad_id: int
    eos_ids: tuple[int, ...]
    chat_template: str | None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...

    def token_to_id(self, token: str) -> int | None: ...

    def id_to_token(self, i: int) -> str: ...

    def apply_chat_template(
        self,
        messages: list[dict],
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        tokenize: bool = False,
        **template_kwargs: Any,
    ) -> str | list[int]: ...

    def save(self, out_dir: str | os.PathLike) -> None: ...
