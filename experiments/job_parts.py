"""The job's pieces built from its config, shared by the colocated job (``experiments.colocated``) and the
disaggregated roles (``experiments.disagg_learner`` / ``disagg_sampler``), so both compute the same rollouts and
evaluations: ``build_job`` (model, tokenizer, problems, rollout settings, episode boundaries), ``make_evaluate``
(the periodic held-out evaluation) and ``finish_run`` (final evaluation, summary, report).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from experiments.job_setup import job_problems, prompt_budget, reward_kind
from mrt_jax import run_files
from mrt_jax.errors import UserError
from mrt_jax.trainer import RolloutSettings, Task, estimator_name

log = logging.getLogger("mrt_math")


@dataclasses.dataclass
class JobParts:
    model: Any
    tokenizer: Any
    fmt: Any
    info: dict
    task: Any  # the procedural task, or None for a --dataset
    problems: Any  # experiments.job_setup.JobProblems
    eval_records: list[dict]
    max_prompt: int  # prompt budget in tokens (a longer training prompt is refused or skipped: --on_bad_row)
    cache_len: int  # the sampler's KV cache length
    settings: RolloutSettings
    boundaries: Callable[[list[int]], list[int]]
    scorer: Any  # mrt_jax.rewards.Scorer: rollouts, forced answers and held-out evaluation; close() at the end
    on_bad_row: str = "raise"

    @property
    def rollout_task(self) -> Task:
        return Task(tokenizer=self.tokenizer, scorer=self.scorer, boundaries=self.boundaries)

    def prompts_of(self, batch_records: dict) -> tuple[list[str], list[str]]:
        """A batch of records -> (prompt texts, gold answers)."""
        return [self.fmt.build_prompt(q) for q in batch_records["question"]], list(batch_records["answer"])

    def too_long(self, record: dict) -> str | None:
        """Why ``record``'s prompt cannot be trained on (over the budget), or None."""
        n = len(self.tokenizer.encode(self.fmt.build_prompt(record["question"])))
        return None if n <= self.max_prompt else f"prompt of {n} tokens exceeds --max_prompt_tokens={self.max_prompt}"

    def prompt_stream(self, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1):
        """The training prompts as a resumable stream (``mrt_jax.data.training_data.PromptStream``). A procedural
        task's budget is its longest prompt, so only a dataset's prompts are checked against it."""
        from mrt_jax.data.training_data import PromptStream

        return PromptStream(self.problems.train, batch_size=batch_size, seed=seed, process_index=process_index,
                            process_count=process_count, transform=self.problems.transform,
                            fits=None if self.task is not None else self.too_long, on_bad_row=self.on_bad_row)

    def close(self) -> None:
        """Stop the scorer's worker processes."""
        self.scorer.close()


def make_scorer(cfg, task):
    """math-verify in a time-limited worker pool (``--reward`` math, a dataset's default), or the procedural
    task's exact verifier."""
    from mrt_jax.rewards import ExactScorer, MathScorer

    if reward_kind(cfg) == "math":
        return MathScorer(num_workers=cfg.reward_workers, timeout_s=cfg.reward_timeout)
    return ExactScorer(task.verify)


def rollout_settings(cfg, max_prompt: int, fmt) -> RolloutSettings:
    """The flags that decide what a step samples and how it is scored; the forced answers follow the prompt
    format ``fmt`` (its suffix and stop rule, its budget unless ``--meta_max_tokens``)."""
    from experiments.setup_model import answer_budget

    return RolloutSettings(
        estimator=estimator_name(cfg.algo, cfg.mrt_form), group_size=cfg.group_size, max_prompt_tokens=max_prompt,
        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, truncation=cfg.truncation,
        alpha=cfg.alpha, meta_samples=cfg.meta_samples, meta_max_tokens=answer_budget(cfg, fmt),
        meta_temperature=cfg.meta_temperature, max_episodes=cfg.max_episodes,
        forced_suffix=fmt.forced_termination_suffix, answer_stop=tuple(fmt.answer_stop),
        length_penalty=cfg.length_penalty, overlong_buffer=cfg.overlong_buffer, overlong_factor=cfg.overlong_factor,
        dynamic_sampling=cfg.dynamic_sampling, dynamic_rounds=cfg.dynamic_rounds)


