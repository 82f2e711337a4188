"""Named random streams: one run seed split into independent streams, each folding in where it is drawn.

``stream_key(seed, "rollout", step, sampler_id)`` = fold_in(fold_in(fold_in(key(seed), id("rollout")), step),
sampler_id): the key of one draw is a function of the stream's name and its indices only, so a resumed run draws
the same numbers and two different draws (another stream, another step, another sampler) never share a key.
The sampler then folds in each row's id, so a draw's rows have keys of their own too.

``seed`` arguments of the sampler and the evaluation accept an int (``jax.random.key(seed)``, as before) or such a
typed key; ``offset(seed, i)`` derives the i-th sub-stream of either kind.
"""

from __future__ import annotations

import jax

STREAMS = ("rollout", "fork", "mixed", "eval")  # a stream's id is its index: append, never reorder


def stream_key(seed: int, stream: str, *indices: int) -> jax.Array:
    """The typed key of one draw of ``stream`` at ``indices`` (e.g. step, sampler id, round)."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; allowed: {', '.join(STREAMS)}")
    key = jax.random.fold_in(jax.random.key(seed), STREAMS.index(stream))
    for i in indices:
        if int(i) < 0:
            raise ValueError(f"stream {stream!r}: indices must be >= 0, got {indices}")
        key = jax.random.fold_in(key, int(i))
    return key


def is_key(seed) -> bool:
    return isinstance(seed, jax.Array) and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key)


def as_key(seed) -> jax.Array:
    """A typed key from an int seed or a typed key (returned as it is)."""
    return seed if is_key(seed) else jax.random.key(seed)


SUBSTREAM_BASE = 2**31  # above every sampler row id (< 2**31), so a sub-stream never equals a row's key


def offset(seed, i: int):
    """Sub-stream ``i`` of ``seed``: ``seed + i`` for an int (the historical convention, kept so int-seeded
    evaluations reproduce), ``fold_in(seed, 2**31 + i)`` for a key (the sampler folds row ids < 2**31 into its
    base key, so the sub-stream's base is none of the rows' keys)."""
    return jax.random.fold_in(seed, SUBSTREAM_BASE + i) if is_key(seed) else seed + i
