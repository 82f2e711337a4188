"""The Sampler's device programs with abstract arguments: the engine's jitted ``prefill`` and ``decode`` (the
layerwise decode loop) for one call size, each argument a ``jax.ShapeDtypeStruct`` laid out as ``Sampler._run``
lays out the real one. Lowering these compiles, ahead of time and for any mesh, exactly what the Sampler runs
(``experiments.compile_only``; ``tests/test_sampling_programs.py`` compares the lowered text with a real call).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from mrt_jax.models.config import ModelConfig, resolve_dtype
from mrt_jax.models.decoder import param_shapes
from mrt_jax.models.layerwise import LAYER_CACHE_AXES, LayerwiseWeights, split_layers
from mrt_jax.sampling.engine import DecodeState, make_engine
from mrt_jax.sampling.fast_weights import _shardings
from mrt_jax.sampling.layout import block_sizes, chunk_window, row_bucket
from mrt_jax.sampling.sample_logits import SamplingParams
from mrt_jax.sharding import named_sharding


class CallShape(NamedTuple):
    """Sizes of one Sampler call after padding: R rows, A block slots, N token buffer, S cache slots, W slots the
    largest decode chunk carries, ``start`` the block's first slot."""

    rows: int
    block: int
    buffer: int
    slots: int
    window: int
    start: int


def call_shape(n_rows: int, shards: int, feed: int, max_new: int, max_cache_len: int, *, kept: int = 0,
               window: int | None = 128) -> CallShape:
    """The sizes ``Sampler._run`` picks for ``n_rows`` rows whose longest feed is ``feed`` tokens after ``kept``
    cached slots (a fork's prefix, whose rows all feed the same forced text; 0 for ``generate``), generating up to
    ``max_new`` tokens."""
    A, N, S = block_sizes(kept, kept, feed, max_new, max_cache_len, exact_block=kept > 0)
    return CallShape(row_bucket(n_rows, shards), A, N, S, chunk_window(S, kept + A, max_new, window), kept)


@dataclasses.dataclass(frozen=True)
class Program:
    """A jitted function and abstract arguments to lower it with (``fn.lower(*args, **kwargs)``)."""

    name: str
    fn: Any
    args: tuple
    kwargs: dict


def abstract_weights(cfg: ModelConfig, mesh: Mesh | None) -> LayerwiseWeights:
    """The sampler's per-layer weights (``fast_weights``) as sharded ShapeDtypeStructs."""
    params = {n: jax.ShapeDtypeStruct(s, resolve_dtype(cfg.param_dtype)) for n, s in param_shapes(cfg).items()}
    w = jax.eval_shape(lambda p: split_layers(cfg, p), params)
    if mesh is None:
        return w
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), w, _shardings(cfg, mesh, w))


def _sds(mesh, shape, dtype, names=None):
    sharding = named_sharding(mesh, names, shape) if mesh is not None and names is not None else None
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


def _cache(cfg: ModelConfig, mesh, rows: int, slots: int) -> tuple:
    shape = (rows, cfg.num_kv_heads, slots, cfg.head_dim)
    kv = _sds(mesh, shape, resolve_dtype(cfg.dtype), LAYER_CACHE_AXES)
    return tuple((kv, kv) for _ in range(cfg.num_layers))


def _state(mesh, rows: int, buffer: int) -> DecodeState:
    bn, b = ("batch", None), ("batch",)
    return DecodeState(
        tokens_bn=_sds(mesh, (rows, buffer), jnp.int32, bn), logp_bn=_sds(mesh, (rows, buffer), jnp.float32, bn),
        slogp_bn=_sds(mesh, (rows, buffer), jnp.float32, bn), length_b=_sds(mesh, (rows,), jnp.int32, b),
        done_b=_sds(mesh, (rows,), jnp.bool_, b), budget_b=_sds(mesh, (rows,), jnp.int32, b),
        pos0_b=_sds(mesh, (rows,), jnp.int32, b), keys_b=_sds(mesh, (rows, 2), jnp.uint32, bn),
        step=_sds(mesh, (), jnp.int32, ()))


def sampler_programs(cfg: ModelConfig, mesh: Mesh | None, shape: CallShape, *, pad_id: int, n_stops: int = 1,
                     greedy: bool = False, use_filter: bool = False, prefill: bool = True) -> list[Program]:
    """The prefill (unless ``prefill=False``) and the decode loop of one Sampler call of ``shape``, as the
    engine's own jitted functions (``make_engine``: the objects every Sampler of ``cfg`` calls)."""
    prefill_fn, decode_fn = make_engine(cfg, pad_id=pad_id)
    R, A, N, S, W, start = shape
    w = abstract_weights(cfg, mesh)
    st = _state(mesh, R, N)
    # Made before the Sampler enters its mesh: uncommitted.
    params = SamplingParams(_sds(mesh, (), jnp.float32), _sds(mesh, (), jnp.int32), _sds(mesh, (), jnp.float32))
    stop_ids = _sds(mesh, (n_stops,), jnp.int32)
    scalar = _sds(mesh, (), jnp.int32, ())  # made under the Sampler's mesh: replicated on it
    kw = dict(greedy=greedy, use_filter=use_filter)
    out = []
    if prefill:
        block = _sds(mesh, (R, A), jnp.int32, ("batch", None))
        out.append(Program("prefill", prefill_fn, (w, _cache(cfg, mesh, R, S), block, block,
                                                   _sds(mesh, (R, S), jnp.bool_, ("batch", None)), scalar, st,
                                                   params, stop_ids, None), kw))
    out.append(Program("decode", decode_fn, (w, _cache(cfg, mesh, R, W), st,
                                             _sds(mesh, (R, W), jnp.bool_, ("batch", None)), scalar, scalar, params,
                                             stop_ids, None), kw))
    return out


def sampler_shards(mesh: Mesh | None) -> int:
    """Row shards of a Sampler on ``mesh`` (rows pad to a multiple of it): the product of its data axes."""
    if mesh is None:
        return 1
    return int(mesh.shape.get("data", 1) * mesh.shape.get("fsdp", 1))
