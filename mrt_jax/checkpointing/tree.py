"""Pytree <-> flat, Orbax-friendly dict; typed PRNG keys; abstract targets on a real mesh; content fingerprints.

Any pytree (dicts, dataclasses, ``nnx.State``, optax states) is saved as a flat dict ``{"leaf_00000": array, ...}``
so Orbax never needs to know the tree's node types; the key paths are stored next to it (JSON) and checked on
restore. Typed PRNG keys are stored as their raw ``key_data`` (uint32) plus the impl name, and rewrapped on restore.

A fingerprint guards against silent corruption (a flipped bit in a chunk restores without error): per leaf,
with ``u`` the leaf's raw bits as uint32 (flattened, index ``i``),
``fp = (sum_i u_i, sum_i u_i * (i + 1))`` in wrapping uint32 arithmetic, computed on device in one jit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

LEAF_FMT = "leaf_{:05d}"


def is_prng_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def flatten_for_save(tree: Any) -> tuple[dict[str, jax.Array], dict[str, Any]]:
    """Tree -> (flat ``{leaf_i: array}``, JSON spec ``{"paths": [...], "key_impls": {leaf_i: impl}}``)."""
    leaves_with_path, _ = jax.tree_util.tree_flatten_with_path(tree)
    flat, paths, impls = {}, [], {}
    for i, (path, leaf) in enumerate(leaves_with_path):
        name = LEAF_FMT.format(i)
        paths.append(jax.tree_util.keystr(path))
        if is_prng_key(leaf):
            impls[name] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        elif not isinstance(leaf, (jax.Array, np.ndarray)):
            if not isinstance(leaf, (int, float, bool, np.generic)):
                raise TypeError(
                    f"checkpoint state leaf {paths[-1]} is a {type(leaf).__name__}; allowed: jax/numpy arrays, "
                    "typed PRNG keys and Python scalars (put other values in the JSON items)"
                )
            leaf = jnp.asarray(leaf)  # canonical JAX dtype, so the restored leaf fingerprints the same
        flat[name] = _global(leaf)
    return flat, {"paths": paths, "key_impls": impls}


def _replicated_everywhere() -> NamedSharding:
    return NamedSharding(Mesh(np.asarray(jax.devices()), ("all",)), PartitionSpec())


def _global(leaf: Any) -> Any:
    """Multi-process runs: Orbax only saves global arrays, so a process-local leaf (a key or counter made outside
    jit, a numpy array) is taken as replicated -- every process must hold the same value -- and made global."""
    if jax.process_count() == 1 or (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable):
        return leaf
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, _replicated_everywhere(), lambda idx: host[idx])


def _key_data_abstract(leaf: Any) -> jax.ShapeDtypeStruct:
    """The abstract uint32 ``key_data`` array of an abstract typed key (sharding extended with None dims)."""
    data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(leaf.shape, leaf.dtype))
    sharding = getattr(leaf, "sharding", None)
    if isinstance(sharding, NamedSharding):
        extra = (None,) * (len(data.shape) - len(leaf.shape))
        sharding = NamedSharding(sharding.mesh, PartitionSpec(*sharding.spec, *extra))
    return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=sharding)


def on_mesh(abstract_tree: Any, mesh: Mesh | None = None) -> Any:
    """Abstract target tree -> ShapeDtypeStructs Orbax accepts.

    Leaves may be ``jax.ShapeDtypeStruct`` (from ``jax.eval_shape`` / ``nnx.eval_shape``) or concrete arrays (their
    shape, dtype and sharding are used). A ``NamedSharding`` over an ``AbstractMesh`` (what ``nnx.eval_shape``
    gives) is rebuilt on ``mesh`` with the same PartitionSpec; Orbax rejects abstract meshes. Multi-process: a leaf
    without a NamedSharding is restored replicated over all devices.
    """

    def one(x):
        if isinstance(x, (int, float, bool, np.generic)):  # a Python scalar leaf was saved as a 0-d array
            x = jnp.asarray(x)
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise TypeError(f"abstract target leaf of type {type(x).__name__} has no shape/dtype")
        sharding = getattr(x, "sharding", None)
        if isinstance(x, np.ndarray):
            sharding = None
        if jax.process_count() > 1 and not isinstance(sharding, NamedSharding):
            sharding = _replicated_everywhere()  # see _global: process-local leaves are saved replicated
        if isinstance(sharding, NamedSharding) and isinstance(sharding.mesh, jax.sharding.AbstractMesh):
            if mesh is None:
                raise ValueError(
                    "the abstract target carries an AbstractMesh (from nnx.eval_shape); pass mesh= the real "
                    "jax.sharding.Mesh to restore onto"
                )
            if tuple(sharding.mesh.axis_names) != tuple(mesh.axis_names):
                raise ValueError(
                    f"abstract target mesh axes {sharding.mesh.axis_names} differ from the mesh's {mesh.axis_names}"
                )
            sharding = NamedSharding(mesh, sharding.spec)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    return jax.tree.map(one, abstract_tree)


def flatten_target(abstract_tree: Any) -> tuple[dict[str, jax.ShapeDtypeStruct], list[str], Any, dict[str, Any]]:
    """Abstract tree -> (flat abstract dict for Orbax, key paths, treedef, ``{leaf_i: abstract typed key}``)."""
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(abstract_tree)
    flat, paths, keys = {}, [], {}
    for i, (path, leaf) in enumerate(leaves_with_path):
        name = LEAF_FMT.format(i)
        paths.append(jax.tree_util.keystr(path))
        if is_prng_key(leaf):
            keys[name] = leaf
            leaf = _key_data_abstract(leaf)
        flat[name] = leaf
    return flat, paths, treedef, keys


def check_paths(stored: list[str], target: list[str], where: str) -> None:
    """Raise ValueError listing how the stored tree's key paths differ from the restore target's."""
    if stored == target:
        return
    only_stored = [p for p in stored if p not in set(target)]
    only_target = [p for p in target if p not in set(stored)]
    raise ValueError(
        f"{where}: the stored state tree ({len(stored)} leaves) does not match the restore target "
        f"({len(target)} leaves); only stored: {only_stored[:10]}; only in target: {only_target[:10]}"
        + ("; same leaves in another order" if not only_stored and not only_target else "")
    )


def unflatten_restored(flat: Mapping[str, Any], treedef: Any, key_impls: Mapping[str, str]) -> Any:
    """Inverse of ``flatten_for_save``: rewrap typed keys, rebuild the tree with the target's treedef."""
    leaves = []
    for i in range(treedef.num_leaves):
        name = LEAF_FMT.format(i)
        leaf = flat[name]
        if name in key_impls:
            leaf = jax.random.wrap_key_data(leaf, impl=key_impls[name])
        leaves.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _leaf_fp(x: jax.Array) -> jax.Array:
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = x.dtype.itemsize
    if size in (1, 2, 4):
        bits = jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]).astype(jnp.uint32)
    else:  # 8-byte types: bitcast to pairs of uint32 (adds a trailing dim of 2)
        bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    bits = bits.reshape(-1)
    weight = jnp.arange(1, bits.shape[0] + 1, dtype=jnp.uint32)  # position weight: catches swapped values
    return jnp.stack([jnp.sum(bits, dtype=jnp.uint32), jnp.sum(bits * weight, dtype=jnp.uint32)])