def build_job(cfg, mesh) -> JobParts:
    """Model, tokenizer, train/eval problems and rollout settings for ``cfg``; deterministic in ``cfg.seed``.
    A model that cannot be loaded (a missing path or file) is a UserError: every job role reports it in one line."""
    from experiments.setup_model import answer_budget, build

    try:
        model, tokenizer, fmt, info = build(cfg, mesh)
    except FileNotFoundError as e:
        raise UserError(str(e)) from e
    problems = job_problems(cfg)
    prompt_len = lambda q: len(tokenizer.encode(fmt.build_prompt(q)))  # noqa: E731
    measured = problems.eval_records + (problems.train if problems.task is not None else [])
    max_prompt = prompt_budget(cfg, prompt_len, measured)
    cache_len = max_prompt + cfg.max_new_tokens + 64 + answer_budget(cfg, fmt)
    parts = JobParts(model=model, tokenizer=tokenizer, fmt=fmt, info=info, task=problems.task, problems=problems,
                     eval_records=problems.eval_records, max_prompt=max_prompt, cache_len=cache_len,
                     settings=rollout_settings(cfg, max_prompt, fmt),
                     boundaries=make_boundaries(cfg, tokenizer, fmt), scorer=make_scorer(cfg, problems.task),
                     on_bad_row=cfg.on_bad_row)
    parts.eval_records = fitting_eval_records(parts)
    return parts


def fitting_eval_records(parts: JobParts) -> list[dict]:
    """The held-out records whose prompts fit the budget: one that does not is an error naming it, or with
    ``--on_bad_row=skip`` left out (logged)."""
    kept = []
    for r in parts.eval_records:
        why = parts.too_long(r)
        if why is None:
            kept.append(r)
        elif parts.on_bad_row == "raise":
            raise UserError(f"held-out problem {r.get('where', r.get('uid', '?'))}: {why} (--on_bad_row=skip "
                            "leaves it out)")
        else:
            log.warning("held-out problem %s left out: %s", r.get("where", "?"), why)
    if not kept:
        raise UserError(f"no held-out problem fits the prompt budget of {parts.max_prompt} tokens; raise "
                        "--max_prompt_tokens")
    return kept


def make_learner(cfg, model_cfg, mesh, params) -> tuple[Any, Callable, Any]:
    """The job's learner from its initial ``params``: (train state, ``learn(state, rows)`` with the reference
    model's logprobs when KL is on, the run's checkpointer)."""
    import jax

    from experiments.job_setup import learner_config
    from mrt_jax.checkpointing import Checkpointer
    from mrt_jax.learner import create_train_state, make_train_step
    from mrt_jax.trainer import make_learn

    lcfg = learner_config(cfg)
    state = create_train_state(model_cfg, lcfg, mesh, params=params)
    ref_params = jax.tree.map(lambda x: x.copy(), state.params) if cfg.kl_coef > 0 else None
    learn = make_learn(lcfg, make_train_step(lcfg, model_cfg, mesh), ref_params, mesh)
    ckpt = Checkpointer(run_files.run_path(cfg.run_dir, "checkpoints"), save_every=cfg.save_every,
                        keep_last=cfg.keep_last)
    return state, learn, ckpt


