"""Checkpointer: round trip (typed keys, JSON items), resharding restore, last-K-plus-best, corruption fallback."""

import glob
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mrt_jax.checkpointing import Checkpointer, CheckpointError
from mrt_jax.sharding import make_mesh


def _state(seed: int = 0, mesh=None):
    k = jax.random.key(seed)
    w = jax.random.normal(k, (8, 16), jnp.float32)
    state = {
        "params": {"w": w, "b": jnp.arange(16, dtype=jnp.bfloat16) * seed},
        "opt_state": (jnp.zeros((8, 16)) + seed, {"count": jnp.int32(seed)}),
        "step": jnp.int32(seed),
        "rng": jax.random.fold_in(k, 7),
    }
    if mesh is not None:
        state["params"]["w"] = jax.device_put(w, NamedSharding(mesh, P("fsdp", "tensor")))
    return state


def _abstract(state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def _assert_same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.dtypes.issubdtype(y.dtype, jax.dtypes.prng_key)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("fingerprints", [True, False])
def test_round_trip_typed_key_json_items_and_cadence(tmp_path, fingerprints):
    ckpt = Checkpointer(tmp_path / "ck", save_every=2, keep_last=3, fingerprints=fingerprints)
    assert ckpt.latest_step() is None
    assert not ckpt.maybe_save(1, _state(1))  # not a multiple of save_every
    with pytest.raises(ValueError, match="non-negative int"):
        ckpt.maybe_save(2.0, _state(2))
    assert ckpt.maybe_save(np.int64(2), _state(2), {"data": {"pos": 17}, "config": {"lr": 1e-6}})
    assert not ckpt.maybe_save(2, _state(2))  # never twice
    assert ckpt.maybe_save(3, _state(3), {"data": {"pos": 25}}, force=True)
    ckpt.close()

    again = Checkpointer(tmp_path / "ck", save_every=2)
    assert again.latest_step() == 3
    state, items, step = again.restore(_abstract(_state(0)))
    assert step == 3 and items == {"data": {"pos": 25}}
    _assert_same(state, _state(3))
    # the RNG stream continues identically after resume
    assert jnp.array_equal(jax.random.normal(state["rng"], (3,)), jax.random.normal(_state(3)["rng"], (3,)))
    assert not again.maybe_save(3, _state(3), force=True)  # the step resumed from is on disk already
    state2, items2, _ = again.restore(_abstract(_state(0)), step=2)
    _assert_same(state2, _state(2))
    assert items2["config"] == {"lr": 1e-6}
    assert again.read_json_items(2)["data"] == {"pos": 17}
    again.close()


def test_relative_directory_is_taken_from_the_working_dir(tmp_path, monkeypatch):
    # Orbax refuses relative paths; users pass them (--run_dir=runs/x), so the Checkpointer makes them absolute.
    monkeypatch.chdir(tmp_path)
    ckpt = Checkpointer("runs/x/checkpoints", save_every=1)
    assert ckpt.maybe_save(1, _state(1))
    ckpt.close()
    monkeypatch.chdir("/")
    again = Checkpointer(tmp_path / "runs" / "x" / "checkpoints", save_every=1)
    state, _, step = again.restore(_abstract(_state(0)))
    assert step == 1
    _assert_same(state, _state(1))
    again.close()


def test_restore_onto_another_mesh_from_abstract_mesh(tmp_path):
    mesh_a = make_mesh(1, 4, 2)
    ckpt = Checkpointer(tmp_path / "ck", save_every=1)
    ckpt.maybe_save(1, _state(5, mesh_a))
    ckpt.close()

    mesh_b = make_mesh(2, 1, 4)
    # what nnx.eval_shape gives: NamedSharding over an AbstractMesh
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _state(0))
    target["params"]["w"] = jax.ShapeDtypeStruct(
        (8, 16), jnp.float32, sharding=NamedSharding(mesh_b.abstract_mesh, P("data", "tensor"))
    )
    reader = Checkpointer(tmp_path / "ck", save_every=1)
    with pytest.raises(ValueError, match="AbstractMesh"):
        reader.restore(target)
    state, _, _ = reader.restore(target, mesh=mesh_b)
    assert state["params"]["w"].sharding == NamedSharding(mesh_b, P("data", "tensor"))
    _assert_same(state, _state(5))
    reader.close()


class _Tiny(nnx.Module):
    """Two annotated params: enough to exercise nnx.State trees and AbstractMesh targets (the Decoder is slow here)."""

    def __init__(self, rngs: nnx.Rngs):
        self.w = nnx.Param(jax.random.normal(rngs.params(), (8, 4)), out_sharding=("fsdp", "tensor"))
        self.b = nnx.Param(jnp.arange(4.0), out_sharding=(None,))


