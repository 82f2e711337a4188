"""MRT-RL's mixed groups (MRT.md): from a shared prefix, some rollouts continue and some are terminated at once.

Per prompt, the group's first trace is cut at an episode start drawn uniformly (the ``mixed`` stream; position 0 =
the prompt alone is a candidate) among those that leave room for the forced answer in the completion budget. From
that prefix ``G - G // 2`` rows continue on-policy up to the budget and ``G // 2`` rows get the forced-termination
suffix and the meta-prover's answer. Those G rows replace the group: each trains on its own new tokens, with
``mrt_jax.rl.mrt.mixed_group_advantages`` comparing the continuing rows with the terminated ones (the progress
of continuing from that prefix).
"""

from __future__ import annotations

import jax
import numpy as np

from mrt_jax.sampling import Branch
from mrt_jax.trainer.progress import episode_starts
from mrt_jax.trainer.scoring import completion_mask, shape_rewards, top_p_or_none


def cut_candidates(starts: list[int], suffix_tokens: int, s) -> list[int]:
    """Prefix lengths a mixed group may share: 0 and each episode start that leaves room for the suffix and a
    full forced answer inside the completion budget."""
    fits = [p for p in [0, *starts] if p + suffix_tokens + s.meta_max_tokens <= s.max_new_tokens]
    return fits or [0]  # no room at all: learner_rows names the row that does not fit


def mixed_share(sampler, out, answers, scorer, boundaries, s, key, global_rows):
    from mrt_jax.trainer.rollout import Share

    G, C = s.group_size, s.max_new_tokens
    n_term = G // 2
    n_cont = G - n_term
    suffix_len = len(sampler.tokenizer.encode(s.forced_suffix))
    cuts = []
    for b in range(len(answers)):
        toks = list(out.tokens[b * G])
        cands = cut_candidates(episode_starts(boundaries(toks), len(toks), s.max_episodes), suffix_len, s)
        pick = jax.random.randint(jax.random.fold_in(key, global_rows[b * G]), (), 0, len(cands))
        cuts.append(cands[int(pick)])
    ids = lambda lo, n: [global_rows[b * G + lo + m] for b in range(len(answers)) for m in range(n)]  # noqa: E731
    cont = sampler.fork(out, [Branch(row=b * G, position=p, text="", n=n_cont) for b, p in enumerate(cuts)],
                        max_new_tokens=[C - p for p in cuts for _ in range(n_cont)], temperature=s.temperature,
                        top_p=top_p_or_none(s.top_p), seed=key, row_ids=ids(0, n_cont))
    term = sampler.fork(out, [Branch(row=b * G, position=p, text=s.forced_suffix, n=n_term)
                              for b, p in enumerate(cuts)],
                        max_new_tokens=s.meta_max_tokens, temperature=s.meta_temperature, top_p=None, seed=key,
                        stop=list(s.answer_stop), row_ids=ids(n_cont, n_term))
    prompt_ids, tokens, logprobs, texts, golds, truncated, lengths, terminated = [], [], [], [], [], [], [], []
    for b, p in enumerate(cuts):
        prefix = list(out.tokens[b * G][:p])
        for src, n, is_term in ((cont, n_cont, False), (term, n_term, True)):
            for m in range(n):
                j = b * n + m
                text = src.texts[j]
                full = s.forced_suffix + text if is_term else sampler.tokenizer.decode(prefix + list(src.tokens[j]))
                prompt_ids.append(list(src.prompt_tokens[j]))
                tokens.append(list(src.tokens[j]))
                logprobs.append(src.logprobs[j])
                texts.append(full)
                golds.append(answers[b])
                truncated.append(not is_term and src.finish_reasons[j] == "length")
                lengths.append(p + len(src.tokens[j]))
                terminated.append(is_term)
    truncated_n, lengths_n = np.asarray(truncated, bool), np.asarray(lengths, np.int32)
    scored = scorer.score(texts, golds, truncated=truncated_n)  # one batch: continuing and terminated rows
    correct_n = scored.reward_b
    rewards, _, row_mask = shape_rewards(correct_n, truncated_n, lengths_n, s)
    mask_nc = completion_mask(tokens, row_mask, C)
    term_n = np.asarray(terminated)
    meta_tokens_n = np.where(term_n, [len(t) for t in tokens], 0).astype(np.int32)
    arrays = dict(rewards=rewards, correct=correct_n, truncated=truncated_n.astype(np.int32), lengths=lengths_n,
                  mask_nc=mask_nc, terminated=term_n.astype(np.int32), meta_tokens_n=meta_tokens_n,
                  cut_n=np.repeat(np.asarray(cuts, np.int32), G), status_n=scored.status_b.astype(np.int32))
    return Share(prompt_ids=prompt_ids, tokens=tokens, logprobs=logprobs, texts=texts, arrays=arrays)
