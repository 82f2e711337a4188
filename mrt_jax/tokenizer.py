"""Tokenizer import point: `Tokenizer` protocol, `load_tokenizer(folder)`, `tokenizer_from_gguf(path_or_reader)`.

The implementation lives in `mrt_jax.tokenizers` (one concept per file).
"""

from mrt_jax.tokenizers import (
    HFTokenizer,
    Tokenizer,
    load_tokenizer,
    read_gguf_metadata,
    render_chat_template,
    tokenizer_from_gguf,
)

__all__ = [
    "HFTokenizer", "Tokenizer", "load_tokenizer", "read_gguf_metadata", "render_chat_template", "tokenizer_from_gguf",
]
