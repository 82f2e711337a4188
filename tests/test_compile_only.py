"""``--compile_only`` compiles the job's own programs: the shapes ``job_shapes`` derives equal the ones the job
builds, and the learner step lowered from the abstract TrainState is the program the job's step runs."""

import hashlib
import os

import jax
import pytest

from experiments.config import parse_args
from experiments.job_shapes import job_shapes, sampler_calls
from mrt_jax.learner import abstract_train_state, batch_sharding, create_train_state, make_train_step
from mrt_jax.sharding import make_mesh


@pytest.fixture
def tiny_cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("MRT_JAX_CACHE", str(tmp_path / "cache"))
    return parse_args(["--preset=tiny", f"--run_dir={tmp_path / 'run'}"])


def test_job_shapes_are_the_jobs(tiny_cfg):
    from experiments.job_parts import build_job

    parts = build_job(tiny_cfg, None)
    shapes = job_shapes(tiny_cfg)
    assert (shapes.max_prompt, shapes.cache_len) == (parts.max_prompt, parts.cache_len)
    assert shapes.model_cfg == parts.model.cfg
    assert shapes.pad_id == parts.tokenizer.pad_id
    assert shapes.train_len == parts.settings.max_prompt_tokens + parts.settings.max_new_tokens
    calls = {c.name: c.shape for c in sampler_calls(tiny_cfg, shapes, processes=1, shards=1)}
    # tiny: 2 prompts x 2 samples; the fork: J_0 per prompt + one branch per boundary (max_episodes - 1 per row),
    # meta_samples answers each, padded to a power of two.
    assert calls["rollout"].rows == 4 and calls["fork"].rows == 16


def _text(lowered) -> str:
    return hashlib.sha256(lowered.as_text().encode()).hexdigest()


def test_learner_program_from_abstract_state_is_the_jobs(tiny_cfg):
    from experiments.job_setup import learner_config as _learner_config

    shapes = job_shapes(tiny_cfg)
    lcfg = _learner_config(tiny_cfg)
    mesh = make_mesh(1, 8, 1)
    bt = (8, shapes.train_len)
    real_state = create_train_state(shapes.model_cfg, lcfg, mesh)
    step = make_train_step(lcfg, shapes.model_cfg, mesh)
    batch = {k: jax.device_put(jax.numpy.zeros(bt, jax.numpy.int32 if k == "tokens" else
                                               jax.numpy.bool_ if k == "attn_mask" else jax.numpy.float32),
                               batch_sharding(mesh, bt)) for k in shapes.batch_keys}
    abstract = abstract_train_state(shapes.model_cfg, lcfg, mesh)
    abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=v.sharding) for k, v in batch.items()}
    assert _text(step.lower(abstract, abstract_batch)) == _text(step.lower(real_state, batch))
    state, metrics = step(real_state, batch)  # and the step still runs
    assert int(state.step) == 1


def test_multi_host_v5e_sampler_programs_compile_on_one_hosts_chips(capsys, tmp_path, monkeypatch):
    """v5e-16 (4 hosts): the learner over all 16 chips, the sampler on one host's 4; libtpu refuses a program on
    4 of a v5e slice's 16 chips, so those compile on a one-host v5e-4, and the report says so."""
    import json

    from experiments.mrt_math import main
    from mrt_jax.distributed.aot import libtpu_available

    if not libtpu_available() and not os.environ.get("CI"):
        pytest.skip("libtpu is not installed (scripts/setup.sh installs it); in CI this test runs and fails")
    monkeypatch.setenv("MRT_JAX_CACHE", str(tmp_path / "cache"))
    assert main(["--compile_only", "--tpu=v5e-16", "--preset=tiny"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    rep = json.loads(out[-1])
    assert rep["processes"] == 4 and rep["learner_mesh"]["fsdp"] == 16 and rep["sampler_mesh"]["data"] == 4
    assert rep["train_batch"][0] == 16  # 8 prompts (rounded up for 4 hosts and 16 chips) x 2 samples
    assert rep["sampler_calls"]["rollout"]["rows"] == 4  # 2 prompts x 2 samples on each host
    assert any("compiled on a one-host v5e-4" in n for n in rep["notes"])
    assert any(line.startswith("note: libtpu refuses") for line in out)


def test_a_real_job_step_samples_within_the_compiled_shapes(tmp_path, monkeypatch):
    """Run one step of the tiny job (8 fake devices: one process, its sampler on 8 chips) with the engine spied
    on: the rollout's decode has the rows compile_only compiles, the fork at most its worst case, and no call
    carries more cache slots than compiled."""
    import mrt_jax.trainer as rollout  # the job imports collect from here when it runs
    from experiments.mrt_math import main
    from mrt_jax.sampling import engine, sampler

    monkeypatch.setenv("MRT_JAX_CACHE", str(tmp_path / "cache"))
    seen, inside = [], []
    real_make, real_collect = engine.make_engine, rollout.collect

    def make_engine(cfg, *, pad_id):
        prefill, decode = real_make(cfg, pad_id=pad_id)

        def spy(w, cache, *args, **kw):
            if inside:
                seen.append((cache[0][0].shape[0], cache[0][0].shape[2]))
            return decode(w, cache, *args, **kw)

        return prefill, spy

    def collect(*args, **kw):
        inside.append(True)
        try:
            return real_collect(*args, **kw)
        finally:
            inside.pop()

    monkeypatch.setattr(sampler, "make_engine", make_engine)
    monkeypatch.setattr(rollout, "collect", collect)
    argv = ["--preset=tiny", "--steps=1", "--eval_every=1", "--eval_problems=1", f"--run_dir={tmp_path / 'run'}"]
    assert main(argv) == 0
    cfg = parse_args(argv)
    calls = {c.name: c.shape for c in sampler_calls(cfg, job_shapes(cfg), processes=1, shards=8)}
    # One rollout decode (whose prompts are no longer than the job's longest), then the meta-prover fork's.
    (gen_rows, gen_slots), *forks = seen
    assert gen_rows == calls["rollout"].rows == 8  # 2 prompts x 2 samples, padded to the 8 data shards
    assert gen_slots <= calls["rollout"].window
    assert forks and all(r <= calls["fork"].rows and s <= calls["fork"].window for r, s in forks), (forks, calls)


def test_phase_memory_adds_what_lives_beside_each_program():
    from experiments.compile_only import phase_memory

    def prog(arg, temp, alias=0):
        return {"argument": arg, "output": alias, "alias": alias, "temp": temp}

    programs = {"train": prog(10, 5, alias=10), "rollout prefill": prog(7, 1), "rollout decode": prog(7, 3),
                "fork prefill": prog(8, 1), "fork decode": prog(8, 2)}
    resident = {"train_state": 4, "replica": 6, "fast_weights": 5, "reference": 0, "rollout caches held": 0,
                "fork caches held": 2}
    phases = phase_memory(programs, resident)
    assert phases["learn"] == {"train step": 15, "sampler replica": 6, "fast weights": 5}
    assert phases["rollout"] == {"train state": 4, "sampler replica": 6, "rollout program": 10}
    assert phases["fork"] == {"train state": 4, "sampler replica": 6, "fork program": 10, "caches held": 2}
    assert sum(phases["sync"].values()) == 4 + 6 + 5 + 6
    assert "fork" not in phase_memory({k: v for k, v in programs.items() if not k.startswith("fork")}, resident)
