"""A full copy of the learner's parameters on this process's own devices (the colocated sampler's weights).

The learner shards its parameters over a mesh of all devices of all processes; each process samples with a replica
on a mesh of its local devices. ``local_replica`` reshards onto the global mesh fully replicated (one jitted
identity: XLA all-gathers device to device, nothing crosses the host), then rewraps this process's shards, each
already a full copy, as arrays of the local mesh. The result never aliases the learner's buffers, so the learner may
donate them to its next step.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

_REPLICATE_CACHE: dict[Any, Any] = {}


def _process_mesh(mesh: Mesh, process: int, tensor: int) -> Mesh:
    from mrt_jax.sharding import make_mesh

    mine = [d for d in mesh.devices.flat if d.process_index == process]
    if not mine:
        raise ValueError(f"process {process} has no device in the mesh {dict(mesh.shape)}")
    if len(mine) % tensor:
        raise ValueError(f"tensor={tensor} must divide the {len(mine)} devices of process {process}")
    return make_mesh(len(mine) // tensor, 1, tensor, devices=mine)


def local_mesh_of(mesh: Mesh, tensor: int = 1) -> Mesh:
    """A (data, fsdp=1, tensor) mesh over this process's devices of ``mesh``: the sampler's mesh (rows split over
    ``data``; with ``tensor`` > 1 the weights and KV heads split over ``tensor``, for a model one chip cannot hold:
    ``planner.sampler_tensor``)."""
    return _process_mesh(mesh, jax.process_index(), tensor)


def _replica_mesh(mesh: Mesh, tensor: int) -> Mesh:
    """Every process's local mesh stacked on ``data``: a global mesh whose shardings, replicated over ``data``,
    put on each device exactly what its local mesh's sharding puts there."""
    from mrt_jax.sharding import MESH_AXES

    processes = sorted({d.process_index for d in mesh.devices.flat})
    grid = np.concatenate([_process_mesh(mesh, p, tensor).devices for p in processes], axis=0)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def _replicate_fn(treedef, mesh: Mesh):
    key = (treedef, mesh)
    if key not in _REPLICATE_CACHE:
        _REPLICATE_CACHE[key] = jax.jit(lambda xs: xs, out_shardings=NamedSharding(mesh, PartitionSpec()))
    return _REPLICATE_CACHE[key]


def local_replica(tree: Any, local_mesh: Mesh, specs: Any = None) -> Any:
    """``tree`` (arrays sharded over one global mesh) -> fresh arrays fully replicated on ``local_mesh``, or, with
    ``specs`` (a matching tree of PartitionSpecs over ``local_mesh``'s axes), laid out by them: a tensor-parallel
    replica, of which no chip ever holds more than its shard.

    Every process must call it (the all-gather is a collective). ``local_mesh`` must hold exactly this process's
    devices of the source mesh (``local_mesh_of``).
    """
    leaves, treedef = jax.tree.flatten(tree)
    if not leaves:
        return tree
    meshes = {getattr(x.sharding, "mesh", None) for x in leaves}
    if len(meshes) != 1 or None in meshes:
        raise ValueError(f"local_replica: every leaf must be sharded over one NamedSharding mesh, found {meshes}")
    (mesh,) = meshes
    target = NamedSharding(local_mesh, PartitionSpec())
    mine = {d for d in mesh.devices.flat if d.process_index == jax.process_index()}
    if set(local_mesh.devices.flat) != mine:
        raise ValueError("local_replica: local_mesh must hold exactly this process's devices of the source mesh")
    if specs is None:
        full, targets = _replicate_fn(treedef, mesh)(leaves), [target] * len(leaves)
    else:
        spec_leaves = treedef.flatten_up_to(specs)
        tensor = local_mesh.shape["tensor"]
        if (local_mesh.devices != _process_mesh(mesh, jax.process_index(), tensor).devices).any():
            raise ValueError("local_replica: with specs, local_mesh must be local_mesh_of(source mesh, tensor)")
        full = _layout_fn(treedef, _replica_mesh(mesh, tensor), tuple(spec_leaves))(leaves)
        targets = [NamedSharding(local_mesh, sp) for sp in spec_leaves]
    order = list(local_mesh.devices.flat)
    out = []
    for x, t in zip(full, targets):
        by_device = {s.device: s.data for s in x.addressable_shards}
        out.append(jax.make_array_from_single_device_arrays(x.shape, t, [by_device[d] for d in order]))
    return jax.tree.unflatten(treedef, out)


def _layout_fn(treedef, mesh: Mesh, specs: tuple):
    key = (treedef, mesh, specs)
    if key not in _REPLICATE_CACHE:
        _REPLICATE_CACHE[key] = jax.jit(lambda xs: xs, out_shardings=[NamedSharding(mesh, s) for s in specs])
    return _REPLICATE_CACHE[key]


def tensor_specs(local_mesh: Mesh, cfg) -> Any:
    """The PartitionSpecs of a sampler replica split over ``local_mesh``'s ``tensor`` axis (the model's logical
    axes: heads and MLP columns over ``tensor``; a dim ``tensor`` does not divide stays whole), for
    ``local_replica``."""
    from mrt_jax.models import PARAM_AXES, param_shapes
    from mrt_jax.sharding import logical_to_spec

    return {n: logical_to_spec(PARAM_AXES[n], s, local_mesh) for n, s in param_shapes(cfg).items()}


def sampler_layout(mesh: Mesh, cfg, chip_bytes: int, *, beside: int = 0, sync_copy: bool = False
                   ) -> tuple[Mesh, Any]:
    """This process's sampler mesh and the layout of its replica: ``(local_mesh_of(mesh), None)`` (a full replica
    per chip) when it fits, else split over the smallest ``tensor`` that fits (``planner.sampler_tensor``) with
    the PartitionSpecs to pass to ``local_replica``. ``beside``: bytes a chip holds besides the sampler's weights;
    ``sync_copy``: count the replica a weight sync builds beside the old one (``planner.sampler_tensor``)."""
    from mrt_jax.distributed.planner import sampler_tensor

    chips = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    tensor = sampler_tensor(cfg, chips, chip_bytes, beside=beside, sync_copy=sync_copy)
    local = local_mesh_of(mesh, tensor)
    return (local, None) if tensor == 1 else (local, tensor_specs(local, cfg))
