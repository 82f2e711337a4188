"""Stop rules: find the shortest token prefix whose text meets one. A rule is a stop string (it may span token
boundaries) or a ``StopRule`` (a test on the decoded text that, once true for a prefix, stays true for every
longer one: the binary search below relies on that)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class BoxClosed:
    """Stop once the text holds a ``\\boxed{...}`` whose braces have closed (nesting-aware, ``\\{`` escapes do not
    count): a worked answer (R1's "Step-by-Step Explanation") runs over several lines and ends in its box."""

    name: str = "box_closed"

    def __call__(self, text: str) -> bool:
        start = text.find("\\boxed")
        while start >= 0:
            i = start + len("\\boxed")
            while i < len(text) and text[i] in " \t":
                i += 1
            if i < len(text) and text[i] == "{" and _closes(text, i):
                return True
            start = text.find("\\boxed", i)
        return False


StopRule = BoxClosed  # the one non-string rule so far
BOX_CLOSED = BoxClosed()


def _closes(text: str, open_at: int) -> bool:
    depth, i = 0, open_at
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        depth += (c == "{") - (c == "}")
        if depth == 0:
            return True
        i += 1
    return False


def stop_hit(text: str, stops: Sequence[str | StopRule]) -> bool:
    """Whether ``text`` meets any of ``stops``."""
    return any((s in text) if isinstance(s, str) else s(text) for s in stops)


def describe(stops: Sequence[str | StopRule] | None) -> list[str] | None:
    """JSON-able names of ``stops`` (strings as they are, rules by name), for configs and reports."""
    return None if stops is None else [s if isinstance(s, str) else s.name for s in stops]


def find_stop(tokens: Sequence[int], stops: Sequence[str | StopRule],
              decode: Callable[[Sequence[int]], str]) -> int | None:
    """The smallest n such that ``decode(tokens[:n])`` meets any of ``stops``; None if the full text meets none.

    The completion is cut after token n (the token that completes the stop string is kept, as in Hugging Face).
    """
    if not stop_hit(decode(tokens), stops):
        return None
    lo, hi = 1, len(tokens)  # text of tokens[:hi] meets a stop; find the first such prefix
    while lo < hi:
        mid = (lo + hi) // 2
        if stop_hit(decode(tokens[:mid]), stops):
            hi = mid
        else:
            lo = mid + 1
    return hi
