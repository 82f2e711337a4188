"""Weight sync: colocated reshard without host transfers; staleness policy; publish/subscribe in one process."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mrt_jax.sharding import make_mesh
from mrt_jax.weight_sync import StalenessPolicy, WeightPublisher, WeightSubscriber, reshard, staleness


def _params(mesh, spec_w, spec_e):
    w = jax.random.normal(jax.random.key(0), (16, 8), jnp.float32)
    e = jnp.arange(8 * 32, dtype=jnp.float32).reshape(8, 32).astype(jnp.bfloat16)
    return {
        "w": jax.device_put(w, NamedSharding(mesh, spec_w)),
        "embed": jax.device_put(e, NamedSharding(mesh, spec_e)),
    }


def _no_host_transfers():
    class _Guard:
        def __enter__(self):
            self._a = jax.transfer_guard_device_to_host("disallow")
            self._b = jax.transfer_guard_host_to_device("disallow")
            self._a.__enter__(), self._b.__enter__()

        def __exit__(self, *exc):
            self._b.__exit__(*exc), self._a.__exit__(*exc)

    return _Guard()


def test_guard_is_active_so_the_reshard_test_can_fail():
    x = jnp.ones(3)
    with _no_host_transfers(), pytest.raises(Exception, match="[Dd]isallowed"):
        np.asarray(x + 1)


@pytest.mark.parametrize("donate", [False, True])
def test_colocated_reshard_same_devices_no_host_transfer(donate):
    learner_mesh, sampler_mesh = make_mesh(1, 8, 1), make_mesh(1, 1, 8)
    params = _params(learner_mesh, P("fsdp", None), P(None, "fsdp"))
    expected = jax.tree.map(np.asarray, params)
    target = {"w": NamedSharding(sampler_mesh, P(None, "tensor")), "embed": NamedSharding(sampler_mesh, P("tensor"))}
    with _no_host_transfers():
        out = reshard(params, target, donate=donate)
        out = reshard(out, out)  # already in place: still fine
    for k in out:
        assert out[k].sharding.is_equivalent_to(target[k], out[k].ndim)
        np.testing.assert_array_equal(np.asarray(out[k]), expected[k])
        assert out[k].dtype == expected[k].dtype


def test_colocated_reshard_to_other_devices_no_host_transfer():
    devs = jax.devices()
    learner_mesh = make_mesh(1, 4, 1, devices=devs[:4])
    sampler_mesh = make_mesh(1, 1, 4, devices=devs[4:])
    params = _params(learner_mesh, P("fsdp"), P())
    sharding = NamedSharding(sampler_mesh, P(None, "tensor"))
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), params)
    with _no_host_transfers():
        out = reshard(params, target)
    for k in out:
        assert out[k].sharding.device_set == set(devs[4:])
        np.testing.assert_array_equal(np.asarray(out[k]), np.asarray(params[k]))


def test_reshard_rejects_mismatched_tree():
    params = _params(make_mesh(1, 8, 1), P(), P())
    with pytest.raises(ValueError, match="does not match"):
        reshard(params, {"w": params["w"].sharding})


def test_staleness_and_policy():
    assert staleness(5, 7) == 2
    np.testing.assert_array_equal(staleness(np.array([7, 6, 3]), 7), [0, 1, 4])
    with pytest.raises(ValueError, match="newer than learner_step"):
        staleness(8, 7)
    policy = StalenessPolicy(max_staleness=1)
    np.testing.assert_array_equal(policy.keep_mask(np.array([7, 6, 5, 3]), 7), [True, True, False, False])
    assert policy.stats(np.array([7, 6, 5, 3]), 7) == {
        "staleness_mean": 1.75, "staleness_max": 4.0, "stale_dropped_frac": 0.5
    }
    with pytest.raises(ValueError, match="max_staleness"):
        StalenessPolicy(max_staleness=-1)


def test_publish_subscribe_in_process(tmp_path):
    mesh = make_mesh(1, 1, 8)
    sub = WeightSubscriber(tmp_path / "pub", mesh=mesh)
    target = {
        "w": jax.ShapeDtypeStruct((16, 8), jnp.float32, sharding=NamedSharding(mesh.abstract_mesh, P(None, "tensor"))),
        "rng": jax.ShapeDtypeStruct((), jax.random.key(0).dtype),
    }
    assert sub.poll(target) is None  # nothing published yet, dir absent
    pub = WeightPublisher(tmp_path / "pub", keep=2)
    for step in (1, 2, 3):
        pub.publish(step, {"w": jnp.full((16, 8), float(step)), "rng": jax.random.key(step)})
    pub.close()
    params, step = sub.poll(target)
    assert step == 3 and sub.step == 3
    np.testing.assert_array_equal(np.asarray(params["w"]), np.full((16, 8), 3.0, np.float32))
    assert params["w"].sharding == NamedSharding(mesh, P(None, "tensor"))
    np.testing.assert_array_equal(jax.random.key_data(params["rng"]), jax.random.key_data(jax.random.key(3)))
    assert sub.poll(target) is None  # nothing newer
    sub.close()


def test_reshard_never_aliases_the_learner_buffers():
    """The training job donates the learner state every step: the sampler's copy must survive that."""
    mesh = make_mesh(1, 8, 1)
    params = _params(mesh, P("fsdp", None), P(None, "fsdp"))
    expected = jax.tree.map(np.asarray, params)
    out = reshard(params, params)  # same layout: the case where forwarding the input buffer would be tempting
    jax.tree.map(lambda x: x.delete(), params)  # what donation does to the learner's buffers
    for k in out:
        np.testing.assert_array_equal(np.asarray(out[k]), expected[k])
