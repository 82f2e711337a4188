"""The training job: ``python -m experiments.mrt_math`` (MRT, GRPO or MRT-STaR on a procedural math task).

One step: prompts -> rollouts -> episode boundaries -> meta-prover forks (MRT) -> rewards -> advantages -> learner
update -> weight sync to the sampler -> metrics -> periodic evaluation -> checkpoint. With no flags it runs the
embedded default (a small warm-started model on the countdown task, offline, a few minutes on a laptop CPU).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from experiments.config import ExperimentConfig, parse_args

log = logging.getLogger("mrt_math")

# Fields that may differ between a run and its resumption (they do not change what is computed).
RESUMABLE_FIELDS = ("steps", "resume", "run_dir", "eval_every", "save_every", "keep_last", "compile_only")


class UserError(Exception):
    """A mistake in flags, paths or data: reported as one line on stderr, exit code 2, no traceback."""


def _mesh(cfg: ExperimentConfig):
    import jax

    from mrt_jax.sharding import make_mesh

    if cfg.tpu == "cpu":
        return None
    if cfg.tpu == "gpu":
        n = jax.device_count()
        return None if n == 1 else make_mesh(data=1, fsdp=n, tensor=1)
    raise UserError(f"--tpu={cfg.tpu!r}: training on a TPU slice needs a TPU VM (`python -m launch.tpu_vm`); on this host use --compile_only to compile for it. TPU slices are launched with `python -m launch.tpu_vm` and planned by "
                    f"mrt_jax.distributed; this job runs with --tpu=cpu or --tpu=gpu here")


def _prepare_run_dir(cfg: ExperimentConfig) -> bool:
    """Create the run dir; refuse a dir whose stored config differs. Returns whether to resume."""
    from mrt_jax.checkpointing import ConfigMismatchError, check_config_compatible

    os.makedirs(cfg.run_dir, exist_ok=True)
    path = os.path.join(cfg.run_dir, "config.json")
    has_ckpt = os.path.isdir(os.path.join(cfg.run_dir, "checkpoints")) and any(
        n.isdigit() for n in os.listdir(os.path.join(cfg.run_dir, "checkpoints")))
    if os.path.exists(path) and has_ckpt and cfg.resume:
        with open(path) as f:
            stored = json.load(f)
        try:
            check_config_compatible(stored, cfg.to_dict(), ignore=RESUMABLE_FIELDS)
        except ConfigMismatchError as e:
            raise UserError(f"{cfg.run_dir} belongs to a different config, refusing to resume: {e}; "
                            f"use another --run_dir or --no_resume") from e
    with open(path, "w") as f:
        json.dump(cfg.to_dict(), f, indent=1, sort_keys=True)
    return has_ckpt and cfg.resume


def _problem_source(cfg: ExperimentConfig, split: str, count: int):
    from mrt_jax.data import get_task

    task = get_task(cfg.task)
    seed = cfg.seed if split == "train" else 10_000 + cfg.seed  # disjoint streams for train and eval
    return task, [p.to_record() for p in task.problems(count, seed=seed, difficulty=cfg.difficulty)]


def _learner_config(cfg: ExperimentConfig):
    from mrt_jax.learner import LearnerConfig

    return LearnerConfig(
        lr=cfg.learning_rate, warmup_steps=int(cfg.warmup_frac * cfg.steps * cfg.inner_epochs),
        total_steps=cfg.steps * cfg.inner_epochs, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        clip_eps_low=cfg.clip_low, clip_eps_high=cfg.clip_high, kl_coef=cfg.kl_coef, kl_estimator=cfg.kl_estimator,
        entropy_coef=cfg.entropy_coef, aggregation=cfg.loss_aggregation, micro_batches=cfg.micro_batches,
        inner_epochs=cfg.inner_epochs, seed=cfg.seed,
        norm_len=cfg.max_new_tokens if cfg.loss_aggregation == "seq_sum_norm" else None)  # Dr.GRPO's constant


def run(cfg: ExperimentConfig) -> dict:
    import jax
    import numpy as np
    from flax import nnx

    from experiments import rollout as rollout_lib
    from experiments.report import write_report
    from experiments.setup_model import build
    from mrt_jax.checkpointing import Checkpointer, PreemptionGuard
    from mrt_jax.data import PipelineConfig, prompt_iterator
    from mrt_jax.evaluation import budget_grid, evaluate_budgeted
    from mrt_jax.learner import create_train_state, make_train_step
    from mrt_jax.metrics import MetricsLogger, StepTimer
    from mrt_jax.sampling import Sampler
    from mrt_jax.weight_sync import reshard
    from mrt_jax.sampling.episodes import EpisodeRules, char_to_token, text_boundaries

    t_start = time.time()
    if cfg.compile_only:
        from experiments.compile_only import run_compile_only

        try:
            run_compile_only(cfg, _learner_config(cfg), seq=cfg.max_new_tokens + 256)
        except ValueError as e:
            raise UserError(str(e)) from e
        return {}
    mesh = _mesh(cfg)
    resume = _prepare_run_dir(cfg)
    try:
        model, tokenizer, fmt, info = build(cfg, mesh)
    except FileNotFoundError as e:
        raise UserError(str(e)) from e
    task, train_records = _problem_source(cfg, "train", 4096)
    _, eval_records = _problem_source(cfg, "eval", cfg.eval_problems)
    verify = task.verify

    lcfg = _learner_config(cfg)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    state = create_train_state(model.cfg, lcfg, mesh, params=params)
    ref_params = jax.tree.map(lambda x: x.copy(), state.params) if cfg.kl_coef > 0 else None
    train_step = make_train_step(lcfg, model.cfg, mesh)

    longest = max(len(tokenizer.encode(fmt.build_prompt(r["question"]))) for r in train_records + eval_records)
    max_prompt = -(-longest // 32) * 32  # every prompt the job will see fits; rounded for stable shapes
    cache_len = max_prompt + cfg.max_new_tokens + 64 + cfg.meta_max_tokens
    sampler = Sampler(model, tokenizer, mesh=mesh, max_cache_len=cache_len)
    suffix = fmt.forced_termination_suffix
    suffix_ids = tokenizer.encode(suffix)
    if cfg.episode_rule == "grid":
        rules = EpisodeRules.grid_of(cfg.episode_grid)
    else:
        rules = EpisodeRules.r1(markers=tuple(fmt.continuation_cues), min_gap=1)

    def boundaries(tokens: list[int]) -> list[int]:
        """Episode starts in completion tokens. Marker boundaries are moved before the blank line, so a forced
        termination reads prefix + suffix exactly as the prompt format lays it out."""
        if rules.mode == "grid":
            return list(range(rules.grid, len(tokens), rules.grid))
        decode = tokenizer.decode
        chars = [max(0, c - len(rules.separator)) for c in text_boundaries(decode(tokens), rules)]
        return sorted({b for b in char_to_token(tokens, chars, decode) if 0 < b < len(tokens)})

    settings = rollout_lib.RolloutSettings(
        algo=cfg.algo, group_size=cfg.group_size, max_prompt_tokens=max_prompt, max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature, top_p=cfg.top_p, truncation=cfg.truncation, alpha=cfg.alpha,
        meta_samples=cfg.meta_samples, meta_max_tokens=cfg.meta_max_tokens, meta_temperature=cfg.meta_temperature,
        max_episodes=cfg.max_episodes, forced_suffix=suffix)

    data = prompt_iterator(train_records, PipelineConfig(batch_size=cfg.prompts_per_step, seed=cfg.seed))
    ckpt = Checkpointer(os.path.join(cfg.run_dir, "checkpoints"), save_every=cfg.save_every, keep_last=cfg.keep_last)
    start = 0
    if resume:
        state, items, start = ckpt.restore(state, mesh=mesh)
        data.set_state(items["data"])
        log.info("resumed from step %d", start)

    def sync_weights():
        # Colocated weight sync, device to device, into the sampler's own buffers and layout (the learner's
        # buffers are donated to the next train step, so the sampler must never alias them).
        sampler_state = sampler.state
        nnx.replace_by_pure_dict(sampler_state, reshard(state.params, nnx.to_pure_dict(sampler_state)))
        sampler.update_params(sampler_state)

    def evaluate(tag: str) -> dict:
        prompts = [tokenizer.encode(fmt.build_prompt(r["question"])) for r in eval_records]
        res = evaluate_budgeted(sampler, prompts, [r["answer"] for r in eval_records], verify, forced_suffix=suffix,
                                max_new_tokens=cfg.max_new_tokens, budgets=budget_grid(cfg.max_new_tokens, 6),
                                answer_tokens=cfg.meta_max_tokens, seed=cfg.seed + 7)
        out = res.to_dict()
        with open(os.path.join(cfg.run_dir, f"eval_{tag}.json"), "w") as f:
            json.dump(out, f, indent=1)
        return out

    sync_weights()
    before = evaluate("before") if start == 0 else _read_json(os.path.join(cfg.run_dir, "eval_before.json"))
    logger = MetricsLogger(cfg.run_dir, cfg.steps, start_step=start)
    timer = StepTimer()
    last_eval = {}
    with PreemptionGuard() as guard:
        step = start
        while step < cfg.steps:
            batch_records = next(data)
            step += 1
            seed = cfg.seed * 1_000_003 + step
            with timer("sample"):
                ro = rollout_lib.collect(sampler, tokenizer, [fmt.build_prompt(q) for q in batch_records["question"]],
                                         list(batch_records["answer"]), verify, boundaries, settings, seed)
            with timer("learn") as sec:
                batch = {k: jax.numpy.asarray(v) for k, v in ro.batch.items()}
                if cfg.kl_coef > 0:
                    from mrt_jax.learner import reference_logprobs

                    batch = reference_logprobs(lcfg, state.graphdef, ref_params, batch)
                state, m = train_step(state, batch)
                sec.block(m)
            with timer("sync"):
                sync_weights()
            metrics = {**ro.metrics, **{k: float(v) for k, v in m.items()}, **timer.pop()}
            if step % cfg.eval_every == 0 or step == cfg.steps:
                last_eval = evaluate(f"step{step}")
                metrics.update({f"eval_{k}": v for k, v in last_eval.items() if isinstance(v, float)})
            logger.log(step, metrics)
            ckpt.maybe_save(step, state, {"data": data.get_state(), "step": step},
                            metrics={"eval_accuracy": last_eval.get("accuracy", 0.0)},
                            force=guard.should_stop() or step == cfg.steps)
            if guard.should_stop():
                ckpt.wait()
                log.warning("stop requested: saved step %d, exiting", step)
                break
    ckpt.wait()
    ckpt.close()
    summary = logger.close()
    after = last_eval or evaluate("after")
    result = dict(config=cfg.to_dict(), info=info, before=before, after=after, summary=summary,
                  steps_done=step, wall_seconds=round(time.time() - t_start, 1))
    write_report(cfg.run_dir, result)
    _print_result(result)
    return result


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def _print_result(result: dict) -> None:
    b, a = result["before"], result["after"]
    print(f"\n{'':24s}{'before':>10s}{'after':>10s}")
    for key in ("accuracy", "regret", "mean_length"):
        if key in b and key in a:
            print(f"{key:24s}{b[key]:10.3f}{a[key]:10.3f}")
    print(f"run dir: {result['config']['run_dir']}  ({result['wall_seconds']} s)")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax is chatty at INFO
    cfg = parse_args(argv)
    if cfg.tpu == "cpu" or cfg.compile_only:  # before jax is imported: a CPU run (or AOT) probes no accelerator
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from mrt_jax.checkpointing import ConfigMismatchError

    try:
        run(cfg)
    except (UserError, ConfigMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
