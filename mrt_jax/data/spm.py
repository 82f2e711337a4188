"""A sentencepiece tokenizer trained on a corpus for small from-scratch models, cached on disk.

The cache folder is ``<cache_dir>/spm-<sha256(corpus, settings)[:16]>/`` holding ``tokenizer.model`` and
``settings.json``; the same corpus and settings give the same folder and (single-threaded, unshuffled training)
the same model bytes. Text is kept exactly (identity normalisation, whitespace and newlines preserved, digits split,
byte fallback for unseen characters) so ``decode(encode(s)) == s``. Ids: pad 0, unk 1, bos 2, eos 3.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

SPECIAL_SYMBOLS = ("\n", "<think>", "</think>", "\\boxed{")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpmSettings:
    vocab_size: int = 512
    model_type: str = "bpe"  # unigram keeps too few pieces on small repetitive corpora
    user_defined_symbols: tuple[str, ...] = SPECIAL_SYMBOLS

    def __post_init__(self) -> None:
        if self.model_type not in ("unigram", "bpe"):
            raise ValueError(f"SpmSettings.model_type={self.model_type!r}; allowed: 'unigram', 'bpe'")
        if self.vocab_size < 300:  # 256 byte pieces + 4 control ids + the symbols + characters
            raise ValueError(f"SpmSettings.vocab_size={self.vocab_size}; must be >= 300 (byte fallback uses 256)")


def corpus_key(texts: Sequence[str], settings: SpmSettings) -> str:
    """sha256 over the settings and every text (length-prefixed, so boundaries count)."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(settings), sort_keys=True).encode())
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:16]


def train_spm(texts: Sequence[str], settings: SpmSettings = SpmSettings()) -> bytes:
    """Serialized sentencepiece model trained on ``texts``."""
    import sentencepiece as spm

    if not texts or not any(texts):
        raise ValueError("train_spm: the corpus is empty")
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=out, vocab_size=settings.vocab_size,
        model_type=settings.model_type, character_coverage=1.0, byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
        allow_whitespace_only_pieces=True, user_defined_symbols=list(settings.user_defined_symbols),
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, num_threads=1, shuffle_input_sentence=False,
        input_sentence_size=0, hard_vocab_limit=False, max_sentence_length=1 << 16, minloglevel=2)
    return out.getvalue()


def cached_spm(texts: Sequence[str], cache_dir: str | os.PathLike, settings: SpmSettings = SpmSettings()) -> str:
    """Folder holding ``tokenizer.model`` for (texts, settings), trained on first use; returns its path."""
    folder = os.path.join(os.fspath(cache_dir), f"spm-{corpus_key(texts, settings)}")
    path = os.path.join(folder, "tokenizer.model")
    if os.path.exists(path):
        return folder
    os.makedirs(folder, exist_ok=True)
    model = train_spm(texts, settings)
    with tempfile.NamedTemporaryFile(dir=folder, delete=False) as f:  # atomic: readers never see half a file
        f.write(model)
    with open(os.path.join(folder, "settings.json"), "w") as s:
        json.dump({**dataclasses.asdict(settings), "num_texts": len(texts)}, s, indent=1)
    os.replace(f.name, path)
    return folder


def load_spm(folder: str | os.PathLike) -> Any:
    """The project tokenizer over ``folder`` (``mrt_jax.tokenizer.load_tokenizer``) when that module exists,
    else a plain ``sentencepiece.SentencePieceProcessor``."""
    try:
        from mrt_jax.tokenizer import load_tokenizer
    except ImportError:
        import sentencepiece as spm

        return spm.SentencePieceProcessor(model_file=os.path.join(os.fspath(folder), "tokenizer.model"))
    return load_tokenizer(os.fspath(folder))
