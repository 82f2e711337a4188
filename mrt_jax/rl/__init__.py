"""RL core: advantages (GRPO, Dr.GRPO, RLOO, MRT), policy losses, regret metrics and the MRT-STaR filter.

Every function is pure and documents its formula; shapes are in the names (``r_bg`` [B, G] rewards,
``mask_bgt`` [B, G, T], ``logp_bt`` [N, T]).
"""

from mrt_jax.rl.advantages import (
    STD_SCALES,
    broadcast_to_tokens,
    dr_grpo_advantages,
    grpo_advantages,
    grpo_sequence_advantages,
    rloo_advantages,
)
from mrt_jax.rl.losses import (
    AGGREGATIONS,
    KL_ESTIMATORS,
    aggregation_weights,
    clipped_surrogate,
    entropy_from_logits,
    kl_penalty,
    policy_loss,
    sft_nll_loss,
)
from mrt_jax.rl.mrt import (
    episode_progress,
    mixed_group_advantages,
    mrt_dense_advantages,
    normalize_progress,
    termination_baseline_advantages,
)
from mrt_jax.rl.regret import (
    j_curve_by_episode,
    j_curve_by_tokens,
    mean_normalized_regret,
    normalized_regret,
    tokens_to_accuracy,
)
from mrt_jax.rl.star import select_star_traces

__all__ = [
    "AGGREGATIONS", "KL_ESTIMATORS", "STD_SCALES", "aggregation_weights", "broadcast_to_tokens", "clipped_surrogate",
    "dr_grpo_advantages", "entropy_from_logits", "episode_progress", "grpo_advantages", "grpo_sequence_advantages",
    "j_curve_by_episode", "j_curve_by_tokens", "kl_penalty", "mean_normalized_regret", "mixed_group_advantages",
    "mrt_dense_advantages", "normalize_progress", "normalized_regret", "policy_loss", "rloo_advantages",
    "select_star_traces", "sft_nll_loss", "termination_baseline_advantages", "tokens_to_accuracy",
]
