"""Create decoders already sharded on a mesh, and move existing ones onto a mesh."""

from __future__ import annotations

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from mrt_jax.models.config import ModelConfig
from mrt_jax.models.decoder import PARAM_AXES, Decoder, param_shapes
from mrt_jax.sharding import named_sharding


def param_shardings(cfg: ModelConfig, mesh: Mesh) -> dict[str, NamedSharding]:
    """Parameter name -> NamedSharding, from the logical axes and the rules table."""
    return {n: named_sharding(mesh, PARAM_AXES[n], s) for n, s in param_shapes(cfg).items()}


def _state_shardings(model_abstract, cfg: ModelConfig, mesh: Mesh):
    shard = param_shardings(cfg, mesh)
    state = nnx.state(model_abstract)
    return jax.tree_util.tree_map_with_path(lambda path, _: shard[str(path[0].key)], state)


def create_model(cfg: ModelConfig, mesh: Mesh | None = None, seed: int = 0) -> Decoder:
    """A randomly initialised decoder whose parameters are created directly in their sharded layout."""
    if mesh is None:
        return Decoder(cfg, rngs=nnx.Rngs(seed))
    abstract = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(seed)))
    graphdef, _ = nnx.split(abstract)
    shardings = _state_shardings(abstract, cfg, mesh)

    @jax.jit
    def init():
        return nnx.state(Decoder(cfg, rngs=nnx.Rngs(seed)))

    state = jax.jit(init, out_shardings=shardings)()
    return nnx.merge(graphdef, state)


def shard_model(model: Decoder, mesh: Mesh) -> Decoder:
    """Place ``model``'s parameters on ``mesh`` by the rules table (in place; returns the model)."""
    shardings = _state_shardings(model, model.cfg, mesh)
    nnx.update(model, jax.device_put(nnx.state(model), shardings))
    return model
