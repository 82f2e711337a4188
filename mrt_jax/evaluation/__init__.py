"""Evaluation: pass@1 against tokens and episodes (forced termination through the prefix fork), maj@k against total
tokens, normalised regret with both comparators, token efficiency, budget forcing beyond the trained budget.

``evaluate_suite`` (``suite.py``, whose docstring holds the eval.json schema) is the entry point; the pure pieces
(``curves``, ``majority``, ``summary``, ``traces``) need no model and serve the offline analysis too. Names are
imported lazily so that the offline tools do not load the sampler.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BudgetedEval": "budgeted", "budget_grid": "budgeted", "evaluate_budgeted": "budgeted",
    "EvalResult": "suite", "EvalSettings": "suite", "evaluate_suite": "suite", "required_cache_len": "suite",
    "summarize": "summary", "DEFAULT_TARGETS": "summary",
    "TraceRecord": "traces", "TraceFormatError": "traces", "read_traces": "traces", "write_traces": "traces",
    "parse_trace_lines": "traces",
    "maj_at_k": "majority", "majority_correct": "majority", "answer_key": "majority",
    "trace_regrets": "curves", "token_efficiency": "curves", "curve_at": "curves", "problem_mean": "curves",
    "write_json": "jsonio", "json_safe": "jsonio",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mrt_jax.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mrt_jax.evaluation.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
