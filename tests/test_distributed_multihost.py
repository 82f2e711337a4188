"""Multi-process init helpers, and a 2-process CPU run that equals the 1-process result."""

import json
import logging
import os
import socket
import sys

import jax
import numpy as np
import pytest

from mrt_jax.distributed.multihost import MainProcessFilter, init_distributed, local_rows
from mrt_jax.sharding import make_mesh, named_sharding
from tests.processes import Child

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(devices: int, args: list[str]) -> Child:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return Child([sys.executable, "-m", "mrt_jax.distributed.check", *args], cwd=ROOT, env=env)


def _finish(p: Child) -> str:
    out, err = p.communicate(timeout=240)
    assert p.returncode == 0, err[-3000:]
    return out


def _json_line(out: str) -> dict:
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def test_two_processes_equal_one(tmp_path):
    port = _free_port()
    two = [_spawn(2, [f"--coordinator=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}",
                      f"--out={tmp_path / 'two.npy'}"]) for i in range(2)]
    one = _spawn(4, [f"--out={tmp_path / 'one.npy'}"])
    outs = [_finish(p) for p in two]
    single, multi = _json_line(_finish(one)), _json_line(outs[0])
    assert not any(line.startswith("{") for line in outs[1].splitlines())  # only process 0 reports
    assert (multi["processes"], multi["devices"], single["processes"], single["devices"]) == (2, 4, 1, 4)
    assert multi["local_rows"] == [0, 4]  # process 0 loads only its half of the batch
    a, b = np.load(tmp_path / "two.npy"), np.load(tmp_path / "one.npy")
    assert a.shape == (8, 16, 512)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert multi["logits_sum"] == pytest.approx(single["logits_sum"], rel=1e-4, abs=1e-3)


def test_init_distributed_single_process_and_bad_args(monkeypatch):
    for k in ("TPU_WORKER_HOSTNAMES", "TPU_WORKER_ID", "TPU_ACCELERATOR_TYPE", "CLOUD_TPU_TASK_ID"):
        monkeypatch.delenv(k, raising=False)
    info = init_distributed()
    assert (info.process_id, info.num_processes, info.global_devices) == (0, 1, 8)
    with pytest.raises(ValueError, match="needs coordinator, num_processes and process_id together"):
        init_distributed("127.0.0.1:1234")
    with pytest.raises(ValueError, match="'host:port'"):
        init_distributed("localhost", 2, 0)
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\)"):
        init_distributed("127.0.0.1:1", 2, 5)


def test_local_rows_single_process():
    mesh = make_mesh(2, 2, 2)
    sharding = named_sharding(mesh, ("batch", "seq"), (8, 4))
    assert local_rows(sharding, (8, 4)) == (0, 8)


def test_main_process_filter():
    f = MainProcessFilter()
    info = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert f.filter(info) is (jax.process_index() == 0)


def test_process_share_single_process():
    from mrt_jax.distributed import process_share

    assert process_share(6) == (0, 6)


def test_allgather_rows_is_the_identity_for_one_process():
    from mrt_jax.distributed import allgather_rows

    tree = {"a": np.arange(6, dtype=np.float32).reshape(3, 2), "b": np.ones(3, np.int32)}
    assert allgather_rows(tree) is tree


def test_local_replica_copies_sharded_params_onto_the_local_mesh():
    from jax.sharding import NamedSharding, PartitionSpec

    from mrt_jax.distributed import local_mesh_of, local_replica

    mesh = make_mesh(1, 8, 1)
    values = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    params = {"w": jax.device_put(values, NamedSharding(mesh, PartitionSpec("fsdp", None))),
              "n": jax.device_put(np.ones(3, np.float32), NamedSharding(mesh, PartitionSpec()))}
    local = local_mesh_of(mesh)
    assert dict(local.shape) == {"data": 8, "fsdp": 1, "tensor": 1}
    out = local_replica(params, local)
    for k, x in out.items():
        assert x.sharding.is_fully_replicated and x.sharding.mesh == local
        np.testing.assert_array_equal(np.asarray(x), np.asarray(params[k]))
        # fresh buffers: the learner may donate its own afterwards
        assert x.addressable_shards[0].data.unsafe_buffer_pointer() != \
            params[k].addressable_shards[0].data.unsafe_buffer_pointer()
    with pytest.raises(ValueError, match="exactly this process's devices"):
        local_replica(params, make_mesh(4, 1, 1, devices=jax.devices()[:4]))


