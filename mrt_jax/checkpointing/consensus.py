"""Decisions every JAX process must take the same way (no-ops in a single process): restoring, stopping.

Restore lists step dirs, judges each, and quarantines broken ones by renaming them. If every process decided on
its own, a slower process could list the dir after a faster one had already moved a broken step away, skip it,
and enter Orbax's restore barrier while the faster one waits at the quarantine barrier: a barrier name mismatch,
then a shutdown-barrier timeout (seen in CI). So process 0's listing is the one everybody uses, and a step counts
as good only if it restored on every process.
"""

from __future__ import annotations

import jax
import numpy as np


def process_zero_steps(local_steps: list[int]) -> list[int]:
    """Process 0's list of step numbers, on every process."""
    if jax.process_count() == 1:
        return list(local_steps)
    from jax.experimental import multihost_utils

    n = int(multihost_utils.broadcast_one_to_all(np.asarray(len(local_steps), np.int32)))
    if n == 0:
        return []
    mine = np.zeros(n, np.int32)
    if jax.process_index() == 0:
        mine[:] = local_steps
    return [int(s) for s in multihost_utils.broadcast_one_to_all(mine)]


def every_process(flag: bool) -> list[bool]:
    """Each process's ``flag``, in process order, on every process (a tiny all-gather; all must call it)."""
    if jax.process_count() == 1:
        return [flag]
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.asarray([int(flag)], np.int32), tiled=True)
    return [bool(f) for f in np.asarray(flags).tolist()]


def failed_processes(ok: bool) -> list[int]:
    """Indices of the processes that reported ``ok=False`` (same answer on every process)."""
    return [i for i, ok_i in enumerate(every_process(ok)) if not ok_i]
