"""The one RL step loop: fetch a rollout batch -> learner update -> weight sync -> evaluate, log, checkpoint.

The colocated job and the disaggregated learner run this same loop; they differ only in where a batch comes from
(sampled here, or read from the samplers' queue) and where the weights go (into the local sampler, or published
for the samplers), which they pass in as :class:`StepSource` callables.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mrt_math")


@dataclasses.dataclass(frozen=True)
class StepSource:
    """``fetch(done)`` -> (this process's learner rows as numpy arrays, metrics) for the update after ``done``
    updates, or None to stop (a stop requested while waiting); ``sync(step, state)`` moves the new weights;
    ``items(step)`` are the checkpoint's extra items. ``fetch_timer`` / ``sync_timer`` name their timings."""

    fetch: Callable[[int], tuple[dict, dict] | None]
    sync: Callable[[int, Any], None]
    items: Callable[[int], dict]
    fetch_timer: str = "sample"
    sync_timer: str = "sync"


def learner_batch(local: dict, mesh):
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


def make_learn(lcfg, train_step, ref_params, mesh) -> Callable[[Any, dict], tuple[Any, dict]]:
    """``learn(state, rows) -> (state, metrics)``: one learner update (reference logprobs first when KL is on)."""

    def learn(state, rows: dict):
        batch = learner_batch(rows, mesh)
        if lcfg.kl_coef > 0:
            from mrt_jax.learner import reference_logprobs

            batch = reference_logprobs(lcfg, state.graphdef, ref_params, batch)
        return train_step(state, batch)

    return learn


def is_eval_step(step: int, eval_every: int, steps: int) -> bool:
    return step % eval_every == 0 or step == steps


def end_step(step: int, state, metrics: dict, *, steps: int, eval_every: int, evaluate: Callable[[str], dict],
             last_eval: dict, timer, logger, ckpt, items: dict, guard) -> tuple[dict, bool]:
    """The end of training step ``step``: evaluate when due (timed as ``eval``), log the metrics with the step's
    timings, save a checkpoint (forced on the last step and when a stop was requested) -> (the latest evaluation,
    whether to stop). ``guard.should_stop`` is polled once: in a multi-process run it is a collective."""
    if is_eval_step(step, eval_every, steps):
        with timer("eval"):
            last_eval = evaluate(f"step{step}", step)
        metrics.update({f"eval_{k}": v for k, v in last_eval.items() if isinstance(v, float)})
    logger.log(step, {**metrics, **timer.pop()})
    stop = guard.should_stop()
    ckpt.maybe_save(step, state, items, metrics={"eval_accuracy": last_eval.get("accuracy", 0.0)},
                    force=stop or step == steps)
    if stop:
        ckpt.wait()
        log.warning("stop requested: saved step %d, exiting", step)
    return last_eval, stop


def run_steps(state, source: StepSource, learn, *, start: int, steps: int, eval_every: int,
              evaluate: Callable[[str], dict], timer, logger, ckpt, guard) -> tuple[Any, int, dict]:
    """Steps ``start + 1 .. steps`` -> (state, the last step done, the latest evaluation). Each step's metrics
    count its XLA compilations (``compiles``: fetch, learn and sync; evaluation not included)."""
    from mrt_jax.metrics import compile_count

    last_eval: dict = {}
    step = start
    while step < steps:
        compiles = compile_count()
        with timer(source.fetch_timer):
            got = source.fetch(step)
        if got is None:  # stopped while waiting for data: save the step we are at
            ckpt.maybe_save(step, state, source.items(step), force=True)
            log.warning("stop requested while waiting for rollouts: saved step %d, exiting", step)
            break
        rows, metrics = got
        with timer("learn") as sec:
            state, m = learn(state, rows)
            sec.block(m)
        step += 1
        with timer(source.sync_timer):
            source.sync(step, state)
        metrics = {**metrics, **{k: float(v) for k, v in m.items()}, "compiles": compile_count() - compiles}
        last_eval, stop = end_step(step, state, metrics, steps=steps,
                                   eval_every=eval_every, evaluate=evaluate, last_eval=last_eval, timer=timer,
                                   logger=logger, ckpt=ckpt, items=source.items(step), guard=guard)
        if stop:
            break
    return state, step, last_eval
