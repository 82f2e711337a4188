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

from mrt_jax.evaluation.curves import problem_mean
from mrt_jax.evaluation.forcing import forced_points
from mrt_jax.rewards.scorer import Scorer, rewards
from mrt_jax.sampling import Sampler, budget_force


def extrapolated_pass(sampler: Sampler, rows: Sequence[list[int]], golds: Sequence[str], problem_ids: Sequence[str],
                      verify: Callable[[str, str], float] | Scorer, *, budgets: Sequence[int], suffix: str,
                      extend_texts: Sequence[str], max_extensions: int, temperature: float, k: int,
                      k_temperature: float, answer_tokens: int, answer_stop: Sequence[str] | None, seed: int
                      ) -> tuple[list[float], dict[str, int]]:
    """(pass@1 at each of ``budgets``, token counts ``{"trace_tokens", "forced_answer_tokens", "extensions"}``)."""
    budgets = sorted(int(b) for b in budgets)
    forced = budget_force(sampler, list(rows), budget=budgets[-1], extend_texts=tuple(extend_texts),
                          max_extensions=max_extensions, temperature=temperature, seed=seed)
    finals = rewards(verify, forced.texts, golds)
    score = np.repeat(finals[:, None], len(budgets), axis=1)
    pairs = [(i, b) for i, toks in enumerate(forced.tokens) for b in budgets if b < len(toks)]
    spent = 0
    if pairs:
        source = sampler.prefill(list(rows), forced.tokens)
        mean, _, spent = forced_points(sampler, source, pairs, golds, verify, suffix=suffix, k=k,
                                       max_new_tokens=answer_tokens, temperature=k_temperature, seed=seed + 1,
                                       stop=answer_stop)
        column = {b: j for j, b in enumerate(budgets)}
        for (i, b), v in zip(pairs, mean):
            score[i, column[b]] = v
    counts = {"trace_tokens": int(sum(len(t) for t in forced.tokens)), "forced_answer_tokens": spent,
              "extensions": int(sum(forced.extensions))}
    return [float(v) for v in problem_mean(score, problem_ids)], counts
