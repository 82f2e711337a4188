"""TrainState (params, optimizer state, step, RNG, skipped-update count), created already sharded."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mrt_jax.learner.config import LearnerConfig
from mrt_jax.models import Decoder, ModelConfig, param_shapes, param_shardings

# Matrices decay; norms and biases do not (the usual AdamW practice).
_NO_DECAY = ("final_norm", "attn_norm", "mlp_norm", "bq", "bk", "bv")


@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a train step changes. ``params`` is ``{name: array}`` (the decoder's pure state dict);
    ``graphdef`` is static (pytree metadata), so ``nnx.merge(state.graphdef, state.params)`` rebuilds the model."""

    params: dict[str, jax.Array]
    opt_state: Any
    step: jax.Array  # int32: optimizer updates attempted
    rng: jax.Array  # uint32 key data; fold_in(step) for any randomness the step needs
    skipped: jax.Array  # int32: updates skipped by the non-finite guard
    graphdef: Any = dataclasses.field(default=None, metadata=dict(static=True))

    def replace(self, **kw) -> TrainState:
        return dataclasses.replace(self, **kw)


jax.tree_util.register_dataclass(
    TrainState, data_fields=["params", "opt_state", "step", "rng", "skipped"], meta_fields=["graphdef"]
)


def lr_schedule(cfg: LearnerConfig) -> optax.Schedule:
    """Linear warmup 0 -> lr over warmup_steps, then cosine to lr * end_lr_ratio at total_steps."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if cfg.warmup_steps else cfg.lr, peak_value=cfg.lr, warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.total_steps, end_value=cfg.lr * cfg.end_lr_ratio,
    )


def make_optimizer(cfg: LearnerConfig) -> optax.GradientTransformation:
    """Global-norm clipping (optional) then AdamW with the warmup + cosine schedule; no decay on norms/biases."""
    decay_mask = lambda params: {k: k not in _NO_DECAY for k in params}  # noqa: E731
    adamw = optax.adamw(lr_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.adam_eps,
                        weight_decay=cfg.weight_decay, mask=decay_mask)
    if cfg.max_grad_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), adamw)


def state_shardings(abstract: TrainState, model_cfg: ModelConfig, mesh: Mesh) -> TrainState:
    """Shardings for a TrainState: every param-shaped leaf (params, Adam moments) by the rules table, the rest
    (counters, RNG) replicated."""
    by_name = param_shardings(model_cfg, mesh)
    shapes = param_shapes(model_cfg)
    replicated = NamedSharding(mesh, PartitionSpec())

    def pick(path, leaf):
        for entry in reversed(path):
            name = getattr(entry, "key", None)
            if name in by_name and tuple(leaf.shape) == shapes[name]:
                return by_name[name]
        return replicated

    return jax.tree_util.tree_map_with_path(pick, abstract)


def _init_state(params, cfg: LearnerConfig, graphdef) -> TrainState:
    return TrainState(
        params=params, opt_state=make_optimizer(cfg).init(params), step=jnp.zeros((), jnp.int32),
        rng=jax.random.key_data(jax.random.key(cfg.seed)), skipped=jnp.zeros((), jnp.int32), graphdef=graphdef,
    )


def create_train_state(
    model_cfg: ModelConfig,
    cfg: LearnerConfig,
    mesh: Mesh | None = None,
    *,
    params: dict[str, jax.Array] | None = None,
    seed: int = 0,
) -> TrainState:
    """A TrainState whose arrays are created in their final sharded layout.

    ``eval_shape`` gives the abstract state, ``state_shardings`` its layout, and ``jit(init, out_shardings)``
    materialises it: random weights from ``seed``, or the given ``params`` (e.g. loaded from a checkpoint).
    """
    abstract_model = nnx.eval_shape(lambda: Decoder(model_cfg, rngs=nnx.Rngs(seed)))
    graphdef, _ = nnx.split(abstract_model)

    def init(p):
        if p is None:
            p = nnx.to_pure_dict(nnx.state(Decoder(model_cfg, rngs=nnx.Rngs(seed))))
        return _init_state(p, cfg, graphdef)

    if params is not None:
        want = param_shapes(model_cfg)
        got = {k: tuple(v.shape) for k, v in params.items()}
        if got != want:
            raise ValueError(f"params do not match the model config: expected shapes {want}, got {got}")
    if mesh is None:
        return jax.jit(init)(params)
    abstract = jax.eval_shape(init, params)
    shardings = state_shardings(abstract, model_cfg, mesh)
    with jax.set_mesh(mesh):
        return jax.jit(init, out_shardings=shardings)(params)


def abstract_train_state(model_cfg: ModelConfig, cfg: LearnerConfig, mesh: Mesh) -> TrainState:
    """The TrainState ``create_train_state`` makes on ``mesh``, as ``jax.ShapeDtypeStruct`` leaves carrying their
    shardings: nothing is allocated (ahead-of-time compilation for a slice this host does not have)."""
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(model_cfg, rngs=nnx.Rngs(0))))
    abstract = jax.eval_shape(
        lambda: _init_state(nnx.to_pure_dict(nnx.state(Decoder(model_cfg, rngs=nnx.Rngs(0)))), cfg, graphdef))
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract,
                        state_shardings(abstract, model_cfg, mesh))
