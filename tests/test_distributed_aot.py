"""Ahead-of-time compilation for a TPU slice on this CPU host (needs libtpu), and the pluggable step builders."""

import json
import os

import jax
import jax.numpy as jnp
import pytest

from mrt_jax.distributed.aot import compile_for_slice, libtpu_available, main
from mrt_jax.distributed.steps import StepSpec
from mrt_jax.models import get_preset

needs_libtpu = pytest.mark.skipif(
    not libtpu_available() and not os.environ.get("CI"),
    reason="libtpu is not installed (pip install 'jax[tpu]==0.10.2'); in CI (env CI set) this test runs and fails",
)


@needs_libtpu
def test_compile_tiny_for_v5e_4():
    cfg = get_preset("tiny", remat=True)
    report = compile_for_slice("v5e-4", cfg, batch=4, seq=32, cache_slots=48, model_name="tiny")
    assert report.plan.axes == (1, 4, 1)
    train, decode = report.steps
    assert (train.name, decode.name) == ("train", "decode")
    m = report.plan.memory
    # Decode arguments hold the param shards and the KV cache shard (TPU pads tiny dims to (8, 128) tiles, so
    # XLA's bytes can be several times the logical ones at this toy size; real shapes are compared in BUILD_TPU.md).
    assert m.params + m.kv_cache <= decode.argument <= 4 * (m.params + m.kv_cache)
    # Training donates params and optimizer state, so XLA aliases at least that many bytes.
    assert train.alias >= m.params + m.opt_state and train.flops > 0
    line = json.loads(report.to_json())
    assert line["slice"] == "v5e-4" and line["compiled"]["decode"]["peak"] == decode.peak


@needs_libtpu
def test_cli_prints_table_then_json(capsys):
    assert main(["--tpu=v5e-1", "--model=tiny", "--seq=16", "--batch=2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("train") for line in out)
    assert json.loads(out[-1])["mesh"] == {"data": 1, "fsdp": 1, "tensor": 1}


def test_cli_bad_input(capsys):
    assert main(["--tpu=v7-8", "--model=tiny"]) == 2
    assert "unknown slice 'v7-8'" in capsys.readouterr().err
    assert main(["--tpu=cpu", "--model=nope"]) == 2
    assert "unknown model preset 'nope'" in capsys.readouterr().err


def test_custom_step_builder_on_cpu_slice():
    calls = []

    def builder(cfg, mesh, shape):
        calls.append((dict(mesh.shape), shape.batch, shape.seq))
        x = jax.ShapeDtypeStruct((shape.batch, shape.seq), jnp.float32,
                                 sharding=jax.sharding.NamedSharding(mesh, jax.P(("data", "fsdp"))))
        return StepSpec("custom", lambda x: (x * 2).sum(), (x,))

    report = compile_for_slice("cpu", get_preset("tiny"), batch=8, seq=16, train_builder=builder,
                               decode_builder=None)
    assert [s.name for s in report.steps] == ["custom"]
    assert calls == [({"data": 1, "fsdp": 8, "tensor": 1}, 8, 16)]
    assert report.steps[0].argument == 8 * 16 * 4 // 8  # one chip's rows
