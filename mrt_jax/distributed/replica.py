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
from jax.sharding import Mesh, NamedSharding, PartitionSpec

_REPLICATE_CACHE: dict[Any, Any] = {}


def local_mesh_of(mesh: Mesh) -> Mesh:
    """A (data, fsdp=1, tensor=1) mesh over this process's devices of ``mesh``, in mesh order: the sampler's mesh
    (a full weight replica, rows split over the local devices)."""
    from mrt_jax.sharding import make_mesh

    mine = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    if not mine:
        raise ValueError(f"process {jax.process_index()} has no device in the mesh {dict(mesh.shape)}")
    return make_mesh(len(mine), 1, 1, devices=mine)


def _replicate_fn(treedef, mesh: Mesh):
    key = (treedef, mesh)
    if key not in _REPLICATE_CACHE:
        _REPLICATE_CACHE[key] = jax.jit(lambda xs: xs, out_shardings=NamedSharding(mesh, PartitionSpec()))
    return _REPLICATE_CACHE[key]


def local_replica(tree: Any, local_mesh: Mesh) -> Any:
    """``tree`` (arrays sharded over one global mesh) -> fresh arrays fully replicated on ``local_mesh``.

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
    full = _replicate_fn(treedef, mesh)(leaves)
    order = list(local_mesh.devices.flat)
    out = []
    for x in full:
        by_device = {s.device: s.data for s in x.addressable_shards}
        out.append(jax.make_array_from_single_device_arrays(x.shape, target, [by_device[d] for d in order]))
    return jax.tree.unflatten(treedef, out)
