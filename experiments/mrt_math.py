"""The training job: ``python -m experiments.mrt_math`` (MRT, GRPO or MRT-STaR on a procedural math task).

One step: prompts -> rollouts -> episode boundaries -> meta-prover forks (MRT) -> rewards -> advantages -> learner
update -> weight sync to the sampler -> metrics -> periodic evaluation -> checkpoint. With no flags it runs the
embedded default (a small model warm-started on one-operation arithmetic, offline, minutes on a laptop CPU).

Several processes (``--coordinator/--num_processes/--process_id`` on CPU/GPU hosts, automatic on TPU VMs): the
learner shards over all devices of all processes; each process samples its contiguous share of every step's
prompts with a full weight replica on its own devices; per-row results are gathered so advantages and metrics are
those of the whole batch; checkpoints are written by all processes together; process 0 alone logs and writes files.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from experiments.config import ExperimentConfig, parse_args
from mrt_jax.errors import UserError  # one line on stderr, exit code 2, no traceback

log = logging.getLogger("mrt_math")

# Fields that may differ between a run and its resumption (they do not change what is computed).
# The process layout is one of them: the data order, random streams and row placement do not depend on it.
RESUMABLE_FIELDS = ("steps", "resume", "run_dir", "eval_every", "save_every", "keep_last", "compile_only",
                    "coordinator", "num_processes", "process_id")


def _mesh(cfg: ExperimentConfig):
    """The learner's mesh over every device of every process (fsdp), or None for a single device."""
    import jax

    from mrt_jax.distributed import get_slice
    from mrt_jax.sharding import make_mesh

    n = jax.device_count()
    if cfg.tpu not in ("cpu", "gpu"):
        if jax.default_backend() != "tpu":
            raise UserError(f"--tpu={cfg.tpu!r}: training on a TPU slice needs its TPU VMs (launch with "
                            f"`python -m launch.tpu_vm`); on this host use --compile_only, or --tpu=cpu/gpu")
        try:
            chips = get_slice(cfg.tpu).chips
        except ValueError as e:
            raise UserError(f"--tpu: {e}") from e
        if chips != n:
            raise UserError(f"--tpu={cfg.tpu} has {chips} chips but this job sees {n} TPU devices; "
                            f"pass the slice it runs on")
    return None if n == 1 else make_mesh(data=1, fsdp=n, tensor=1)


def _global_batch(local: dict, mesh):
    """The learner batch as global arrays from this process's rows (rows over all devices, process after process)."""
    import jax
    import jax.numpy as jnp

    from mrt_jax.distributed import global_array_from_local
    from mrt_jax.learner.step import batch_sharding

    if mesh is None:
        return {k: jnp.asarray(v) for k, v in local.items()}
    rows, width = local["tokens"].shape
    shape = (rows * jax.process_count(), width)
    sharding = batch_sharding(mesh, shape)
    return {k: global_array_from_local(v, sharding, shape) for k, v in local.items()}


def _prepare_run_dir(cfg: ExperimentConfig, *, write: bool = True) -> bool:
    """Create the run dir; refuse a dir whose stored config differs. Returns whether to resume. Every process
    checks; only the one with ``write`` (process 0) writes config.json (atomically: others may be reading it)."""
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
    if write:
        with open(f"{path}.tmp{os.getpid()}", "w") as f:
            json.dump(cfg.to_dict(), f, indent=1, sort_keys=True)
        os.replace(f"{path}.tmp{os.getpid()}", path)
    return has_ckpt and cfg.resume


