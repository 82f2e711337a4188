"""Forced answers at trace prefixes: fork each (row, position) from the kept KV cache, append the forced-termination
suffix, sample k answers, score them (mean = the meta-prover's J) and vote on them (majority correctness)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mrt_jax.evaluation.majority import answer_key, majority_correct
from mrt_jax.rewards.extraction import extract_answer
from mrt_jax.rewards.scorer import Scorer, rewards
from mrt_jax.sampling import Branch, SampleOutput, Sampler


def forced_points(sampler: Sampler, source: SampleOutput, pairs: Sequence[tuple[int, int]], golds: Sequence[str],
                  verify: Callable[[str, str], float] | Scorer, *, suffix: str, k: int, max_new_tokens: int,
                  temperature: float, seed: int, stop: Sequence[str] | None = ("\n",), first_pair: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """For each ``(row, position)``: (mean correctness of k forced answers, majority-vote correctness), and the
    answer tokens spent. ``golds[row]`` is the gold answer of source row ``row``.

    Answer s of pair j draws from the random stream ``(seed, (first_pair + j) * k + s)``: with ``first_pair`` the
    index of ``pairs[0]`` in a longer list (the pairs of every chunk of an evaluation), the answers are those of one
    call over that list."""
    if not pairs:
        return np.zeros(0), np.zeros(0), 0
    ids = range(first_pair * k, (first_pair + len(pairs)) * k)
    out = sampler.fork(source, [Branch(r, p, suffix, k) for r, p in pairs], max_new_tokens=max_new_tokens,
                       temperature=temperature, seed=seed, stop=list(stop) if stop else None, row_ids=ids)
    texts = [suffix + t for t in out.texts]
    scores = rewards(verify, texts, [golds[pairs[j // k][0]] for j in range(len(texts))])
    keys = [answer_key(extract_answer(t)) for t in texts]
    mean = scores.reshape(len(pairs), k).mean(1)
    vote = np.asarray([majority_correct(keys[j * k:(j + 1) * k], scores[j * k:(j + 1) * k])
                       for j in range(len(pairs))])
    return mean, vote, int(np.sum(out.lengths))
