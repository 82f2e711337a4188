"""Build `tokenizers.Tokenizer` backends from raw vocabularies (sentencepiece pieces, GGUF byte-level BPE).

Both sentencepiece `tokenizer.model` files and GGUF metadata describe a vocabulary, not a ready tokenizer; these
builders assemble the same pipeline Hugging Face's converters produce, so ids match transformers:
- sentencepiece BPE/Unigram: Metaspace pre-tokenizer (space -> "▁", a "▁" prepended to the start of the text
  when `add_dummy_prefix`), byte fallback `<0xNN>` pieces, decoder Replace("▁"," ") + ByteFallback + Fuse (+ Strip
  of the prefix space); BPE merges recovered from the piece scores (higher score merges first).
- byte-level BPE (GGUF "gpt2"): bytes spelled with GPT-2's printable byte alphabet, a split regex chosen by the
  file's `tokenizer.ggml.pre`, the file's merges.
Control pieces become special added tokens and user-defined pieces plain added tokens, so that they are matched
whole in text (`<|im_start|>` -> one id) instead of being cut into pieces.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors

log = logging.getLogger(__name__)

# sentencepiece / llama.cpp piece types.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPIECE = "\u2581"

# Split regexes of byte-level vocabularies, by GGUF `tokenizer.ggml.pre` (None: GPT-2's built-in ByteLevel regex).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
BYTE_LEVEL_SPLITS: dict[str, str | None] = {
    "default": None, "gpt2": None, "smollm": None, "gpt-2": None,
    "llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT, "smaug-bpe": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT,
}
# Pre-tokenizer types whose reference tokenizer.json also NFC-normalizes.
_NFC_PRE = {"qwen2", "deepseek-r1-qwen"}


@functools.lru_cache(maxsize=1)
def byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character map: printable Latin-1 bytes map to themselves, the other 68 bytes
    (controls, space, 0x7F-0xA0, 0xAD) to U+0100 onwards, in byte order."""
    keep = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(0x100 + extra)
            extra += 1
    return out


def _add_tokens(tok: tokenizers.Tokenizer, pieces: Sequence[str], types: Sequence[int], special_types: set[int]):
    """Register `special_types` pieces as special added tokens and user-defined pieces as plain added tokens."""
    tok.add_special_tokens(
        [AddedToken(p, special=True, normalized=False) for p, t in zip(pieces, types) if t in special_types]
    )
    tok.add_tokens([AddedToken(p, special=False, normalized=False) for p, t in zip(pieces, types) if t == USER_DEFINED])


def _unique_vocab(pieces: Sequence[str], what: str) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for i, p in enumerate(pieces):
        vocab.setdefault(p, i)
    if len(vocab) != len(pieces):
        log.warning("%s: %d duplicate token strings; their later ids are unreachable", what, len(pieces) - len(vocab))
    return vocab


def spm_bpe_merges(pieces: Sequence[str], scores: Sequence[float], types: Sequence[int]) -> list[tuple[str, str]]:
    """Merges implied by a sentencepiece BPE vocabulary: every split (left, right) of a normal piece whose halves
    are both pieces, ordered by the merged piece's score (descending), then its id, then the halves' ids."""
    vocab = _unique_vocab(pieces, "sentencepiece vocabulary")
    cands = []
    for i, (piece, score, t) in enumerate(zip(pieces, scores, types)):
        if t != NORMAL or len(piece) < 2:
            continue
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                cands.append((-score, i, vocab[left], vocab[right], left, right))
    cands.sort(key=lambda c: c[:4])
    return [(c[4], c[5]) for c in cands]


