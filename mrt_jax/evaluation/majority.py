"""Majority voting over answers: one vote's correctness, and maj@k against the total tokens the k traces spent.

Answers are grouped by a normalised key: numbers (integers, decimals, fractions, ``\\frac``) by their exact rational
value, anything else by its text without whitespace. No answer does not vote. A tie between the largest groups is
broken uniformly at random, so a vote's correctness is the expected one: the mean correctness of the tied groups.

maj@k of a problem with n traces averages the vote over the n cyclic windows ``{i, i+1, ..., i+k-1} mod n``: every
trace is used equally often, k = 1 is exactly pass@1 and k = n is the vote of all traces. The x-axis is the total
length of the k traces (mean over windows, then problems).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrt_jax.data.answers import parse_rational


def answer_key(answer: str | None) -> str | None:
    """The key an answer votes with (None: no answer)."""
    if answer is None:
        return None
    value = parse_rational(answer)
    if value is not None:
        return f"{value.numerator}/{value.denominator}"
    text = "".join(answer.split())
    return text or None


def majority_correct(keys: Sequence[str | None], correct: Sequence[float]) -> float:
    """Expected correctness of the majority answer among ``keys`` (each with its own correctness score)."""
    if len(keys) != len(correct):
        raise ValueError(f"majority_correct: {len(keys)} answers but {len(correct)} scores")
    groups: dict[str, list[float]] = {}
    for key, c in zip(keys, correct):
        if key is not None:
            groups.setdefault(key, []).append(float(c))
    if not groups:
        return 0.0
    top = max(len(v) for v in groups.values())
    tied = [np.mean(v) for v in groups.values() if len(v) == top]
    return float(np.mean(tied))


def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    if n < 1:
        raise ValueError(f"default_ks: need n >= 1 traces per problem, got {n}")
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ks if ks[-1] == n else ks + [n]


def maj_at_k(keys_per_problem: Sequence[Sequence[str | None]], correct_per_problem: Sequence[Sequence[float]],
             lengths_per_problem: Sequence[Sequence[float]], ks: Sequence[int] | None = None) -> dict[str, list]:
    """``{"k": [...], "total_tokens": [...], "accuracy": [...]}`` over problems (each a list of its traces)."""
    if not keys_per_problem:
        raise ValueError("maj_at_k needs at least one problem")
    sizes = [len(k) for k in keys_per_problem]
    if min(sizes) < 1:
        raise ValueError("maj_at_k: every problem needs at least one trace")
    for p, (keys, corr, lens) in enumerate(zip(keys_per_problem, correct_per_problem, lengths_per_problem)):
        if not len(keys) == len(corr) == len(lens):
            raise ValueError(f"maj_at_k: problem {p} has {len(keys)} answers, {len(corr)} scores, {len(lens)} lengths")
    ks = list(ks) if ks is not None else default_ks(min(sizes))
    bad = [k for k in ks if not 1 <= k <= min(sizes)]
    if bad:
        raise ValueError(f"maj_at_k: k values {bad} are outside 1..{min(sizes)} (the fewest traces of a problem)")
    accuracy, tokens = [], []
    for k in ks:
        acc_p, tok_p = [], []
        for keys, corr, lens in zip(keys_per_problem, correct_per_problem, lengths_per_problem):
            n = len(keys)
            windows = [[(i + j) % n for j in range(k)] for i in range(n)]
            acc_p.append(np.mean([majority_correct([keys[w] for w in win], [corr[w] for w in win])
                                  for win in windows]))
            tok_p.append(np.mean([sum(float(lens[w]) for w in win) for win in windows]))
        accuracy.append(float(np.mean(acc_p)))
        tokens.append(float(np.mean(tok_p)))
    return {"k": ks, "total_tokens": tokens, "accuracy": accuracy}
