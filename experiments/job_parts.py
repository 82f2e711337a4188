"""Pieces of the training job that the colocated job (``experiments.mrt_math``) and the disaggregated roles
(``experiments.disaggregated``) share, so both compute the same rollouts, updates and evaluations.

``build_job`` turns a config into the model, tokenizer, problems and rollout settings; ``rollout_seed`` is the
seed of one rollout batch; ``copy_into_sampler`` is the colocated weight sync; ``make_evaluate`` the periodic
evaluation; ``learn`` one learner update on a rollout batch; ``end_step`` and ``finish_run`` the end of every
step (evaluate, log, checkpoint, stop on request) and of the run (final evaluation, summary, report).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

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
    settings: Any  # experiments.rollout.RolloutSettings
    boundaries: Callable[[list[int]], list[int]]

    @property
    def verify(self) -> Callable[[str, str], float]:
        return self.task.verify

    def prompts_of(self, batch_records: dict) -> tuple[list[str], list[str]]:
        """A data-pipeline batch -> (prompt texts, gold answers)."""
        return [self.fmt.build_prompt(q) for q in batch_records["question"]], list(batch_records["answer"])


def build_job(cfg, mesh) -> JobParts:
    """Model, tokenizer, train/eval problems and rollout settings for ``cfg``; deterministic in ``cfg.seed``.
    Raises FileNotFoundError for a missing ``--model`` path."""
    from experiments import rollout as rollout_lib
    from experiments.mrt_math import _problem_source
    from experiments.setup_model import build

    model, tokenizer, fmt, info = build(cfg, mesh)
    task, train_records = _problem_source(cfg, "train", 4096)
    _, eval_records = _problem_source(cfg, "eval", cfg.eval_problems)
    longest = max(len(tokenizer.encode(fmt.build_prompt(r["question"]))) for r in train_records + eval_records)
    max_prompt = -(-longest // 32) * 32  # every prompt the job will see fits; rounded for stable shapes
    cache_len = max_prompt + cfg.max_new_tokens + 64 + cfg.meta_max_tokens
    settings = rollout_lib.RolloutSettings(
        algo=cfg.algo, group_size=cfg.group_size, max_prompt_tokens=max_prompt, max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature, top_p=cfg.top_p, truncation=cfg.truncation, alpha=cfg.alpha,
        meta_samples=cfg.meta_samples, meta_max_tokens=cfg.meta_max_tokens, meta_temperature=cfg.meta_temperature,
        max_episodes=cfg.max_episodes, forced_suffix=fmt.forced_termination_suffix)
    return JobParts(model=model, tokenizer=tokenizer, fmt=fmt, info=info, task=task, train_records=train_records,
                    eval_records=eval_records, max_prompt=max_prompt, cache_len=cache_len, settings=settings,
                    boundaries=make_boundaries(cfg, tokenizer, fmt))


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


def rollout_seed(cfg, batch_index: int, sampler_id: int = 0) -> int:
    """Seed of rollout batch ``batch_index`` (1-based). Sampler 0 uses the colocated job's seeds; other samplers
    are offset so their streams differ (they also draw other prompts: the pipeline is sharded by sampler)."""
    return cfg.seed * 1_000_003 + batch_index + sampler_id * 100_003


def sampler_param_target(sampler) -> Any:
    """The sampler's params as a pure-dict tree of arrays (their shapes, dtypes and shardings are the target)."""
    from flax import nnx

    return nnx.to_pure_dict(sampler.state)


def copy_into_sampler(sampler, params: Any) -> None:
    """Colocated weight sync: the learner's params into the sampler's own buffers and layout, device to device
    (the learner's buffers are donated to the next train step, so the sampler must never alias them)."""
    from flax import nnx

    from mrt_jax.weight_sync import reshard

    sampler_state = sampler.state
    nnx.replace_by_pure_dict(sampler_state, reshard(params, nnx.to_pure_dict(sampler_state)))
    sampler.update_params(sampler_state)


def load_into_sampler(sampler, params: Any) -> None:
    """Disaggregated weight sync: params restored from a published step (already in the sampler's layout)."""
    from flax import nnx

    sampler_state = sampler.state
    nnx.replace_by_pure_dict(sampler_state, params)
    sampler.update_params(sampler_state)


