"""Test-time compute control built on generate + fork: budget forcing and forced termination at a budget.

- ``budget_force``: when a trace stops (EOS or a stop string) before ``budget`` completion tokens, drop the stop,
  append a "Wait"-style text and continue from the cached prefix; repeat up to ``max_extensions`` times.
- ``forced_answers``: at given completion-token boundaries, fork each trace, append the forced-termination suffix
  and sample ``n`` short answers (the meta-prover mu of MRT.md); ``terminate_at_budget`` is the one-boundary case.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mrt_jax.sampling.output import Branch, SampleOutput
from mrt_jax.sampling.termination import BUDGET_FORCING_TEXTS


@dataclasses.dataclass
class ForcedTrace:
    """Completions with inserted text. ``forced[i][t]`` is True for appended (not sampled) tokens, whose logprob
    entry is 0; ``extensions[i]`` counts how often row i was extended."""

    tokens: list[list[int]]
    logprobs: list[np.ndarray]
    forced: list[np.ndarray]
    extensions: list[int]
    texts: list[str] | None


def _keep_before_stop(tokens: Sequence[int], reason: str, eos_ids, stop, decode) -> int:
    """How many completion tokens to keep so that the EOS / stop string that ended the row is removed."""
    n = len(tokens)
    if reason == "eos" and n and tokens[-1] in eos_ids:
        return n - 1
    if reason == "stop" and stop:
        while n > 0:
            text = decode(tokens[:n])
            if not any(s[:k] and text.endswith(s[:k]) for s in stop for k in range(1, len(s) + 1)) and \
                    not any(s in text for s in stop):
                break
            n -= 1
    return n


def budget_force(sampler, prompts, *, budget: int, extend_texts: Sequence[str | list[int]] = BUDGET_FORCING_TEXTS,
                 max_extensions: int = 4, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0, stop: Sequence[str] | None = None,
                 row_ids: Sequence[int] | None = None) -> ForcedTrace:
    """Generate up to ``budget`` completion tokens per row, extending rows that stop early (s1-style).

    ``row_ids``: each prompt's random-stream id (default ``0..len(prompts)-1``). Row i draws its trace from stream
    ``(seed, row_ids[i])`` and its e-th extension from ``(seed + e + 1, row_ids[i])``, so a row's text does not depend
    on which other rows share the call (evaluation in chunks passes the rows' global ids)."""
    if budget < 1 or max_extensions < 0 or not extend_texts:
        raise ValueError(f"budget_force needs budget >= 1, max_extensions >= 0 and extend_texts; got budget={budget},"
                         f" max_extensions={max_extensions}, extend_texts={extend_texts!r}")
    ids = list(range(len(prompts))) if row_ids is None else [int(i) for i in row_ids]
    if len(ids) != len(prompts):
        raise ValueError(f"budget_force: {len(ids)} row_ids for {len(prompts)} prompts")
    kw = dict(temperature=temperature, top_k=top_k, top_p=top_p, stop=stop)
    out = sampler.generate(prompts, max_new_tokens=budget, seed=seed, keep_cache=True, row_ids=ids, **kw)
    toks = [list(t) for t in out.tokens]
    logp = [list(x) for x in out.logprobs]
    forced = [[False] * len(t) for t in out.tokens]
    n_ext = [0] * len(toks)
    origin = list(range(len(toks)))  # output row -> original row
    decode = sampler._decode_text if sampler.tokenizer is not None else None
    for e in range(max_extensions):
        extra = sampler._encode(extend_texts[e % len(extend_texts)], "extend text")
        branches, orig, rem = [], [], []
        for r, o in enumerate(origin):
            if out.finish_reasons[r] == "length":
                continue
            keep = _keep_before_stop(out.tokens[r], out.finish_reasons[r], set(sampler.eos_ids), stop, decode)
            drop = len(out.tokens[r]) - keep
            left = budget - (len(toks[o]) - drop) - len(extra)
            if left < 1:
                continue
            del toks[o][len(toks[o]) - drop:], logp[o][len(logp[o]) - drop:], forced[o][len(forced[o]) - drop:]
            toks[o] += extra
            logp[o] += [0.0] * len(extra)
            forced[o] += [True] * len(extra)
            n_ext[o] += 1
            branches.append(Branch(r, keep, extra))
            orig.append(o)
            rem.append(left)
        if not branches:
            break
        out = sampler.fork(out, branches, max_new_tokens=rem, seed=seed + e + 1, keep_cache=True,
                           row_ids=[ids[o] for o in orig], **kw)
        for r, o in enumerate(orig):
            toks[o] += out.tokens[r]
            logp[o] += list(out.logprobs[r])
            forced[o] += [False] * len(out.tokens[r])
        origin = orig
    texts = [decode(t) for t in toks] if decode is not None else None
    return ForcedTrace(toks, [np.asarray(x, np.float32) for x in logp], [np.asarray(f) for f in forced], n_ext,
                       texts)


def forced_answers(sampler, source: SampleOutput, boundaries: Sequence[Sequence[int]], suffix: str | list[int], *,
                   n: int = 8, max_new_tokens: int = 256, temperature: float = 0.6, top_p: float | None = 0.95,
                   top_k: int | None = None, seed: int = 0, stop: Sequence[str] | None = None
                   ) -> tuple[SampleOutput, list[tuple[int, int]]]:
    """``n`` forced answers after each boundary of each row (``boundaries[row]`` = completion-token indices).

    Returns the fork output (rows grouped: for each (row, boundary) pair, n consecutive rows) and the list of
    (row, boundary) pairs in that order. Reference MRT analysis settings: n=8, temperature 0.6, top_p 0.95.
    """
    if len(boundaries) != len(source):
        raise ValueError(f"boundaries has {len(boundaries)} rows but the source has {len(source)}")
    pairs = [(r, int(b)) for r, bs in enumerate(boundaries) for b in bs]
    out = sampler.fork(source, [Branch(r, b, suffix, n) for r, b in pairs], max_new_tokens=max_new_tokens,
                       temperature=temperature, top_p=top_p, top_k=top_k, seed=seed, stop=stop)
    return out, pairs


def terminate_at_budget(sampler, source: SampleOutput, budget: int, suffix: str | list[int], **kw
                        ) -> tuple[SampleOutput, list[tuple[int, int]]]:
    """Forced termination at ``budget`` completion tokens (or at the end of a shorter trace, its EOS removed)."""
    eos = set(sampler.eos_ids)
    bounds = []
    for t, reason in zip(source.tokens, source.finish_reasons):
        end = len(t) - 1 if (reason == "eos" and t and t[-1] in eos) else len(t)
        bounds.append([min(budget, end)])
    return forced_answers(sampler, source, bounds, suffix, **kw)
