"""What one RL step samples and how it scores it: the rollout settings, validated once."""

from __future__ import annotations

import dataclasses

from mrt_jax.rewards.shaping import TRUNCATION_MODES
from mrt_jax.sampling.stops import StopRule
from mrt_jax.trainer.estimators import ESTIMATORS, uses_meta_prover


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutSettings:
    """``estimator`` names an entry of ``mrt_jax.trainer.estimators.ESTIMATORS``; the reward of a completion is its
    0/1 correctness, treated for truncation (``truncation``: zero / mask / none), then shaped by a length penalty
    (``length_penalty`` coef; 0 = off) and DAPO overlong shaping (``overlong_buffer`` tokens before
    ``max_new_tokens``; 0 = off). ``dynamic_sampling``: drop groups whose rewards are all equal and refill the
    batch from up to ``dynamic_rounds`` further prompt batches. The meta-prover's forced answers (after
    ``forced_suffix``) end at ``answer_stop`` (stop strings or ``mrt_jax.sampling.stops`` rules; jobs pass their
    prompt format's, ``PromptFormat.answer_stop``; the default is the plain format's) or after ``meta_max_tokens``."""

    estimator: str
    group_size: int
    max_prompt_tokens: int
    max_new_tokens: int
    temperature: float
    top_p: float
    truncation: str = "zero"
    alpha: float = 1.0
    meta_samples: int = 4
    meta_max_tokens: int = 16
    meta_temperature: float = 0.6
    max_episodes: int = 4
    forced_suffix: str = ""
    answer_stop: tuple[str | StopRule, ...] = ("\n",)
    length_penalty: float = 0.0
    overlong_buffer: int = 0
    overlong_factor: float = 1.0
    dynamic_sampling: bool = False
    dynamic_rounds: int = 4

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator={self.estimator!r}; allowed: {', '.join(ESTIMATORS)}")
        if self.truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation={self.truncation!r}; allowed: {', '.join(TRUNCATION_MODES)}")
        if self.group_size < 2 and self.estimator != "dr_grpo":
            raise ValueError(f"group_size={self.group_size}: {self.estimator} needs >= 2 samples per prompt "
                             f"(a group baseline; mrt_mixed: a continuing and a terminated branch)")
        if not 0 <= self.overlong_buffer <= self.max_new_tokens:
            raise ValueError(f"overlong_buffer={self.overlong_buffer} must lie in [0, max_new_tokens="
                             f"{self.max_new_tokens}]")
        if not isinstance(self.answer_stop, tuple):
            raise ValueError(f"answer_stop must be a tuple of stop strings / rules, got {self.answer_stop!r}")
        if self.length_penalty < 0 or self.overlong_factor < 0 or self.dynamic_rounds < 1:
            raise ValueError("length_penalty and overlong_factor must be >= 0 and dynamic_rounds >= 1")

    @property
    def meta(self) -> bool:
        """Whether the meta-prover estimates J at episode boundaries (the MRT family)."""
        return uses_meta_prover(self.estimator)
