"""Pass@1 curves in tokens: evaluation on a grid, regret at each budget with both comparators, token efficiency.

A trace's curve is points ``(tokens_i, accuracy_i)`` read as in ``mrt_jax.rl.regret``: piecewise linear from
``(0, 0)`` (unless the first point is at 0 tokens), held flat after the last point.

Comparators for the normalised regret at a budget ``C0`` (MRT.md, "Cumulative regret"):

- ``constant``: always correct (comparator 1): ``1 - (1/C0) * integral_0^C0 pass@1(t) dt``.
- ``maj_or_continue``: at each ``t <= C0`` the better of (a) the majority vote over the trace's forced answers at
  ``t`` (its own curve ``maj(t)``) and (b) continuing the trace to ``C0`` instead of stopping at ``t`` (the constant
  ``pass@1(C0)``): ``(1/C0) * integral_0^C0 (max(maj(t), pass@1(C0)) - pass@1(t)) dt``. This can be negative
  when a majority vote of wrong forced answers is worse than their mean.

Regrets are computed per trace, then averaged over the traces of each problem, then over problems.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrt_jax.rl.regret import normalized_regret, tokens_to_accuracy


def curve_at(tokens: Sequence[float], accuracy: Sequence[float], x: Sequence[float]) -> np.ndarray:
    """Values of one curve at ``x`` (from (0, 0) unless it starts at 0 tokens, flat after its last point)."""
    t, a = np.asarray(tokens, np.float64), np.asarray(accuracy, np.float64)
    if t.size and t[0] > 0:
        t, a = np.concatenate([[0.0], t]), np.concatenate([[0.0], a])
    return np.interp(np.asarray(x, np.float64), t, a)


def problem_mean(values: np.ndarray, problem_ids: Sequence[str]) -> np.ndarray:
    """Mean over the traces of each problem, then over problems (rows of ``values`` are traces)."""
    values = np.asarray(values, np.float64)
    if values.shape[0] != len(problem_ids) or not len(problem_ids):
        raise ValueError(f"problem_mean: {values.shape[0]} rows for {len(problem_ids)} problem ids (need >= 1)")
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(problem_ids):
        groups.setdefault(p, []).append(i)
    return np.mean([values[rows].mean(0) for rows in groups.values()], axis=0)


def trace_regrets(tokens: Sequence[float], accuracy: Sequence[float], budgets: Sequence[float],
                  maj_accuracy: Sequence[float] | None = None) -> tuple[list[float], list[float] | None]:
    """One trace's normalised regret at each budget C0: (constant comparator, maj_or_continue comparator).

    ``maj_accuracy`` (majority-vote correctness at the same token points) enables the second comparator; without it
    the second value is None.
    """
    constant, moc = [], ([] if maj_accuracy is not None else None)
    for c0 in budgets:
        constant.append(normalized_regret(tokens, accuracy, c0))
        if moc is not None:
            go_on = float(curve_at(tokens, accuracy, [c0])[0])
            comparators = [(tokens, maj_accuracy), ([0.0, float(c0)], [go_on, go_on])]
            moc.append(normalized_regret(tokens, accuracy, c0, comparators=comparators))
    return constant, moc


def token_efficiency(budgets: Sequence[float], curve: Sequence[float], targets: Sequence[float]
                     ) -> dict[str, float | None]:
    """``{str(target): tokens}``: the fewest tokens at which the curve reaches each target (None: never)."""
    out = {}
    for target in targets:
        t = tokens_to_accuracy(budgets, curve, float(target))
        out[f"{float(target):g}"] = t if np.isfinite(t) else None
    return out


def tokens_to_half_max(budgets: Sequence[float], curve: Sequence[float]) -> float:
    """Tokens to reach half of the curve's last value (inf when that value is 0), as ``BudgetedEval`` reports."""
    half = 0.5 * float(curve[-1])
    return tokens_to_accuracy(budgets, curve, half) if half > 0 else float("inf")
