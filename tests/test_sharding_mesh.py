"""The mesh follows the ICI topology on TPUs (described v5e slices from libtpu, no TPU needed) and keeps the given
order on devices without coordinates (the fake CPU devices)."""

import os

import jax
import numpy as np
import pytest

from mrt_jax.distributed import get_slice, local_mesh_of
from mrt_jax.distributed.aot import libtpu_available
from mrt_jax.sharding import device_grid, make_mesh

needs_libtpu = pytest.mark.skipif(
    not libtpu_available() and not os.environ.get("CI"),
    reason="libtpu is not installed (scripts/setup.sh installs it); in CI (env CI set) this test runs and fails")


def _topology(name: str, num_slices: int = 1) -> list:
    from jax.experimental import topologies

    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    spec = get_slice(name)
    return list(topologies.get_topology_desc(
        platform="tpu", topology_name=spec.topology_name, chip_config_name=spec.chip_config_name,
        chips_per_host_bounds=spec.chips_per_host_bounds, num_slices=num_slices).devices)


def test_cpu_devices_keep_their_order():
    devices = jax.devices()
    mesh = make_mesh(2, 2, 2)
    assert list(mesh.devices.flat) == devices
    assert list(make_mesh(1, 8, 1, devices=devices[::-1]).devices.flat) == devices[::-1]


@needs_libtpu
@pytest.mark.parametrize("name,shape", [("v5e-8", (1, 8, 1)), ("v5e-8", (2, 4, 1)), ("v5e-8", (1, 4, 2)),
                                        ("v5p-8", (1, 4, 1))])
def test_one_host_mesh_is_mesh_utils_topology_order(name, shape):
    from jax.experimental import mesh_utils

    devices = _topology(name)
    mesh = make_mesh(*shape, devices=devices)
    want = mesh_utils.create_device_mesh(shape, devices=devices, allow_split_physical_axes=True)
    assert (mesh.devices == want).all()
    if name == "v5e-8":  # libtpu's order is not the tray's ring
        assert not (mesh.devices == np.asarray(devices).reshape(shape)).all()


@needs_libtpu
@pytest.mark.parametrize("name,shape", [("v5e-16", (1, 16, 1)), ("v5e-64", (1, 64, 1)), ("v5e-64", (4, 16, 1)),
                                        ("v5e-64", (16, 4, 1)), ("v5p-16", (1, 8, 1))])
def test_multi_host_mesh_keeps_each_hosts_rows_together_in_ici_order(name, shape):
    """The job lays a step's rows out process after process: each host's chips must hold one contiguous run of
    rows, in process order; inside a host the chips are in mesh_utils' topology order."""
    from jax.experimental import mesh_utils
    from jax.sharding import NamedSharding, PartitionSpec

    devices = _topology(name)
    mesh = make_mesh(*shape, devices=devices)
    rows = 4 * len(devices)
    index = NamedSharding(mesh, PartitionSpec(("data", "fsdp"))).devices_indices_map((rows,))
    per_host = rows // len({d.process_index for d in devices})
    for p in sorted({d.process_index for d in devices}):
        mine = [d for d in mesh.devices.flat if d.process_index == p]
        spans = sorted((index[d][0].start, index[d][0].stop) for d in mine)
        assert [a for a, _ in spans] == list(range(p * per_host, (p + 1) * per_host, per_host // len(mine)))
        host = [d for d in devices if d.process_index == p]
        assert mine == list(mesh_utils.create_device_mesh((1, len(host), 1), devices=host).flat)


@needs_libtpu
def test_the_samplers_local_mesh_is_one_hosts_chips():
    devices = _topology("v5e-64")
    local = local_mesh_of(make_mesh(1, 64, 1, devices=devices))  # this host is process 0: its 4 chips
    assert dict(local.shape) == {"data": 4, "fsdp": 1, "tensor": 1}
    assert {d.process_index for d in local.devices.flat} == {0}


@needs_libtpu
def test_multislice_puts_the_data_axis_across_slices():
    devices = _topology("v5e-16", num_slices=2)
    mesh = make_mesh(2, 16, 1, devices=devices)
    assert [{d.slice_index for d in mesh.devices[i].flat} for i in range(2)] == [{0}, {1}]
    with pytest.raises(ValueError, match="data axis .* must be a multiple of the 2 slices"):
        make_mesh(1, 32, 1, devices=devices)
    assert device_grid((2, 16, 1), devices).shape == (2, 16, 1)
