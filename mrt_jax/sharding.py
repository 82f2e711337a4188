"""Logical axis names -> mesh axes: the one rules table the whole framework shards by.

Parameters and key activations are annotated with *logical* names (``"embed"``, ``"q_heads"``, ...). One rules
table maps each logical name to zero or more mesh axes (``data``, ``fsdp``, ``tensor``). Changing the parallelism
strategy means changing the table or the mesh shape, never the model code.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axes (a tuple shards one array dim over several mesh axes, in order).
DEFAULT_RULES: dict[str, tuple[str, ...]] = {
    "batch": ("data", "fsdp"),
    "seq": (),
    "cache_seq": (),
    "layers": (),
    "vocab": ("tensor",),
    "embed": ("fsdp",),
    "act_embed": (),
    "q_heads": ("tensor",),
    "kv_heads": ("tensor",),
    "head_dim": (),
    "mlp": ("tensor",),
    "norm": (),
}

_warned: set[tuple] = set()


def make_mesh(
    data: int = 1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A (data, fsdp, tensor) mesh over ``devices`` (default: all). Axis sizes must multiply to the device count."""
    devices = list(jax.devices() if devices is None else devices)
    for name, size in zip(MESH_AXES, (data, fsdp, tensor)):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"mesh axis {name!r} must be a positive int, got {size!r}")
    if data * fsdp * tensor != len(devices):
        raise ValueError(
            f"mesh data={data} x fsdp={fsdp} x tensor={tensor} = {data * fsdp * tensor} devices, "
            f"but {len(devices)} devices are available; choose axis sizes whose product is {len(devices)}"
        )
    return Mesh(device_grid((data, fsdp, tensor), devices), MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def device_grid(shape: Sequence[int], devices: Sequence[jax.Device]) -> np.ndarray:
    """``devices`` arranged as ``shape``. Devices without coordinates (CPU, GPU) keep the given order. TPUs:
    - one process's chips: by their ICI coordinates (``mesh_utils.create_device_mesh``: mesh axes run along links);
    - several processes of one slice: each process's chips as one ICI-ordered block, the blocks in process order
      (``create_hybrid_device_mesh`` with processes as granules), so every process holds a contiguous run of the
      batch rows, process after process, as the job lays them out (``multihost.local_rows``);
    - several slices: the ``data`` axis across slices (only data-parallel traffic crosses the slower DCN)."""
    devices = list(devices)
    if not devices or devices[0].platform != "tpu" or len(devices) == 1:
        return np.asarray(devices, dtype=object).reshape(shape)
    from jax.experimental import mesh_utils

    slices = sorted({getattr(d, "slice_index", 0) for d in devices})
    if len(slices) > 1:
        if shape[0] % len(slices):
            raise ValueError(f"the data axis ({shape[0]}) must be a multiple of the {len(slices)} slices: each slice "
                             f"holds whole data-parallel replicas; choose data={len(slices)} x k")
        per_slice = (shape[0] // len(slices), *shape[1:])
        return mesh_utils.create_hybrid_device_mesh(per_slice, (len(slices),) + (1,) * (len(shape) - 1),
                                                    devices=devices, allow_split_physical_axes=True)
    processes = len({d.process_index for d in devices})
    if processes == 1:
        return mesh_utils.create_device_mesh(shape, devices=devices, allow_split_physical_axes=True)
    dcn = _process_blocks(shape, processes)
    if dcn is None:  # a process's chips cannot be one block of rows (e.g. tensor across hosts): process order
        return np.asarray(sorted(devices, key=lambda d: (d.process_index, d.id)), dtype=object).reshape(shape)
    per_process = tuple(n // k for n, k in zip(shape, dcn))
    return mesh_utils.create_hybrid_device_mesh(per_process, dcn, devices=devices, process_is_granule=True,
                                                allow_split_physical_axes=True)


def _process_blocks(shape: Sequence[int], processes: int) -> tuple[int, ...] | None:
    """How many process blocks go along (data, fsdp, tensor) so that each process's rows (rows run over data,
    then fsdp) are contiguous: all along data, or one block per data index and the rest along fsdp."""
    data, fsdp = shape[0], shape[1]
    if data % processes == 0:
        return (processes, 1, *(1,) * (len(shape) - 2))
    if processes % data == 0 and fsdp % (processes // data) == 0:
        return (data, processes // data, *(1,) * (len(shape) - 2))
    return None


def single_device_mesh() -> Mesh:
    return make_mesh(1, 1, 1, devices=jax.devices()[:1])


def logical_to_spec(
    names: Sequence[str | None],
    shape: Sequence[int] | None = None,
    mesh: Mesh | None = None,
    rules: dict[str, tuple[str, ...]] | None = None,
) -> PartitionSpec:
    """PartitionSpec for an array whose dims carry ``names``.

    When ``shape`` and ``mesh`` are given, a dim whose size the mapped mesh axes do not divide is replicated
    instead (with a one-time warning): e.g. 3 KV heads on tensor=2. A mesh axis is used at most once per array.
    """
    rules = DEFAULT_RULES if rules is None else rules
    used: set[str] = set()
    out = []
    for i, name in enumerate(names):
        if name is None:
            out.append(None)
            continue
        if name not in rules:
            raise KeyError(f"logical axis {name!r} has no rule; known: {sorted(rules)}")
        axes = tuple(a for a in rules[name] if a not in used)
        if mesh is not None:
            axes = tuple(a for a in axes if a in mesh.shape and mesh.shape[a] > 1)
        if shape is not None and mesh is not None and axes:
            size = math.prod(mesh.shape[a] for a in axes)
            if shape[i] % size:
                key = (name, shape[i], axes)
                if key not in _warned:
                    _warned.add(key)
                    log.warning(
                        "dim %r of size %d is not divisible by mesh axes %s (size %d): replicating it",
                        name, shape[i], axes, size,
                    )
                axes = ()
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def named_sharding(mesh: Mesh, names: Sequence[str | None], shape: Sequence[int] | None = None,
                   rules: dict[str, tuple[str, ...]] | None = None) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(names, shape, mesh, rules))


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Sharding constraint on an activation by logical names, under the mesh set with ``jax.set_mesh``.

    Outside any mesh (or on a 1-device mesh) this is the identity.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty or mesh.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, logical_to_spec(names, x.shape, mesh))
