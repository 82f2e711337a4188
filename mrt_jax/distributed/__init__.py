"""Scale-out: slice presets, the mesh planner with memory estimates, multi-host helpers.

Ahead-of-time compilation for TPU slices lives in ``mrt_jax.distributed.aot`` (imported on demand: it needs
optax and, for TPU targets, libtpu).
"""

from mrt_jax.distributed.memory import MemoryEstimate, estimate_memory
from mrt_jax.distributed.multihost import (
    ProcessInfo,
    allgather_rows,
    global_array_from_local,
    init_distributed,
    is_main_process,
    local_rows,
    log_on_main,
    process_share,
)
from mrt_jax.distributed.planner import MeshPlan, PlanError, plan_mesh
from mrt_jax.distributed.replica import local_mesh_of, local_replica
from mrt_jax.distributed.slices import SLICES, SliceSpec, get_slice, resolve_slice

__all__ = [
    "SLICES", "MemoryEstimate", "MeshPlan", "PlanError", "ProcessInfo", "SliceSpec", "allgather_rows",
    "estimate_memory", "get_slice", "global_array_from_local", "init_distributed", "is_main_process", "local_mesh_of",
    "local_replica", "local_rows", "log_on_main", "plan_mesh", "process_share", "resolve_slice",
]
