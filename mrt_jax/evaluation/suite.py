"""The evaluation entry point: ``evaluate_suite`` samples traces, forces answers at token budgets and episode ends,
and returns every curve of eval.json in one pass (one generate and one fork per chunk of ``rows_per_call`` rows,
plus budget forcing if asked; the numbers do not depend on the chunks, ``mrt_jax.evaluation.chunks``).

For each problem, ``n`` traces are sampled up to ``max_new_tokens``. At every grid budget shorter than a trace and
after every episode, the prefix is forked with the forced-termination suffix and ``k`` answers are sampled (the
meta-prover of MRT.md); points at or past a trace's end use the trace's own final answer. Budget and episode points
that fall on the same prefix share one fork.

eval.json schema (``EvalResult.to_dict()``; lists align index by index; means over traces, then problems):

- ``budgets`` [int], ``pass_at_budget`` [float]: pass@1 against tokens (forced answers on the budget grid).
- ``accuracy`` float: correctness of the full traces' own final answers (no forcing).
- ``regret`` float: normalised regret, constant comparator, at the largest budget.
- ``mean_length`` float: mean trace length in tokens.
- ``tokens_to_half_max`` float: tokens to reach half of the last pass@1 (inf when it is 0; null in files).
  (The six keys above are those of ``BudgetedEval.to_dict()`` and mean the same.)
- ``regret_at_budget``: ``{"budgets": [int], "constant": [float], "maj_or_continue": [float]}``: normalised
  regret at every budget C0 with the constant comparator and with the better of the majority vote over the forced
  answers and continuing to C0 (``mrt_jax.evaluation.curves``).
- ``maj_at_k``: ``{"k": [int], "total_tokens": [float], "accuracy": [float]}``: majority vote of the final answers
  of k traces against the tokens the k traces spent (``mrt_jax.evaluation.majority``); k = 1, 2, 4, ..., n.
- ``tokens_to_accuracy``: ``{"0.1": tokens or null, ...}``: fewest tokens at which pass@1 reaches each target.
- ``episodes`` [int], ``pass_at_episode`` [float], ``episode_tokens`` [float] (only with ``episode_rules``):
  pass@1 after 0, 1, ..., max_episodes episodes (episode 0 = answering from the prompt alone) and the mean prefix
  length there (a trace already complete counts with its length).
- ``extrapolation`` (only with ``extrapolate``): ``{"budgets": [int], "pass_at_budget": [float]}``: pass@1 at
  budgets beyond ``max_new_tokens`` reached by budget forcing.
- ``num_problems``, ``num_traces`` int; ``cost``: ``{"trace_tokens", "forced_answer_tokens",
  "extrapolation_tokens", "seconds"}``; ``settings``: the ``EvalSettings`` used.

A key that was not measured is left out (never null or an empty list). Per-problem and per-trace J-curves are in
``EvalResult.traces`` (``experiments.evaluate`` writes them to traces.jsonl).

Files: write with ``mrt_jax.evaluation.jsonio.write_json`` (non-finite numbers become null).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from mrt_jax.evaluation.budgeted import budget_grid
from mrt_jax.evaluation.chunks import DEFAULT_ROWS_PER_CALL, check_rows_per_call, sampled_chunks
from mrt_jax.evaluation.curves import problem_mean
from mrt_jax.evaluation.episodic import episode_positions
from mrt_jax.evaluation.extrapolation import extrapolated_pass
from mrt_jax.evaluation.forcing import forced_points
from mrt_jax.evaluation.majority import default_ks
from mrt_jax.evaluation.summary import DEFAULT_TARGETS, summarize
from mrt_jax.evaluation.traces import TraceRecord
from mrt_jax.rewards.extraction import extract_answer
from mrt_jax.rewards.scorer import Scorer, rewards
from mrt_jax.sampling import EpisodeRules, Sampler
from mrt_jax.sampling.stops import StopRule, describe
from mrt_jax.sampling.termination import BUDGET_FORCING_TEXTS


def _positive_ints(values, name: str) -> tuple[int, ...]:
    out = tuple(values)
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in out):
        raise ValueError(f"EvalSettings.{name} must be positive integers, got {list(out)}")
    return tuple(sorted(set(int(v) for v in out)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """What to measure. The defaults are the cheap periodic evaluation of the training job (one greedy trace per
    problem, one greedy forced answer per point, six budgets, no episodes unless ``episode_rules`` is given)."""

    max_new_tokens: int
    budgets: tuple[int, ...] | None = None  # None: budget_grid(max_new_tokens, 6)
    n: int = 1  # traces per problem
    temperature: float = 0.0  # of the traces
    k: int = 1  # forced answers per point
    k_temperature: float = 0.0
    answer_tokens: int = 16
    answer_stop: tuple[str | StopRule, ...] | None = ("\n",)  # the prompt format's answer_stop
    episode_rules: EpisodeRules | None = None  # None: no episode curve
    max_episodes: int = 4
    maj_ks: tuple[int, ...] | None = None  # None: 1, 2, 4, ... up to n
    extrapolate: tuple[int, ...] = ()  # budgets beyond max_new_tokens, by budget forcing
    extend_texts: tuple[str, ...] = tuple("\n\n" + t for t in BUDGET_FORCING_TEXTS)
    max_extensions: int = 4
    targets: tuple[float, ...] = DEFAULT_TARGETS
    seed: int = 0
    # Rows (problems x n traces) sampled, their caches kept and forked, per call: whole problems per call (at least
    # one), so memory is bounded by it; None: every row at once. The numbers do not depend on it.
    rows_per_call: int | None = DEFAULT_ROWS_PER_CALL

    def __post_init__(self):
        check_rows_per_call(self.rows_per_call, "EvalSettings.rows_per_call")
        for name in ("max_new_tokens", "n", "k", "answer_tokens"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or \
                    getattr(self, name) < 1:
                raise ValueError(f"EvalSettings.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        budgets = _positive_ints(self.budgets if self.budgets is not None else budget_grid(self.max_new_tokens, 6),
                                 "budgets")
        if not budgets or budgets[-1] > self.max_new_tokens:
            raise ValueError(f"EvalSettings.budgets must be non-empty and <= max_new_tokens={self.max_new_tokens} "
                             f"(use extrapolate for larger budgets), got {list(budgets)}")
        object.__setattr__(self, "budgets", budgets)
        extra = _positive_ints(self.extrapolate, "extrapolate")
        if extra and extra[0] <= self.max_new_tokens:
            raise ValueError(f"EvalSettings.extrapolate budgets must exceed max_new_tokens={self.max_new_tokens}, "
                             f"got {list(extra)}")
        object.__setattr__(self, "extrapolate", extra)
        if self.max_episodes < 0 or self.max_extensions < 0:
            raise ValueError(f"EvalSettings: max_episodes and max_extensions must be >= 0, got {self.max_episodes} "
                             f"and {self.max_extensions}")
        if self.temperature < 0 or self.k_temperature < 0:
            raise ValueError("EvalSettings: temperatures must be >= 0")
        if self.maj_ks is not None:
            ks = _positive_ints(self.maj_ks, "maj_ks")
            if ks[-1] > self.n:
                raise ValueError(f"EvalSettings.maj_ks must be <= n={self.n}, got {list(ks)}")
            object.__setattr__(self, "maj_ks", ks)
        if self.extrapolate and not self.extend_texts:
            raise ValueError("EvalSettings.extend_texts must be non-empty when extrapolating")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["episode_rules"] = None if self.episode_rules is None else dataclasses.asdict(self.episode_rules)
        d["answer_stop"] = describe(self.answer_stop)  # rules by name: eval.json stays plain JSON
        return d


def required_cache_len(longest_prompt: int, suffix_tokens: int, settings: EvalSettings) -> int:
    """Cache slots a ``Sampler`` needs for ``evaluate_suite``: prompt blocks are padded to a bucketed length, then
    come the longest trace (or budget-forced trace), the forced-termination suffix and the answer."""
    from mrt_jax.sampling.layout import bucket

    longest_trace = max((settings.max_new_tokens, *settings.extrapolate))
    return bucket(longest_prompt) + longest_trace + suffix_tokens + settings.answer_tokens + 16


@dataclasses.dataclass
class EvalResult:
    summary: dict  # everything in the schema above
    traces: list[TraceRecord]  # one J-curve record per trace (experiments.evaluate writes them to traces.jsonl)

    def to_dict(self) -> dict:
        return dict(self.summary)


def _decode(sampler: Sampler):
    return sampler._decode_text if sampler.tokenizer is not None else None


def _episode_tokens(positions: list[list[int | None]], tokens: list[list[int]], row_pids: list[str]) -> list[float]:
    """Mean prefix length after each episode (a trace already complete there counts with its length)."""
    table = np.asarray([[len(t) if p is None else min(p, len(t)) for p in ps] for ps, t in zip(positions, tokens)],
                       np.float64)
    return [float(v) for v in problem_mean(table, row_pids)]


def evaluate_suite(sampler: Sampler, prompt_ids: Sequence[list[int]], answers: Sequence[str],
                   verify: Callable[[str, str], float] | Scorer, *, forced_suffix: str, settings: EvalSettings,
                   problem_ids: Sequence[str] | None = None) -> EvalResult:
    """Evaluate ``sampler``'s model on the prompts (token ids) against their gold answers (see module docstring).

    The sampler's ``max_cache_len`` must be at least ``required_cache_len(...)``; ``problem_ids`` name the problems
    in the per-trace records (default: their index).
    """
    if sampler.tokenizer is None:
        raise ValueError("evaluate_suite needs a Sampler with a tokenizer (answers are read from decoded text)")
    if len(prompt_ids) != len(answers) or not len(prompt_ids):
        raise ValueError(f"evaluate_suite: {len(prompt_ids)} prompts and {len(answers)} answers (need equal, >= 1)")
    s, t0 = settings, time.time()
    pids = [str(p) for p in (problem_ids if problem_ids is not None else range(len(prompt_ids)))]
    if len(set(pids)) != len(pids) or len(pids) != len(prompt_ids):
        raise ValueError(f"evaluate_suite: problem_ids must be {len(prompt_ids)} distinct ids (means are taken per "
                         "problem)")
    rows = [list(p) for p in prompt_ids for _ in range(s.n)]
    golds = [a for a in answers for _ in range(s.n)]
    row_pids = [p for p in pids for _ in range(s.n)]
    budgets = list(s.budgets)
    # Chunks of whole problems, each sampled and forked with the random streams of one call over every row (global
    # row ids; forced answers numbered over the sorted (row, position) pairs of every row), its cache freed before
    # the next chunk's: memory bounded by rows_per_call, the numbers independent of it.
    tokens, texts, finals, episodes = [], [], [], []
    at: dict[tuple[int, int], tuple[float, float]] = {}
    first_pair = answer_spent = trace_tokens = 0
    for lo, hi, out in sampled_chunks(sampler, rows, row_pids, s.rows_per_call, max_new_tokens=s.max_new_tokens,
                                      temperature=s.temperature, seed=s.seed):
        chunk_episodes = [] if s.episode_rules is None else [
            episode_positions(t, s.episode_rules, s.max_episodes, _decode(sampler)) for t in out.tokens]
        wanted = set()
        for i, toks in enumerate(out.tokens):
            wanted.update((i, b) for b in budgets if b < len(toks))
            wanted.update((i, p) for p in (chunk_episodes[i] if chunk_episodes else [])
                          if p is not None and p < len(toks))
        pairs = sorted(wanted)  # the chunk's run of the sorted pairs of every row
        mean, vote, spent = forced_points(
            sampler, out, pairs, golds[lo:hi], verify, suffix=forced_suffix, k=s.k, max_new_tokens=s.answer_tokens,
            temperature=s.k_temperature, seed=s.seed + 1, stop=s.answer_stop, first_pair=first_pair)
        at.update({(lo + i, p): (float(m), float(v)) for (i, p), m, v in zip(pairs, mean, vote)})
        first_pair += len(pairs)
        answer_spent += spent
        trace_tokens += int(np.sum(out.lengths))
        tokens += list(out.tokens)
        texts += list(out.texts)
        finals += [float(f) for f in rewards(verify, out.texts, golds[lo:hi])]
        episodes += chunk_episodes

    traces = []
    for i, toks in enumerate(tokens):
        final = (finals[i], finals[i])
        points = [at.get((i, b), final) for b in budgets]
        rec = TraceRecord(row_pids[i], str(i % s.n), [float(b) for b in budgets], [m for m, _ in points],
                          [v for _, v in points], final_answer=extract_answer(texts[i]),
                          final_correct=finals[i], length=len(toks))
        if episodes:
            rec.episodes = {e: (at[(i, p)][0] if p is not None and p < len(toks) else finals[i])
                            for e, p in enumerate(episodes[i])}
        traces.append(rec)

    summary = summarize(traces, budgets=budgets, targets=s.targets, ks=s.maj_ks or default_ks(s.n))
    if episodes:
        summary["episode_tokens"] = _episode_tokens(episodes, tokens, row_pids)
    extra_tokens = 0
    if s.extrapolate:
        curve, counts = extrapolated_pass(
            sampler, rows, golds, row_pids, verify, budgets=s.extrapolate, suffix=forced_suffix,
            extend_texts=s.extend_texts, max_extensions=s.max_extensions, temperature=s.temperature, k=s.k,
            k_temperature=s.k_temperature, answer_tokens=s.answer_tokens, answer_stop=s.answer_stop, seed=s.seed + 2,
            rows_per_call=s.rows_per_call)
        summary["extrapolation"] = {"budgets": list(s.extrapolate), "pass_at_budget": curve}
        extra_tokens = counts["trace_tokens"] + counts["forced_answer_tokens"]
    summary["cost"] = {"trace_tokens": trace_tokens, "forced_answer_tokens": answer_spent,
                       "extrapolation_tokens": extra_tokens, "seconds": round(time.time() - t0, 2)}
    summary["settings"] = s.to_dict()
    return EvalResult(summary, traces)
