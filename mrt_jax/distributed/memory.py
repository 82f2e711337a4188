"""Per-chip memory estimates for training and sampling a decoder on a (data, fsdp, tensor) mesh.

Parameters, optimizer state, gradients and the KV cache are exact byte counts of the shards the rules table
(``mrt_jax.sharding``) assigns to one chip. Activations are a model of what the backward pass keeps alive
(documented in :func:`activation_bytes`); compare with ``compiled.memory_analysis()`` (``mrt_jax.distributed.aot``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math

import numpy as np
from jax.sharding import AbstractMesh

from mrt_jax.models import CACHE_AXES, PARAM_AXES, ModelConfig, param_shapes, resolve_dtype
from mrt_jax.sharding import MESH_AXES, logical_to_spec

GiB = 1024**3


def abstract_mesh(data: int, fsdp: int, tensor: int) -> AbstractMesh:
    """A device-less mesh with the framework's axis names, for computing shard shapes."""
    return AbstractMesh((data, fsdp, tensor), MESH_AXES)


@contextlib.contextmanager
def _quiet_sharding_log():
    logger = logging.getLogger("mrt_jax.sharding")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _itemsize(dtype) -> int:
    return np.dtype(resolve_dtype(dtype)).itemsize


def shard_elems(shape: tuple[int, ...], names: tuple[str, ...], mesh: AbstractMesh) -> int:
    """Elements of one chip's shard of an array with logical axes ``names`` (exact; replicated dims count fully)."""
    with _quiet_sharding_log():  # the planner tries many meshes; replicated dims are expected there
        spec = logical_to_spec(names, shape, mesh)
    n = 1
    for size, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        axes = () if axes is None else (axes,) if isinstance(axes, str) else axes
        n *= size // math.prod(mesh.shape[a] for a in axes)
    return n


def param_elems_per_chip(cfg: ModelConfig, mesh: AbstractMesh) -> int:
    """Parameter elements stored on one chip: sum over parameters of their shard size."""
    return sum(shard_elems(s, PARAM_AXES[n], mesh) for n, s in param_shapes(cfg).items())


