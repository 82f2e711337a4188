"""Multi-process JAX: initialisation on TPU VMs and elsewhere, process-local data, logging on process 0.

Call :func:`init_distributed` first thing in a program (before any JAX computation). On a Cloud TPU VM slice it
needs no arguments: ``jax.distributed.initialize()`` discovers the coordinator and the worker's id from the VM's
metadata. Elsewhere (GPU clusters, several CPU processes) pass the coordinator address, process count and id.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding

# Environment variables a Cloud TPU VM sets for its workers.
_TPU_VM_ENV = ("TPU_WORKER_HOSTNAMES", "TPU_WORKER_ID", "TPU_ACCELERATOR_TYPE", "CLOUD_TPU_TASK_ID")


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    process_id: int
    num_processes: int
    local_devices: int
    global_devices: int


def on_tpu_vm() -> bool:
    """True on a Cloud TPU VM worker (its runtime sets TPU_* variables)."""
    return any(os.environ.get(k) for k in _TPU_VM_ENV)


def init_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    cpu_collectives: bool | None = None,
) -> ProcessInfo:
    """Join (or skip) the multi-process JAX runtime and return this process's place in it.

    - no arguments on a TPU VM: ``jax.distributed.initialize()`` with automatic discovery;
    - no arguments elsewhere: a single process, nothing to do;
    - ``coordinator='host:port'`` with ``num_processes`` and ``process_id``: explicit initialisation. When
      ``cpu_collectives`` (default: JAX_PLATFORMS is 'cpu'), CPU collectives go through gloo, without which
      cross-process CPU computations fail ("Multiprocess computations aren't implemented on the CPU backend").
    Calling it again after a successful initialisation is a no-op.
    """
    if jax.distributed.is_initialized():
        return process_info()
    explicit = (coordinator, num_processes, process_id)
    if all(v is None for v in explicit):
        if on_tpu_vm():
            jax.distributed.initialize()
        return process_info()
    if any(v is None for v in explicit):
        raise ValueError(f"explicit multi-process init needs coordinator, num_processes and process_id together; "
                         f"got coordinator={coordinator!r}, num_processes={num_processes!r}, "
                         f"process_id={process_id!r}")
    if ":" not in coordinator:
        raise ValueError(f"coordinator must be 'host:port', got {coordinator!r}")
    if not (isinstance(num_processes, int) and num_processes >= 1):
        raise ValueError(f"num_processes must be a positive int, got {num_processes!r}")
    if not (isinstance(process_id, int) and 0 <= process_id < num_processes):
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id!r}")
    if cpu_collectives is None:
        cpu_collectives = os.environ.get("JAX_PLATFORMS", "").split(",")[0] == "cpu"
    if cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    return process_info()


def process_info() -> ProcessInfo:
    return ProcessInfo(jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())


def is_main_process() -> bool:
    """True on process 0, the one that logs, writes reports and prints progress."""
    return jax.process_index() == 0


class MainProcessFilter(logging.Filter):
    """A logging filter that drops records on every process but 0 (warnings and errors always pass)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or is_main_process()


def log_on_main(logger: logging.Logger | None = None) -> None:
    """Make ``logger`` (default: the root logger) quiet below WARNING on processes other than 0.

    The filter goes on the logger and on its handlers: a logger's own filters do not see records propagated from
    child loggers (``logging.getLogger("x").info`` reaches the root's handlers, not the root's filters).
    """
    target = logging.getLogger() if logger is None else logger
    for holder in (target, *target.handlers):
        if not any(isinstance(f, MainProcessFilter) for f in holder.filters):
            holder.addFilter(MainProcessFilter())


def local_rows(sharding: NamedSharding, global_shape: Sequence[int]) -> tuple[int, int]:
    """The [start, stop) rows (dim 0) of a global array this process must supply, for loading only its share.

    Equals the union of the row ranges of this process's devices; raises if they are not contiguous.
    """
    index_map = sharding.addressable_devices_indices_map(tuple(global_shape))
    rows = sorted({(idx[0].start or 0, global_shape[0] if idx[0].stop is None else idx[0].stop)
                   for idx in index_map.values()})
    start, stop = rows[0][0], rows[0][1]
    for a, b in rows[1:]:
        if a > stop:
            raise ValueError(f"this process's rows {rows} of a {tuple(global_shape)} array are not contiguous; "
                             "order the mesh devices by process (mesh_utils.create_device_mesh does)")
        stop = max(stop, b)
    return start, stop


def global_array_from_local(local: np.ndarray, sharding: NamedSharding, global_shape: Sequence[int]) -> jax.Array:
    """Assemble a global jax.Array from each process's rows ``local`` (shape [stop-start, ...] of local_rows)."""
    start, stop = local_rows(sharding, global_shape)
    if local.shape[0] != stop - start or tuple(local.shape[1:]) != tuple(global_shape[1:]):
        raise ValueError(f"process {jax.process_index()} must supply rows [{start}, {stop}) of a "
                         f"{tuple(global_shape)} array, i.e. shape {(stop - start, *global_shape[1:])}; "
                         f"got {local.shape}")
    return jax.make_array_from_process_local_data(sharding, local, tuple(global_shape))


def process_share(total: int, what: str = "rows") -> tuple[int, int]:
    """This process's contiguous [start, stop) share of ``total`` items split evenly over the processes, in process
    order (so a global batch laid out process after process is the single-process batch)."""
    count, index = jax.process_count(), jax.process_index()
    if total % count:
        raise ValueError(f"{total} {what} cannot be split evenly over {count} processes; use a multiple of {count}")
    size = total // count
    return index * size, (index + 1) * size


def allgather_rows(tree):
    """Host arrays (a pytree of numpy arrays, same shapes on every process) concatenated along axis 0 over the
    processes, in process order, on every process. One process: returned as is (no device round trip).

    Every process must call it (it is a collective). Only 32-bit (or smaller) dtypes survive JAX's default
    no-x64 mode unchanged, so 64-bit inputs are refused rather than silently narrowed.
    """
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    for leaf in jax.tree.leaves(tree):
        if np.asarray(leaf).dtype.itemsize > 4:
            raise ValueError(f"allgather_rows: dtype {np.asarray(leaf).dtype} would be narrowed to 32 bits; "
                             f"cast to a 32-bit dtype first")
    gathered = multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(lambda g, x: np.asarray(g).astype(np.asarray(x).dtype), gathered, tree)
