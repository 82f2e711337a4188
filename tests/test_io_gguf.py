"""GGUF in: tiny files written like llama.cpp's converter, and the real SmolLM2-135M-Instruct (Q4_1)."""

import os

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mrt_jax.io import CheckpointError, load_pretrained
from mrt_jax.models import KVCache
from tests.fixtures import hf_logits, hf_model, tokens, write_gguf

FFN = 96  # quantised rows need a multiple of 32 values


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_f32_gguf_matches_transformers(tmp_path, arch):
    from transformers import AutoModelForCausalLM

    ref = hf_model(arch, tie=arch == "llama", intermediate_size=FFN)
    write_gguf(tmp_path / "m.gguf", ref, arch=arch)
    model, tok = load_pretrained(tmp_path / "m.gguf")
    assert tok is None and model.cfg.architecture == arch
    assert model.cfg.tie_word_embeddings == (arch == "llama") and model.cfg.rms_norm_eps == 1e-5
    x = tokens()
    ours = np.asarray(model(jnp.asarray(x)))
    np.testing.assert_allclose(ours, hf_logits(ref, x), atol=1e-4, rtol=0)
    # transformers' own GGUF reader agrees on the file (so the q/k permutation convention is llama.cpp's)
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype="float32").eval()
    np.testing.assert_allclose(ours, hf_logits(theirs, x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("quant,tol", [("F16", 2e-3), ("BF16", 2e-2), ("Q8_0", 1e-2), ("Q4_0", 0.1), ("Q5_1", 0.05)])
def test_quantised_weights_dequantise_in_our_layout(tmp_path, quant, tol):
    ref = hf_model("llama", intermediate_size=FFN)
    write_gguf(tmp_path / "m.gguf", ref, quant=quant)
    model, _ = load_pretrained(tmp_path / "m.gguf")
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    H, E, D = model.cfg.num_heads, model.cfg.head_dim, model.cfg.hidden_size
    wq0 = sd["model.layers.0.self_attn.q_proj.weight"].T.reshape(D, H, E)
    # error is within the quantisation step; a wrong row permutation would be ~0.3 (weights ~ N(0, 0.2^2))
    assert np.abs(np.asarray(model.wq[0]) - wq0).max() < tol
    assert np.abs(np.asarray(model.w_down[1]) - sd["model.layers.1.mlp.down_proj.weight"].T).max() < tol
    assert not np.array_equal(np.asarray(model.wq[0]), wq0) or quant == "F32"


def test_unsupported_quant_type_names_tensor_and_type(tmp_path):
    ref = hf_model("llama", intermediate_size=FFN, tie=True)
    block, nbytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q2_K]
    raw = np.zeros((4, nbytes), np.uint8)  # 4 rows of 256 values
    path = tmp_path / "m.gguf"
    # a tied model plus an output head stored as Q2_K (not on our list)
    write_gguf(path, ref, extra_tensors={"output.weight": (raw, gguf.GGMLQuantizationType.Q2_K)})
    with pytest.raises(CheckpointError, match=r"output\.weight.*Q2_K.*allowed.*Q4_1"):
        load_pretrained(path)


def test_unsupported_gguf_architecture(tmp_path):
    w = gguf.GGUFWriter(os.fspath(tmp_path / "m.gguf"), "gpt2")
    w.add_block_count(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match=r"'gpt2' is not supported; allowed: \['llama', 'qwen2'\]"):
        load_pretrained(tmp_path / "m.gguf")


def test_corrupt_gguf(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(64))
    with pytest.raises(CheckpointError, match="not a readable GGUF file"):
        load_pretrained(path)
    with pytest.raises(ValueError, match="must be a .gguf file"):
        (tmp_path / "weights.bin").write_bytes(b"x")
        load_pretrained(tmp_path / "weights.bin")


# ---- the real SmolLM2-135M-Instruct Q4_1 GGUF --------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    from mrt_jax.assets import smollm2_gguf_path

    try:
        path = smollm2_gguf_path()
    except FileNotFoundError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the SmolLM2 GGUF: {e}")
        pytest.skip(str(e))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = load_pretrained(path)
    ref = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype="float32").eval()
    ref_tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model, tok, ref, ref_tok


