"""Orbax save/restore of a Decoder, across meshes, and through load_pretrained."""

import jax
import numpy as np
import pytest
from flax import nnx

from mrt_jax.io import load_orbax, load_pretrained, save_orbax
from mrt_jax.models import create_model, get_preset
from mrt_jax.sharding import make_mesh

CFG = get_preset("tiny").replace(architecture="qwen2", attention_bias=True, tie_word_embeddings=False)


def _params(model) -> dict:
    return {k: np.asarray(v) for k, v in nnx.to_pure_dict(nnx.state(model)).items()}


def test_round_trip_onto_another_mesh(tmp_path):
    model = create_model(CFG, mesh=make_mesh(1, 4, 2), seed=3)
    save_orbax(model, tmp_path / "ck")
    want = _params(model)
    other = make_mesh(2, 1, 4)
    restored = load_orbax(tmp_path / "ck", mesh=other)
    assert restored.cfg == CFG
    assert restored.wq[...].sharding.mesh.shape == other.shape
    assert restored.wq[...].sharding.spec == jax.sharding.PartitionSpec(None, None, "tensor", None)
    got = _params(restored)
    assert sorted(got) == sorted(want) and "bq" in got and "lm_head" in got
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    single = load_orbax(tmp_path / "ck")  # no mesh: one device
    assert len(single.embed[...].sharding.device_set) == 1
    np.testing.assert_array_equal(np.asarray(single.w_down[...]), want["w_down"])


def test_load_pretrained_reads_orbax_folder_with_overrides(tmp_path):
    model = create_model(CFG, seed=1)
    save_orbax(model, tmp_path / "ck")
    loaded, tok = load_pretrained(tmp_path / "ck", dtype="bfloat16", param_dtype="float32", remat=True)
    assert tok is None and loaded.cfg.remat and loaded.cfg.dtype == "bfloat16"
    np.testing.assert_array_equal(np.asarray(loaded.wo[...]), np.asarray(model.wo[...]))


def test_missing_orbax_config(tmp_path):
    (tmp_path / "ck").mkdir()
    with pytest.raises(FileNotFoundError, match="model_config.json is missing"):
        load_orbax(tmp_path / "ck")
