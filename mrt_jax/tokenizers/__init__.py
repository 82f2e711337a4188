"""Tokenizers: one protocol over Hugging Face tokenizer.json, sentencepiece tokenizer.model and GGUF metadata.

Import from `mrt_jax.tokenizer` (the stable import point).
"""

from mrt_jax.tokenizers.chat_template import render_chat_template
from mrt_jax.tokenizers.gguf_metadata import read_gguf_metadata
from mrt_jax.tokenizers.gguf_tokenizer import tokenizer_from_gguf
from mrt_jax.tokenizers.hf_tokenizer import HFTokenizer
from mrt_jax.tokenizers.loading import load_tokenizer
from mrt_jax.tokenizers.protocol import Tokenizer

__all__ = [
    "HFTokenizer", "Tokenizer", "load_tokenizer", "read_gguf_metadata", "render_chat_template", "tokenizer_from_gguf",
]
