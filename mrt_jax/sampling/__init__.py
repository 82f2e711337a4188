"""Generation: batched sampling over a KV cache, prefix forks, episodes and forced termination."""

from mrt_jax.sampling.output import Branch, CacheRef, SampleOutput
from mrt_jax.sampling.sampler import Sampler

__all__ = ["Branch", "CacheRef", "SampleOutput", "Sampler"]
