"""--sampler_tensor (issue 16, item 4): the colocated job's sampler split over a host's chips (tensor-parallel
decode) for a model one chip cannot hold, chosen by the planner on a TPU slice or forced by the flag; the job
samples with that split replica, and --compile_only compiles and counts it."""

import json

import jax
import numpy as np
import pytest

from experiments.config import parse_args
from experiments.job_setup import sampler_mesh_for
from mrt_jax.errors import UserError
from mrt_jax.models import get_preset
from mrt_jax.sharding import make_mesh

TINY = get_preset("tiny")  # 4 query heads, 2 KV heads


def test_the_flag_lays_the_replica_out_and_auto_keeps_a_full_copy_off_tpu():
    mesh = make_mesh(1, 8, 1)
    local, specs = sampler_mesh_for(parse_args([]), mesh, TINY)
    assert dict(local.shape) == {"data": 8, "fsdp": 1, "tensor": 1} and specs is None
    local, specs = sampler_mesh_for(parse_args(["--sampler_tensor=2"]), mesh, TINY)
    assert dict(local.shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    assert specs["wq"] == jax.sharding.PartitionSpec(None, None, "tensor", None)
    assert sampler_mesh_for(parse_args([]), None, TINY) == (None, None)  # one device: the sampler is the model


@pytest.mark.parametrize("flags, mesh, match", [
    (["--sampler_tensor=2"], None, "the job sees one device; use --sampler_tensor=0 or 1"),
    (["--sampler_tensor=4"], 8, "--sampler_tensor=4 must divide the model's 2 KV heads"),
    (["--sampler_tensor=3"], 6, "must divide the model's 2 KV heads"),
])
def test_layouts_that_cannot_work_are_one_line_errors(flags, mesh, match):
    with pytest.raises(UserError, match=match):
        sampler_mesh_for(parse_args(flags), None if mesh is None else make_mesh(1, mesh, 1,
                                                                               devices=jax.devices()[:mesh]), TINY)


def test_the_flag_is_refused_where_the_sampler_has_its_own_mesh(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--sync=disaggregated", "--sampler_tensor=2"])
    assert "--sampler_tensor=2 has no effect here" in capsys.readouterr().err


def _run(tmp_path, name: str, extra: list[str], monkeypatch) -> tuple[list[dict], list]:
    """The tiny job (8 fake devices: the learner fsdp over all), its metrics and the Samplers it built."""
    import mrt_jax.sampling
    from experiments.mrt_math import main

    built = []

    class Recording(mrt_jax.sampling.Sampler):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            built.append(self)

    monkeypatch.setattr(mrt_jax.sampling, "Sampler", Recording)
    run_dir = tmp_path / name
    assert main(["--preset=tiny", "--steps=2", "--eval_every=2", "--save_every=2", f"--run_dir={run_dir}",
                 *extra]) == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return rows, built


def test_the_job_samples_with_a_tensor_parallel_replica_as_with_full_copies(tmp_path, monkeypatch):
    split, (sampler,) = _run(tmp_path, "tp", ["--sampler_tensor=2"], monkeypatch)
    assert dict(sampler.mesh.shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    wq = sampler.state["wq"][...]
    assert wq.addressable_shards[0].data.shape[2] == TINY.num_heads // 2  # no chip holds the whole weight
    assert {d.id for d in wq.sharding.mesh.devices.flat} == {d.id for d in jax.devices()}
    full, (plain,) = _run(tmp_path, "full", [], monkeypatch)
    assert dict(plain.mesh.shape)["tensor"] == 1
    assert [r["step"] for r in split] == [r["step"] for r in full] == [1, 2]
    for a, b in zip(split, full):  # the same weights, split: the same rollouts and forks (the random tiny model
        # scores nothing, so the tokens show through their lengths and the learner's entropy and ratio on them)
        for k in ("mean_length", "sampled_tokens", "meta_tokens", "truncated_frac", "entropy", "ratio_mean"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=f"step {a['step']} {k}")


def test_compile_only_compiles_and_counts_the_split_sampler(capsys, tmp_path, monkeypatch):
    """v5e-8 (one host): with --sampler_tensor=2 the sampler programs compile on a 4 x 2 (data x tensor) mesh and
    each chip's replica is half of the full one (the tiny model splits every weight but the embedding and norms)."""
    import os

    from experiments.mrt_math import main
    from mrt_jax.distributed.aot import libtpu_available

    if not libtpu_available() and not os.environ.get("CI"):
        pytest.skip("libtpu is not installed (scripts/setup.sh installs it); in CI this test runs and fails")
    monkeypatch.setenv("MRT_JAX_CACHE", str(tmp_path / "cache"))
    reports = {}
    for tensor in (1, 2):
        assert main(["--compile_only", "--tpu=v5e-8", "--preset=tiny", f"--sampler_tensor={tensor}"]) == 0
        reports[tensor] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert reports[2]["sampler_mesh"] == {"data": 4, "fsdp": 1, "tensor": 2}
    assert reports[1]["sampler_mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}
    full, split = reports[1]["resident"], reports[2]["resident"]
    embed = TINY.vocab_size * TINY.hidden_size * 4  # kept whole on every chip (tied head)
    assert split["replica"] < full["replica"] and split["replica"] - embed < 0.6 * (full["replica"] - embed)
    assert split["fast_weights"] < 0.6 * full["fast_weights"]
    assert set(reports[2]["programs"]) == set(reports[1]["programs"])  # the same programs, on the split mesh


@pytest.mark.parametrize("model, slice_name, dtype, want", [
    ("r1-distill-qwen-1.5b", "v5e-64", "float32", 2),  # compile-only: 19.3 GiB per chip whole, 9.8 split in two
    ("r1-distill-qwen-1.5b", "v5e-64", "bfloat16", 1),  # compile-only: 9.7 GiB whole
    ("r1-distill-qwen-7b", "v5p-16", "float32", 2),
])
def test_auto_splits_where_the_replica_and_a_sync_copy_do_not_fit(model, slice_name, dtype, want):
    """The planner's auto choice counts what compile-only found at the sync phase's peak: the replica, its fast
    weights and the new replica a weight sync builds, beside the learner's shard."""
    from mrt_jax.distributed.planner import learner_shard_bytes, sampler_tensor
    from mrt_jax.slice_presets import get_slice

    cfg, spec = get_preset(model).replace(param_dtype=dtype), get_slice(slice_name)
    beside = learner_shard_bytes(cfg, spec.chips)  # what the job's auto layout (job_setup.sampler_mesh_for) counts
    assert sampler_tensor(cfg, spec.chips // spec.hosts, spec.memory_per_chip(), beside=beside,
                          sync_copy=True) == want
    assert sampler_tensor(cfg, spec.chips // spec.hosts, spec.memory_per_chip(), beside=beside) == 1  # weights alone
