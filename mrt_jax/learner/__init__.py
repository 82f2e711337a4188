"""The sharded policy-gradient learner: config, TrainState, token logprobs and the jitted train step."""

from mrt_jax.learner.config import LearnerConfig
from mrt_jax.learner.logprobs import default_positions, logprobs_from_logits, token_logprobs
from mrt_jax.learner.state import (
    TrainState,
    abstract_train_state,
    create_train_state,
    lr_schedule,
    make_optimizer,
    state_shardings,
)
from mrt_jax.learner.step import (
    REQUIRED_KEYS,
    batch_sharding,
    build_train_step,
    check_batch,
    make_train_step,
    reference_logprobs,
)

__all__ = [
    "LearnerConfig", "REQUIRED_KEYS", "TrainState", "abstract_train_state", "batch_sharding", "build_train_step",
    "check_batch", "create_train_state", "default_positions", "logprobs_from_logits", "lr_schedule", "make_optimizer",
    "make_train_step", "reference_logprobs", "state_shardings", "token_logprobs",
]