def held_out_eval(cfg, sampler, tokenizer, fmt, eval_records, verify) -> dict:
    """Budgeted accuracy on the held-out problems with the sampler's current weights: ``eval_samples`` traces per
    problem at ``eval_temperature`` (0: greedy), forced answers at 6 budgets (``mrt_jax.evaluation``)."""
    from mrt_jax.evaluation import budget_grid, evaluate_budgeted

    prompts = [tokenizer.encode(fmt.build_prompt(r["question"])) for r in eval_records]
    res = evaluate_budgeted(sampler, prompts, [r["answer"] for r in eval_records], verify,
                            forced_suffix=fmt.forced_termination_suffix, max_new_tokens=cfg.max_new_tokens,
                            budgets=budget_grid(cfg.max_new_tokens, 6), n=cfg.eval_samples,
                            temperature=cfg.eval_temperature, answer_tokens=cfg.meta_max_tokens, seed=cfg.seed + 7)
    return {**res.to_dict(), "samples_per_problem": cfg.eval_samples, "temperature": cfg.eval_temperature}


def make_evaluate(cfg, sampler, parts: JobParts, *, write: bool = True) -> Callable[[str], dict]:
    """``evaluate(tag)``: :func:`held_out_eval`; returns it and (``write``: the process that writes files) stores
    it as ``run_dir/eval_<tag>.json``."""

    def evaluate(tag: str) -> dict:
        out = held_out_eval(cfg, sampler, parts.tokenizer, parts.fmt, parts.eval_records, parts.verify)
        if not write:
            return out
        with open(os.path.join(cfg.run_dir, f"eval_{tag}.json"), "w") as f:
            json.dump(out, f, indent=1)
        return out

    return evaluate


def is_eval_step(cfg, step: int) -> bool:
    return step % cfg.eval_every == 0 or step == cfg.steps


def learn(cfg, lcfg, train_step, state, batch_np: dict, ref_params, mesh=None) -> tuple[Any, dict]:
    """One learner update on a rollout batch (numpy arrays, one process's whole batch) -> (new state, metrics
    as device scalars). With a mesh the rows go straight to the learner's batch layout."""
    import jax
    import jax.numpy as jnp

    from mrt_jax.learner.step import batch_sharding

    if mesh is None:
        batch = {k: jnp.asarray(v) for k, v in batch_np.items()}
    else:
        batch = {k: jax.device_put(v, batch_sharding(mesh, v.shape)) for k, v in batch_np.items()}
    if cfg.kl_coef > 0:
        from mrt_jax.learner import reference_logprobs

        batch = reference_logprobs(lcfg, state.graphdef, ref_params, batch)
    return train_step(state, batch)


def end_step(cfg, step: int, state, metrics: dict, *, evaluate: Callable[[str], dict], last_eval: dict, timer, logger,
             ckpt, items: dict, guard) -> tuple[dict, bool]:
    """The end of training step ``step``: evaluate when due (timed as ``eval``), log the metrics with the step's
    timings, save a checkpoint (forced on the last step and when a stop was requested) -> (the latest evaluation,
    whether to stop). ``guard.should_stop`` is polled once: in a multi-process run it is a collective."""
    if is_eval_step(cfg, step):
        with timer("eval"):
            last_eval = evaluate(f"step{step}")
        metrics.update({f"eval_{k}": v for k, v in last_eval.items() if isinstance(v, float)})
    logger.log(step, {**metrics, **timer.pop()})
    stop = guard.should_stop()
    ckpt.maybe_save(step, state, items, metrics={"eval_accuracy": last_eval.get("accuracy", 0.0)},
                    force=stop or step == cfg.steps)
    if stop:
        ckpt.wait()
        log.warning("stop requested: saved step %d, exiting", step)
    return last_eval, stop


def finish_run(cfg, *, logger, before: dict, last_eval: dict, evaluate: Callable[[str], dict], info: dict,
               steps_done: int, t_start: float, write: bool = True, **extra) -> dict:
    """Close the metrics log, evaluate "after" unless the last step did, and (``write``) store result.json and the
    report in the run dir and print the before/after table. Returns the result."""
    from experiments.report import write_report

    summary = logger.close()
    after = last_eval or evaluate("after")
    result = dict(config=cfg.to_dict(), info=info, before=before, after=after, summary=summary,
                  steps_done=steps_done, wall_seconds=round(time.time() - t_start, 1), **extra)
    if write:
        write_report(cfg.run_dir, result)
        print_result(result)
    return result


def read_eval(cfg, tag: str) -> dict:
    """A stored evaluation (``run_dir/eval_<tag>.json``), or {} when there is none."""
    try:
        with open(os.path.join(cfg.run_dir, f"eval_{tag}.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def print_result(result: dict) -> None:
    b, a = result["before"], result["after"]
    print(f"\n{'':24s}{'before':>10s}{'after':>10s}")
    for key in ("accuracy", "regret", "mean_length"):
        if key in b and key in a:
            print(f"{key:24s}{b[key]:10.3f}{a[key]:10.3f}")
    print(f"run dir: {result['config']['run_dir']}  ({result['wall_seconds']} s)")
