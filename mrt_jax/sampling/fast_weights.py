"""The sampler's own copy of the weights, in the per-layer layout that decodes fast (``mrt_jax.models.layerwise``).

Built on device in one jitted call from the decoder's stacked state; under a mesh each array gets the sharding its
logical axes give (the rules table), so no host round trip and no resharding inside the decode loop.
"""

from __future__ import annotations

import functools

import jax
from flax import nnx

from mrt_jax.models.config import ModelConfig
from mrt_jax.models.decoder import PARAM_AXES
from mrt_jax.models.layerwise import HEAD_AXES, LAYER_AXES, LayerwiseWeights, split_layers
from mrt_jax.sharding import named_sharding

_SPLITTERS: dict[tuple, object] = {}


def _shardings(cfg: ModelConfig, mesh, abstract: LayerwiseWeights) -> LayerwiseWeights:
    def sh(names, x):
        return named_sharding(mesh, names, x.shape)

    layers = tuple({n: sh(LAYER_AXES[n], x) for n, x in layer.items()} for layer in abstract.layers)
    return LayerwiseWeights(sh(PARAM_AXES["embed"], abstract.embed), sh(HEAD_AXES, abstract.head),
                            sh(PARAM_AXES["final_norm"], abstract.final_norm), layers)


def fast_weights(cfg: ModelConfig, state: nnx.State, mesh=None) -> LayerwiseWeights:
    """Per-layer, fused weights from a decoder's state: a new copy of the layer weights (and of an untied output
    projection); the embedding and final norm may share ``state``'s buffers (the sampler never donates them)."""
    params = dict(nnx.to_pure_dict(state))
    key = (repr(cfg), mesh)
    if key not in _SPLITTERS:
        split = functools.partial(split_layers, cfg)
        out = None if mesh is None else _shardings(cfg, mesh, jax.eval_shape(split, params))
        _SPLITTERS[key] = jax.jit(split, out_shardings=out)
    return _SPLITTERS[key](params)