def test_nnx_state_restores_onto_another_mesh_via_nnx_eval_shape(tmp_path):
    with jax.set_mesh(make_mesh(1, 4, 2)):
        model = _Tiny(nnx.Rngs(3))
    ckpt = Checkpointer(tmp_path / "ck", save_every=1)
    ckpt.maybe_save(1, {"params": nnx.state(model, nnx.Param), "rng": jax.random.key(9)})
    ckpt.close()

    mesh_b = make_mesh(2, 2, 2)
    with jax.set_mesh(mesh_b):
        abstract_model = nnx.eval_shape(lambda: _Tiny(nnx.Rngs(0)))  # shardings over an AbstractMesh
    target = {"params": nnx.state(abstract_model, nnx.Param), "rng": jax.eval_shape(lambda: jax.random.key(0))}
    state, _, _ = Checkpointer(tmp_path / "ck", save_every=1).restore(target, mesh=mesh_b)
    restored = nnx.merge(nnx.graphdef(abstract_model), state["params"])
    _assert_same(nnx.state(restored, nnx.Param), nnx.state(model, nnx.Param))  # bit-exact across layouts
    assert restored.w[...].sharding == NamedSharding(mesh_b, P("fsdp", "tensor"))
    np.testing.assert_array_equal(jax.random.key_data(state["rng"]), jax.random.key_data(jax.random.key(9)))


def test_mismatched_tree_is_a_clear_error(tmp_path):
    ckpt = Checkpointer(tmp_path / "ck", save_every=1)
    ckpt.maybe_save(1, _state(1))
    ckpt.wait()
    other = _abstract(_state(0))
    other["params"]["extra"] = jax.ShapeDtypeStruct((2,), jnp.float32)
    with pytest.raises(ValueError, match=r"only in target: \[\"\['params'\]\['extra'\]\"\]"):
        ckpt.restore(other, step=1)
    ckpt.close()


@pytest.mark.parametrize("best_mode", ["max", "min"])
def test_keeps_last_k_plus_best(tmp_path, best_mode):
    acc = {1: 0.1, 2: 0.9, 3: 0.3, 4: None, 5: 0.2, 6: 0.25, 7: 0.05}
    ckpt = Checkpointer(tmp_path / "ck", save_every=1, keep_last=2, best_mode=best_mode)
    for step, a in acc.items():
        ckpt.maybe_save(step, _state(step), metrics=None if a is None else {"eval_accuracy": a})
        assert len(ckpt.all_steps()) <= 2 + 1  # K (counting the one in flight) + the best
    ckpt.close()
    best = 2 if best_mode == "max" else 7
    assert Checkpointer(tmp_path / "ck", save_every=1).all_steps() == sorted({6, 7, best})
    # the best survives later saves and a restart (its metric is re-read from disk)
    ckpt = Checkpointer(tmp_path / "ck", save_every=1, keep_last=2, best_mode=best_mode)
    for step in (8, 9, 10):
        ckpt.maybe_save(step, _state(step))
    ckpt.close()
    assert ckpt.all_steps() == sorted({9, 10, best})
    state, _, _ = ckpt.restore(_abstract(_state(0)), step=best)
    _assert_same(state, _state(best))


def _corrupt_marker(step_dir):
    os.remove(os.path.join(step_dir, "_CHECKPOINT_METADATA"))


def _flip_bit(step_dir):
    files = sorted(glob.glob(os.path.join(step_dir, "state", "ocdbt.process_0", "d", "*")), key=os.path.getsize)
    blob = bytearray(open(files[-1], "rb").read())
    blob[len(blob) // 2] ^= 0x10
    open(files[-1], "wb").write(bytes(blob))


def _delete_data(step_dir):
    for f in glob.glob(os.path.join(step_dir, "state", "ocdbt.process_0", "d", "*")):
        os.remove(f)


def _truncate_meta(step_dir):
    path = os.path.join(step_dir, "meta", "metadata")
    os.truncate(path, os.path.getsize(path) // 2)


@pytest.mark.parametrize("corrupt", [_corrupt_marker, _flip_bit, _delete_data, _truncate_meta, "empty_dir"])
def test_broken_newest_falls_back_with_warning(tmp_path, caplog, corrupt):
    d = tmp_path / "ck"
    ckpt = Checkpointer(d, save_every=1, keep_last=5)
    # random (incompressible) data, so the largest chunk file holds raw values a bit flip lands in
    big = lambda s: {**_state(s), "big": jax.random.normal(jax.random.key(s), (256, 64))}  # noqa: E731
    for step in (1, 2):
        ckpt.maybe_save(step, big(step))
    ckpt.close()
    if corrupt == "empty_dir":
        os.makedirs(d / "3")
        broken = 3
    else:
        corrupt(str(d / "2"))
        broken = 2
    reader = Checkpointer(d, save_every=1)
    with pytest.raises(CheckpointError, match=f"step {broken}"):
        reader.restore(_abstract(big(0)), step=broken)
    with caplog.at_level(logging.WARNING, logger="mrt_jax.checkpointing.manager"):
        state, _, step = reader.restore(_abstract(big(0)))
    assert step == broken - 1
    _assert_same(state, big(step))
    assert any(f"checkpoint step {broken}" in r.getMessage() for r in caplog.records)
    # the broken step is moved aside, so the run can save new steps after the one it resumed from
    assert reader.all_steps() == list(range(1, broken))
    assert os.listdir(str(d) + ".quarantine")[0].startswith(f"{broken}-")
    assert reader.maybe_save(broken, big(broken))
    reader.close()
    assert reader.restore(_abstract(big(0)))[2] == broken