def _problem_source(cfg: ExperimentConfig, split: str, count: int):
    from mrt_jax.data import get_task

    seed = cfg.seed if split == "train" else 10_000 + cfg.seed  # disjoint streams for train and eval
    try:
        task = get_task(cfg.task)
        return task, [p.to_record() for p in task.problems(count, seed=seed, difficulty=cfg.difficulty)]
    except ValueError as e:  # unknown task, difficulty out of the task's range
        raise UserError(f"--task={cfg.task} --difficulty={cfg.difficulty}: {e}") from e


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
    from experiments.job_parts import (
        build_job,
        copy_into_sampler,
        end_step,
        finish_run,
        load_into_sampler,
        make_evaluate,
        read_eval,
        rollout_seed,
    )
    from mrt_jax.checkpointing import Checkpointer, PreemptionGuard
    from mrt_jax.data import PipelineConfig, prompt_iterator
    from mrt_jax.distributed import allgather_rows, is_main_process, local_mesh_of, local_replica, process_share
    from mrt_jax.learner import create_train_state, make_train_step
    from mrt_jax.metrics import MetricsLogger, StepTimer
    from mrt_jax.sampling import Sampler

    t_start = time.time()
    if cfg.compile_only:
        from experiments.compile_only import run_compile_only

        try:
            run_compile_only(cfg, _learner_config(cfg), seq=cfg.max_new_tokens + 256)
        except ValueError as e:
            raise UserError(str(e)) from e
        return {}
    mesh = _mesh(cfg)
    main_process = is_main_process()
    rows = cfg.prompts_per_step * cfg.group_size
    if jax.process_count() > 1 and (cfg.prompts_per_step % jax.process_count() or rows % jax.device_count()):
        raise UserError(f"with {jax.process_count()} processes and {jax.device_count()} devices, --prompts_per_step="
                        f"{cfg.prompts_per_step} must be a multiple of the process count and prompts_per_step x "
                        f"group_size = {rows} a multiple of the device count")
    _problem_source(cfg, "eval", 1)  # a bad task or difficulty fails here, before minutes of warm start
    resume = _prepare_run_dir(cfg, write=main_process)
    # The demo's SFT warm start trains on one device; with several processes every process runs it on its own
    # (deterministic: the same weights everywhere), and the learner takes the weights from the host below.
    local_build = jax.process_count() > 1 and cfg.model == "demo" and cfg.sft_steps > 0
    try:
        parts = build_job(cfg, None if local_build else mesh)
    except FileNotFoundError as e:
        raise UserError(str(e)) from e
    model, tokenizer, info = parts.model, parts.tokenizer, parts.info

    lcfg = _learner_config(cfg)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    if local_build:
        params = jax.tree.map(np.asarray, params)  # identical on every process: a replicated host value
    state = create_train_state(model.cfg, lcfg, mesh, params=params)
    ref_params = jax.tree.map(lambda x: x.copy(), state.params) if cfg.kl_coef > 0 else None
    train_step = make_train_step(lcfg, model.cfg, mesh)

    sampler_mesh = local_mesh_of(mesh) if mesh is not None else None  # a full replica on this process's devices
    if sampler_mesh is not None:  # the sampler starts from that replica: it never touches the learner's mesh
        graphdef, replica = nnx.split(model)
        nnx.replace_by_pure_dict(replica, local_replica(state.params, sampler_mesh))
        model = nnx.merge(graphdef, replica)
    sampler = Sampler(model, tokenizer, mesh=sampler_mesh, max_cache_len=parts.cache_len)

    # Every process reads the same global batches (the records are in memory) and samples its contiguous share:
    # the global row order, the random streams and the iterator state saved in checkpoints then do not depend on
    # the process count, so a run resumes under another process layout.
    data = prompt_iterator(parts.train_records, PipelineConfig(batch_size=cfg.prompts_per_step, seed=cfg.seed,
                                                         process_index=0, process_count=1))
    first, last = process_share(cfg.prompts_per_step, "prompts per step")
    ckpt = Checkpointer(os.path.join(cfg.run_dir, "checkpoints"), save_every=cfg.save_every, keep_last=cfg.keep_last)
    start = 0
    if resume:
        state, items, start = ckpt.restore(state, mesh=mesh)
        data.set_state(items["data"])
        log.info("resumed from step %d", start)

    def sync_weights():
        if sampler_mesh is None:
            copy_into_sampler(sampler, state.params)
        else:  # all processes take part: an all-gather over the learner's mesh, into fresh local buffers
            load_into_sampler(sampler, local_replica(state.params, sampler_mesh))

    # Every process evaluates all problems on its own replica (no collective inside, identical results);
    # process 0 writes them.
    evaluate = make_evaluate(cfg, sampler, parts, write=main_process)

    sync_weights()
    before = evaluate("before") if start == 0 else read_eval(cfg, "before")
    logger = MetricsLogger(cfg.run_dir, cfg.steps, start_step=start)
    timer = StepTimer()
    last_eval: dict = {}
    with PreemptionGuard() as guard:
        step = start
        while step < cfg.steps:
            batch_records = next(data)
            step += 1
            with timer("sample"):
                prompts, golds = parts.prompts_of(batch_records)
                ro = rollout_lib.collect(sampler, tokenizer, prompts[first:last], golds[first:last], parts.verify,
                                         parts.boundaries, parts.settings, rollout_seed(cfg, step),
                                         first_prompt=first, gather=allgather_rows)
            with timer("learn") as sec:
                batch = _global_batch(ro.batch, mesh)
                if cfg.kl_coef > 0:
                    from mrt_jax.learner import reference_logprobs

                    batch = reference_logprobs(lcfg, state.graphdef, ref_params, batch)
                state, m = train_step(state, batch)
                sec.block(m)
            with timer("sync"):
                sync_weights()
            last_eval, stop = end_step(cfg, step, state, {**ro.metrics, **{k: float(v) for k, v in m.items()}},
                                       evaluate=evaluate, last_eval=last_eval, timer=timer, logger=logger, ckpt=ckpt,
                                       items={"data": data.get_state(), "step": step}, guard=guard)
            if stop:
                break
    ckpt.wait()
    ckpt.close()
    return finish_run(cfg, logger=logger, before=before, last_eval=last_eval, evaluate=evaluate, info=info,
                      steps_done=step, t_start=t_start, write=main_process)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax is chatty at INFO
    cfg = parse_args(argv)
    if cfg.sync == "disaggregated":  # learner and sampler(s) as separate processes (default: all on this machine)
        from experiments.disaggregated import main as disaggregated_main

        args = list(sys.argv[1:] if argv is None else argv)
        return disaggregated_main(args if cfg.role else [*args, "--role=both"])
    if cfg.tpu == "cpu" or cfg.compile_only:  # before jax is imported: a CPU run (or AOT) probes no accelerator
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from mrt_jax.checkpointing import ConfigMismatchError
    from mrt_jax.distributed import init_distributed, log_on_main

    try:
        if not cfg.compile_only:  # before any JAX computation; no flags: a single process, or a TPU VM's workers
            explicit = (cfg.coordinator, cfg.num_processes, cfg.process_id) if cfg.coordinator else (None,) * 3
            try:
                init_distributed(*explicit)
            except ValueError as e:
                raise UserError(str(e)) from e
            log_on_main()
        run(cfg)
    except (UserError, ConfigMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