def _greedy(model, prompt: list[int], steps: int) -> list[int]:
    """Greedy decoding with the KV-cache forward: one prefill, then one token per step."""
    graphdef, state = nnx.split(model)
    T, S = len(prompt), len(prompt) + steps

    @jax.jit
    def step(state, toks, pos, cache, idx):
        valid = (jnp.arange(S) < idx + toks.shape[1])[None]
        logits, cache = nnx.merge(graphdef, state)(toks, pos, cache=cache, cache_index=idx, valid_bs=valid)
        return jnp.argmax(logits[:, -1], -1), cache

    cache = KVCache.zeros(model.cfg, 1, S)
    nxt, cache = step(state, jnp.asarray([prompt]), jnp.arange(T)[None], cache, 0)
    out = [int(nxt[0])]
    for k in range(steps - 1):
        nxt, cache = step(state, nxt[:, None], jnp.asarray([[T + k]]), cache, T + k)
        out.append(int(nxt[0]))
    return out


def _chat_ids(ref_tok) -> list[int]:
    msgs = [{"role": "user", "content": "What is 17+25? Answer with a number."}]
    return list(ref_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False))


def test_smollm2_config_and_tokenizer(smollm2):
    model, tok, _, ref_tok = smollm2
    cfg = model.cfg
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.intermediate_size) == (
        30, 576, 9, 3, 1536)
    assert cfg.tie_word_embeddings and cfg.rope_theta == 1e5 and cfg.vocab_size == 49152
    assert tok is not None and tok.eos_id == 2
    msgs = [{"role": "user", "content": "What is 17+25? Answer with a number."}]
    assert tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True) == _chat_ids(ref_tok)


def test_smollm2_logits_match_transformers(smollm2):
    import torch

    model, _, ref, ref_tok = smollm2
    ids = _chat_ids(ref_tok)
    ours = np.asarray(model(jnp.asarray([ids])))[0]
    with torch.no_grad():
        theirs = ref(torch.tensor([ids])).logits[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-3, rtol=0)
    assert np.abs(ours[-1] - theirs[-1]).max() < 2e-4


def test_smollm2_greedy_40_tokens_match_transformers(smollm2):
    import torch

    model, _, ref, ref_tok = smollm2
    ids = _chat_ids(ref_tok)
    ours = _greedy(model, ids, 40)
    with torch.no_grad():
        theirs = ref.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False,
                              pad_token_id=2)[0, len(ids):].tolist()
    # transformers stops at end-of-turn (id 2); our loop always runs 40 steps
    assert len(theirs) == 40 or theirs[-1] == 2
    assert ours[:len(theirs)] == theirs
    assert ref_tok.decode(ours).startswith("17 + 25 = 32")


def test_smollm2_save_pretrained_loads_in_transformers(smollm2, tmp_path):
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mrt_jax.io import save_pretrained

    model, tok, _, ref_tok = smollm2
    save_pretrained(model, tok, tmp_path)
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    eos = gen["eos_token_id"]
    assert gen["bos_token_id"] == 1 and (eos if isinstance(eos, int) else eos[0]) == 2  # <|im_end|> first
    back = AutoModelForCausalLM.from_pretrained(tmp_path, dtype="float32").eval()
    back_tok = AutoTokenizer.from_pretrained(tmp_path)
    ids = _chat_ids(ref_tok)
    assert _chat_ids(back_tok) == ids
    with torch.no_grad():
        theirs = back(torch.tensor([ids])).logits[0, -1].numpy()
    ours = np.asarray(model(jnp.asarray([ids])))[0, -1]
    np.testing.assert_allclose(ours, theirs, atol=2e-4, rtol=0)
