"""The registry of advantage estimators the job can train with: name -> pure function of one batch's scores.

Every estimator takes :class:`AdvantageInputs` (numpy, [B, G, ...]) and ``alpha`` and returns
``(adv_bgc, loss_mask_bgc, metrics)``; the formulas live in ``mrt_jax.rl`` (each tested against hand-computed
values), this module only selects one and feeds it the job's arrays.

- ``grpo`` / ``dr_grpo`` / ``rloo``: outcome advantages (``mrt_jax.rl.advantages``); J estimates are not used.
- ``mrt_dense``: GRPO plus alpha times each episode's normalised progress on its own tokens.
- ``mrt_termination_baseline``: GRPO plus ``alpha * (R - R_term)``, ``R_term`` the meta-prover's J when the same
  trace is terminated one episode earlier (at the start of its last episode; J_0 for a one-episode trace).
- ``mrt_mixed``: rows of a group share a prefix; ``terminated_bg`` marks those the meta-prover answered at once
  (``mrt_jax.rl.mrt.mixed_group_advantages``).
- ``mrt_star``: per prompt, imitate the trace ``mrt_jax.rl.star.select_star_traces`` keeps (A = 1 at ratio 1 is
  the NLL gradient: STaR's SFT step); every other row leaves the loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from mrt_jax.rl import (
    dr_grpo_advantages,
    grpo_advantages,
    mixed_group_advantages,
    mrt_dense_advantages,
    rloo_advantages,
    select_star_traces,
    termination_baseline_advantages,
)


@dataclasses.dataclass(frozen=True)
class AdvantageInputs:
    rewards_bg: np.ndarray  # float32, the shaped outcome reward
    mask_bgc: np.ndarray  # float32, completion tokens that may be trained
    correct_bg: np.ndarray | None = None  # float32 0/1
    truncated_bg: np.ndarray | None = None  # bool
    j_bgk: np.ndarray | None = None  # J_0, J after each episode, the outcome last (MRT family)
    valid_bgk: np.ndarray | None = None
    episode_bgc: np.ndarray | None = None  # int episode id of each completion token, -1 = none
    terminated_bg: np.ndarray | None = None  # mrt_mixed: answered at once by the meta-prover


Result = tuple[np.ndarray, np.ndarray, dict[str, float]]


def _out(adv, mask, metrics=None) -> Result:
    return (np.asarray(adv, np.float32), np.asarray(mask, np.float32),
            {k: float(v) for k, v in (metrics or {}).items()})


def _grpo(x: AdvantageInputs, alpha: float) -> Result:
    return _out(grpo_advantages(jnp.asarray(x.rewards_bg), jnp.asarray(x.mask_bgc)), x.mask_bgc)


def _dr_grpo(x: AdvantageInputs, alpha: float) -> Result:
    return _out(dr_grpo_advantages(jnp.asarray(x.rewards_bg), jnp.asarray(x.mask_bgc)), x.mask_bgc)


def _rloo(x: AdvantageInputs, alpha: float) -> Result:
    return _out(rloo_advantages(jnp.asarray(x.rewards_bg), jnp.asarray(x.mask_bgc)), x.mask_bgc)


def _mrt_dense(x: AdvantageInputs, alpha: float) -> Result:
    mask = jnp.asarray(x.mask_bgc)
    outcome = grpo_advantages(jnp.asarray(x.rewards_bg), mask)
    adv, metrics = mrt_dense_advantages(outcome, jnp.asarray(x.j_bgk), jnp.asarray(x.valid_bgk, bool),
                                        jnp.asarray(x.episode_bgc), mask, alpha=alpha)
    return _out(adv, x.mask_bgc, metrics)


def termination_reward(j_bgk: np.ndarray, valid_bgk: np.ndarray) -> np.ndarray:
    """J at the boundary before each trace's last valid one (its outcome): the reward of stopping one episode
    earlier. [B, G]."""
    valid = np.asarray(valid_bgk, bool)
    last = valid.shape[2] - 1 - np.argmax(valid[..., ::-1], axis=2)  # index of the outcome
    before = np.maximum(last - 1, 0)
    return np.take_along_axis(np.asarray(j_bgk, np.float32), before[..., None], axis=2)[..., 0]


def _mrt_termination_baseline(x: AdvantageInputs, alpha: float) -> Result:
    r_term = termination_reward(x.j_bgk, x.valid_bgk)
    adv, metrics = termination_baseline_advantages(jnp.asarray(x.rewards_bg), jnp.asarray(r_term),
                                                   jnp.asarray(x.mask_bgc), alpha=alpha)
    return _out(adv, x.mask_bgc, metrics)


def _mrt_mixed(x: AdvantageInputs, alpha: float) -> Result:
    adv, metrics = mixed_group_advantages(jnp.asarray(x.rewards_bg), jnp.asarray(x.terminated_bg, bool),
                                          jnp.asarray(x.mask_bgc), alpha=alpha)
    return _out(adv, x.mask_bgc, metrics)


def _mrt_star(x: AdvantageInputs, alpha: float) -> Result:
    ok = (np.asarray(x.correct_bg) > 0) & ~np.asarray(x.truncated_bg, bool)
    keep, _ = select_star_traces(jnp.asarray(x.j_bgk), jnp.asarray(x.valid_bgk, bool), jnp.asarray(ok))
    chosen = np.asarray(keep, np.float32)
    adv = chosen[..., None] * np.asarray(x.mask_bgc, np.float32)
    return _out(adv, adv, {"star_selected_frac": chosen.mean()})


ESTIMATORS: dict[str, Callable[[AdvantageInputs, float], Result]] = {
    "grpo": _grpo, "dr_grpo": _dr_grpo, "rloo": _rloo, "mrt_dense": _mrt_dense,
    "mrt_termination_baseline": _mrt_termination_baseline, "mrt_mixed": _mrt_mixed, "mrt_star": _mrt_star,
}


def uses_meta_prover(name: str) -> bool:
    """The MRT family needs J estimates at episode boundaries (and mrt_mixed its terminated branches)."""
    return name.startswith("mrt")


def estimator_name(algo: str, mrt_form: str = "dense") -> str:
    """The job's flags -> a registry name: ``--algo=mrt`` reads ``--mrt_form``; every other algo is its own name."""
    name = f"mrt_{mrt_form}" if algo == "mrt" else algo
    if name not in ESTIMATORS:
        raise ValueError(f"no advantage estimator for --algo={algo} --mrt_form={mrt_form}; known: "
                         f"{', '.join(ESTIMATORS)}")
    return name


def estimate(name: str, x: AdvantageInputs, alpha: float) -> Result:
    return ESTIMATORS[name](x, alpha)
