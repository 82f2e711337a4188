"""Generation: batched sampling over a KV cache, prefix forks, episodes and forced termination."""

from mrt_jax.sampling.budget import ForcedTrace, budget_force, forced_answers, terminate_at_budget
from mrt_jax.sampling.episodes import EpisodeRules, episode_boundaries, text_boundaries
from mrt_jax.sampling.output import Branch, CacheRef, SampleOutput
from mrt_jax.sampling.sampler import Sampler
from mrt_jax.sampling.termination import R1_TERMINATION, TERMINATION_SUFFIXES, termination_suffix

__all__ = [
    "Branch", "CacheRef", "EpisodeRules", "ForcedTrace", "R1_TERMINATION", "SampleOutput", "Sampler",
    "TERMINATION_SUFFIXES", "budget_force", "episode_boundaries", "forced_answers", "terminate_at_budget",
    "termination_suffix", "text_boundaries",
]
