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

from experiments.job_setup import problem_source
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
    task: Any
    train_records: list[dict]
    eval_records: list[dict]
    max_prompt: int  # prompt budget in tokens: every prompt of the job fits
    cache_len: int  # the sampler's KV cache length
    settings: RolloutSettings
    boundaries: Callable[[list[int]], list[int]]

    @property
    def verify(self) -> Callable[[str, str], float]:
        return self.task.verify

    @property
    def rollout_task(self) -> Task:
        return Task(tokenizer=self.tokenizer, verify=self.task.verify, boundaries=self.boundaries)

    def prompts_of(self, batch_records: dict) -> tuple[list[str], list[str]]:
        """A data-pipeline batch -> (prompt texts, gold answers)."""
        return [self.fmt.build_prompt(q) for q in batch_records["question"]], list(batch_records["answer"])


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
    task, train_records = problem_source(cfg, "train", 4096)
    _, eval_records = problem_source(cfg, "eval", cfg.eval_problems)
    longest = max(len(tokenizer.encode(fmt.build_prompt(r["question"]))) for r in train_records + eval_records)
    max_prompt = -(-longest // 32) * 32  # every prompt the job will see fits; rounded for stable shapes
    cache_len = max_prompt + cfg.max_new_tokens + 64 + answer_budget(cfg, fmt)
    return JobParts(model=model, tokenizer=tokenizer, fmt=fmt, info=info, task=task, train_records=train_records,
                    eval_records=eval_records, max_prompt=max_prompt, cache_len=cache_len,
                    settings=rollout_settings(cfg, max_prompt, fmt),
                    boundaries=make_boundaries(cfg, tokenizer, fmt))


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


def held_out_eval(cfg, sampler, tokenizer, fmt, eval_records, verify, step: int) -> dict:
    """Budgeted accuracy on the held-out problems with the sampler's current weights: ``eval_samples`` traces per
    problem at ``eval_temperature`` (0: greedy), forced answers at 6 budgets (``mrt_jax.evaluation``) as the
    prompt format ends them, as long as the meta-prover's. Draws from the ``eval`` stream at ``step``."""
    from experiments.setup_model import answer_budget
    from mrt_jax.evaluation import budget_grid, evaluate_budgeted
    from mrt_jax.random_streams import stream_key

    prompts = [tokenizer.encode(fmt.build_prompt(r["question"])) for r in eval_records]
    res = evaluate_budgeted(sampler, prompts, [r["answer"] for r in eval_records], verify,
                            forced_suffix=fmt.forced_termination_suffix, max_new_tokens=cfg.max_new_tokens,
                            budgets=budget_grid(cfg.max_new_tokens, 6), n=cfg.eval_samples,
                            temperature=cfg.eval_temperature, answer_tokens=answer_budget(cfg, fmt),
                            answer_stop=fmt.answer_stop, seed=stream_key(cfg.seed, "eval", step))
    return {**res.to_dict(), "samples_per_problem": cfg.eval_samples, "temperature": cfg.eval_temperature}


def make_evaluate(cfg, sampler, parts: JobParts, *, write: bool = True) -> Callable[[str, int], dict]:
    """``evaluate(tag, step)``: :func:`held_out_eval`; returns it and (``write``: the process that writes files)
    stores it as ``run_dir/eval_<tag>.json``."""

    def evaluate(tag: str, step: int) -> dict:
        out = held_out_eval(cfg, sampler, parts.tokenizer, parts.fmt, parts.eval_records, parts.verify, step)
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
