"""Hugging Face folders in and out: logit parity with transformers on tiny random models it wrote itself."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from mrt_jax.io import load_pretrained, save_pretrained
from mrt_jax.sharding import make_mesh
from tests.fixtures import LINEAR_ROPE, LLAMA3_ROPE, hf_logits, tokens, write_hf

TOL = 1e-4

CASES = {
    "llama-untied": dict(arch="llama"),
    "llama-tied-llama3rope": dict(arch="llama", tie=True, rope_scaling=LLAMA3_ROPE),
    "llama-linear-rope": dict(arch="llama", rope_scaling=LINEAR_ROPE),
    "qwen2-bias-untied": dict(arch="qwen2"),
    "qwen2-tied": dict(arch="qwen2", tie=True),
}


def _ours(model, toks):
    return np.asarray(model(jax.numpy.asarray(toks)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(tmp_path, case):
    ref = write_hf(tmp_path, **CASES[case])
    model, tok = load_pretrained(tmp_path)
    assert tok is None  # no tokenizer files in these folders
    cfg = model.cfg
    assert cfg.architecture == CASES[case]["arch"]
    assert cfg.tie_word_embeddings == CASES[case].get("tie", False)
    assert (cfg.rope_scaling or {}).get("rope_type") == (CASES[case].get("rope_scaling") or {}).get("rope_type")
    x = tokens(length=40)  # past original_max_position_embeddings=16, so llama3 scaling matters
    np.testing.assert_allclose(_ours(model, x), hf_logits(ref, x), atol=TOL, rtol=0)


def test_multi_shard_folder(tmp_path):
    ref = write_hf(tmp_path, arch="qwen2", max_shard_size="20KB")
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 2 and (tmp_path / "model.safetensors.index.json").exists()
    model, _ = load_pretrained(tmp_path)
    x = tokens()
    np.testing.assert_allclose(_ours(model, x), hf_logits(ref, x), atol=TOL, rtol=0)


@pytest.mark.parametrize("arch,tie", [("llama", True), ("qwen2", False)])
def test_save_pretrained_round_trip_through_transformers(tmp_path, arch, tie):
    from transformers import AutoModelForCausalLM

    write_hf(tmp_path / "in", arch=arch, tie=tie, rope_scaling=LLAMA3_ROPE if arch == "llama" else None)
    model, _ = load_pretrained(tmp_path / "in")
    # a tiny shard limit forces several shards + an index
    save_pretrained(model, None, tmp_path / "out", max_shard_bytes=30_000)
    assert (tmp_path / "out" / "model.safetensors.index.json").exists()
    hf_cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert hf_cfg["model_type"] == arch and hf_cfg["torch_dtype"] == "float32"
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    x = tokens()
    np.testing.assert_allclose(hf_logits(back, x), _ours(model, x), atol=TOL, rtol=0)
    again, _ = load_pretrained(tmp_path / "out")  # and our own loader reads our own output bit-exactly
    for name in ("embed", "wq", "wo", "w_down", "final_norm"):
        np.testing.assert_array_equal(np.asarray(getattr(again, name)[...]), np.asarray(getattr(model, name)[...]))


def test_single_file_save_and_bfloat16_params(tmp_path):
    write_hf(tmp_path / "in")
    model, _ = load_pretrained(tmp_path / "in", dtype="bfloat16")
    assert model.wq[...].dtype == jax.numpy.bfloat16 and model.cfg.dtype == "bfloat16"
    save_pretrained(model, None, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors"]
    again, _ = load_pretrained(tmp_path / "out", dtype="bfloat16")
    np.testing.assert_array_equal(np.asarray(again.w_up[...]), np.asarray(model.w_up[...]))


def test_sharded_load_equals_unsharded(tmp_path):
    write_hf(tmp_path, arch="qwen2", num_attention_heads=4, num_key_value_heads=2)
    plain, _ = load_pretrained(tmp_path)
    mesh = make_mesh(1, 4, 2)
    sharded, _ = load_pretrained(tmp_path, mesh=mesh)
    assert sharded.wq[...].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
    assert len(sharded.w_gate[...].sharding.device_set) == 8
    x = tokens(batch=4)
    graphdef, state = nnx.split(sharded)
    with jax.set_mesh(mesh):
        out = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t))(state, jax.numpy.asarray(x))
    np.testing.assert_allclose(np.asarray(out), _ours(plain, x), atol=1e-5, rtol=0)
