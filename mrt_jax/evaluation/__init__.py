"""Evaluation: accuracy against token budget (forced termination through the prefix fork), regret, efficiency."""

from mrt_jax.evaluation.budgeted import BudgetedEval, budget_grid, evaluate_budgeted

__all__ = ["BudgetedEval", "budget_grid", "evaluate_budgeted"]
