"""The batch scoring interface of the training path: ``scorer.score(texts, golds) -> ScoreResult`` and
``scorer.close()``.

Two implementations: ``MathScorer`` (math-verify in a time-limited worker pool, ``mrt_jax.rewards.pool``) for
datasets, and :class:`ExactScorer` for a procedural task's exact verifier (fast and bounded by construction, run in
this process). The trainer's rollouts, the meta-prover's forced answers and the held-out evaluation all score
through one of them, so timeouts, errors and invalid golds are counted the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from mrt_jax.rewards.extraction import extract_answer
from mrt_jax.rewards.result import InvalidGoldError, ScoreResult, Status, as_truncated, make_result


@runtime_checkable
class Scorer(Protocol):
    def score(self, completions: Sequence[str], golds: Sequence[str],
              truncated: Sequence[bool] | None = None) -> ScoreResult: ...

    def close(self) -> None: ...


def score_with(verify: Callable[[str, str], float], completion: str, gold: str, truncated: bool
               ) -> tuple[float, int, str | None]:
    """(reward, status, extracted answer) of one item under a per-item verifier: CORRECT at reward >= 1,
    INVALID_GOLD / ERROR (reward 0) when it raised, NO_ANSWER / TRUNCATED when nothing was extracted, else WRONG
    (partial credit kept in the reward)."""
    answer = extract_answer(completion)
    try:
        reward = float(verify(completion, gold))
    except InvalidGoldError:
        return 0.0, Status.INVALID_GOLD, answer
    except Exception:  # noqa: BLE001  a verifier bug costs this item, not the step
        return 0.0, Status.ERROR, answer
    if reward >= 1.0:
        return reward, Status.CORRECT, answer
    if answer is None and reward <= 0.0:
        return reward, Status.TRUNCATED if truncated else Status.NO_ANSWER, answer
    return reward, Status.WRONG, answer


class ExactScorer:
    """A per-item exact verifier (``verify(completion, gold) -> float``, e.g. a procedural task's) as a Scorer."""

    def __init__(self, verify: Callable[[str, str], float]):
        self.verify = verify

    def score(self, completions: Sequence[str], golds: Sequence[str],
              truncated: Sequence[bool] | None = None) -> ScoreResult:
        if len(completions) != len(golds):
            raise ValueError(f"ExactScorer.score: {len(completions)} completions but {len(golds)} golds")
        flags = as_truncated(truncated, len(completions))
        items = [score_with(self.verify, c, g, bool(t)) for c, g, t in zip(completions, golds, flags)]
        return make_result(np.asarray([r for r, _, _ in items], np.float32), np.asarray([s for _, s, _ in items]),
                           flags, tuple(a for _, _, a in items))

    def close(self) -> None:  # nothing to release
        pass


def as_scorer(verify_or_scorer) -> Scorer:
    """A Scorer as is; a plain ``verify(completion, gold) -> float`` wrapped in an :class:`ExactScorer`."""
    if isinstance(verify_or_scorer, Scorer):
        return verify_or_scorer
    if callable(verify_or_scorer):
        return ExactScorer(verify_or_scorer)
    raise TypeError(f"expected a Scorer or verify(completion, gold) -> float, got {type(verify_or_scorer).__name__}")


def rewards(verify_or_scorer, completions: Sequence[str], golds: Sequence[str]) -> np.ndarray:
    """Float64 [B] rewards of ``completions`` (for the evaluation code, which averages them)."""
    if not len(completions):
        return np.zeros(0, np.float64)
    return as_scorer(verify_or_scorer).score(list(completions), list(golds)).reward_b.astype(np.float64)
