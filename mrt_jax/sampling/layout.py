"""Host-side planning of a cache block: which slots hold what, per row (pure numpy, no device work).

A row is described by the cache slots of the sequence tokens it keeps (``kept_slots``) and the tokens it still
has to feed (``feed``). All rows write their feed as one right-aligned block starting at a shared slot.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def bucket(n: int, minimum: int = 16) -> int:
    """Smallest value >= n of the form 2^k or 3*2^(k-1) (at least ``minimum``): few shapes, <= 33% waste."""
    b = minimum
    while b < n:
        b = b * 3 // 2 if (b & (b - 1)) == 0 else b * 4 // 3
    return b


class BlockPlan(NamedTuple):
    """Arrays for one prefill block. B rows, A block length, S slots."""

    block_ba: np.ndarray  # int32 tokens (pad where a row has none)
    pos_ba: np.ndarray  # int32 positions
    valid_bs: np.ndarray  # bool: kept prefix slots, real block slots, and every slot after the block
    start: int  # first slot of the block
    pos0_b: np.ndarray  # int32 position of the first generated token
    seq_slots: list  # per row: int array, cache slot of each of its sequence tokens now cached (incl. the block)


def plan_block(kept_slots: list[np.ndarray], feed: list[list[int]], n_slots: int, pad_id: int,
               block_len: int | None = None, start: int | None = None) -> BlockPlan:
    """Lay out the feed tokens of every row as one right-aligned block after all kept slots.

    Row b keeps ``len(kept_slots[b])`` cached tokens (positions 0..c_b-1) and feeds ``feed[b]`` at positions
    c_b, c_b+1, ...; every row needs at least one token to feed (its last one yields the next-token logits).
    """
    B = len(feed)
    if any(len(f) == 0 for f in feed):
        raise ValueError("every row must feed at least one token")
    last = [int(s[-1]) + 1 if len(s) else 0 for s in kept_slots]
    start = max(last) if start is None else start
    A = max(len(f) for f in feed) if block_len is None else block_len
    if start + A > n_slots:
        raise ValueError(f"block of {A} tokens at slot {start} does not fit in {n_slots} cache slots")
    block = np.full((B, A), pad_id, np.int32)
    pos = np.zeros((B, A), np.int32)
    valid = np.zeros((B, n_slots), bool)
    valid[:, start + A:] = True
    pos0 = np.zeros(B, np.int32)
    seq_slots = []
    for b in range(B):
        c, a = len(kept_slots[b]), len(feed[b])
        block[b, A - a:] = feed[b]
        pos[b, A - a:] = np.arange(c, c + a)
        pos[b, :A - a] = c  # padding: any position; its slot is invalid
        valid[b, kept_slots[b]] = True
        valid[b, start + A - a:start + A] = True
        pos0[b] = c + a
        seq_slots.append(np.concatenate([np.asarray(kept_slots[b], np.int64), np.arange(start + A - a, start + A)]))
    return BlockPlan(block, pos, valid, start, pos0, seq_slots)


def row_bucket(n: int, multiple: int) -> int:
    """Rows a call of ``n`` rows is padded to: the next power of two, rounded up to a multiple of the data shards."""
    p = 1 << max(n - 1, 0).bit_length()
    return -(-p // multiple) * multiple


def block_sizes(before: int, start: int, a_need: int, max_new: int, max_cache_len: int, *,
                exact_block: bool = False) -> tuple[int, int, int]:
    """(A block slots, N generated-token buffer, S cache slots) of one call: bucketed, so calls of similar size
    share compiled programs, unless the buckets overflow ``max_cache_len`` (then exact). ``before``: slots a row's
    sequence occupies before the block; ``start``: the block's first slot; ``a_need``: the longest feed.
    ``exact_block``: A = ``a_need`` (a fork whose rows all feed the same forced text: one size every call; a
    bucket would pad a 36-token feed to 48)."""
    A, N = (a_need if exact_block else bucket(a_need)), bucket(max(max_new, 1))
    if before + A + N > max_cache_len:
        A, N = a_need, max(max_new, 1)
    S = start + A + N
    return A, N, (bucket(S) if bucket(S) <= max_cache_len else S)


def chunk_window(n_slots: int, dec_start: int, stop_at: int, window: int | None) -> int:
    """Cache slots a decode chunk that ends at token ``stop_at`` carries: the bucketed part it can reach."""
    return min(n_slots, bucket(dec_start + stop_at)) if window else n_slots
