"""One RL step's data: rollouts -> episode boundaries -> meta-prover forks -> rewards -> J estimates -> a learner
batch with per-token advantages (GRPO, MRT dense progress, or MRT-STaR selection).

Shapes: B prompts, G samples per prompt, N = B*G rows, C = max completion tokens, T = prompt budget + C,
K = max episodes + 1 J-estimates per row (J_0 from the prompt alone, J after each episode; the last is the outcome).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

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
    batch: dict[str, np.ndarray]  # learner batch, [N, T] each
    rewards_bg: np.ndarray
    metrics: dict[str, float]
    completions: list[str]


def encode_prompts(tokenizer, texts: Sequence[str], budget: int) -> list[list[int]]:
    ids = [list(tokenizer.encode(t)) for t in texts]
    for i, x in enumerate(ids):
        if len(x) > budget:
            raise ValueError(f"prompt {i} has {len(x)} tokens; the prompt budget is {budget} "
                             f"(raise --max_prompt_tokens): {texts[i][:80]!r}")
    return ids


def estimate_j(sampler: Sampler, out: SampleOutput, branches: list[Branch], golds: list[str],
               verify: Callable[[str, str], float], s: RolloutSettings, seed: int) -> tuple[np.ndarray, int]:
    """Mean correctness of ``meta_samples`` forced answers per branch (the meta-prover's J), and tokens spent."""
    if not branches:
        return np.zeros(0, np.float32), 0
    meta = sampler.fork(out, branches, max_new_tokens=s.meta_max_tokens, temperature=s.meta_temperature,
                        top_p=None, seed=seed, stop=["\n"])
    scores = np.asarray([verify(s.forced_suffix + t, golds[i // s.meta_samples]) for i, t in enumerate(meta.texts)],
                        np.float32)
    return scores.reshape(len(branches), s.meta_samples).mean(1), int(np.sum(meta.lengths))


def collect(sampler: Sampler, tokenizer, prompts: Sequence[str], answers: Sequence[str],
            verify: Callable[[str, str], float], boundaries: Callable[[list[int]], list[int]],
            s: RolloutSettings, seed: int) -> Rollout:
    B, G, C = len(prompts), s.group_size, s.max_new_tokens
    prompt_ids = encode_prompts(tokenizer, prompts, s.max_prompt_tokens)
    rows = [p for p in prompt_ids for _ in range(G)]
    gold = [a for a in answers for _ in range(G)]
    use_meta = s.algo in ("mrt", "mrt_star")
    out = sampler.generate(rows, max_new_tokens=C, temperature=s.temperature, top_p=s.top_p if s.top_p < 1 else None,
                           seed=seed, keep_cache=use_meta)
    texts = list(out.texts)
    truncated = np.asarray([r == "length" for r in out.finish_reasons])
    rewards = np.asarray([verify(t, g) for t, g in zip(texts, gold)], np.float32)
    correct = rewards.copy()
    row_mask = np.ones(B * G, np.float32)
    if s.truncation == "zero":
        rewards = np.where(truncated, 0.0, rewards)
    elif s.truncation == "mask":
        row_mask = np.where(truncated, 0.0, 1.0).astype(np.float32)
    N = B * G
    mask_nc = np.zeros((N, C), np.float32)
    for i, toks in enumerate(out.tokens):
        mask_nc[i, :len(toks)] = row_mask[i]
    mask_bgc = jnp.asarray(mask_nc.reshape(B, G, C))
    r_bg = jnp.asarray(rewards.reshape(B, G))
    outcome = {"grpo": grpo_advantages, "dr_grpo": dr_grpo_advantages, "rloo": rloo_advantages}[s.advantage]
    adv_bgc = outcome(r_bg, mask_bgc)
    metrics: dict[str, float] = {}
    meta_tokens = 0

    if use_meta:
        # Episode starts inside each completion, at most max_episodes - 1 of them (so at most max_episodes episodes).
        starts = [[p for p in boundaries(list(t)) if 0 < p < len(t)][: s.max_episodes - 1] for t in out.tokens]
        branches = [Branch(row=b * G, position=0, text=s.forced_suffix, n=s.meta_samples) for b in range(B)]
        owners = []
        for i, st in enumerate(starts):
            for k, p in enumerate(st):
                branches.append(Branch(row=i, position=p, text=s.forced_suffix, n=s.meta_samples))
                owners.append((i, k + 1))
        branch_gold = [answers[b] for b in range(B)] + [gold[i] for i, _ in owners]
        j_hat, meta_tokens = estimate_j(sampler, out, branches, branch_gold, verify, s, seed + 1)
        K = s.max_episodes + 1
        j_nk = np.zeros((N, K), np.float32)
        valid_nk = np.zeros((N, K), bool)
        j_nk[:, 0] = np.repeat(j_hat[:B], G)
        valid_nk[:, 0] = True
        for (i, k), j in zip(owners, j_hat[B:]):
            j_nk[i, k], valid_nk[i, k] = j, True
        episode_nc = np.full((N, C), -1, np.int32)
        for i, st in enumerate(starts):
            last = len(st) + 1  # the outcome closes the last episode
            j_nk[i, last], valid_nk[i, last] = rewards[i], True
            n = len(out.tokens[i])
            episode_nc[i, :n] = np.searchsorted(np.asarray(st, np.int64), np.arange(n), side="right")
        if s.algo == "mrt":
            adv_bgc, mrt_metrics = mrt_dense_advantages(
                adv_bgc, jnp.asarray(j_nk.reshape(B, G, K)), jnp.asarray(valid_nk.reshape(B, G, K)),
                jnp.asarray(episode_nc.reshape(B, G, C)), mask_bgc, alpha=s.alpha)
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
        metrics["j0_mean"] = float(j_hat[:B].mean())
        metrics["episodes_mean"] = float(np.mean([len(st) + 1 for st in starts]))

    # Learner batch: each row is prompt + completion, right-padded to T = prompt budget + C.
    T = s.max_prompt_tokens + C
    tokens = np.zeros((N, T), np.int32)
    loss_mask = np.zeros((N, T), np.float32)
    old_logp = np.zeros((N, T), np.float32)
    advantages = np.zeros((N, T), np.float32)
    attn = np.zeros((N, T), bool)
    adv_nc = np.asarray(adv_bgc).reshape(N, C)
    loss_nc = np.asarray(mask_bgc).reshape(N, C) > 0
    for i, (p, c) in enumerate(zip(rows, out.tokens)):
        lp, lc = len(p), len(c)
        tokens[i, :lp], tokens[i, lp:lp + lc] = p, c
        attn[i, :lp + lc] = True
        loss_mask[i, lp:lp + lc] = loss_nc[i, :lc]
        old_logp[i, lp:lp + lc] = out.logprobs[i]
        advantages[i, lp:lp + lc] = adv_nc[i, :lc]
    lengths = np.asarray(out.lengths, np.float32)
    metrics.update(reward=float(rewards.mean()), accuracy=float(correct.mean()), mean_length=float(lengths.mean()),
                   truncated_frac=float(truncated.mean()), sampled_tokens=float(lengths.sum()),
                   meta_tokens=float(meta_tokens),
                   zero_variance_groups=float(np.mean(rewards.reshape(B, G).std(1) == 0)))
    batch = dict(tokens=tokens, loss_mask=loss_mask, old_logp=old_logp, advantages=advantages, attn_mask=attn)
    return Rollout(batch=batch, rewards_bg=rewards.reshape(B, G), metrics=metrics, completions=texts)
