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


def gather_share(share: Share, gather: Callable[[dict], dict] | None, tokenizer, s: RolloutSettings) -> Share:
    """Every process's rows of one draw, in global order, on every process (``gather=None``: one process, ``share``
    as is). Prompts, tokens and logprobs travel as padded 32-bit arrays; texts are decoded from the tokens."""
    if gather is None:
        return share
    n, C = len(share.tokens), s.max_new_tokens
    P = s.max_prompt_tokens + C  # mixed rows carry a shared trace prefix in their prompt
    prompt = np.zeros((n, P), np.int32)
    tokens = np.zeros((n, C), np.int32)
    logprobs = np.zeros((n, C), np.float32)
    for i, (p, t, lp) in enumerate(zip(share.prompt_ids, share.tokens, share.logprobs)):
        prompt[i, :len(p)], tokens[i, :len(t)], logprobs[i, :len(t)] = p, t, lp
    rows = dict(share.arrays, _prompt=prompt, _prompt_len=np.asarray([len(p) for p in share.prompt_ids], np.int32),
                _tokens=tokens, _len=np.asarray([len(t) for t in share.tokens], np.int32), _logprobs=logprobs)
    g = gather(rows)
    lens, plens = g.pop("_len"), g.pop("_prompt_len")
    toks = [list(map(int, t[:k])) for t, k in zip(g.pop("_tokens"), lens)]
    return Share(prompt_ids=[list(map(int, p[:k])) for p, k in zip(g.pop("_prompt"), plens)], tokens=toks,
                 logprobs=[lp[:k] for lp, k in zip(g.pop("_logprobs"), lens)],
                 texts=[tokenizer.decode(t) for t in toks], arrays=g)


def dynamic_share(sample: Callable[[int, Sequence[str], Sequence[str]], Share], first: tuple[list, list],
                  more: Callable[[], tuple[list, list]], s: RolloutSettings,
                  whole: Callable[[Share], Share] = lambda share: share) -> tuple[Share, dict[str, float]]:
    """DAPO dynamic sampling over the whole batch (``whole``: this process's share of a draw -> every process's
    rows, :func:`gather_share`): keep the groups whose rewards differ, sampling further prompt batches (``more``;
    round r draws with round-r keys) until the batch's B groups are found or ``dynamic_rounds`` rounds are spent;
    a batch still short is filled with the earliest dropped groups (zero outcome advantage). Every process makes
    the same choice. Logs the fraction dropped."""
    G = s.group_size
    kept, dropped, sampled, rounds, B = [], [], 0, 0, None
    prompts, answers = first
    while True:
        share = whole(sample(rounds, prompts, answers))
        rounds += 1
        signal = groups_with_signal(share.arrays["rewards"], G)
        B = len(signal) if B is None else B
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

    ``prompts`` are this process's share of the step's global prompts (global prompts ``first_prompt ...``);
    ``gather`` concatenates per-row arrays over processes (None: one process). With ``s.dynamic_sampling``,
    ``more()`` gives the next GLOBAL prompt batch when groups are dropped (each process samples its share of it)."""
    b = len(prompts)

    def sample(round_: int, ps, ans) -> Share:
        return sample_share(sampler, task.tokenizer, ps, ans, task.scorer, task.boundaries, s,
                            step_keys(seed, step, sampler_id, round_), first_prompt=first_prompt)

    def next_share() -> tuple[list, list]:
        ps, ans = more()
        return list(ps)[first_prompt:first_prompt + b], list(ans)[first_prompt:first_prompt + b]

    extra: dict[str, float] = {}
    if s.dynamic_sampling:
        if more is None:
            raise ValueError("dynamic sampling needs more() to draw further prompt batches")
        whole, extra = dynamic_share(sample, (list(prompts), list(answers)), next_share, s,
                                     lambda share: gather_share(share, gather, task.tokenizer, s))
        lo = first_prompt * s.group_size if gather is not None else 0
        share = whole.select(range(lo, lo + b * s.group_size))
        everything = whole.arrays
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
