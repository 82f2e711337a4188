"""The colocated training job (``python -m experiments.mrt_math``): learner and sampler on one mesh, wired into the
library's step loop (``mrt_jax.trainer.run_steps``).

Several processes (``--coordinator/--num_processes/--process_id`` on CPU/GPU hosts, automatic on TPU VMs): the
learner shards over all devices of all processes; each process samples its contiguous share of every step's
prompts with a full weight replica on its own devices; per-row results are gathered so advantages and metrics are
those of the whole batch; checkpoints are written by all processes together; process 0 alone logs and writes files.
"""

from __future__ import annotations

import logging
import time

from experiments.job_setup import job_problems, learner_config, make_mesh_for, prepare_run_dir, problem_source
from mrt_jax.errors import UserError

log = logging.getLogger("mrt_math")


def run(cfg) -> dict:
    import jax

    from experiments.job_parts import build_job
    from experiments.setup_model import check_model_name
    from mrt_jax.distributed import is_main_process

    t_start = time.time()
    if cfg.compile_only:
        from experiments.compile_only import run_compile_only

        try:
            run_compile_only(cfg, learner_config(cfg))
        except ValueError as e:
            raise UserError(str(e)) from e
        return {}
    mesh = make_mesh_for(cfg)
    main_process = is_main_process()
    rows = cfg.prompts_per_step * cfg.group_size
    if jax.process_count() > 1 and (cfg.prompts_per_step % jax.process_count() or rows % jax.device_count()):
        raise UserError(f"with {jax.process_count()} processes and {jax.device_count()} devices, --prompts_per_step="
                        f"{cfg.prompts_per_step} must be a multiple of the process count and prompts_per_step x "
                        f"group_size = {rows} a multiple of the device count")
    if cfg.dataset:  # a missing file, wrong layout, unknown format or empty dataset fails before the run dir
        job_problems(cfg)
    else:
        problem_source(cfg, "eval", 1)  # a bad task or difficulty fails here, before minutes of warm start
    check_model_name(cfg.model)  # likewise a model that cannot be loaded, before the run dir is written
    resume = prepare_run_dir(cfg, write=main_process)
    # The demo's SFT warm start trains on one device; with several processes every process runs it on its own
    # (deterministic: the same weights everywhere), and the learner takes the weights from the host below.
    local_build = jax.process_count() > 1 and cfg.model == "demo" and cfg.sft_steps > 0
    parts = build_job(cfg, None if local_build else mesh)
    try:
        return _train(cfg, parts, mesh, local_build, resume, t_start)
    finally:
        parts.close()  # the reward workers


def _train(cfg, parts, mesh, local_build: bool, resume: bool, t_start: float) -> dict:
    import jax
    import numpy as np
    from flax import nnx

    from experiments.job_parts import finish_run, make_evaluate, make_learner, read_eval
    from experiments.job_setup import sampler_mesh_for
    from mrt_jax.checkpointing import PreemptionGuard
    from mrt_jax.distributed import allgather_rows, is_main_process, local_replica, process_share
    from mrt_jax.metrics import MetricsLogger, StepTimer
    from mrt_jax.sampling import Sampler
    from mrt_jax.trainer import StepSource, collect, copy_into_sampler, load_into_sampler, run_steps

    main_process = is_main_process()
    model = parts.model
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    if local_build:
        params = jax.tree.map(np.asarray, params)  # identical on every process: a replicated host value
    state, learn, ckpt = make_learner(cfg, model.cfg, mesh, params)

    # A replica on this process's devices: a full copy per chip, or split over --sampler_tensor chips.
    sampler_mesh, sampler_specs = sampler_mesh_for(cfg, mesh, model.cfg)
    if sampler_mesh is not None:  # the sampler starts from that replica: it never touches the learner's mesh
        graphdef, replica = nnx.split(model)
        nnx.replace_by_pure_dict(replica, local_replica(state.params, sampler_mesh, sampler_specs))
        model = nnx.merge(graphdef, replica)
    sampler = Sampler(model, parts.tokenizer, mesh=sampler_mesh, max_cache_len=parts.cache_len)

    # Every process reads the same global batches (the records are in memory) and samples its contiguous share:
    # the global row order, the random streams and the iterator state saved in checkpoints then do not depend on
    # the process count, so a run resumes under another process layout.
    data = parts.prompt_stream(cfg.prompts_per_step, cfg.seed)
    first, last = process_share(cfg.prompts_per_step, "prompts per step")
    start = 0
    if resume:
        state, items, start = ckpt.restore(state, mesh=mesh)
        data.set_state(items["data"])
        log.info("resumed from step %d", start)

    def sync(step: int, state) -> None:
        if sampler_mesh is None:
            copy_into_sampler(sampler, state.params)
        else:  # all processes take part: an all-gather over the learner's mesh, into fresh local buffers
            load_into_sampler(sampler, local_replica(state.params, sampler_mesh, sampler_specs))

    def fetch(done: int):
        prompts, golds = parts.prompts_of(data.next_batch())
        ro = collect(sampler, parts.rollout_task, prompts[first:last], golds[first:last], parts.settings,
                     seed=cfg.seed, step=done + 1, first_prompt=first,
                     gather=allgather_rows if jax.process_count() > 1 else None,
                     more=lambda: parts.prompts_of(data.next_batch()))
        skipped = {"data_skipped_rows": float(data.take_skipped())} if cfg.dataset else {}
        return ro.batch, {**ro.metrics, **skipped}

    # Every process evaluates all problems on its own replica (no collective inside, identical results);
    # process 0 writes them.
    evaluate = make_evaluate(cfg, sampler, parts, write=main_process)
    sync(start, state)
    before = evaluate("before", 0) if start == 0 else read_eval(cfg, "before")
    logger = MetricsLogger(cfg.run_dir, cfg.steps, start_step=start)
    source = StepSource(fetch=fetch, sync=sync, items=lambda step: {"data": data.get_state(), "step": step})
    with PreemptionGuard() as guard:
        state, step, last_eval = run_steps(state, source, learn, start=start, steps=cfg.steps,
                                           eval_every=cfg.eval_every, evaluate=evaluate, timer=StepTimer(),
                                           logger=logger, ckpt=ckpt, guard=guard)
    ckpt.wait()
    ckpt.close()
    return finish_run(cfg, logger=logger, before=before, last_eval=last_eval, evaluate=evaluate, info=parts.info,
                      steps_done=step, t_start=t_start, write=main_process)
