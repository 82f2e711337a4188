"""Slice presets, per-chip memory estimates and the mesh planner."""

import math

import jax
import pytest
from flax import nnx

from mrt_jax.distributed.memory import GiB, abstract_mesh, estimate_memory, param_elems_per_chip
from mrt_jax.distributed.planner import PlanError, plan_mesh
from mrt_jax.distributed.slices import SLICES, get_slice, resolve_slice
from mrt_jax.models import Decoder, get_preset, param_shapes, param_shardings, shard_model
from mrt_jax.sharding import make_mesh

REQUIRED = ["v4-8", "v4-16", "v4-32", "v5e-1", "v5e-4", "v5e-8", "v5e-16", "v5e-32", "v5e-64", "v5e-128",
            "v5e-256", "v5p-8", "v5p-16", "v5p-32", "v5p-64", "v6e-8", "v6e-16", "v6e-64", "v6e-256", "cpu", "gpu"]


def test_presets_consistent():
    assert set(REQUIRED) <= set(SLICES)
    for name, s in SLICES.items():
        assert s.name == name
        assert s.chips == s.hosts * s.chips_per_host, name
        if s.platform != "tpu":
            continue
        suffix = int(name.split("-")[1])
        # v4/v5p count TensorCores (2 per chip), v5e/v6e count chips.
        assert s.chips == (suffix // 2 if s.generation in ("v4", "v5p") else suffix), name
        assert math.prod(int(x) for x in s.topology.split("x")) == s.chips, name
        assert math.prod(s.chips_per_host_bounds) == min(s.chips, s.chips_per_host), name
        assert s.topology_name == f"{s.generation}:{s.topology}"
        assert s.hbm_bytes_per_chip >= 16 * GiB and s.peak_bf16_flops_per_chip > 1e14
    assert get_slice("v5p-16").chips == 8 and get_slice("v5e-64").hosts == 16


def test_unknown_slice_lists_allowed():
    with pytest.raises(ValueError, match="unknown slice 'v9-8'.*v5e-64"):
        get_slice("v9-8")


def test_cpu_slice_takes_local_devices():
    assert resolve_slice("cpu").chips == len(jax.devices()) == 8
    with pytest.raises(ValueError, match="v5e-8 has 8 chips"):
        resolve_slice("v5e-8", num_devices=4)


def test_param_estimate_exact_unsharded():
    for name in ("tiny", "r1-distill-qwen-1.5b", "llama-3.2-1b"):
        cfg = get_preset(name)
        est = estimate_memory(cfg, 1, 1, 1, batch=1, seq=8)
        assert est.params == cfg.num_params * 4
        assert est.opt_state == 2 * cfg.num_params * 4 and est.grads == est.params


def test_param_estimate_exact_against_sharded_model():
    cfg = get_preset("tiny")
    model = shard_model(Decoder(cfg, rngs=nnx.Rngs(0)), make_mesh(1, 4, 2))
    leaves = [x for x in jax.tree.leaves(model) if isinstance(x, jax.Array)]
    assert sum(x.size for x in leaves) == cfg.num_params
    dev0 = jax.devices()[0]
    on_chip0 = sum(s.data.size for x in leaves for s in x.addressable_shards if s.device == dev0)
    assert param_elems_per_chip(cfg, abstract_mesh(1, 4, 2)) == on_chip0


@pytest.mark.parametrize("axes", [(2, 1, 4), (1, 8, 1), (1, 2, 4)])
def test_param_estimate_exact_against_shardings(axes):
    # tensor=4 does not divide 2 kv heads: those dims are replicated, and the estimate must count them fully.
    cfg = get_preset("tiny")
    shardings = param_shardings(cfg, make_mesh(*axes))
    real = sum(math.prod(shardings[n].shard_shape(s)) for n, s in param_shapes(cfg).items())
    assert param_elems_per_chip(cfg, abstract_mesh(*axes)) == real


def test_kv_cache_and_remat():
    cfg = get_preset("tiny")
    a = estimate_memory(cfg, 1, 1, 1, batch=4, seq=64, sample_batch=4, cache_slots=32)
    # batch x slots x layers x kv heads x head dim x 2 (k and v) x 4 bytes
    assert a.kv_cache == 4 * 32 * 2 * 2 * 16 * 2 * 4
    b = estimate_memory(cfg, 2, 1, 1, batch=4, seq=64, sample_batch=4, cache_slots=32)
    assert b.kv_cache == a.kv_cache // 2
    r = estimate_memory(cfg, 1, 1, 1, batch=4, seq=64, remat=True)
    assert r.activations < a.activations


def test_planner_picks_valid_plan():
    cfg = get_preset("r1-distill-qwen-1.5b")
    p = plan_mesh(cfg, "v5e-8", batch=16, seq=512, remat=True)
    assert p.fits and p.data * p.fsdp * p.tensor == 8 and 16 % (p.data * p.fsdp) == 0
    assert p.tensor == 1 and p.fsdp == 8  # the rule: least tensor, then most fsdp
    p = plan_mesh(get_preset("tiny"), "cpu", batch=2, seq=16)
    assert (p.data * p.fsdp, p.tensor) == (2, 4)  # batch 2 on 8 devices needs tensor parallelism
    mesh = p.make_mesh()
    assert dict(mesh.shape) == {"data": p.data, "fsdp": p.fsdp, "tensor": p.tensor}
    assert plan_mesh(get_preset("tiny"), "cpu", batch=8, seq=16, data=8).axes == (8, 1, 1)


def test_planner_refuses_impossible_plan_with_advice():
    cfg = get_preset("r1-distill-qwen-7b")
    with pytest.raises(PlanError) as e:
        plan_mesh(cfg, "v5e-8", batch=64, seq=512)
    msg = str(e.value)
    assert "over by" in msg and "GiB" in msg and "v5e-8" in msg
    assert "bigger slice v5e-" in msg
    with pytest.raises(PlanError, match="remat=True, bfloat16 params and compute, batch=[0-9]+ on v5e-"):
        plan_mesh(cfg, "v5e-8", batch=64, seq=4096)


def test_planner_bad_axes():
    cfg = get_preset("tiny")
    with pytest.raises(PlanError, match="tensor=3 must be a positive divisor of the device count 8"):
        plan_mesh(cfg, "cpu", batch=8, seq=16, tensor=3)
    with pytest.raises(PlanError, match="product is 8"):
        plan_mesh(cfg, "cpu", batch=8, seq=16, data=2, fsdp=2, tensor=1)
    with pytest.raises(PlanError, match="data\\*fsdp must divide batch=6"):
        plan_mesh(cfg, "cpu", batch=6, seq=16, tensor=1)
    with pytest.raises(PlanError, match="batch must be a positive int"):
        plan_mesh(cfg, "cpu", batch=0, seq=16)


@pytest.mark.parametrize("name", ["smollm2-135m", "tiny", "r1-distill-qwen-1.5b"])  # tied, tied, untied
def test_sampler_weight_bytes_are_the_replica_plus_what_the_fast_weights_copy(name):
    """Against the sampler's own per-layer weights (what --compile_only counts): the fast weights copy the layers
    and an untied head; a tied head and the embedding are shared with the replica."""
    import numpy as np

    from mrt_jax.distributed.planner import sampler_weight_bytes
    from mrt_jax.models import get_preset
    from mrt_jax.sampling.programs import abstract_weights

    cfg = get_preset(name)
    w = abstract_weights(cfg, None)
    nbytes = lambda tree: sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))  # noqa: E731
    fast_own = nbytes(w.layers) + (0 if cfg.tie_word_embeddings else nbytes(w.head))
    replica = cfg.num_params * np.dtype(cfg.param_dtype).itemsize
    assert sampler_weight_bytes(cfg) == replica + fast_own


def test_sampler_tensor_is_the_smallest_split_that_fits():
    from mrt_jax.distributed.planner import sampler_tensor, sampler_weight_bytes
    from mrt_jax.models import get_preset

    r15, r7 = get_preset("r1-distill-qwen-1.5b"), get_preset("r1-distill-qwen-7b")
    # replica + fast weights, as --compile_only measures them on a v5e host: 6.62 + 5.75 GiB (1.5B, float32)
    assert abs(sampler_weight_bytes(r15) / GiB - 12.37) < 0.01
    assert sampler_tensor(r15, 4, 16 * GiB, beside=int(0.3 * GiB)) == 1
    assert sampler_tensor(r15, 4, 16 * GiB, beside=4 * GiB) == 2  # 2 KV heads: at most tensor=2
    assert sampler_tensor(r7, 4, 16 * GiB) == 4
    assert sampler_tensor(r7, 4, 95 * GiB, beside=11 * GiB) == 1
    with pytest.raises(PlanError, match="split over tensor=2 .* use bf16 weights"):
        sampler_tensor(r15, 4, 16 * GiB, beside=10 * GiB)
