"""The RL step as library code: rollouts, J estimates, reward shaping, advantage estimators and the step loop.

``collect`` samples one step's batch and scores it (``rollout`` -> ``progress`` -> ``scoring`` ->
``estimators``); ``run_steps`` is the loop every job runs (``loop``); ``sync`` moves weights into a sampler.
"""

from mrt_jax.trainer.collect import Rollout, Task, collect, step_keys
from mrt_jax.trainer.estimators import ESTIMATORS, AdvantageInputs, estimate, estimator_name, uses_meta_prover
from mrt_jax.trainer.loop import StepSource, end_step, is_eval_step, learner_batch, make_learn, run_steps
from mrt_jax.trainer.settings import RolloutSettings
from mrt_jax.trainer.sync import copy_into_sampler, load_into_sampler, sampler_param_target

__all__ = [
    "ESTIMATORS", "AdvantageInputs", "Rollout", "RolloutSettings", "StepSource", "Task", "collect",
    "copy_into_sampler", "end_step", "estimate", "estimator_name", "is_eval_step", "learner_batch",
    "load_into_sampler", "make_learn", "run_steps", "sampler_param_target", "step_keys", "uses_meta_prover",
]
