"""Cumulative regret, J-curves and token efficiency (host-side numpy; evaluation, not the training step).

A pass@1 curve is points ``(tokens_i, accuracy_i)`` with increasing tokens. It is read as piecewise linear from
``(0, 0)`` through the points and held flat after the last point (MRT.md "Cumulative regret").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _curve(tokens, accuracy, what: str = "curve") -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(tokens, np.float64).reshape(-1)
    a = np.asarray(accuracy, np.float64).reshape(-1)
    if t.shape != a.shape or t.size == 0:
        raise ValueError(f"{what}: tokens and accuracy must be non-empty and of equal length, "
                         f"got {t.size} and {a.size}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(a))):
        raise ValueError(f"{what}: tokens and accuracy must be finite")
    if np.any(t < 0) or np.any(np.diff(t) <= 0):
        raise ValueError(f"{what}: tokens must be >= 0 and strictly increasing, got {t.tolist()}")
    if np.any(a < 0) or np.any(a > 1):
        raise ValueError(f"{what}: accuracy must lie in [0, 1], got {a.tolist()}")
    if t[0] > 0:  # the curve starts at (0, 0): no tokens, no answer
        t, a = np.concatenate([[0.0], t]), np.concatenate([[0.0], a])
    return t, a


def _eval(curve: tuple[np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    return np.interp(x, curve[0], curve[1])  # np.interp holds the last value flat, as the definition does


def _integral_of_max(curves: Sequence[tuple[np.ndarray, np.ndarray]], budget: float) -> float:
    """Exact integral over [0, budget] of the pointwise max of piecewise-linear curves."""
    xs = np.unique(np.concatenate([c[0] for c in curves] + [[0.0, budget]]))
    xs = xs[xs <= budget]
    # Between breakpoints every curve is linear; add the points where two of them cross.
    extra = []
    ys = np.stack([_eval(c, xs) for c in curves])  # [C, X]
    for i in range(len(curves)):
        for j in range(i + 1, len(curves)):
            d = ys[i] - ys[j]
            cross = np.nonzero(d[:-1] * d[1:] < 0)[0]
            extra.extend(xs[cross] + (xs[cross + 1] - xs[cross]) * d[cross] / (d[cross] - d[cross + 1]))
    if extra:
        xs = np.unique(np.concatenate([xs, extra]))
    top = np.max(np.stack([_eval(c, xs) for c in curves]), axis=0)
    return float(np.sum(np.diff(xs) * (top[1:] + top[:-1]) / 2))


def normalized_regret(
    tokens: Sequence[float], accuracy: Sequence[float], budget: float, *, comparators: Sequence | None = None
) -> float:
    """``1 - (1/C0) * integral_0^C0 pass@1(t) dt`` for one pass@1 curve, ``C0 = budget`` (comparator 1).

    With ``comparators`` (a list of ``(tokens, accuracy)`` curves, e.g. majority voting over forced answers and
    continuing), the comparator at each budget is the best of them:
    ``(1/C0) * integral_0^C0 (max_k comp_k(t) - pass@1(t)) dt``.
    """
    if not budget > 0:
        raise ValueError(f"budget must be a positive number of tokens, got {budget!r}")
    pass1 = _curve(tokens, accuracy, "pass@1 curve")
    area = _integral_of_max([pass1], budget)
    if comparators is None:
        return 1.0 - area / budget
    comps = [_curve(t, a, f"comparator {k}") for k, (t, a) in enumerate(comparators)]
    return (_integral_of_max(comps, budget) - area) / budget


def mean_normalized_regret(curves_per_problem: Sequence[Sequence[tuple]], budget: float,
                           *, comparators_per_problem: Sequence[Sequence] | None = None) -> float:
    """Normalised regret averaged over the traces of each problem, then over problems.

    ``curves_per_problem[p][i] = (tokens, accuracy)`` of trace i of problem p; optional comparators per problem.
    """
    if len(curves_per_problem) == 0:
        raise ValueError("mean_normalized_regret needs at least one problem")
    out = []
    for p, traces in enumerate(curves_per_problem):
        if len(traces) == 0:
            raise ValueError(f"problem {p} has no traces")
        comps = None if comparators_per_problem is None else comparators_per_problem[p]
        out.append(np.mean([normalized_regret(t, a, budget, comparators=comps) for t, a in traces]))
    return float(np.mean(out))


def tokens_to_accuracy(tokens: Sequence[float], accuracy: Sequence[float], target: float) -> float:
    """Token efficiency: the smallest t with pass@1(t) >= target on the piecewise-linear curve (inf if never)."""
    t, a = _curve(tokens, accuracy, "pass@1 curve")
    hit = np.nonzero(a >= target)[0]
    if hit.size == 0:
        return float("inf")
    k = int(hit[0])
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (t[k] - t[k - 1]) * (target - a[k - 1]) / (a[k] - a[k - 1]))


def j_curve_by_episode(j_nk, valid_nk) -> tuple[np.ndarray, np.ndarray]:
    """Mean J at each boundary index k over the traces where it is valid: ``(mean_k, count_k)``, k = 0..K-1."""
    j, v = np.asarray(j_nk, np.float64), np.asarray(valid_nk, bool)
    if j.ndim != 2 or j.shape != v.shape:
        raise ValueError(f"j_nk and valid_nk must both be [N, K], got {j.shape} and {v.shape}")
    count = v.sum(0)
    return np.where(count > 0, (j * v).sum(0) / np.maximum(count, 1), np.nan), count


def j_curve_by_tokens(boundary_tokens_nk, j_nk, valid_nk, grid) -> np.ndarray:
    """Mean J over traces at each token budget of ``grid``: every trace's J is piecewise linear in tokens
    between its valid boundaries (starting from its first valid one) and held flat after the last."""
    bt, j, v = np.asarray(boundary_tokens_nk, np.float64), np.asarray(j_nk, np.float64), np.asarray(valid_nk, bool)
    if not (bt.shape == j.shape == v.shape) or j.ndim != 2:
        raise ValueError(f"boundary_tokens_nk, j_nk, valid_nk must all be [N, K], got {bt.shape}, {j.shape}, {v.shape}")
    grid = np.asarray(grid, np.float64)
    rows = [np.interp(grid, bt[n][v[n]], j[n][v[n]]) for n in range(j.shape[0]) if v[n].any()]
    if not rows:
        raise ValueError("j_curve_by_tokens: no trace has a valid J estimate")
    return np.mean(rows, axis=0)