def _fingerprints(flat: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {k: _leaf_fp(v) for k, v in flat.items()}


_FP_JITS: dict[tuple[int, ...], Any] = {}


def _fingerprint_fn(device_ids: tuple[int, ...]):
    """One jit per device set, with a replicated output so every process can read it locally."""
    if device_ids not in _FP_JITS:
        if device_ids:
            by_id = {d.id: d for d in jax.devices()}
            mesh = Mesh(np.asarray([by_id[i] for i in device_ids]), ("all",))
            _FP_JITS[device_ids] = jax.jit(_fingerprints, out_shardings=NamedSharding(mesh, PartitionSpec()))
        else:
            _FP_JITS[device_ids] = jax.jit(_fingerprints)
    return _FP_JITS[device_ids]


def fingerprint(flat: Mapping[str, Any]) -> dict[str, list[int]]:
    """``{leaf_i: [sum, weighted_sum]}`` of each leaf's raw bits (see module docstring); a few bytes cross to host."""
    groups: dict[tuple[int, ...], dict[str, Any]] = {}
    for k, v in flat.items():  # one jit per device set: a jit cannot mix arrays committed to different devices
        ids = tuple(sorted(d.id for d in v.sharding.device_set)) if isinstance(v, jax.Array) else ()
        groups.setdefault(ids, {})[k] = v
    result = {}
    for ids, group in groups.items():
        for k, v in _fingerprint_fn(ids)(group).items():
            result[k] = [int(s) for s in np.asarray(v.addressable_data(0))]
    return result
