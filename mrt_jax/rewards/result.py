"""Status codes and the batched scoring result (rewards, statuses, counts for logging)."""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

from mrt_jax.rewards import _mv_core


class Status(enum.IntEnum):
    """Outcome of scoring one item. Reward is 1.0 for CORRECT and 0.0 otherwise (exact task verifiers may give
    partial credit with status WRONG).

    WRONG: an answer was found and is not equivalent to the gold.
    CORRECT: equivalent to the gold.
    NO_ANSWER: nothing extracted (no box / answer line, unclosed thinking block) or nothing parseable in it.
    TIMEOUT: equivalence checking ran past the per-item limit (the worker was replaced).
    INVALID_GOLD: the gold is empty, prose, or not a mathematical expression; never scored correct.
    TRUNCATED: the completion hit the length limit and has no answer (a truncated completion WITH an answer keeps
      its CORRECT/WRONG status; `ScoreResult.truncated_b` flags every truncated item).
    ERROR: the checker crashed on this item (worker died, verifier raised).
    """

    WRONG = _mv_core.WRONG
    CORRECT = _mv_core.CORRECT
    NO_ANSWER = _mv_core.NO_ANSWER
    TIMEOUT = _mv_core.TIMEOUT
    INVALID_GOLD = _mv_core.INVALID_GOLD
    TRUNCATED = _mv_core.TRUNCATED
    ERROR = _mv_core.ERROR


class InvalidGoldError(ValueError):
    """A gold answer that is empty, prose, or parses to no mathematical expression: the item cannot be scored."""


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    """Scores of a batch of B completions.

    reward_b: float32 [B]; status_b: int8 [B] (`Status` codes); truncated_b: bool [B] (as given by the caller);
    answers: the extracted answer of each completion (None where none was found), e.g. for majority voting.
    """

    reward_b: np.ndarray
    status_b: np.ndarray
    truncated_b: np.ndarray
    answers: tuple[str | None, ...]

    def __len__(self) -> int:
        return int(self.reward_b.shape[0])

    @property
    def counts(self) -> dict[str, int]:
        """Number of items per status (lower-case names), plus "truncated_total" (all truncated items, with or
        without an answer) and "total"."""
        out = {s.name.lower(): int(np.sum(self.status_b == s)) for s in Status}
        out["truncated_total"] = int(np.sum(self.truncated_b))
        out["total"] = len(self)
        return out

    def metrics(self, prefix: str = "reward/") -> dict[str, float]:
        """Flat float metrics for logging: mean reward and the fraction of each status (0.0 for an empty batch)."""
        n = max(len(self), 1)
        out = {f"{prefix}mean": float(np.sum(self.reward_b)) / n}
        for name, count in self.counts.items():
            if name != "total":
                out[f"{prefix}frac_{name}"] = count / n
        return out


def make_result(
    reward_b: np.ndarray, status_b: np.ndarray, truncated_b: np.ndarray, answers: tuple[str | None, ...]
) -> ScoreResult:
    """Build a ScoreResult with the canonical dtypes (float32 rewards, int8 statuses, bool truncation flags)."""
    return ScoreResult(
        reward_b=np.asarray(reward_b, np.float32),
        status_b=np.asarray(status_b, np.int8),
        truncated_b=np.asarray(truncated_b, bool),
        answers=tuple(answers),
    )


def as_truncated(truncated, batch: int) -> np.ndarray:
    """Validate the optional per-item truncation flags: None -> all False; otherwise a length-B sequence of bools."""
    if truncated is None:
        return np.zeros(batch, bool)
    arr = np.asarray(truncated)
    if arr.shape != (batch,) or arr.dtype != bool:
        raise ValueError(f"truncated must be a bool sequence of length {batch} (one per completion), got "
                         f"shape {arr.shape} dtype {arr.dtype}")
    return arr
