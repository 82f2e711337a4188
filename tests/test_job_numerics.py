"""--param_dtype / --compute_dtype / --remat (issue 15): the learner and the sampler run at them, config.json records
them, --compile_only's shapes take them, and remat changes memory, not the loss."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.config import parse_args
from experiments.mrt_math import main
from mrt_jax.learner import LearnerConfig, create_train_state, make_train_step
from mrt_jax.models import get_preset
from mrt_jax.sampling import Sampler

BF16 = ["--preset=tiny", "--param_dtype=bf16", "--compute_dtype=bf16", "--remat"]


def test_a_bf16_job_trains_and_its_config_records_the_numerics(tmp_path):
    run_dir = tmp_path / "bf16"
    assert main([*BF16, "--algo=grpo", "--steps=1", "--eval_every=1", f"--run_dir={run_dir}"]) == 0
    stored = json.loads((run_dir / "config.json").read_text())
    assert (stored["param_dtype"], stored["compute_dtype"], stored["remat"]) == ("bfloat16", "bfloat16", True)
    row = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["step"] == 1 and np.isfinite(row["loss"]) and np.isfinite(row["grad_norm"])


def test_the_learner_and_sampler_hold_bf16_params_and_compile_only_sees_them(tmp_path):
    from experiments.job_parts import build_job, make_learner
    from experiments.job_shapes import job_shapes

    cfg = parse_args([*BF16, f"--run_dir={tmp_path}"])
    parts = build_job(cfg, None)
    assert (parts.model.cfg.param_dtype, parts.model.cfg.dtype, parts.model.cfg.remat) == ("bfloat16", "bfloat16",
                                                                                           True)
    state, _, ckpt = make_learner(cfg, parts.model.cfg, None, nnx.to_pure_dict(nnx.state(parts.model, nnx.Param)))
    ckpt.close()
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.bfloat16)}
    sampler = Sampler(parts.model, parts.tokenizer, max_cache_len=parts.cache_len)
    assert {x.dtype for x in jax.tree.leaves(sampler.state)} == {jnp.dtype(jnp.bfloat16)}
    assert job_shapes(cfg).model_cfg == parts.model.cfg  # --compile_only compiles these numerics
    plain = parse_args(["--preset=tiny", f"--run_dir={tmp_path}"])
    assert job_shapes(plain).model_cfg.param_dtype == "float32"


def test_remat_gives_the_learner_the_same_loss_and_update():
    cfg = get_preset("tiny").replace(vocab_size=64, num_layers=2)
    lcfg = LearnerConfig(lr=1e-3)
    rng = np.random.default_rng(0)
    batch = {"tokens": jnp.asarray(rng.integers(0, 64, (4, 24)), jnp.int32),
             "loss_mask": jnp.asarray(np.r_[np.zeros(8), np.ones(16)][None].repeat(4, 0), jnp.float32),
             "old_logp": jnp.full((4, 24), -4.0, jnp.float32),
             "advantages": jnp.asarray(rng.normal(size=(4, 1)).repeat(24, 1), jnp.float32)}
    out = {}
    for remat in (False, True):
        mcfg = cfg.replace(remat=remat)
        state, metrics = make_train_step(lcfg, mcfg, None)(create_train_state(mcfg, lcfg, seed=1), batch)
        out[remat] = (float(metrics["loss"]), float(metrics["grad_norm"]), state.params["wq"])
    np.testing.assert_allclose(out[True][:2], out[False][:2], rtol=1e-5)
    np.testing.assert_allclose(out[True][2], out[False][2], rtol=1e-5, atol=1e-7)
    assert out[False][1] > 0
