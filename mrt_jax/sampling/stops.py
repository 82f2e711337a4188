"""Stop strings that may span token boundaries: find the shortest token prefix whose text contains one."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def find_stop(tokens: Sequence[int], stops: Sequence[str], decode: Callable[[Sequence[int]], str]) -> int | None:
    """The smallest n such that ``decode(tokens[:n])`` contains any of ``stops``; None if the full text has none.

    The completion is cut after token n (the token that completes the stop string is kept, as in Hugging Face).
    """
    text = decode(tokens)
    if not any(s in text for s in stops):
        return None
    lo, hi = 1, len(tokens)  # text of tokens[:hi] contains a stop; find the first such prefix
    while lo < hi:
        mid = (lo + hi) // 2
        if any(s in decode(tokens[:mid]) for s in stops):
            hi = mid
        else:
            lo = mid + 1
    return hi
