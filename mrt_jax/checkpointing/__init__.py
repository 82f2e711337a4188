"""Checkpoints: asynchronous Orbax saves with validated resume, preemption handling, config compatibility."""

from mrt_jax.checkpointing.config_check import ConfigMismatchError, check_config_compatible, config_differences
from mrt_jax.checkpointing.manager import Checkpointer
from mrt_jax.checkpointing.preemption import PreemptionGuard
from mrt_jax.checkpointing.tree import on_mesh
from mrt_jax.errors import CheckpointError

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "ConfigMismatchError",
    "PreemptionGuard",
    "check_config_compatible",
    "config_differences",
    "on_mesh",
]
