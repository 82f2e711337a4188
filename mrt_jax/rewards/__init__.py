"""Verifiable rewards: answer extraction, math equivalence with time limits, task verifiers, reward shaping.

Typical use in a training step::

    with MathScorer(num_workers=8, timeout_s=5.0) as scorer:
        result = scorer.score(completions, golds, truncated=truncated_b)
        rewards_b, loss_mask_b = apply_truncation(result.reward_b, result.truncated_b, mode="zero")
        log(result.metrics())   # fractions of correct / no_answer / timeout / invalid_gold / truncated
"""

from mrt_jax.rewards.extraction import ExtractionConfig, answer_region, extract_answer, gold_answer, last_boxed
from mrt_jax.rewards.math_reward import score_math, verify_in_process
from mrt_jax.rewards.pool import MathScorer
from mrt_jax.rewards.result import InvalidGoldError, ScoreResult, Status
from mrt_jax.rewards.scorer import ExactScorer, Scorer, as_scorer
from mrt_jax.rewards.shaping import (
    TRUNCATION_MODES,
    apply_truncation,
    length_penalty,
    overlong_penalty,
    overlong_shaped_reward,
)
from mrt_jax.rewards.verifiers import (
    Verifier,
    exact_int,
    exact_string,
    get_verifier,
    register_verifier,
    registered_verifiers,
    score_items,
)

__all__ = [
    "TRUNCATION_MODES",
    "ExactScorer",
    "ExtractionConfig",
    "InvalidGoldError",
    "MathScorer",
    "ScoreResult",
    "Scorer",
    "Status",
    "Verifier",
    "answer_region",
    "apply_truncation",
    "as_scorer",
    "exact_int",
    "exact_string",
    "extract_answer",
    "get_verifier",
    "gold_answer",
    "last_boxed",
    "length_penalty",
    "overlong_penalty",
    "overlong_shaped_reward",
    "register_verifier",
    "registered_verifiers",
    "score_items",
    "score_math",
    "verify_in_process",
]