def sentencepiece_backend(
    pieces: Sequence[str],
    scores: Sequence[float],
    types: Sequence[int],
    *,
    model_type: str = "bpe",
    add_dummy_prefix: bool = True,
    byte_fallback: bool = True,
    unk_id: int | None = 0,
    precompiled_charsmap: bytes | None = None,
    merges: Sequence[tuple[str, str]] | None = None,
) -> tokenizers.Tokenizer:
    """A tokenizers pipeline equal to the sentencepiece model given by its pieces (see module docstring)."""
    if not (len(pieces) == len(scores) == len(types)):
        raise ValueError(f"pieces/scores/types lengths differ: {len(pieces)}, {len(scores)}, {len(types)}")
    unk = pieces[unk_id] if unk_id is not None and 0 <= unk_id < len(pieces) else None
    if model_type == "bpe":
        vocab = _unique_vocab(pieces, "sentencepiece vocabulary")
        merges = list(merges) if merges is not None else spm_bpe_merges(pieces, scores, types)
        model = models.BPE(vocab, merges, unk_token=unk, byte_fallback=byte_fallback, fuse_unk=True)
    elif model_type == "unigram":
        model = models.Unigram(
            [(p, float(s)) for p, s in zip(pieces, scores)], unk_id=unk_id if unk else None, byte_fallback=byte_fallback
        )
    else:
        raise ValueError(f"sentencepiece model type {model_type!r} not supported (allowed: 'bpe', 'unigram')")
    tok = tokenizers.Tokenizer(model)
    if precompiled_charsmap:
        tok.normalizer = normalizers.Precompiled(precompiled_charsmap)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=SPIECE, prepend_scheme="first" if add_dummy_prefix else "never", split=False
    )
    steps = [decoders.Replace(SPIECE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_dummy_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(steps)
    _add_tokens(tok, pieces, types, {CONTROL, UNKNOWN})
    return tok


def byte_level_backend(
    tokens: Sequence[str], types: Sequence[int], merges: Sequence[str], *, pre: str | None = None, where: str = ""
) -> tokenizers.Tokenizer:
    """A byte-level BPE pipeline from GGUF-style metadata (`merges` as "left right" strings).

    Control (3) and user-defined (4) tokens are kept verbatim as added tokens; other tokens not already written
    in the byte alphabet are respelled from their UTF-8 bytes.
    """
    spell = byte_alphabet()
    alphabet = set(spell.values())
    if types is None or len(types) == 0:
        types = [NORMAL] * len(tokens)
    if len(types) != len(tokens):
        raise ValueError(f"{where}: token_type has {len(types)} entries but tokens has {len(tokens)}")
    pieces = [
        t if ty in (CONTROL, USER_DEFINED) or set(t) <= alphabet else "".join(spell[b] for b in t.encode("utf-8"))
        for t, ty in zip(tokens, types)
    ]
    pairs = []
    for i, m in enumerate(merges):
        parts = m.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{where}: merges[{i}] = {m!r} is not 'left right' (one space between two tokens)")
        pairs.append((parts[0], parts[1]))
    tok = tokenizers.Tokenizer(models.BPE(_unique_vocab(pieces, where or "byte-level vocabulary"), pairs))
    key = (pre or "default").lower()
    if key not in BYTE_LEVEL_SPLITS:
        known = sorted(BYTE_LEVEL_SPLITS)
        log.warning("%s: pre-tokenizer %r unknown; using GPT-2's split (known: %s)", where, pre, known)
    split = BYTE_LEVEL_SPLITS.get(key)
    if split is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(split), behavior="isolated"), pre_tokenizers.ByteLevel(False, use_regex=False)]
        )
    if key in _NFC_PRE:
        tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    _add_tokens(tok, pieces, types, {CONTROL})
    return tok


def set_bos_eos_post_processor(
    tok: tokenizers.Tokenizer, bos: str | None, eos: str | None, add_bos: bool, add_eos: bool
) -> None:
    """Make `encode(..., add_special_tokens=True)` prepend bos / append eos as the checkpoint asks."""
    single, specials = ["$A:0"], []
    if add_bos and bos is not None:
        single.insert(0, f"{bos}:0")
        specials.append((bos, tok.token_to_id(bos)))
    if add_eos and eos is not None:
        single.append(f"{eos}:0")
        specials.append((eos, tok.token_to_id(eos)))
    pair = single + [s.replace("$A", "$B").replace(":0", ":1") for s in single]
    specials = list(dict.fromkeys(specials))  # bos == eos must be listed once
    tok.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
