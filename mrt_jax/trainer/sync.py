"""Moving the learner's params into a sampler: colocated (device to device) or from a published step."""

from __future__ import annotations

from typing import Any

from flax import nnx

from mrt_jax.weight_sync import reshard


def sampler_param_target(sampler) -> Any:
    """The sampler's params as a pure-dict tree of arrays (their shapes, dtypes and shardings are the target)."""
    return nnx.to_pure_dict(sampler.state)


def copy_into_sampler(sampler, params: Any) -> None:
    """Colocated weight sync: the learner's params into the sampler's own buffers and layout, device to device
    (the learner's buffers are donated to the next train step, so the sampler must never alias them)."""
    sampler_state = sampler.state
    nnx.replace_by_pure_dict(sampler_state, reshard(params, nnx.to_pure_dict(sampler_state)))
    sampler.update_params(sampler_state)


def load_into_sampler(sampler, params: Any) -> None:
    """Weight sync from params already in the sampler's layout (a published step, or a local replica)."""
    sampler_state = sampler.state
    nnx.replace_by_pure_dict(sampler_state, params)
    sampler.update_params(sampler_state)
