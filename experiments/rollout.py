"""One RL step's data: rollouts -> episode boundaries -> meta-prover forks -> rewards -> J estimates -> a learner
batch with per-token advantages (GRPO, MRT dense progress, or MRT-STaR selection).

Shapes: B prompts, G samples per prompt, N = B*G rows, C = max completion tokens, T = prompt budget + C,
K = max episodes + 1 J-estimates per row (J_0 from the prompt alone, J after each episode; the last is the outcome).

Several processes: each samples its own contiguous share of the global prompt batch (whole groups), with random
streams keyed by the prompts' GLOBAL indices, so the tokens do not depend on which process sampled them. The
per-row results are then gathered (``gather``), and advantages and metrics are computed from the whole global
batch on every process (MRT's progress scale is a batch statistic), exactly as one process would compute them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from mrt_jax.rl import dr_grpo_advantages, grpo_advantages, mrt_dense_advantages, rloo_advantages
from mrt_jax.sampling import Branch, SampleOutput, Sampler


@dataclasses.dataclass(frozen=True)
class RolloutSettings:
    algo: str
    group_size: int
    max_prompt_tokens: int
    max_new_tokens: int
    temperature: float
    top_p: float
    truncation: str  # "zero" | "mask" | "none"
    alpha: float
    meta_samples: int
    meta_max_tokens: int
    meta_temperature: float
    max_episodes: int
    forced_suffix: str
    advantage: str = "grpo"  # outcome advantage: grpo | dr_grpo | rloo


@dataclasses.dataclass
class Rollout:
    batch: dict[str, np.ndarray]  # this process's rows of the learner batch, [N, T] each
    rewards_bg: np.ndarray  # this process's groups
    metrics: dict[str, float]  # of the whole batch (all processes)
    completions: list[str]  # this process's rows


def encode_prompts(tokenizer, texts: Sequence[str], budget: int) -> list[list[int]]:
    ids = [list(tokenizer.encode(t)) for t in texts]
    for i, x in enumerate(ids):
        if len(x) > budget:
            raise ValueError(f"prompt {i} has {len(x)} tokens; the prompt budget is {budget} "
                             f"(raise --max_prompt_tokens): {texts[i][:80]!r}")
    return ids


def estimate_j(sampler: Sampler, out: SampleOutput, branches: list[Branch], golds: list[str],
               verify: Callable[[str, str], float], s: RolloutSettings, seed: int,
               stream_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean correctness of ``meta_samples`` forced answers per branch (the meta-prover's J), and the tokens each
    branch spent. ``stream_ids``: one random-stream id per branch (its forced answers use id * meta_samples + m)."""
    if not branches:
        return np.zeros(0, np.float32), np.zeros(0, np.int32)
    m = s.meta_samples
    row_ids = None if stream_ids is None else [i * m + k for i in stream_ids for k in range(m)]
    meta = sampler.fork(out, branches, max_new_tokens=s.meta_max_tokens, temperature=s.meta_temperature,
                        top_p=None, seed=seed, stop=["\n"], row_ids=row_ids)
    scores = np.asarray([verify(s.forced_suffix + t, golds[i // m]) for i, t in enumerate(meta.texts)], np.float32)
    spent = np.asarray(meta.lengths, np.int32).reshape(len(branches), m).sum(1)
    return scores.reshape(len(branches), m).mean(1), spent


@dataclasses.dataclass
class Share:
    """One process's sampled rows: what its part of the learner batch needs, and per-row arrays (32-bit, [N, ...])
    that are gathered over processes for the batch-level step (advantages, metrics)."""

    prompt_ids: list[list[int]]  # per row
    tokens: list[list[int]]
    logprobs: list[np.ndarray]
    texts: list[str]
    arrays: dict[str, np.ndarray]


def sample_share(sampler: Sampler, tokenizer, prompts: Sequence[str], answers: Sequence[str],
                 verify: Callable[[str, str], float], boundaries: Callable[[list[int]], list[int]],
                 s: RolloutSettings, seed: int, *, first_prompt: int = 0) -> Share:
    """Sample ``prompts`` (global prompts ``first_prompt ...``), score them, and (MRT) estimate J at the episode
    boundaries. Row i of prompt b has the global row id g = (first_prompt + b) * G + i % G; its trace uses random
    stream g, its J-branch k (k = 0: J_0 from the prompt, on the group's first row) stream g * max_episodes + k."""
    B, G, C = len(prompts), s.group_size, s.max_new_tokens
    N = B * G
    prompt_ids = encode_prompts(tokenizer, prompts, s.max_prompt_tokens)
    rows = [p for p in prompt_ids for _ in range(G)]
    gold = [a for a in answers for _ in range(G)]
    global_rows = [first_prompt * G + i for i in range(N)]
    use_meta = s.algo in ("mrt", "mrt_star")
    out = sampler.generate(rows, max_new_tokens=C, temperature=s.temperature, top_p=s.top_p if s.top_p < 1 else None,
                           seed=seed, keep_cache=use_meta, row_ids=global_rows)
    texts = list(out.texts)
    truncated = np.asarray([r == "length" for r in out.finish_reasons])
    correct = np.asarray([verify(t, g) for t, g in zip(texts, gold)], np.float32)
    rewards = correct.copy()
    row_mask = np.ones(N, np.float32)
    if s.truncation == "zero":
        rewards = np.where(truncated, 0.0, rewards).astype(np.float32)
    elif s.truncation == "mask":
        row_mask = np.where(truncated, 0.0, 1.0).astype(np.float32)
    mask_nc = np.zeros((N, C), np.float32)
    for i, toks in enumerate(out.tokens):
        mask_nc[i, :len(toks)] = row_mask[i]
    arrays = dict(rewards=rewards, correct=correct, truncated=truncated.astype(np.int32),
                  lengths=np.asarray(out.lengths, np.int32), mask_nc=mask_nc)
    if use_meta:
        arrays.update(_estimate_progress(sampler, out, answers, gold, rewards, global_rows, verify, boundaries, s,
                                         seed + 1))
    return Share(prompt_ids=rows, tokens=[list(t) for t in out.tokens], logprobs=list(out.logprobs), texts=texts,
                 arrays=arrays)


def _estimate_progress(sampler, out, answers, gold, rewards, global_rows, verify, boundaries, s: RolloutSettings,
                       seed: int) -> dict[str, np.ndarray]:
    """Per-row J estimates [N, K] (valid flags), episode id of each completion token [N, C], episode counts and the
    forced-answer tokens spent per row."""
    B, G, C, E = len(answers), s.group_size, s.max_new_tokens, s.max_episodes
    N, K = B * G, E + 1
    # Episode starts inside each completion, at most max_episodes - 1 of them (so at most max_episodes episodes).
    starts = [[p for p in boundaries(list(t)) if 0 < p < len(t)][: E - 1] for t in out.tokens]
    branches = [Branch(row=b * G, position=0, text=s.forced_suffix, n=s.meta_samples) for b in range(B)]
    owners = [(b * G, 0) for b in range(B)]
    for i, st in enumerate(starts):
        for k, p in enumerate(st):
            branches.append(Branch(row=i, position=p, text=s.forced_suffix, n=s.meta_samples))
            owners.append((i, k + 1))
    golds = [gold[i] for i, _ in owners]
    streams = [global_rows[i] * E + k for i, k in owners]
    j_hat, spent = estimate_j(sampler, out, branches, golds, verify, s, seed, stream_ids=streams)
    j_nk = np.zeros((N, K), np.float32)
    valid_nk = np.zeros((N, K), np.int32)
    meta_tokens_n = np.zeros(N, np.int32)
    j_nk[:, 0] = np.repeat(j_hat[:B], G)
    valid_nk[:, 0] = 1
    for (i, k), j, n in zip(owners, j_hat, spent):
        meta_tokens_n[i] += n
        if k:
            j_nk[i, k], valid_nk[i, k] = j, 1
    episode_nc = np.full((N, C), -1, np.int32)
    for i, st in enumerate(starts):
        last = len(st) + 1  # the outcome closes the last episode
        j_nk[i, last], valid_nk[i, last] = rewards[i], 1
        n = len(out.tokens[i])
        episode_nc[i, :n] = np.searchsorted(np.asarray(st, np.int64), np.arange(n), side="right")
    episodes_n = np.asarray([len(st) + 1 for st in starts], np.int32)
    return dict(j_nk=j_nk, valid_nk=valid_nk, episode_nc=episode_nc, episodes_n=episodes_n,
                meta_tokens_n=meta_tokens_n)


def score_rows(a: Mapping[str, np.ndarray], s: RolloutSettings) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Advantages [N, C], loss mask [N, C] (bool) and the step's metrics from the per-row arrays of the WHOLE
    batch (``Share.arrays`` gathered over processes). Pure: every process computes the same numbers."""
    N, C = a["mask_nc"].shape
    G = s.group_size
    B = N // G
    rewards, correct, truncated = a["rewards"], a["correct"], a["truncated"].astype(bool)
    mask_bgc = jnp.asarray(a["mask_nc"].reshape(B, G, C))
    outcome = {"grpo": grpo_advantages, "dr_grpo": dr_grpo_advantages, "rloo": rloo_advantages}[s.advantage]
    adv_bgc = outcome(jnp.asarray(rewards.reshape(B, G)), mask_bgc)
    metrics: dict[str, float] = {}
    meta_tokens = 0
    if s.algo in ("mrt", "mrt_star"):
        K = s.max_episodes + 1
        j_nk, valid_nk = a["j_nk"], a["valid_nk"].astype(bool)
        if s.algo == "mrt":
            adv_bgc, mrt_metrics = mrt_dense_advantages(
                adv_bgc, jnp.asarray(j_nk.reshape(B, G, K)), jnp.asarray(valid_nk.reshape(B, G, K)),
                jnp.asarray(a["episode_nc"].reshape(B, G, C)), mask_bgc, alpha=s.alpha)
            metrics.update({k: float(v) for k, v in mrt_metrics.items()})
        else:  # mrt_star: imitate, per group, the correct trace whose J-curve is highest on average over its
            # episode boundaries: it made its progress earliest (J_end - J_0 is the same for all correct traces).
            area = (j_nk * valid_nk).sum(1) / np.maximum(valid_nk.sum(1), 1)
            ok = (correct.reshape(B, G) > 0) & ~truncated.reshape(B, G)
            pick = np.where(ok, area.reshape(B, G), -np.inf).argmax(1)
            chosen = np.zeros((B, G), np.float32)
            chosen[np.arange(B), pick] = ok[np.arange(B), pick]
            # A = 1 on the chosen traces at ratio 1: the surrogate's gradient is the NLL gradient (STaR's SFT step).
            adv_bgc = jnp.asarray(chosen)[..., None] * mask_bgc
            mask_bgc = adv_bgc
            metrics["star_selected_frac"] = float(chosen.mean())
        metrics["j0_mean"] = float(j_nk[::G, 0].mean())
        metrics["episodes_mean"] = float(np.mean(a["episodes_n"]))
        meta_tokens = int(np.sum(a["meta_tokens_n"]))
    lengths = a["lengths"]
    metrics.update(reward=float(rewards.mean()), accuracy=float(correct.mean()), mean_length=float(lengths.mean()),
                   truncated_frac=float(truncated.mean()), sampled_tokens=float(lengths.sum()),
                   meta_tokens=float(meta_tokens),
                   zero_variance_groups=float(np.mean(rewards.reshape(B, G).std(1) == 0)))
    return np.asarray(adv_bgc).reshape(N, C), np.asarray(mask_bgc).reshape(N, C) > 0, metrics


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
        tokens[i, :lp], tokens[i, lp:lp + lc] = p, c
        attn[i, :lp + lc] = True
        loss_mask[i, lp:lp + lc] = loss_nc[i, :lc]
        old_logp[i, lp:lp + lc] = share.logprobs[i]
        advantages[i, lp:lp + lc] = adv_nc[i, :lc]
    return dict(tokens=tokens, loss_mask=loss_mask, old_logp=old_logp, advantages=advantages, attn_mask=attn)


def collect(sampler: Sampler, tokenizer, prompts: Sequence[str], answers: Sequence[str],
            verify: Callable[[str, str], float], boundaries: Callable[[list[int]], list[int]],
            s: RolloutSettings, seed: int, *, first_prompt: int = 0,
            gather: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None) -> Rollout:
    """One step's rollout: this process's learner rows, with advantages and metrics of the whole batch.

    One process: ``prompts`` is the batch. Several: ``prompts`` are global prompts ``first_prompt ...``, and
    ``gather`` concatenates every process's ``Share.arrays`` in global prompt order (e.g.
    ``mrt_jax.distributed.allgather_rows`` with contiguous shares in process order).
    """
    share = sample_share(sampler, tokenizer, prompts, answers, verify, boundaries, s, seed, first_prompt=first_prompt)
    everything = share.arrays if gather is None else gather(share.arrays)
    adv_nc, loss_nc, metrics = score_rows(everything, s)
    n = len(share.tokens)
    lo = first_prompt * s.group_size if gather is not None else 0
    if adv_nc.shape[0] < lo + n:
        raise ValueError(f"gathered batch has {adv_nc.shape[0]} rows; this process's rows are [{lo}, {lo + n})")
    batch = learner_rows(share, adv_nc[lo:lo + n], loss_nc[lo:lo + n], s)
    return Rollout(batch=batch, rewards_bg=share.arrays["rewards"].reshape(-1, s.group_size), metrics=metrics,
                   completions=share.texts)