def activation_bytes(cfg: ModelConfig, rows: int, seq: int, tensor: int, remat: bool) -> int:
    """Bytes the backward pass keeps for ``rows`` local sequences of length ``seq`` (a model, not exact).

    Per layer, without remat (a = compute dtype bytes, t = tensor): residual/norm tensors
    ``rows*seq*D*(3a + 8)``, q/k/v and rotated copies ``rows*seq*(H+2K)*E*a/t + rows*seq*(H+K)*E*4/t``, attention
    scores and probabilities ``rows*H*seq^2*(4+a)/t``, attention output ``rows*seq*H*E*a/t``, MLP
    ``4*rows*seq*F*a/t``. With remat only each layer's input ``rows*seq*D*a`` is kept, plus one layer's full set
    while it is recomputed. The loss adds float32 logits, log-softmax and their gradient: ``3*rows*seq*V*4/t``.
    """
    a = _itemsize(cfg.dtype)
    D, F, H, K, E, L, V = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                           cfg.num_layers, cfg.vocab_size)
    n = rows * seq
    per_layer = (n * D * (3 * a + 8) + n * (H + 2 * K) * E * a / tensor + n * (H + K) * E * 4 / tensor
                 + rows * H * seq * seq * (4 + a) / tensor + n * H * E * a / tensor + 4 * n * F * a / tensor)
    layers = L * n * D * a + per_layer if remat else L * per_layer
    logits = 3 * n * V * 4 / tensor
    return int(layers + logits)


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per chip. Persistent: params, master, opt_state. Training adds grads+activations; sampling kv+decode."""

    params: int
    master: int
    opt_state: int
    grads: int
    activations: int
    kv_cache: int
    decode: int
    gathered: int = 0

    @property
    def sample_step(self) -> int:
        """One decode step alone (what a compiled sampler step holds): params, cache, logits, gathered weights."""
        return self.params + self.kv_cache + self.decode + self.gathered

    @property
    def persistent(self) -> int:
        return self.params + self.master + self.opt_state

    @property
    def train_peak(self) -> int:
        return self.persistent + self.grads + self.activations + self.gathered

    @property
    def sample_peak(self) -> int:
        return self.persistent + self.kv_cache + self.decode + self.gathered

    @property
    def total(self) -> int:
        """Peak per chip when training and sampling alternate on the same chips."""
        return max(self.train_peak, self.sample_peak)

    def parts(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def table(self) -> str:
        rows = [f"  {k:<12}{v / GiB:9.3f} GiB" for k, v in self.parts().items()]
        rows += [f"  {'train peak':<12}{self.train_peak / GiB:9.3f} GiB",
                 f"  {'sample peak':<12}{self.sample_peak / GiB:9.3f} GiB",
                 f"  {'total':<12}{self.total / GiB:9.3f} GiB"]
        return "\n".join(rows)


def estimate_memory(
    cfg: ModelConfig,
    data: int,
    fsdp: int,
    tensor: int,
    *,
    batch: int,
    seq: int,
    sample_batch: int = 0,
    cache_slots: int = 0,
    remat: bool | None = None,
    master_fp32: bool = False,
    moment_dtype: str = "float32",
) -> MemoryEstimate:
    """Per-chip bytes for training ``batch`` x ``seq`` tokens and sampling ``sample_batch`` rows of ``cache_slots``.

    params = sum of parameter shards x itemsize(param_dtype); master = fp32 copy of the shards when
    ``master_fp32`` and params are not fp32; opt_state = AdamW's 2 moments x itemsize(moment_dtype); grads =
    param shards in the wider of the param and moment dtypes (the update's fp32 view; fp32 with a master copy);
    activations see :func:`activation_bytes`;
    kv_cache = shard of 2 x [layers, sample_batch, cache_slots, kv heads, head dim] in the compute dtype;
    decode = float32 logits of one decode step (x2 for sampling); gathered = with fsdp > 1, the all-gathered
    embedding table plus one layer's weights in the compute dtype (sharded only over ``tensor``).
    """
    mesh = abstract_mesh(data, fsdp, tensor)
    remat = cfg.remat if remat is None else remat
    n_param = param_elems_per_chip(cfg, mesh)
    p_size = _itemsize(cfg.param_dtype)
    master = n_param * 4 if master_fp32 and p_size != 4 else 0
    # The AdamW update works on a moment-dtype (fp32) view of the gradients: count that, not the bf16 grads.
    grads = n_param * (4 if master else max(p_size, _itemsize(moment_dtype)))
    rows = -(-batch // (data * fsdp))
    act = activation_bytes(cfg, rows, seq, tensor, remat)
    kv_shape = (cfg.num_layers, sample_batch, cache_slots, cfg.num_kv_heads, cfg.head_dim)
    kv = 2 * shard_elems(kv_shape, CACHE_AXES, mesh) * _itemsize(cfg.dtype) if sample_batch and cache_slots else 0
    s_rows = -(-sample_batch // (data * fsdp)) if sample_batch else 0
    decode = 2 * s_rows * shard_elems((cfg.vocab_size,), ("vocab",), mesh) * 4
    gathered = 0
    if fsdp > 1:
        t_mesh, shapes = abstract_mesh(1, 1, tensor), param_shapes(cfg)
        layer = sum(shard_elems(s[1:], PARAM_AXES[n][1:], t_mesh) for n, s in shapes.items()
                    if PARAM_AXES[n][0] == "layers")
        gathered = (shard_elems(shapes["embed"], PARAM_AXES["embed"], t_mesh) + layer) * _itemsize(cfg.dtype)
    return MemoryEstimate(params=n_param * p_size, master=master, opt_state=2 * n_param * _itemsize(moment_dtype),
                          grads=grads, activations=act, kv_cache=kv, decode=decode, gathered=gathered)