def make_boundaries(cfg, tokenizer, fmt) -> Callable[[list[int]], list[int]]:
    """Episode starts in completion tokens, by the grid or by the format's continuation markers."""
    from mrt_jax.sampling.episodes import EpisodeRules, char_to_token, text_boundaries

    if cfg.episode_rule == "grid":
        rules = EpisodeRules.grid_of(cfg.episode_grid)
    else:
        rules = EpisodeRules.r1(markers=tuple(fmt.continuation_cues), min_gap=1)

    def boundaries(tokens: list[int]) -> list[int]:
        # Marker boundaries move before the blank line, so a forced termination reads prefix + suffix exactly as
        # the prompt format lays it out.
        if rules.mode == "grid":
            return list(range(rules.grid, len(tokens), rules.grid))
        decode = tokenizer.decode
        chars = [max(0, c - len(rules.separator)) for c in text_boundaries(decode(tokens), rules)]
        return sorted({b for b in char_to_token(tokens, chars, decode) if 0 < b < len(tokens)})

    return boundaries


def held_out_eval(cfg, sampler, tokenizer, fmt, eval_records, scorer, step: int) -> dict:
    """Budgeted accuracy on the held-out problems with the sampler's current weights: ``eval_samples`` traces per
    problem at ``eval_temperature`` (0: greedy), forced answers at 6 budgets (``mrt_jax.evaluation``) as the
    prompt format ends them, as long as the meta-prover's. Draws from the ``eval`` stream at ``step``."""
    from experiments.setup_model import answer_budget
    from mrt_jax.evaluation import budget_grid, evaluate_budgeted
    from mrt_jax.random_streams import stream_key

    prompts = [tokenizer.encode(fmt.build_prompt(r["question"])) for r in eval_records]
    res = evaluate_budgeted(sampler, prompts, [r["answer"] for r in eval_records], scorer,
                            forced_suffix=fmt.forced_termination_suffix, max_new_tokens=cfg.max_new_tokens,
                            budgets=budget_grid(cfg.max_new_tokens, 6), n=cfg.eval_samples,
                            temperature=cfg.eval_temperature, answer_tokens=answer_budget(cfg, fmt),
                            answer_stop=fmt.answer_stop, seed=stream_key(cfg.seed, "eval", step))
    return {**res.to_dict(), "samples_per_problem": cfg.eval_samples, "temperature": cfg.eval_temperature}


def make_evaluate(cfg, sampler, parts: JobParts, *, write: bool = True) -> Callable[[str, int], dict]:
    """``evaluate(tag, step)``: :func:`held_out_eval`; returns it and (``write``: the process that writes files)
    stores it as ``run_dir/eval_<tag>.json``."""

    def evaluate(tag: str, step: int) -> dict:
        out = held_out_eval(cfg, sampler, parts.tokenizer, parts.fmt, parts.eval_records, parts.scorer, step)
        if not write:
            return out
        run_files.write_json(run_files.run_path(cfg.run_dir, f"eval_{tag}.json"), out, indent=1)
        return out

    return evaluate


def finish_run(cfg, *, logger, before: dict, last_eval: dict, evaluate: Callable[[str, int], dict], info: dict,
               steps_done: int, t_start: float, write: bool = True, **extra) -> dict:
    """Close the metrics log, evaluate "after" unless the last step did, and (``write``) store result.json and the
    report in the run dir and print the before/after table. Returns the result."""
    from experiments.report import write_report

    summary = logger.close()
    after = last_eval or evaluate("after", steps_done)
    result = dict(config=cfg.to_dict(), info=info, before=before, after=after, summary=summary,
                  steps_done=steps_done, wall_seconds=round(time.time() - t_start, 1), **extra)
    if write:
        write_report(cfg.run_dir, result)
        print_result(result)
    return result


def read_eval(cfg, tag: str) -> dict:
    """A stored evaluation (``run_dir/eval_<tag>.json``), or {} when there is none."""
    try:
        return run_files.read_json(run_files.run_path(cfg.run_dir, f"eval_{tag}.json"))
    except FileNotFoundError:
        return {}


def print_result(result: dict) -> None:
    b, a = result["before"], result["after"]
    print(f"\n{'':24s}{'before':>10s}{'after':>10s}")
    for key in ("accuracy", "regret", "mean_length"):
        if key in b and key in a:
            print(f"{key:24s}{b[key]:10.3f}{a[key]:10.3f}")
    print(f"run dir: {result['config']['run_dir']}  ({result['wall_seconds']} s)")