def test_log_on_main_silences_child_loggers_below_warning_on_other_processes(monkeypatch):
    import io

    from mrt_jax.distributed import multihost

    parent, stream = logging.getLogger("mp_test_parent"), io.StringIO()
    handler = logging.StreamHandler(stream)
    parent.addHandler(handler)
    child = logging.getLogger("mp_test_parent.child")
    child.setLevel(logging.INFO)
    try:
        multihost.log_on_main(parent)
        monkeypatch.setattr(multihost, "is_main_process", lambda: False)  # as on process 1
        child.info("progress")
        child.warning("trouble")
        assert stream.getvalue().splitlines() == ["trouble"]
        monkeypatch.setattr(multihost, "is_main_process", lambda: True)
        child.info("progress")
        assert stream.getvalue().splitlines() == ["trouble", "progress"]
    finally:
        parent.removeHandler(handler)


def test_tensor_parallel_replica_samples_like_the_full_one():
    """A sampler too big for one chip: the learner's fsdp params become a replica split over ``tensor`` on this
    process's chips (no chip holds more than its shard), and the Sampler on that mesh decodes the same tokens."""
    from flax import nnx

    from mrt_jax.distributed import local_mesh_of, local_replica
    from mrt_jax.models import PARAM_AXES
    from mrt_jax.sampling import Sampler
    from mrt_jax.sharding import logical_to_spec
    from tests.test_sampling_generate import CFG, PROMPTS, lively_model

    mesh = make_mesh(1, 8, 1)
    with jax.set_mesh(mesh):
        model = lively_model(CFG, mesh=mesh)
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)
    local = local_mesh_of(mesh, tensor=2)
    assert dict(local.shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    specs = {k: logical_to_spec(PARAM_AXES[k], v.shape, local) for k, v in params.items()}
    assert any("tensor" in str(s) for s in specs.values())
    out = local_replica(params, local, specs)
    for k, x in out.items():
        assert x.sharding.mesh == local and x.sharding.spec == specs[k]
        assert x.addressable_shards[0].data.shape == x.sharding.shard_shape(x.shape)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(params[k]))
    nnx.replace_by_pure_dict(state, out)
    tp = Sampler(nnx.merge(graphdef, state), eos_ids=[], max_cache_len=64, mesh=local)
    plain = Sampler(lively_model(), eos_ids=[], max_cache_len=64)
    a = plain.generate(PROMPTS, max_new_tokens=8, temperature=0)
    b = tp.generate(PROMPTS, max_new_tokens=8, temperature=0)
    assert a.tokens == b.tokens
    with pytest.raises(ValueError, match="tensor=3 must divide the 8 devices"):
        local_mesh_of(mesh, tensor=3)


def test_sampler_layout_splits_only_when_a_chip_cannot_hold_the_sampler():
    from mrt_jax.distributed.planner import sampler_weight_bytes
    from mrt_jax.distributed.replica import sampler_layout
    from mrt_jax.models import get_preset

    cfg, mesh = get_preset("tiny"), make_mesh(1, 8, 1)
    need = sampler_weight_bytes(cfg)
    local, specs = sampler_layout(mesh, cfg, chip_bytes=4 * need)
    assert dict(local.shape) == {"data": 8, "fsdp": 1, "tensor": 1} and specs is None
    local, specs = sampler_layout(mesh, cfg, chip_bytes=int(need / 0.9 * 0.6))  # half the weights fit
    assert dict(local.shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    assert specs["wq"] == jax.sharding.PartitionSpec(None, None, "tensor", None)
