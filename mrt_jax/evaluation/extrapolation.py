"""pass@1 beyond the trained budget: budget forcing (s1-style "Wait" extensions) to the largest extrapolation
budget, then forced answers at each extrapolation budget (MRT.md: 20K..32K by budget forcing).

A trace that stops before ``max(budgets)`` has its stop dropped, an extension text appended (``"\\n\\nWait"`` ...)
and continues, up to ``max_extensions`` times. At a budget ``b`` shorter than the forced trace, the prefix of ``b``
tokens (inserted texts included) answers through the forced-termination suffix; otherwise the forced trace's own
final answer counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mrt_jax.evaluation.chunks import row_chunks
from mrt_jax.evaluation.curves import problem_mean
from mrt_jax.evaluation.forcing import forced_points
from mrt_jax.rewards.scorer import Scorer, rewards
from mrt_jax.sampling import Sampler, budget_force


def extrapolated_pass(sampler: Sampler, rows: Sequence[list[int]], golds: Sequence[str], problem_ids: Sequence[str],
                      verify: Callable[[str, str], float] | Scorer, *, budgets: Sequence[int], suffix: str,
                      extend_texts: Sequence[str], max_extensions: int, temperature: float, k: int,
                      k_temperature: float, answer_tokens: int, answer_stop: Sequence[str] | None, seed: int,
                      rows_per_call: int | None = None) -> tuple[list[float], dict[str, int]]:
    """(pass@1 at each of ``budgets``, token counts ``{"trace_tokens", "forced_answer_tokens", "extensions"}``).

    ``rows_per_call``: rows budget-forced (and their caches kept) at a time, in whole problems
    (``mrt_jax.evaluation.chunks``); None: all at once. The numbers do not depend on it."""
    budgets = sorted(int(b) for b in budgets)
    column = {b: j for j, b in enumerate(budgets)}
    score = np.zeros((len(rows), len(budgets)))
    counts = {"trace_tokens": 0, "forced_answer_tokens": 0, "extensions": 0}
    first_pair = 0
    for lo, hi in row_chunks(problem_ids, rows_per_call):
        chunk = [list(r) for r in rows[lo:hi]]
        forced = budget_force(sampler, chunk, budget=budgets[-1], extend_texts=tuple(extend_texts),
                              max_extensions=max_extensions, temperature=temperature, seed=seed,
                              row_ids=range(lo, hi))
        score[lo:hi] = rewards(verify, forced.texts, golds[lo:hi])[:, None]
        pairs = [(i, b) for i, toks in enumerate(forced.tokens) for b in budgets if b < len(toks)]
        if pairs:
            source = sampler.prefill(chunk, forced.tokens)
            mean, _, spent = forced_points(sampler, source, pairs, golds[lo:hi], verify, suffix=suffix, k=k,
                                           max_new_tokens=answer_tokens, temperature=k_temperature, seed=seed + 1,
                                           stop=answer_stop, first_pair=first_pair)
            del source  # the chunk's cache goes before the next chunk's is built
            for (i, b), v in zip(pairs, mean):
                score[lo + i, column[b]] = v
            counts["forced_answer_tokens"] += spent
            first_pair += len(pairs)
        counts["trace_tokens"] += int(sum(len(t) for t in forced.tokens))
        counts["extensions"] += int(sum(forced.extensions))
    return [float(v) for v in problem_mean(score, problem_ids)], counts
