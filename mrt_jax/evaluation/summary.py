"""From per-trace records to the evaluation result: curves, regret with both comparators, maj@k, token efficiency.

Used online (``evaluate_suite``, after sampling) and offline (``experiments.analyze_traces``), so both write the
same keys with the same meaning. A key that cannot be computed from the records is left out (never null or empty),
so readers can tell "not measured" from a value. Every mean is over the traces of a problem first, then over
problems. Keys (see ``mrt_jax.evaluation.suite`` for the whole eval.json schema):

- ``budgets``, ``pass_at_budget``: pass@1 against tokens on the budget grid (each trace's curve is read piecewise
  linear from (0, 0) and held flat after its last point, so a trace that ended keeps its final answer).
- ``regret``: normalised regret with the constant comparator at the largest budget.
- ``regret_at_budget``: ``{"budgets", "constant", "maj_or_continue"}`` at every budget; ``maj_or_continue`` is
  left out unless every trace has a majority curve (see ``curves``).
- ``tokens_to_accuracy``: ``{target: tokens or None}``; ``tokens_to_half_max`` as ``BudgetedEval``.
- ``episodes``, ``pass_at_episode``: pass@1 after 0, 1, ... episodes (left out without episode data). A trace that
  ended before episode e keeps its last value; a trace with no value at an earlier episode is left out there.
- ``maj_at_k``: ``{"k", "total_tokens", "accuracy"}`` (left out unless every trace has its final answer and length).
- ``accuracy``: mean correctness of the traces' final answers (pass@1 at the largest budget when not given);
  ``mean_length``: mean trace length in tokens (None when not given).
- ``num_problems``, ``num_traces``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrt_jax.evaluation.curves import curve_at, problem_mean, token_efficiency, tokens_to_half_max, trace_regrets
from mrt_jax.evaluation.majority import answer_key, maj_at_k
from mrt_jax.evaluation.traces import TraceRecord

DEFAULT_TARGETS = (0.1, 0.25, 0.5, 0.75)


def _grid(records: Sequence[TraceRecord], budgets: Sequence[float] | None) -> list[float]:
    if budgets is not None:
        grid = sorted(float(b) for b in budgets)
    else:
        grid = sorted({t for r in records for t in r.tokens})
    grid = [g for g in grid if g > 0]
    if not grid:
        raise ValueError("no positive token budgets to evaluate the curves at")
    return grid


def _nan_problem_mean(values: np.ndarray, problem_ids: Sequence[str]) -> list[float | None]:
    """Per column: mean over the available (non-NaN) traces of each problem, then over problems that have any."""
    out = []
    for col in values.T:
        have = ~np.isnan(col)
        out.append(float(problem_mean(col[have, None], [p for p, h in zip(problem_ids, have) if h])[0])
                   if have.any() else None)
    return out


def _episode_curve(records: Sequence[TraceRecord], problem_ids: list[str]) -> dict | None:
    with_eps = [r for r in records if r.episodes]
    if not with_eps:
        return None
    episodes = sorted({e for r in with_eps for e in r.episodes})
    table = np.full((len(with_eps), len(episodes)), np.nan)
    for i, r in enumerate(with_eps):
        last = max(r.episodes)
        for j, e in enumerate(episodes):
            table[i, j] = r.episodes[e] if e in r.episodes else (r.episodes[last] if e > last else np.nan)
    pids = [r.problem_id for r in with_eps]
    return {"episodes": episodes, "pass_at_episode": _nan_problem_mean(table, pids)}


def _maj(records: Sequence[TraceRecord], ks: Sequence[int] | None) -> dict | None:
    if any(r.final_correct is None or r.length is None for r in records):
        return None
    by_problem: dict[str, list[TraceRecord]] = {}
    for r in records:
        by_problem.setdefault(r.problem_id, []).append(r)
    groups = list(by_problem.values())
    return maj_at_k([[answer_key(r.final_answer) for r in g] for g in groups],
                    [[r.final_correct for r in g] for g in groups], [[r.length for r in g] for g in groups], ks)


def summarize(records: Sequence[TraceRecord], *, budgets: Sequence[float] | None = None,
              targets: Sequence[float] = DEFAULT_TARGETS, ks: Sequence[int] | None = None) -> dict:
    """The result dict (keys in the module docstring) of ``records``; ``budgets`` defaults to every token point."""
    if not records:
        raise ValueError("summarize needs at least one trace record")
    pids = [r.problem_id for r in records]
    out: dict = {"num_problems": len(set(pids)), "num_traces": len(records)}
    curved = [r for r in records if r.tokens]
    if curved:
        grid = _grid(curved, budgets)
        cpids = [r.problem_id for r in curved]
        values = np.stack([curve_at(r.tokens, r.accuracy, grid) for r in curved])
        pass_at = problem_mean(values, cpids)
        regrets = [trace_regrets(r.tokens, r.accuracy, grid, r.maj_accuracy) for r in curved]
        constant = problem_mean(np.asarray([c for c, _ in regrets]), cpids)
        regret_at = {"constant": [float(v) for v in constant]}
        if all(m is not None for _, m in regrets):
            regret_at["maj_or_continue"] = [float(v) for v in problem_mean(np.asarray([m for _, m in regrets]), cpids)]
        grid_out = [int(g) if float(g).is_integer() else g for g in grid]
        out.update(
            budgets=grid_out,
            pass_at_budget=[float(v) for v in pass_at],
            regret=float(constant[-1]),
            regret_at_budget={"budgets": grid_out, **regret_at},
            tokens_to_accuracy=token_efficiency(grid, pass_at, targets),
            tokens_to_half_max=tokens_to_half_max(grid, pass_at),
        )
    eps = _episode_curve(records, pids)
    if eps is not None:
        out.update(eps)
    maj = _maj(records, ks)
    if maj is not None:
        out["maj_at_k"] = maj
    finals = [r.final_correct for r in records]
    if all(f is not None for f in finals):
        out["accuracy"] = float(problem_mean(np.asarray(finals)[:, None], pids)[0])
        out["mean_length"] = float(np.mean([r.length for r in records]))
    else:
        out["accuracy"] = out["pass_at_budget"][-1] if curved else None
        out["mean_length"] = None
    return out


def problem_j_curves(records: Sequence[TraceRecord], budgets: Sequence[float] | None = None) -> list[dict]:
    """Each problem's J-curve (mean over its traces) on the grid: ``[{"problem_id", "tokens", "accuracy",
    "traces"}]`` in order of first appearance."""
    curved = [r for r in records if r.tokens]
    if not curved:
        return []
    grid = _grid(curved, budgets)
    groups: dict[str, list[TraceRecord]] = {}
    for r in curved:
        groups.setdefault(r.problem_id, []).append(r)
    return [{"problem_id": pid, "tokens": grid, "traces": len(rs),
             "accuracy": [float(v) for v in np.mean([curve_at(r.tokens, r.accuracy, grid) for r in rs], axis=0)]}
            for pid, rs in groups.items()]
