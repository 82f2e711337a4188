"""One step's rollout batch: sample (with DAPO dynamic sampling if asked), gather, score, lay out learner rows.

Several processes: each samples its contiguous share of the global prompt batch (whole groups) and ``gather``
concatenates every process's ``Share.arrays`` in global prompt order (``mrt_jax.distributed.allgather_rows``), so
advantages and metrics are those of the whole batch, exactly as one process would compute them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from mrt_jax.random_streams import stream_key
from mrt_jax.rewards.scorer import Scorer
from mrt_jax.sampling import Sampler
from mrt_jax.trainer.rollout import Share, learner_rows, sample_share
from mrt_jax.trainer.scoring import groups_with_signal, score_rows
from mrt_jax.trainer.settings import RolloutSettings


@dataclasses.dataclass
class Rollout:
    batch: dict[str, np.ndarray]  # this process's rows of the learner batch, [N, T] each
    rewards_bg: np.ndarray  # this process's groups
    metrics: dict[str, float]  # of the whole batch (all processes)
    completions: list[str]  # this process's rows


def step_keys(seed: int, step: int, sampler_id: int = 0, round_: int = 0) -> dict:
    """The keys of one rollout draw: every stream folds in the step, the sampler and the dynamic-sampling round."""
    return {name: stream_key(seed, name, step, sampler_id, round_) for name in ("rollout", "fork", "mixed")}


@dataclasses.dataclass(frozen=True)
class Task:
    """What a rollout needs besides the sampler: the tokenizer, the scorer (``mrt_jax.rewards.Scorer``: rollouts and
    the meta-prover's forced answers are scored in batches through it) and the episode boundaries."""

    tokenizer: object
    scorer: Scorer
    boundaries: Callable[[list[int]], list[int]]


def dynamic_share(sample: Callable[[int, Sequence[str], Sequence[str]], Share], first: tuple[list, list],
                  more: Callable[[], tuple[list, list]], s: RolloutSettings) -> tuple[Share, dict[str, float]]:
    """DAPO dynamic sampling: keep the groups whose rewards differ, sampling further prompt batches (``more``;
    round r draws with round-r keys) until B such groups are found or ``dynamic_rounds`` rounds are spent; a batch
    still short is filled with the earliest dropped groups (zero outcome advantage). Logs the fraction dropped."""
    B, G = len(first[0]), s.group_size
    kept, dropped, sampled, rounds = [], [], 0, 0
    prompts, answers = first
    while True:
        share = sample(rounds, prompts, answers)
        rounds += 1
        signal = groups_with_signal(share.arrays["rewards"], G)
        sampled += len(signal)
        for b, ok in enumerate(signal):
            (kept if ok else dropped).append(share.select(range(b * G, (b + 1) * G)))
        if len(kept) >= B or rounds >= s.dynamic_rounds:
            break
        prompts, answers = more()
    chosen = (kept + dropped[:max(0, B - len(kept))])[:B]
    metrics = {"dynamic_dropped_frac": len(dropped) / sampled, "dynamic_rounds": float(rounds),
               "dynamic_filled_frac": float(max(0, B - len(kept)) / B)}
    return Share.concat(chosen), metrics


def collect(sampler: Sampler, task: Task, prompts: Sequence[str], answers: Sequence[str], s: RolloutSettings, *,
            seed: int, step: int, sampler_id: int = 0, first_prompt: int = 0,
            gather: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
            more: Callable[[], tuple[list, list]] | None = None) -> Rollout:
    """One step's rollout: this process's learner rows, with advantages and metrics of the whole batch.

    ``prompts`` are global prompts ``first_prompt ...``; with ``s.dynamic_sampling`` (one process only) ``more()``
    gives the next prompt batch when groups are dropped."""

    def sample(round_: int, ps, ans) -> Share:
        return sample_share(sampler, task.tokenizer, ps, ans, task.scorer, task.boundaries, s,
                            step_keys(seed, step, sampler_id, round_), first_prompt=first_prompt)

    extra: dict[str, float] = {}
    if s.dynamic_sampling:
        if gather is not None or more is None:
            raise ValueError("dynamic sampling runs in one process and needs more() to draw further prompts")
        share, extra = dynamic_share(sample, (list(prompts), list(answers)), more, s)
    else:
        share = sample(0, prompts, answers)
    everything = share.arrays if gather is None else gather(share.arrays)
    adv_nc, loss_nc, metrics = score_rows(everything, s)
    n = len(share.tokens)
    lo = first_prompt * s.group_size if gather is not None else 0
    if adv_nc.shape[0] < lo + n:
        raise ValueError(f"gathered batch has {adv_nc.shape[0]} rows; this process's rows are [{lo}, {lo + n})")
    batch = learner_rows(share, adv_nc[lo:lo + n], loss_nc[lo:lo + n], s)
    return Rollout(batch=batch, rewards_bg=share.arrays["rewards"].reshape(-1, s.group_size),
                   metrics={**metrics, **extra}, completions=share.texts)
