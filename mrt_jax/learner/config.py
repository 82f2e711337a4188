"""Learner configuration: one frozen, keyword-only dataclass, validated on construction."""

from __future__ import annotations

import dataclasses

from mrt_jax.rl.losses import AGGREGATIONS, KL_ESTIMATORS


def _bad(field: str, value, allowed: str) -> ValueError:
    return ValueError(f"LearnerConfig.{field}={value!r} is invalid; allowed: {allowed}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LearnerConfig:
    """Optimiser, schedule and loss settings of the policy-gradient learner.

    Schedule: linear warmup 0 -> ``lr`` over ``warmup_steps``, cosine decay to ``lr * end_lr_ratio`` at
    ``total_steps`` (one step = one optimizer update; a train_step makes ``inner_epochs`` updates).
    Loss per token: clipped surrogate (``clip_eps_low/high``, optional ``dual_clip``) + ``kl_coef`` * KL
    (``kl_estimator``; 0 = no reference model) - ``entropy_coef`` * entropy, aggregated by ``aggregation``
    (``norm_len`` is the constant length of 'seq_sum_norm'). ``micro_batches`` splits the batch rows for gradient
    accumulation (exact: the aggregation weights are computed over the whole batch). ``loss_window`` (the longest
    completion, e.g. the sampler's max_new_tokens) runs the LM head and softmax only on each row's ``loss_window``
    columns from its first loss token on (same loss; rows whose loss tokens span more are refused); None: every
    column.
    """

    lr: float = 1e-6
    warmup_steps: int = 0
    total_steps: int = 1000
    end_lr_ratio: float = 0.0
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    clip_eps_low: float = 0.2
    clip_eps_high: float = 0.2
    dual_clip: float | None = None
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    aggregation: str = "token_mean"
    norm_len: int | None = None
    micro_batches: int = 1
    inner_epochs: int = 1
    seed: int = 0
    loss_window: int | None = None

    def __post_init__(self):
        if not self.lr >= 0:  # 0 freezes the weights: a baseline run through the same code
            raise _bad("lr", self.lr, "a float >= 0 (e.g. 1e-6)")
        for f in ("warmup_steps",):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 0:
                raise _bad(f, v, "an int >= 0")
        for f in ("total_steps", "micro_batches", "inner_epochs"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise _bad(f, v, "an int >= 1")
        if self.warmup_steps > self.total_steps:
            raise _bad("warmup_steps", self.warmup_steps, f"<= total_steps ({self.total_steps})")
        if not 0.0 <= self.end_lr_ratio <= 1.0:
            raise _bad("end_lr_ratio", self.end_lr_ratio, "a float in [0, 1]")
        for f in ("weight_decay", "kl_coef", "entropy_coef"):
            if not getattr(self, f) >= 0:
                raise _bad(f, getattr(self, f), "a float >= 0")
        for f in ("b1", "b2"):
            if not 0.0 <= getattr(self, f) < 1.0:
                raise _bad(f, getattr(self, f), "a float in [0, 1)")
        if not self.adam_eps > 0:
            raise _bad("adam_eps", self.adam_eps, "a positive float")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise _bad("max_grad_norm", self.max_grad_norm, "a positive float, or None for no clipping")
        for f in ("clip_eps_low", "clip_eps_high"):
            if not 0.0 < getattr(self, f) < 10.0:
                raise _bad(f, getattr(self, f), "a float in (0, 10), e.g. 0.2 (clip-higher: 0.28)")
        if self.clip_eps_low >= 1.0:
            raise _bad("clip_eps_low", self.clip_eps_low, "< 1 (the lower clip bound is 1 - eps_low)")
        if self.dual_clip is not None and not self.dual_clip > 1.0:
            raise _bad("dual_clip", self.dual_clip, "a float > 1 (e.g. 3.0) or None")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise _bad("kl_estimator", self.kl_estimator, str(KL_ESTIMATORS))
        if self.aggregation not in AGGREGATIONS:
            raise _bad("aggregation", self.aggregation, str(AGGREGATIONS))
        if self.aggregation == "seq_sum_norm" and (not isinstance(self.norm_len, int) or self.norm_len < 1):
            raise _bad("norm_len", self.norm_len, "an int >= 1 (required by aggregation='seq_sum_norm')")
        if self.loss_window is not None and (not isinstance(self.loss_window, int) or self.loss_window < 1):
            raise _bad("loss_window", self.loss_window, "an int >= 1 (the longest completion) or None")

    def replace(self, **kw) -> LearnerConfig:
        return dataclasses.replace(self, **kw)
