"""The sampler role of a disaggregated run (``python -m experiments.disaggregated --role=sampler``).

Builds its model (while the learner starts), waits for the learner's first published weights (a clear error
after ``--wait_timeout`` seconds without them), then loops: wait while its own queue in RUN/rollouts is full
(``max_staleness + 1`` batches for one sampler, shared out among several: ``sampler_queue_limit``), load the newest
complete published weights, draw the next prompts from its shard of the data pipeline (``sampler_id`` of
``num_samplers``), roll out, and write the batch with the step of the weights it sampled with. It stops when the
learner's DONE marker appears; if the learner makes no progress (no new weights, no batch consumed) for
``--wait_timeout`` seconds it stops with an error.
Its data position is saved in RUN/samplers/s<id>.json after every batch, so a restarted sampler continues.
"""

from __future__ import annotations

import logging
import time

from experiments import rollout_queue as rq
from experiments.disagg_layout import RunLayout, learner_finished, read_json, write_json_atomic
from mrt_jax.errors import UserError

log = logging.getLogger("disaggregated.sampler")

POLL_SECONDS = 0.05
LOADED_STEPS_KEPT = 64  # the newest weight steps this sampler loaded, kept in its state file


class Watchdog:
    """Raises UserError when nothing has moved for ``timeout`` seconds; ``progress()`` resets it."""

    def __init__(self, timeout: float, what: str):
        self.timeout, self.what = timeout, what
        self._last = time.monotonic()

    def progress(self) -> None:
        self._last = time.monotonic()

    def check(self) -> None:
        if time.monotonic() - self._last > self.timeout:
            raise UserError(f"{self.what} for {self.timeout:g} s")


def sampler_queue_limit(max_staleness: int, num_samplers: int) -> int:
    """How many of its batches one sampler may have waiting. The learner uses one batch per step, so all
    samplers together keep at most ``max_staleness + 1`` waiting (then none goes stale for lack of turns), but each
    keeps at least one (with more samplers than that, some batches are dropped: add learner throughput instead)."""
    return max(1, (max_staleness + 1) // num_samplers)


def _wait_for_first_weights(layout: RunLayout, cfg, wait_timeout: float, since: float, guard) -> bool:
    """True once a complete published step exists; False if the learner already finished or we were stopped."""
    from mrt_jax.weight_sync import WeightSubscriber

    probe = WeightSubscriber(layout.weights)
    dog = Watchdog(wait_timeout, f"sampler {cfg.sampler_id}: no published weights in {layout.weights}; start the "
                                 f"learner (--role=learner) with the same --run_dir, or raise --wait_timeout; waited")
    while probe.newest_complete_step() is None:
        if learner_finished(layout, cfg.steps, since) or guard.requested_locally:
            return False
        dog.check()
        time.sleep(POLL_SECONDS)
    return True


def run_sampler(cfg, wait_timeout: float) -> dict:
    """-> {"batches_written", "loaded_steps"}; also kept in RUN/samplers/s<id>.json. SIGTERM / SIGINT stop it
    cleanly (after the batch in hand)."""
    from mrt_jax.checkpointing import PreemptionGuard

    with PreemptionGuard() as guard:
        return _run_sampler(cfg, wait_timeout, guard)


def _run_sampler(cfg, wait_timeout: float, guard) -> dict:
    since = time.time()
    from mrt_jax import run_files

    run_files.check_writable(cfg.run_dir)  # a one-line error now (e.g. gs:// without gcsfs), not after the build
    layout = RunLayout.of(cfg.run_dir)

    import jax

    from experiments.job_parts import build_job
    from experiments.job_setup import make_mesh_for
    from mrt_jax.sampling import Sampler
    from mrt_jax.trainer import collect, load_into_sampler, sampler_param_target
    from mrt_jax.weight_sync import WeightSubscriber

    mesh = make_mesh_for(cfg)
    parts = build_job(cfg, mesh)
    sampler = Sampler(parts.model, parts.tokenizer, mesh=mesh, max_cache_len=parts.cache_len)
    # Built while the learner starts up (in parallel); only then wait for its first weights.
    if not _wait_for_first_weights(layout, cfg, wait_timeout, since, guard):
        log.info("sampler %d: the learner has finished (or a stop was requested)", cfg.sampler_id)
        return {"batches_written": 0, "loaded_steps": []}
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          sampler_param_target(sampler))
    data = parts.prompt_stream(cfg.prompts_per_step, cfg.seed, cfg.sampler_id, cfg.num_samplers)
    state_path = layout.sampler_state(cfg.sampler_id)
    saved = read_json(state_path) if cfg.resume else None
    written, loaded_steps = 0, []
    if saved:
        try:
            data.set_state(saved["data"])
        except (KeyError, ValueError) as e:
            raise UserError(f"{state_path}: cannot resume this sampler ({e}); use another --run_dir or "
                            f"--no_resume") from e
        written, loaded_steps = int(saved["batches_written"]), list(saved["loaded_steps"])

    sub = WeightSubscriber(layout.weights, mesh=mesh)
    dog = Watchdog(wait_timeout, f"sampler {cfg.sampler_id}: the learner made no progress (no new weights in "
                                 f"{layout.weights}, no batch consumed from {layout.rollouts}); is it running? waited")
    queue_limit = sampler_queue_limit(cfg.max_staleness, cfg.num_samplers)
    pending = rq.pending_count(layout.rollouts, cfg.sampler_id)
    while not (learner_finished(layout, cfg.steps, since) or guard.requested_locally):
        now_pending = rq.pending_count(layout.rollouts, cfg.sampler_id)
        if now_pending < pending:
            dog.progress()
        pending = now_pending
        if pending >= queue_limit:  # bounded queue (see queue_limit)
            dog.check()
            time.sleep(POLL_SECONDS)
            continue
        got = sub.poll(target)
        if got is not None:
            load_into_sampler(sampler, got[0])
            loaded_steps.append(got[1])
            dog.progress()
        if sub.step is None:  # the newest step vanished (pruned) between the probe and the restore: retry
            time.sleep(POLL_SECONDS)
            continue
        written += 1
        t0 = time.perf_counter()
        prompts, answers = parts.prompts_of(data.next_batch())
        # The same rollout as the colocated job's step ``written`` (the streams fold in this sampler's id).
        ro = collect(sampler, parts.rollout_task, prompts, answers, parts.settings, seed=cfg.seed, step=written,
                     sampler_id=cfg.sampler_id, more=lambda: parts.prompts_of(data.next_batch()))
        metrics = {**ro.metrics, "time/sample": time.perf_counter() - t0}
        if cfg.dataset:
            metrics["data_skipped_rows"] = float(data.take_skipped())
        rq.write_batch(layout.rollouts, ro.batch, rq.BatchInfo(
            name=rq.batch_name(cfg.sampler_id, written), sampled_step=sub.step, sampler_id=cfg.sampler_id,
            batch_index=written, seed=cfg.seed, metrics=metrics))
        pending += 1
        del loaded_steps[:-LOADED_STEPS_KEPT]  # the state file stays small on long runs
        write_json_atomic(state_path, {"data": data.get_state(), "batches_written": written,
                                       "loaded_steps": loaded_steps})
    sub.close()
    parts.close()  # the reward workers (an earlier failure: their finalizer stops them at exit)
    why = "stop requested" if guard.requested_locally else "learner done"
    log.info("sampler %d: %s; wrote %d batches, loaded weight steps %s", cfg.sampler_id, why, written, loaded_steps)
    return {"batches_written": written, "loaded_steps": loaded_steps}
