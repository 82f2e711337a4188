"""Bad checkpoints fail with errors that say what is wrong and where."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mrt_jax.io import CheckpointError, config_from_hf, load_pretrained
from tests.fixtures import write_hf


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf")
    write_hf(path, arch="llama")
    return path


def _copy(folder, dst, config_edit=None, tensor_edit=None):
    dst.mkdir()
    cfg = json.loads((folder / "config.json").read_text())
    if config_edit:
        cfg.update(config_edit)
    (dst / "config.json").write_text(json.dumps(cfg))
    tensors = load_file(folder / "model.safetensors")
    if tensor_edit:
        tensor_edit(tensors)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_missing_path_and_files(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config\.json is missing"):
        load_pretrained(tmp_path / "empty")
    d = _copy(folder, tmp_path / "bin")
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors.*pickle \.bin weights are not loaded"):
        load_pretrained(d)


def test_corrupt_config_and_unsupported_architecture(tmp_path, folder):
    d = _copy(folder, tmp_path / "badjson")
    (d / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        load_pretrained(d)
    d = _copy(folder, tmp_path / "gpt2", config_edit={"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})
    with pytest.raises(ValueError, match=r"GPT2LMHeadModel.*not supported; allowed: \['LlamaForCausalLM', "
                                         r"'Qwen2ForCausalLM'\]"):
        load_pretrained(d)
    with pytest.raises(ValueError, match="hidden_act 'gelu' is not supported"):
        config_from_hf({"architectures": ["LlamaForCausalLM"], "vocab_size": 8, "hidden_size": 8,
                        "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                        "hidden_act": "gelu"})


def test_corrupt_and_truncated_safetensors(tmp_path, folder):
    d = _copy(folder, tmp_path / "garbage")
    (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage header}")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        load_pretrained(d)
    d = _copy(folder, tmp_path / "truncated")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_pretrained(d)


def test_config_not_matching_weights(tmp_path, folder):
    d = _copy(folder, tmp_path / "ffn", config_edit={"intermediate_size": 64})
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor 'model\.layers\.0\.mlp\.down_proj\.weight' "
                                              r"has shape \(64, 80\), expected \(64, 64\)"):
        load_pretrained(d)
    d = _copy(folder, tmp_path / "deeper", config_edit={"num_hidden_layers": 3})
    with pytest.raises(CheckpointError, match=r"tensors the config needs are missing, e\.g\. \['model\.layers\.2\."):
        load_pretrained(d)
    d = _copy(folder, tmp_path / "shallower", config_edit={"num_hidden_layers": 1})
    with pytest.raises(CheckpointError, match=r"unexpected tensors, e\.g\. \['model\.layers\.1\."):
        load_pretrained(d)
    d = _copy(folder, tmp_path / "tied", config_edit={"tie_word_embeddings": True})
    with pytest.raises(CheckpointError, match="lm_head.weight differs from model.embed_tokens.weight"):
        load_pretrained(d)


def test_wrong_tensor_shape_and_nan(tmp_path, folder):
    def shrink(t):
        t["model.layers.1.self_attn.k_proj.weight"] = t["model.layers.1.self_attn.k_proj.weight"][:16]

    d = _copy(folder, tmp_path / "shape", tensor_edit=shrink)
    with pytest.raises(CheckpointError, match=r"'model\.layers\.1\.self_attn\.k_proj\.weight' has shape \(16, 64\), "
                                              r"expected \(32, 64\)"):
        load_pretrained(d)

    def poison(t):
        t["model.norm.weight"] = np.full_like(t["model.norm.weight"], np.nan)

    d = _copy(folder, tmp_path / "nan", tensor_edit=poison)
    with pytest.raises(CheckpointError, match=r"'model\.norm\.weight' holds NaN"):
        load_pretrained(d)


def test_index_pointing_at_missing_shard(tmp_path, folder):
    d = _copy(folder, tmp_path / "index")
    names = list(load_file(d / "model.safetensors"))
    weight_map = {n: "model.safetensors" for n in names}
    weight_map[names[0]] = "model-00002-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(FileNotFoundError, match="lists shard .*model-00002-of-00002.safetensors"):
        load_pretrained(d)
