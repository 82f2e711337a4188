"""The learner role of a disaggregated run (``python -m experiments.disaggregated --role=learner``).

Restores or creates the TrainState, publishes its params (step 0, then after every update), consumes the rollout
batches the samplers write to RUN/rollouts, trains, checkpoints, evaluates and logs as the colocated job does, and
writes RUN/DONE when it stops. A batch sampled with the weights of step ``s`` is ``learner_step - s`` steps stale:
within ``--max_staleness`` it is used (the PPO ratio against the sampler's own logprobs corrects for the older
policy), beyond it the batch is dropped and counted. Batches are used oldest first (see ``choose_batch``).

Ordering that makes ``--max_staleness=0`` with one sampler reproduce the colocated job: the consumed batch file
is removed only after the next weights are committed, so a sampler that sees its queue shrink finds them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from experiments import rollout_queue as rq
from experiments.disagg_layout import RunLayout, mark_done
from mrt_jax.errors import UserError

log = logging.getLogger("disaggregated.learner")

POLL_SECONDS = 0.05


def choose_batch(infos: list[rq.BatchInfo], learner_step: int, max_staleness: int):
    """-> (the batch to train on or None, stale batches to drop, invalid ones: sampled with weights newer than
    the learner's, i.e. left over from an earlier attempt). The oldest usable batch is chosen: lowest sampled step,
    then lowest per-sampler index (samplers take turns), then sampler id; with one sampler, every batch in order."""
    from mrt_jax.weight_sync import StalenessPolicy

    future = [i for i in infos if i.sampled_step > learner_step]
    present = [i for i in infos if i.sampled_step <= learner_step]
    keep = StalenessPolicy(max_staleness).keep_mask(np.asarray([i.sampled_step for i in present], np.int64),
                                                    learner_step)
    stale = [i for i, k in zip(present, keep) if not k]
    usable = sorted((i for i, k in zip(present, keep) if k), key=lambda i: (i.sampled_step, i.batch_index,
                                                                           i.sampler_id))
    return (usable[0] if usable else None), stale, future


class BatchSource:
    """Waits for the next usable rollout batch; drops stale and malformed ones, counting them."""

    def __init__(self, layout: RunLayout, shape: tuple[int, int], max_staleness: int, wait_timeout: float):
        self.layout, self.shape = layout, shape
        self.max_staleness, self.wait_timeout = max_staleness, wait_timeout
        self.dropped_stale_total = 0
        self.dropped_invalid_total = 0

    def _drop(self, name: str, why: str) -> None:
        log.warning("dropping rollout batch %s: %s", name, why)
        rq.remove_batch(self.layout.rollouts, name)

    def next(self, learner_step: int, stop_requested: Callable[[], bool] = lambda: False):
        """-> (info, arrays, staleness of every batch dropped as stale meanwhile), or None once
        ``stop_requested()`` (a preemption signal must not wait for data that may never come)."""
        dropped_lags: list[int] = []
        t0 = time.monotonic()
        while True:
            infos = []
            for name in rq.list_batches(self.layout.rollouts):
                try:
                    infos.append(rq.read_info(self.layout.rollouts, name))
                except rq.BadBatch as e:
                    self._drop(name, str(e))
                    self.dropped_invalid_total += 1
            chosen, stale, future = choose_batch(infos, learner_step, self.max_staleness)
            for info in stale:
                lag = learner_step - info.sampled_step
                self._drop(info.name, f"sampled with step {info.sampled_step}, {lag} steps behind learner step "
                                      f"{learner_step} (--max_staleness={self.max_staleness})")
                dropped_lags.append(lag)
                self.dropped_stale_total += 1
            for info in future:
                self._drop(info.name, f"sampled with step {info.sampled_step}, newer than learner step "
                                      f"{learner_step} (left over from an earlier attempt)")
                self.dropped_invalid_total += 1
            if chosen is not None:
                try:
                    return chosen, rq.read_arrays(self.layout.rollouts, chosen.name, self.shape), dropped_lags
                except rq.BadBatch as e:
                    self._drop(chosen.name, str(e))
                    self.dropped_invalid_total += 1
                    continue
            if stop_requested():
                return None
            if time.monotonic() - t0 > self.wait_timeout:
                raise UserError(f"learner: no usable rollout batch in {self.layout.rollouts} for "
                                f"{self.wait_timeout:g} s at step {learner_step}; are the samplers running "
                                f"(--role=sampler with the same --run_dir)?")
            time.sleep(POLL_SECONDS)


def staleness_metrics(consumed_lag: int, dropped_lags: list[int], source: BatchSource) -> dict[str, float]:
    lags = np.asarray([consumed_lag, *dropped_lags], np.float64)
    return {"staleness": float(consumed_lag), "staleness_mean": float(lags.mean()), "staleness_max": float(lags.max()),
            "dropped_stale": float(len(dropped_lags)), "dropped_stale_total": float(source.dropped_stale_total),
            "dropped_invalid_total": float(source.dropped_invalid_total)}


def _clear_attempt_leftovers(layout: RunLayout, start: int) -> None:
    """Published steps beyond the restored one came from an attempt that died before checkpointing them; the
    restored step's own is removed too if its save never finished (on a bucket Orbax writes under the final name
    and commits with a marker, so an interrupted save leaves a dir there), and published anew."""
    from mrt_jax import run_files
    from mrt_jax.checkpointing.manager import commit_problem, list_step_dirs

    for step in list_step_dirs(layout.weights):
        if step > start or (step == start and commit_problem(layout.weights / str(step), ("params", "meta"))):
            (layout.weights / str(step)).rmtree(missing_ok=True)  # epath: also on a bucket, object by object
    run_files.remove(layout.done, missing_ok=True)


def run_learner(cfg, wait_timeout: float) -> dict:
    from flax import nnx

    from experiments.job_parts import build_job, finish_run, make_evaluate, make_learner, read_eval
    from experiments.job_setup import make_mesh_for, prepare_run_dir
    from mrt_jax.checkpointing import PreemptionGuard
    from mrt_jax.checkpointing.manager import commit_problem
    from mrt_jax.metrics import MetricsLogger, StepTimer
    from mrt_jax.sampling import Sampler
    from mrt_jax.trainer import StepSource, copy_into_sampler, run_steps
    from mrt_jax.weight_sync import WeightPublisher

    t_start = time.time()
    layout = RunLayout.of(cfg.run_dir)
    mesh = make_mesh_for(cfg)
    resume = prepare_run_dir(cfg)
    parts = build_job(cfg, mesh)
    state, learn, ckpt = make_learner(cfg, parts.model.cfg, mesh, nnx.to_pure_dict(nnx.state(parts.model, nnx.Param)))
    start = 0
    if resume:
        state, _, start = ckpt.restore(state, mesh=mesh)
        log.info("resumed from step %d", start)
    _clear_attempt_leftovers(layout, start)

    # Keep enough published steps that a sampler within the staleness window can still restore what it polled.
    publisher = WeightPublisher(layout.weights, keep=max(3, cfg.max_staleness + 2))
    if commit_problem(layout.weights / str(start), ("params", "meta")) is not None:
        publisher.publish(start, state.params)
        publisher.wait()
    eval_sampler = Sampler(parts.model, parts.tokenizer, mesh=mesh, max_cache_len=parts.cache_len)
    evaluate_sampler = make_evaluate(cfg, eval_sampler, parts)
    newest = {"state": state}

    def evaluate(tag: str, step: int) -> dict:  # with the learner's newest weights
        copy_into_sampler(eval_sampler, newest["state"].params)
        return evaluate_sampler(tag, step)

    before = evaluate("before", 0) if start == 0 else read_eval(cfg, "before")

    n_rows = cfg.prompts_per_step * cfg.group_size
    source = BatchSource(layout, (n_rows, parts.max_prompt + cfg.max_new_tokens), cfg.max_staleness, wait_timeout)
    logger = MetricsLogger(cfg.run_dir, cfg.steps, start_step=start)
    consumed: list[str] = []
    step = start
    try:
        with PreemptionGuard() as guard:

            def fetch(done: int):
                got = source.next(done, lambda: guard.requested_locally)
                if got is None:
                    return None
                info, arrays, dropped_lags = got
                consumed.append(info.name)
                return arrays, {**info.metrics, **staleness_metrics(done - info.sampled_step, dropped_lags, source),
                                "sampled_step": float(info.sampled_step), "sampler_id": float(info.sampler_id)}

            def publish(step: int, state) -> None:
                newest["state"] = state
                publisher.publish(step, state.params)
                publisher.wait()  # committed before the batch is consumed (see the module docstring)
                rq.remove_batch(layout.rollouts, consumed.pop())

            steps = StepSource(fetch=fetch, sync=publish, items=lambda step: {"step": step}, fetch_timer="wait_data",
                               sync_timer="publish")
            state, step, last_eval = run_steps(state, steps, learn, start=start, steps=cfg.steps,
                                               eval_every=cfg.eval_every, evaluate=evaluate, timer=StepTimer(),
                                               logger=logger, ckpt=ckpt, guard=guard)
    finally:
        publisher.close()
        parts.close()  # the reward workers (an earlier failure: their finalizer stops them at exit)
        ckpt.wait()
        ckpt.close()
        mark_done(layout, step, cfg.steps)  # also on failure: samplers stop instead of waiting for a timeout
    return finish_run(cfg, logger=logger, before=before, last_eval=last_eval, evaluate=evaluate, info=parts.info,
                      steps_done=step, t_start=t_start, dropped_stale=source.dropped_stale_total,
                      dropped_invalid=source.dropped_invalid_total)
