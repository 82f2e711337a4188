"""Sampling one share of a step's batch: rollouts -> rewards -> episode boundaries -> meta-prover J estimates.

Shapes: B prompts, G samples per prompt, N = B*G rows, C = max completion tokens, K = max episodes + 1 J slots
(``mrt_jax.trainer.progress``). Random streams (``mrt_jax.random_streams``): the traces draw from the
``rollout`` key, the J branches from the ``fork`` key; inside one draw row ids keep rows apart: trace row g
(global row id, so the tokens do not depend on which process sampled them) and J branch g * max_episodes + slot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from mrt_jax.rewards.result import Status
from mrt_jax.rewards.scorer import Scorer
from mrt_jax.sampling import Branch, SampleOutput, Sampler
from mrt_jax.trainer.progress import assemble_j, episode_starts, fork_plan
from mrt_jax.trainer.scoring import completion_mask, shape_rewards, top_p_or_none
from mrt_jax.trainer.settings import RolloutSettings


@dataclasses.dataclass
class Share:
    """One process's sampled rows: what its part of the learner batch needs, and per-row arrays (32-bit, [N, ...])
    that are gathered over processes for the batch-level step (advantages, metrics)."""

    prompt_ids: list[list[int]]  # per row: the tokens before the trained completion
    tokens: list[list[int]]
    logprobs: list[np.ndarray]
    texts: list[str]
    arrays: dict[str, np.ndarray]

    def select(self, rows: Sequence[int]) -> Share:
        pick = lambda xs: [xs[i] for i in rows]  # noqa: E731
        return Share(pick(self.prompt_ids), pick(self.tokens), pick(self.logprobs), pick(self.texts),
                     {k: v[np.asarray(rows, np.int64)] for k, v in self.arrays.items()})

    @staticmethod
    def concat(shares: Sequence[Share]) -> Share:
        return Share(*(sum((getattr(s, f) for s in shares), []) for f in ("prompt_ids", "tokens", "logprobs",
                                                                             "texts")),
                     {k: np.concatenate([s.arrays[k] for s in shares]) for k in shares[0].arrays})


def encode_prompts(tokenizer, texts: Sequence[str], budget: int) -> list[list[int]]:
    ids = [list(tokenizer.encode(t)) for t in texts]
    for i, x in enumerate(ids):
        if len(x) > budget:
            raise ValueError(f"prompt {i} has {len(x)} tokens; the prompt budget is {budget} "
                             f"(raise --max_prompt_tokens): {texts[i][:80]!r}")
    return ids


def estimate_j(sampler: Sampler, out: SampleOutput, branches: list[Branch], golds: list[str], scorer: Scorer,
               s: RolloutSettings, key, stream_ids: Sequence[int] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean correctness of ``meta_samples`` forced answers per branch (the meta-prover's J), the tokens each
    branch spent and the scoring statuses of its answers [branches, meta_samples]. ``stream_ids``: one id per
    branch (its forced answers use id * meta_samples + m)."""
    if not branches:
        return np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros((0, s.meta_samples), np.int32)
    m = s.meta_samples
    row_ids = None if stream_ids is None else [i * m + k for i in stream_ids for k in range(m)]
    meta = sampler.fork(out, branches, max_new_tokens=s.meta_max_tokens, temperature=s.meta_temperature,
                        top_p=None, seed=key, stop=list(s.answer_stop), row_ids=row_ids)
    res = scorer.score([s.forced_suffix + t for t in meta.texts], [golds[i // m] for i in range(len(meta.texts))])
    spent = np.asarray(meta.lengths, np.int32).reshape(len(branches), m).sum(1)
    return res.reward_b.reshape(len(branches), m).mean(1), spent, res.status_b.astype(np.int32).reshape(-1, m)


def sample_share(sampler: Sampler, tokenizer, prompts: Sequence[str], answers: Sequence[str],
                 scorer: Scorer, boundaries: Callable[[list[int]], list[int]], s: RolloutSettings, keys: dict, *,
                 first_prompt: int = 0) -> Share:
    """Sample ``prompts`` (global prompts ``first_prompt ...``), score them and, for the MRT family, estimate J
    at the episode boundaries (``keys``: ``rollout``, ``fork`` and, for mrt_mixed, ``mixed``)."""
    B, G, C = len(prompts), s.group_size, s.max_new_tokens
    N = B * G
    prompt_ids = encode_prompts(tokenizer, prompts, s.max_prompt_tokens)
    rows = [p for p in prompt_ids for _ in range(G)]
    gold = [a for a in answers for _ in range(G)]
    global_rows = [first_prompt * G + i for i in range(N)]
    out = sampler.generate(rows, max_new_tokens=C, temperature=s.temperature, top_p=top_p_or_none(s.top_p),
                           seed=keys["rollout"], keep_cache=s.meta, row_ids=global_rows)
    if s.estimator == "mrt_mixed":
        from mrt_jax.trainer.mixed import mixed_share

        return mixed_share(sampler, out, answers, scorer, boundaries, s, keys["mixed"], global_rows)
    texts = list(out.texts)
    truncated = np.asarray([r == "length" for r in out.finish_reasons])
    scored = scorer.score(texts, gold, truncated=truncated)
    correct = scored.reward_b
    lengths = np.asarray(out.lengths, np.int32)
    rewards, j_outcome, row_mask = shape_rewards(correct, truncated, lengths, s)
    arrays = dict(rewards=rewards, correct=correct, truncated=truncated.astype(np.int32), lengths=lengths,
                  mask_nc=completion_mask(out.tokens, row_mask, C), status_n=scored.status_b.astype(np.int32))
    if s.meta:
        arrays.update(estimate_progress(sampler, out, gold, j_outcome, global_rows, scorer, boundaries, s,
                                        keys["fork"]))
    return Share(prompt_ids=rows, tokens=[list(t) for t in out.tokens], logprobs=list(out.logprobs), texts=texts,
                 arrays=arrays)


def estimate_progress(sampler, out, gold, j_outcome, global_rows, scorer, boundaries, s: RolloutSettings,
                      key) -> dict[str, np.ndarray]:
    """Per-row J estimates [N, K] (valid flags), the episode id of each completion token [N, C], episode counts and
    the forced-answer tokens spent per row (``mrt_jax.trainer.progress`` has the index mapping)."""
    E = s.max_episodes
    starts = [episode_starts(boundaries(list(t)), len(t), E) for t in out.tokens]
    plan = fork_plan(starts, s.group_size)
    branches = [Branch(row=r, position=p, text=s.forced_suffix, n=s.meta_samples)
                for r, p in zip(plan.rows, plan.positions)]
    streams = [global_rows[r] * E + k for r, k in zip(plan.rows, plan.slots)]
    j_hat, spent, statuses = estimate_j(sampler, out, branches, [gold[r] for r in plan.rows], scorer, s, key,
                                        stream_ids=streams)
    return {**assemble_j(plan, starts, [len(t) for t in out.tokens], j_hat, j_outcome, s.group_size, E,
                         s.max_new_tokens),
            **per_row_counts(plan.rows, len(starts), meta_tokens_n=spent, **status_counts(statuses))}


def status_counts(statuses: np.ndarray) -> dict[str, np.ndarray]:
    """Per forked branch: how many of its forced answers timed out / crashed the verifier (counted in metrics)."""
    return {"meta_timeouts_n": (statuses == Status.TIMEOUT).sum(-1),
            "meta_errors_n": (statuses == Status.ERROR).sum(-1)}


def per_row_counts(rows: Sequence[int], n: int, **per_branch: np.ndarray) -> dict[str, np.ndarray]:
    """Per-branch counts summed onto the trace rows the branches forked from -> int32 [n] each."""
    out = {}
    for name, values in per_branch.items():
        total = np.zeros(n, np.int32)
        np.add.at(total, np.asarray(rows, np.int64), np.asarray(values, np.int32))
        out[name] = total
    return out


def learner_rows(share: Share, adv_nc: np.ndarray, loss_nc: np.ndarray, s: RolloutSettings) -> dict[str, np.ndarray]:
    """This process's rows of the learner batch: prompt + completion, right-padded to T = prompt budget + C."""
    N, C = len(share.tokens), s.max_new_tokens
    T = s.max_prompt_tokens + C
    tokens = np.zeros((N, T), np.int32)
    loss_mask = np.zeros((N, T), np.float32)
    old_logp = np.zeros((N, T), np.float32)
    advantages = np.zeros((N, T), np.float32)
    attn = np.zeros((N, T), bool)
    for i, (p, c) in enumerate(zip(share.prompt_ids, share.tokens)):
        lp, lc = len(p), len(c)
        if lc > C:  # the learner's loss window (LearnerConfig.loss_window) is C columns
            raise ValueError(f"row {i}: {lc} completion tokens exceed max_new_tokens={C}")
        if lp + lc > T:
            raise ValueError(f"row {i}: {lp} prefix + {lc} completion tokens exceed the learner width {T}")
        tokens[i, :lp], tokens[i, lp:lp + lc] = p, c
        attn[i, :lp + lc] = True
        loss_mask[i, lp:lp + lc] = loss_nc[i, :lc]
        old_logp[i, lp:lp + lc] = share.logprobs[i]
        advantages[i, lp:lp + lc] = adv_nc[i, :lc]
    return dict(tokens=tokens, loss_mask=loss_mask, old_logp=old_logp, advantages=advantages, attn_mask=attn)
