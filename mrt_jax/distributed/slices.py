"""Slice presets (re-exported): the table lives in ``mrt_jax.slice_presets``, which imports no JAX, so the job's
config can check ``--tpu`` before JAX is imported (``JAX_PLATFORMS`` must be set first)."""

from mrt_jax.slice_presets import SLICES, GiB, SliceSpec, get_slice, resolve_slice

__all__ = ["GiB", "SLICES", "SliceSpec", "get_slice", "resolve_slice"]
