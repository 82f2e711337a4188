"""The pure, sharded policy-gradient train step: ``train_step(state, batch) -> (state, metrics)``.

Batch (a dict of [N, T] arrays, N rows of prompt + completion): ``tokens`` (int), ``loss_mask`` (completion
tokens only), ``old_logp`` (sampler logprobs of the tokens), ``advantages``; optional ``ref_logp`` (needed iff
``kl_coef > 0``), ``attn_mask`` (non-padding tokens; default all) and ``positions``.

One call runs ``inner_epochs`` optimizer updates over the batch (PPO style); each update accumulates gradients
over ``micro_batches`` slices of the rows. Loss weights come from the whole batch, so the accumulated gradient
equals the full-batch gradient. An update whose loss or gradient is not finite is skipped and counted.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mrt_jax.learner.config import LearnerConfig
from mrt_jax.learner.logprobs import (
    check_loss_span,
    default_positions,
    logprobs_from_logits,
    loss_window,
    picked_logprobs,
)
from mrt_jax.learner.state import TrainState, lr_schedule, make_optimizer, state_shardings
from mrt_jax.models import ModelConfig
from mrt_jax.rl.losses import aggregation_weights, policy_loss
from mrt_jax.sharding import logical_to_spec

REQUIRED_KEYS = ("tokens", "loss_mask", "old_logp", "advantages")
OPTIONAL_KEYS = ("ref_logp", "attn_mask", "positions")


def check_batch(batch: dict, cfg: LearnerConfig) -> None:
    """Raise ValueError naming the key and shape when the batch is malformed."""
    if not isinstance(batch, dict):
        raise TypeError(f"batch must be a dict of arrays, got {type(batch).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch is missing keys {missing}; required: {REQUIRED_KEYS}, optional: {OPTIONAL_KEYS}")
    unknown = sorted(set(batch) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ValueError(f"batch has unknown keys {unknown}; allowed: {REQUIRED_KEYS + OPTIONAL_KEYS}")
    shape = tuple(batch["tokens"].shape)
    if len(shape) != 2:
        raise ValueError(f"batch['tokens'] must be [N, T], got shape {shape}")
    for k, v in batch.items():
        if tuple(v.shape) != shape:
            raise ValueError(f"batch[{k!r}] has shape {tuple(v.shape)}; every entry must be [N, T] = {shape}")
    if cfg.kl_coef > 0 and "ref_logp" not in batch:
        raise ValueError(f"kl_coef={cfg.kl_coef} > 0 needs batch['ref_logp'] (see reference_logprobs)")
    if shape[0] % cfg.micro_batches:
        raise ValueError(f"batch has N={shape[0]} rows, not divisible by micro_batches={cfg.micro_batches}")
    if cfg.loss_window is not None and isinstance(batch["loss_mask"], np.ndarray):  # host rows: check the window
        check_loss_span(batch["loss_mask"], cfg.loss_window)


def _loss_fn(params, graphdef, mb: dict, w_bt: jax.Array, cfg: LearnerConfig):
    model = nnx.merge(graphdef, params)
    attn = mb.get("attn_mask")
    attn = jnp.ones(mb["tokens"].shape, bool) if attn is None else attn.astype(bool)
    pos = mb.get("positions")
    pos = default_positions(attn) if pos is None else pos
    ref = mb.get("ref_logp") if cfg.kl_coef > 0 else None
    old, adv = mb["old_logp"].astype(jnp.float32), mb["advantages"]
    if cfg.loss_window is None:
        logits = model(mb["tokens"], pos, mask_bt=attn)
        logp, ent = logprobs_from_logits(logits, mb["tokens"], return_entropy=True)
    else:
        # The LM head (a [D, V] matmul per position, about a third of the forward for a small model) and the
        # softmax only where loss tokens can be: each row's completion window. Same loss, fewer FLOPs.
        hidden = model(mb["tokens"], pos, mask_bt=attn, return_hidden=True)
        cols, in_range = loss_window(mb["loss_mask"], cfg.loss_window)
        take = lambda x: jnp.take_along_axis(x, cols, axis=1)  # noqa: E731
        h = jnp.take_along_axis(hidden, jnp.maximum(cols - 1, 0)[..., None], axis=1)  # predicts the token at cols
        logp, ent = picked_logprobs(model.logits(h), take(mb["tokens"]), return_entropy=True)
        old, adv, w_bt = take(old), take(adv), jnp.where(in_range, take(w_bt), 0.0)
        ref = None if ref is None else take(ref)
    return policy_loss(
        logp, old, adv, w_bt,
        eps_low=cfg.clip_eps_low, eps_high=cfg.clip_eps_high, dual_clip=cfg.dual_clip,
        ref_logp_bt=ref, kl_coef=cfg.kl_coef,
        kl_estimator=cfg.kl_estimator, entropy_bt=ent, entropy_coef=cfg.entropy_coef,
    )


def _split_micro(x: jax.Array, m: int) -> jax.Array:
    # Micro-batch k takes rows k, k+m, k+2m, ...: with rows sharded, every micro-batch spans all devices.
    n = x.shape[0]
    return x.reshape(n // m, m, *x.shape[1:]).swapaxes(0, 1)


def _advantage_stats(adv_bt, mask_bt) -> dict[str, jax.Array]:
    m = mask_bt.astype(bool)
    n = jnp.maximum(jnp.sum(m), 1)
    mean = jnp.sum(jnp.where(m, adv_bt, 0.0)) / n
    std = jnp.sqrt(jnp.sum(jnp.where(m, (adv_bt - mean) ** 2, 0.0)) / n)
    big = jnp.finfo(jnp.float32).max
    return {"adv_mean": mean, "adv_std": std, "adv_max": jnp.max(jnp.where(m, adv_bt, -big)),
            "adv_min": jnp.min(jnp.where(m, adv_bt, big)), "active_tokens": jnp.sum(m).astype(jnp.float32)}


def build_train_step(cfg: LearnerConfig) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """The un-jitted pure step (for composition); ``make_train_step`` jits it with shardings and donation."""
    optimizer = make_optimizer(cfg)
    schedule = lr_schedule(cfg)
    grad_fn = jax.value_and_grad(_loss_fn, has_aux=True)

    def update(state: TrainState, batch: dict, w_bt: jax.Array):
        mbs = jax.tree.map(lambda x: _split_micro(x, cfg.micro_batches), batch)
        w_mb = _split_micro(w_bt, cfg.micro_batches)
        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)

        def accumulate(acc, xs):
            mb, w = xs
            (_, metrics), g = grad_fn(state.params, state.graphdef, mb, w, cfg)
            grads = jax.tree.map(lambda a, b: a + b.astype(jnp.float32), acc[0], g)
            return (grads, jax.tree.map(jnp.add, acc[1], metrics)), None

        _, m0 = jax.eval_shape(lambda: _loss_fn(state.params, state.graphdef, jax.tree.map(lambda x: x[0], mbs),
                                                w_mb[0], cfg))
        (grads, metrics), _ = jax.lax.scan(
            accumulate, (zeros, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), m0)), (mbs, w_mb))
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
        # Accumulate in float32, update in the params' dtype; every leaf keeps its dtype (a fixed-point carry).
        grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.params)
        updates, new_opt = optimizer.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jax.tree.map(  # noqa: E731
            lambda a, b: jnp.where(finite, a, b).astype(b.dtype), new, old)
        new_state = state.replace(
            params=keep(new_params, state.params), opt_state=keep(new_opt, state.opt_state),
            step=state.step + 1, skipped=state.skipped + (~finite).astype(jnp.int32),
        )
        metrics = dict(metrics, grad_norm=grad_norm, lr=schedule(state.step), update_finite=finite.astype(jnp.float32))
        return new_state, metrics

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        w_bt = aggregation_weights(batch["loss_mask"], cfg.aggregation, norm_len=cfg.norm_len)
        state, per_epoch = jax.lax.scan(lambda s, _: update(s, batch, w_bt), state, None, length=cfg.inner_epochs)
        metrics = {k: jnp.mean(v) for k, v in per_epoch.items()}
        metrics["grad_norm_max"] = jnp.max(per_epoch["grad_norm"])
        metrics["first_epoch_loss"] = per_epoch["loss"][0]
        metrics["skipped_updates"] = state.skipped.astype(jnp.float32)
        metrics[f"agg/{cfg.aggregation}"] = jnp.float32(1.0)  # which aggregation is active, visible in logs
        metrics.update(_advantage_stats(batch["advantages"].astype(jnp.float32), batch["loss_mask"]))
        return state, metrics

    return train_step


def batch_sharding(mesh: Mesh, shape: tuple[int, int]) -> NamedSharding:
    """Rows over (data, fsdp), sequence replicated."""
    return NamedSharding(mesh, logical_to_spec(("batch", "seq"), shape, mesh))


def make_train_step(cfg: LearnerConfig, model_cfg: ModelConfig, mesh: Mesh | None = None):
    """``train_step(state, batch) -> (state, metrics)``, jitted once per batch shape with explicit shardings
    (state by the rules table, batch rows over data x fsdp, metrics replicated) and the state donated.
    The batch is validated on the host before dispatch."""
    step = build_train_step(cfg)
    cache: dict = {}

    def jitted(state: TrainState, batch: dict):
        check_batch(batch, cfg)
        key = (tuple(sorted(batch)), tuple(batch["tokens"].shape))
        if key not in cache:
            if mesh is None:
                cache[key] = jax.jit(step, donate_argnums=0)
            else:
                st_sh = state_shardings(state, model_cfg, mesh)
                b_sh = batch_sharding(mesh, key[1])
                cache[key] = jax.jit(step, in_shardings=(st_sh, b_sh), out_shardings=(st_sh, NamedSharding(
                    mesh, PartitionSpec())), donate_argnums=0)
        return cache[key]

    def run(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        fn = jitted(state, batch)
        if mesh is None:
            return fn(state, batch)
        with jax.set_mesh(mesh):
            return fn(state, batch)

    def lower(state: TrainState, batch: dict):
        """The program ``run`` would execute for these (abstract) arguments, lowered, not run:
        ``--compile_only`` compiles exactly the job's step this way."""
        fn = jitted(state, batch)
        if mesh is None:
            return fn.lower(state, batch)
        with jax.set_mesh(mesh):
            return fn.lower(state, batch)

    run.lower = lower
    return run


def reference_logprobs(cfg: LearnerConfig, ref_graphdef, ref_params, batch: dict) -> dict:
    """Add ``ref_logp`` (reference-policy logprobs of the batch tokens) to the batch when ``kl_coef > 0``.

    With ``kl_coef == 0`` the batch is returned unchanged and the reference model is never run (``ref_params``
    may be None).
    """
    if cfg.kl_coef == 0:
        return batch
    if ref_params is None:
        raise ValueError(f"kl_coef={cfg.kl_coef} > 0 needs reference params (ref_params is None)")
    from mrt_jax.learner.logprobs import token_logprobs

    model = nnx.merge(ref_graphdef, ref_params)
    ref = token_logprobs(model, batch["tokens"], batch.get("attn_mask"), batch.get("positions"))
    return dict(batch, ref_logp=jax.lax.stop_gradient(ref))
