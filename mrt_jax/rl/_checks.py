"""Shape checks shared by the RL functions: bad input raises naming the tensor, its shape and what is expected."""

from __future__ import annotations

import jax


def check_rank(name: str, x: jax.Array, rank: int, layout: str) -> None:
    """Raise ValueError unless ``x`` has ``rank`` dims (``layout`` names them, e.g. '[B, G]')."""
    if getattr(x, "ndim", None) != rank:
        shape = getattr(x, "shape", type(x).__name__)
        raise ValueError(f"{name} must have shape {layout} ({rank} dims), got {shape}")


def check_prefix(name: str, x: jax.Array, ref_name: str, ref: jax.Array, ndim: int) -> None:
    """Raise ValueError unless the first ``ndim`` dims of ``x`` equal those of ``ref``."""
    if tuple(x.shape[:ndim]) != tuple(ref.shape[:ndim]):
        raise ValueError(
            f"{name} has shape {tuple(x.shape)} but its first {ndim} dims must match {ref_name} "
            f"{tuple(ref.shape[:ndim])}"
        )


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed: {allowed}")
