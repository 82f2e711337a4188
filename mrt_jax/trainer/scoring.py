"""From per-row results to what the learner trains on: reward shaping, then advantages from the registry.

Pure numpy over the WHOLE batch (``Share.arrays`` gathered over processes): every process computes the same
numbers, because MRT's progress scale and the GRPO statistics are batch- and group-level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mrt_jax.rewards.result import Status
from mrt_jax.rewards.shaping import apply_truncation, length_penalty, overlong_shaped_reward
from mrt_jax.trainer.estimators import AdvantageInputs, estimate


def shape_rewards(correct_n: np.ndarray, truncated_n: np.ndarray, lengths_n: np.ndarray, s
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (rewards_n, j_outcome_n, row_mask_n). The truncation treatment (``apply_truncation``) gives the outcome
    in J units (the last J of a trace: progress is measured in probability of a correct answer); the length
    penalty and DAPO overlong shaping then apply to the reward the outcome advantage sees."""
    j_outcome, row_mask = apply_truncation(np.asarray(correct_n, np.float32), np.asarray(truncated_n, bool),
                                           s.truncation)
    rewards = j_outcome
    if s.length_penalty > 0:
        rewards = length_penalty(rewards, lengths_n, coef=s.length_penalty, max_length=s.max_new_tokens)
    if s.overlong_buffer > 0:
        rewards = overlong_shaped_reward(rewards, lengths_n, max_length=s.max_new_tokens,
                                         buffer_length=s.overlong_buffer, factor=s.overlong_factor)
    return np.asarray(rewards, np.float32), np.asarray(j_outcome, np.float32), np.asarray(row_mask, np.float32)


def completion_mask(tokens: Sequence[Sequence[int]], row_mask_n: np.ndarray, width: int) -> np.ndarray:
    """[N, width] float32: each row's completion tokens, weighted by its row mask (0 = the row leaves the loss)."""
    mask_nc = np.zeros((len(tokens), width), np.float32)
    for i, toks in enumerate(tokens):
        mask_nc[i, :len(toks)] = row_mask_n[i]
    return mask_nc


def top_p_or_none(top_p: float) -> float | None:
    """The sampler's nucleus filter only when it cuts something (top_p = 1 keeps the unfiltered, faster path)."""
    return top_p if top_p < 1 else None


def groups_with_signal(rewards_n: np.ndarray, group_size: int) -> np.ndarray:
    """Bool [B]: groups whose rewards are not all equal (a zero-variance group has zero outcome advantage)."""
    r = np.asarray(rewards_n).reshape(-1, group_size)
    return r.max(1) > r.min(1)


def reward_status_metrics(a: Mapping[str, np.ndarray]) -> dict[str, float]:
    """What the scorer could not score, over the whole batch: timeouts and verifier errors (counts, with the
    meta-prover's forced answers), invalid golds and completions without an answer (fractions of rows)."""
    status = np.asarray(a["status_n"])
    return {"reward_timeouts": float(np.sum(status == Status.TIMEOUT) + np.sum(a.get("meta_timeouts_n", 0))),
            "reward_errors": float(np.sum(status == Status.ERROR) + np.sum(a.get("meta_errors_n", 0))),
            "invalid_gold_frac": float(np.mean(status == Status.INVALID_GOLD)),
            "no_answer_frac": float(np.mean((status == Status.NO_ANSWER) | (status == Status.TRUNCATED)))}


def score_rows(a: Mapping[str, np.ndarray], s) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Advantages [N, C], loss mask [N, C] (bool) and the step's metrics from the whole batch's per-row arrays."""
    N, C = a["mask_nc"].shape
    G = s.group_size
    B = N // G
    bg = lambda k, *rest: None if k not in a else np.asarray(a[k]).reshape(B, G, *rest)  # noqa: E731
    K = s.max_episodes + 1
    x = AdvantageInputs(rewards_bg=bg("rewards"), mask_bgc=bg("mask_nc", C), correct_bg=bg("correct"),
                        truncated_bg=None if "truncated" not in a else bg("truncated").astype(bool),
                        j_bgk=bg("j_nk", K), valid_bgk=bg("valid_nk", K), episode_bgc=bg("episode_nc", C),
                        terminated_bg=bg("terminated"))
    adv_bgc, mask_bgc, metrics = estimate(s.estimator, x, s.alpha)
    if "j_nk" in a:
        metrics["j0_mean"] = float(a["j_nk"][::G, 0].mean())
        metrics["episodes_mean"] = float(np.mean(a["episodes_n"]))
    rewards, lengths = a["rewards"], a["lengths"]
    metrics.update(reward=float(rewards.mean()), accuracy=float(a["correct"].mean()),
                   mean_length=float(lengths.mean()), truncated_frac=float(a["truncated"].mean()),
                   sampled_tokens=float(lengths.sum()), meta_tokens=float(np.sum(a.get("meta_tokens_n", 0))),
                   zero_variance_groups=float(np.mean(~groups_with_signal(rewards, G))))
    if "status_n" in a:
        metrics.update(reward_status_metrics(a))
    return adv_bgc.reshape(N, C), mask_bgc.reshape(N, C) > 0, metrics
