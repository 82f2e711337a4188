"""Reward shaping over [B] arrays: truncation treatment, length penalty, DAPO overlong shaping.

Pure functions that work on numpy arrays (host side, right after scoring) and on jax arrays (also under jit); the
result is of the same kind as the input. JAX is only used when a jax array is passed in (never imported here).
"""

from __future__ import annotations

import sys

import numpy as np

TRUNCATION_MODES = ("zero", "mask", "none")


def _xp(*arrays):
    """jax.numpy if any argument is a jax array or tracer, else numpy."""
    jax = sys.modules.get("jax")
    if jax is not None and any(isinstance(a, jax.Array) for a in arrays):
        import jax.numpy as jnp

        return jnp
    return np


def _check_b(name: str, x, batch: int | None = None) -> None:
    if x.ndim != 1 or (batch is not None and x.shape[0] != batch):
        want = f"[{batch}]" if batch is not None else "[B]"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")


def apply_truncation(rewards_b, truncated_b, mode: str = "zero"):
    """Treatment of completions that hit the length limit. Returns `(rewards_b, loss_mask_b)`, float32 [B] each.

    - "zero": rewards_b' = where(truncated_b, 0, rewards_b); loss_mask_b = 1 (truncated samples are trained on as
      failures).
    - "mask": rewards_b' = rewards_b; loss_mask_b = 1 - truncated_b (truncated samples leave the loss; callers that
      compute group statistics should also leave them out of the baseline).
    - "none": both unchanged (loss_mask_b = 1).
    """
    if mode not in TRUNCATION_MODES:
        raise ValueError(f"apply_truncation: mode={mode!r}; allowed: {TRUNCATION_MODES}")
    xp = _xp(rewards_b, truncated_b)
    rewards_b = xp.asarray(rewards_b, dtype=xp.float32)
    truncated_b = xp.asarray(truncated_b)
    _check_b("rewards_b", rewards_b)
    _check_b("truncated_b", truncated_b, rewards_b.shape[0])
    if truncated_b.dtype != bool:
        raise ValueError(f"apply_truncation: truncated_b must be bool, got {truncated_b.dtype}")
    ones = xp.ones_like(rewards_b)
    if mode == "zero":
        return xp.where(truncated_b, xp.zeros_like(rewards_b), rewards_b), ones
    if mode == "mask":
        return rewards_b, ones - truncated_b.astype(xp.float32)
    return rewards_b, ones


def length_penalty(rewards_b, lengths_b, *, coef: float, max_length: int, only_correct: bool = False):
    """Length-penalised reward (the paper's "length penalty" baseline), float32 [B]:

        r'_i = r_i - coef * min(L_i, max_length) / max_length

    with L_i the completion length in tokens; so the penalty lies in [0, coef]. With `only_correct=True` the penalty
    applies only where r_i > 0 (wrong answers keep their reward, so a short wrong answer is never preferred over a
    long correct one).
    """
    if max_length <= 0 or coef < 0:
        raise ValueError(f"length_penalty: need max_length > 0 and coef >= 0, got max_length={max_length}, "
                         f"coef={coef}")
    xp = _xp(rewards_b, lengths_b)
    rewards_b = xp.asarray(rewards_b, dtype=xp.float32)
    lengths_b = xp.asarray(lengths_b)
    _check_b("rewards_b", rewards_b)
    _check_b("lengths_b", lengths_b, rewards_b.shape[0])
    frac_b = xp.minimum(lengths_b.astype(xp.float32), float(max_length)) / float(max_length)
    penalty_b = coef * frac_b
    if only_correct:
        penalty_b = xp.where(rewards_b > 0, penalty_b, xp.zeros_like(penalty_b))
    return (rewards_b - penalty_b).astype(xp.float32)


def overlong_penalty(lengths_b, *, max_length: int, buffer_length: int, factor: float = 1.0):
    """DAPO soft overlong punishment, float32 [B] (<= 0), added to the reward:

        S = max_length - buffer_length
        p(L) = 0                                  if L <= S
             = factor * (S - L) / buffer_length   if S < L <= max_length
             = -factor                            if L > max_length

    i.e. no penalty up to L_max - L_buffer, then linear down to -factor (default -1) at L_max.
    """
    if not 0 < buffer_length <= max_length:
        raise ValueError(f"overlong_penalty: need 0 < buffer_length <= max_length, got buffer_length={buffer_length},"
                         f" max_length={max_length}")
    xp = _xp(lengths_b)
    lengths_b = xp.asarray(lengths_b).astype(xp.float32)
    _check_b("lengths_b", lengths_b)
    start = float(max_length - buffer_length)
    ramp_b = (start - lengths_b) / float(buffer_length)
    return (factor * xp.clip(ramp_b, -1.0, 0.0)).astype(xp.float32)


def overlong_shaped_reward(rewards_b, lengths_b, *, max_length: int, buffer_length: int, factor: float = 1.0):
    """DAPO reward with overlong shaping: r'_i = r_i + overlong_penalty(L_i), float32 [B]."""
    xp = _xp(rewards_b, lengths_b)
    rewards_b = xp.asarray(rewards_b, dtype=xp.float32)
    _check_b("rewards_b", rewards_b)
    penalty_b = overlong_penalty(lengths_b, max_length=max_length, buffer_length=buffer_length, factor=factor)
    _check_b("lengths_b", penalty_b, rewards_b.shape[0])
    return rewards_b + penalty_b
