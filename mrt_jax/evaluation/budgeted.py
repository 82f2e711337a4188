"""Budgeted accuracy: how pass@1 grows with test-time tokens, and the cumulative regret of that curve.

For each problem, ``n`` traces are sampled at the maximum budget C. At each grid budget t < length, the trace prefix
of t tokens is forked with the forced-termination suffix and the meta-prover answers (``k`` samples, greedy when
``k_temperature`` is 0); a trace that already finished before t counts with its own final answer. pass@1(t) is the
mean over answers, traces and problems; the normalised regret uses the piecewise-linear curve of MRT.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from mrt_jax.evaluation.chunks import DEFAULT_ROWS_PER_CALL, sampled_chunks
from mrt_jax.evaluation.forcing import forced_points
from mrt_jax.random_streams import offset
from mrt_jax.rewards.scorer import Scorer, rewards
from mrt_jax.rl import normalized_regret, tokens_to_accuracy
from mrt_jax.sampling import Sampler


@dataclasses.dataclass
class BudgetedEval:
    budgets: list[int]
    pass_at_budget: list[float]  # mean pass@1 at each budget
    accuracy: float  # final answers of the full traces (no forcing)
    regret: float  # normalised regret at the largest budget, averaged over traces then problems
    mean_length: float
    tokens_to_half_max: float  # tokens to reach half of the final accuracy (token efficiency)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def budget_grid(max_tokens: int, points: int = 6) -> list[int]:
    """``points`` evenly spaced budgets ending at ``max_tokens``."""
    return sorted({max(1, int(round(max_tokens * (i + 1) / points))) for i in range(points)})


def evaluate_budgeted(sampler: Sampler, prompt_ids: Sequence[list[int]], answers: Sequence[str],
                      verify: Callable[[str, str], float] | Scorer, *, forced_suffix: str, max_new_tokens: int,
                      budgets: Sequence[int], n: int = 1, temperature: float = 0.0, k: int = 1,
                      k_temperature: float = 0.0, answer_tokens: int = 16, answer_stop: Sequence = ("\n",),
                      seed: int = 0, rows_per_call: int | None = DEFAULT_ROWS_PER_CALL) -> BudgetedEval:
    """``answer_stop``: where a forced answer ends (the prompt format's ``answer_stop``; default: the plain
    format's line). ``rows_per_call``: rows (problems x n) sampled and forked per call, in whole problems, each
    call's cache freed before the next (``mrt_jax.evaluation.chunks``); None: all at once. The numbers do not depend
    on it: every row and forced answer draws from the stream one call over all rows would give it."""
    P = len(prompt_ids)
    rows = [p for p in prompt_ids for _ in range(n)]
    gold = [a for a in answers for _ in range(n)]
    budgets = sorted(int(b) for b in budgets)
    score = np.zeros((len(rows), len(budgets)))
    final = np.zeros(len(rows))
    lengths = np.zeros(len(rows), np.int64)
    first_pair = 0  # forced answers numbered over the (row, budget) pairs of every row, k streams each
    for lo, hi, out in sampled_chunks(sampler, rows, [r // n for r in range(len(rows))], rows_per_call,
                                      max_new_tokens=max_new_tokens, temperature=temperature, seed=seed):
        final[lo:hi] = rewards(verify, out.texts, gold[lo:hi])
        lengths[lo:hi] = out.lengths
        score[lo:hi] = final[lo:hi, None]  # finished traces keep their own answer
        pairs = [(i, bi) for i, toks in enumerate(out.tokens) for bi, b in enumerate(budgets) if b < len(toks)]
        mean, _, _ = forced_points(sampler, out, [(i, budgets[bi]) for i, bi in pairs], gold[lo:hi], verify,
                                   suffix=forced_suffix, k=k, max_new_tokens=answer_tokens, temperature=k_temperature,
                                   seed=offset(seed, 1), stop=answer_stop, first_pair=first_pair)
        for (i, bi), v in zip(pairs, mean):
            score[lo + i, bi] = v
        first_pair += len(pairs)
    curve = score.mean(0)
    regrets = [normalized_regret(budgets, score[i], budgets[-1]) for i in range(len(rows))]
    regret = float(np.mean(np.asarray(regrets).reshape(P, n).mean(1)))
    half = 0.5 * float(curve[-1])
    return BudgetedEval(budgets=budgets, pass_at_budget=[float(c) for c in curve], accuracy=float(final.mean()),
                        regret=regret, mean_length=float(np.mean(lengths)),
                        tokens_to_half_max=tokens_to_accuracy(budgets, curve, half) if half > 0 else float("inf"))
