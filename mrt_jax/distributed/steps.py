"""Steps for the planner's ahead-of-time compilation, with their sharded abstract inputs: a stand-in train step
and the Sampler's own decode loop (the job's real programs: ``experiments.compile_only``).

The real learner and sampler plug in through the same :class:`StepSpec`: a function, its abstract arguments
(``jax.ShapeDtypeStruct`` with shardings) and which arguments it donates. Builders take ``(cfg, mesh, shape)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mrt_jax.models import Decoder, ModelConfig, param_shapes, param_shardings
from mrt_jax.sharding import named_sharding


@dataclasses.dataclass(frozen=True)
class StepShape:
    """What one compiled step processes: training batch x seq tokens; sampling rows with cache_slots slots."""

    batch: int
    seq: int
    sample_batch: int
    cache_slots: int


@dataclasses.dataclass(frozen=True)
class StepSpec:
    name: str
    fn: Callable
    args: tuple  # pytrees of jax.ShapeDtypeStruct carrying NamedShardings
    donate_argnums: tuple[int, ...] = ()
    kwargs: dict = dataclasses.field(default_factory=dict)  # static keywords of an already-jitted ``fn``


StepBuilder = Callable[[ModelConfig, Mesh, StepShape], StepSpec]


def abstract_model(cfg: ModelConfig, mesh: Mesh) -> tuple[Any, nnx.State]:
    """(graphdef, params) where params are ShapeDtypeStructs sharded by the rules table; nothing is allocated."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    shard = param_shardings(cfg, mesh)
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shard[str(path[0].key)]), state)
    return graphdef, params


def _sds(mesh: Mesh, shape, dtype, names) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, dtype, sharding=named_sharding(mesh, names, shape))


def opt_state_like(tx: optax.GradientTransformation, params, cfg: ModelConfig, mesh: Mesh):
    """Abstract optimizer state: leaves under a parameter's name with its shape get its sharding, others replicate."""
    shapes, shard = param_shapes(cfg), param_shardings(cfg, mesh)
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(path, x):
        names = [getattr(k, "key", None) for k in path]
        name = next((n for n in reversed(names) if n in shapes and shapes[n] == x.shape), None)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shard[name] if name else replicated)

    return jax.tree_util.tree_map_with_path(place, jax.eval_shape(tx.init, params))


def next_token_loss(graphdef, params, batch: dict) -> jax.Array:
    """Token-mean cross-entropy: sum(mask_bt * -log p(targets_bt | tokens_<=t)) / max(sum(mask_bt), 1)."""
    logits_btv = nnx.merge(graphdef, params)(batch["tokens_bt"], mask_bt=batch["mask_bt"])
    logp_btv = jax.nn.log_softmax(logits_btv)
    nll_bt = -jnp.take_along_axis(logp_btv, batch["targets_bt"][..., None], axis=-1)[..., 0]
    mask_bt = batch["mask_bt"].astype(jnp.float32)
    return (nll_bt * mask_bt).sum() / jnp.maximum(mask_bt.sum(), 1.0)


def default_train_spec(cfg: ModelConfig, mesh: Mesh, shape: StepShape,
                       tx: optax.GradientTransformation | None = None) -> StepSpec:
    """Forward + cross-entropy + grad + AdamW update; ``(params, opt_state, batch) -> (params, opt_state, metrics)``."""
    tx = optax.adamw(1e-6, weight_decay=0.01, mu_dtype=jnp.float32) if tx is None else tx
    graphdef, params = abstract_model(cfg, mesh)
    opt_state = opt_state_like(tx, params, cfg, mesh)
    bt = (shape.batch, shape.seq)
    batch = {"tokens_bt": _sds(mesh, bt, jnp.int32, ("batch", "seq")),
             "targets_bt": _sds(mesh, bt, jnp.int32, ("batch", "seq")),
             "mask_bt": _sds(mesh, bt, jnp.bool_, ("batch", "seq"))}

    def train_step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(lambda p: next_token_loss(graphdef, p, batch))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return StepSpec("train", train_step, (params, opt_state, batch), donate_argnums=(0, 1))


def default_decode_spec(cfg: ModelConfig, mesh: Mesh, shape: StepShape) -> StepSpec:
    """The Sampler's own decode loop (``mrt_jax.sampling.engine``: layerwise weights, the cache carried and
    donated) for ``sample_batch`` rows over ``cache_slots`` slots, greedy, generating up to ``cache_slots`` tokens."""
    from mrt_jax.sampling.programs import CallShape, sampler_programs

    b, s = shape.sample_batch, shape.cache_slots
    (prog,) = sampler_programs(cfg, mesh, CallShape(b, 1, s, s, s, 0), pad_id=0, greedy=True, prefill=False)
    return StepSpec("decode", prog.fn, prog.args, kwargs=prog.kwargs)
