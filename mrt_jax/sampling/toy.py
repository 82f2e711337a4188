"""A deterministic toy tokenizer for tests and smoke runs (no files): token i <-> a short string.

Tokens 0..3 are specials (pad, bos, eos, unk). Token i >= 4 spells 1-3 characters, so texts built from tokens have
strings that span token boundaries. ``encode`` is greedy longest-match and round-trips any text made of tokens.
"""

from __future__ import annotations

import string
from collections.abc import Sequence


class ToyTokenizer:
    """Implements the parts of ``mrt_jax.tokenizer.Tokenizer`` the sampler uses."""

    def __init__(self, vocab_size: int = 512):
        letters = string.ascii_letters + string.digits + " \n.,?!'*:"
        n = len(letters)
        self.vocab_size = vocab_size
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2
        self.eos_ids = (2,)
        self.chat_template = None
        self._pieces = ["<pad>", "<s>", "</s>", "<unk>"]
        i = 0
        while len(self._pieces) < vocab_size:
            a, b, c = i % n, (i // n) % n, (i // (n * n)) % n
            piece = letters[a] + (letters[b] if i >= n else "") + (letters[c] if i >= n * n else "")
            self._pieces.append(piece)
            i += 1
        self._ids = {p: j for j, p in enumerate(self._pieces) if j >= 4}
        self._longest = max(len(p) for p in self._pieces[4:])

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        out = []
        for t in ids:
            t = int(t)
            if t < 4 and skip_special_tokens:
                continue
            out.append(self._pieces[t])
        return "".join(out)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids, i = [], 0
        while i < len(text):
            for n in range(min(self._longest, len(text) - i), 0, -1):
                if text[i:i + n] in self._ids:
                    ids.append(self._ids[text[i:i + n]])
                    i += n
                    break
            else:
                ids.append(3)
                i += 1
        return ([self.bos_id] if add_special_tokens else []) + ids
