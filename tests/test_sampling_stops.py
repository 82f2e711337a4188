"""Stop strings that span token boundaries, checked between decode chunks."""

import pytest

from mrt_jax.sampling import Sampler
from mrt_jax.sampling.stops import BOX_CLOSED, find_stop
from mrt_jax.sampling.toy import ToyTokenizer
from tests.test_sampling_generate import PROMPTS, lively_model

TOK = ToyTokenizer(512)


@pytest.fixture(scope="module")
def sampler():
    return Sampler(lively_model(), TOK, eos_ids=[], max_cache_len=64, chunk=4)


def first_prefix_with(tokens, s):
    return next(n for n in range(1, len(tokens) + 1) if s in TOK.decode(tokens[:n]))


def test_find_stop():
    toks = TOK.encode("abc defgh")
    assert find_stop(toks, ["c d"], TOK.decode) == first_prefix_with(toks, "c d")
    assert find_stop(toks, ["zz"], TOK.decode) is None


def test_stop_string_spanning_tokens(sampler):
    free = sampler.generate(PROMPTS, max_new_tokens=14, temperature=0)
    row = free.tokens[0]
    # A 2-char string made of the last char of token 6 and the first char of token 7.
    s = TOK.decode(row[6:7])[-1] + TOK.decode(row[7:8])[0]
    cut = first_prefix_with(row, s)
    out = sampler.generate(PROMPTS, max_new_tokens=14, temperature=0, stop=[s])
    assert out.tokens[0] == row[:cut] and out.finish_reasons[0] == "stop"
    assert s in out.texts[0] and s not in TOK.decode(row[:cut - 1])
    for i in (1, 2):  # other rows stop at their own first occurrence, or run to the budget
        n = next((k for k in range(1, 15) if s in TOK.decode(free.tokens[i][:k])), 14)
        assert out.tokens[i] == free.tokens[i][:n]


def test_stop_strings_need_tokenizer():
    with pytest.raises(ValueError, match="tokenizer"):
        Sampler(lively_model(), eos_ids=[], max_cache_len=64).generate(PROMPTS, max_new_tokens=2, stop=["x"])


def test_box_closed_stops_where_the_box_closes():
    text = "so x = \\boxed{\\frac{1}{2}} and more"
    toks = TOK.encode(text.replace("\\", "").replace("{", "").replace("}", ""))  # ToyTokenizer has no braces
    assert find_stop(toks, [BOX_CLOSED], TOK.decode) is None
    chars = list(text)
    cut = find_stop(chars, [BOX_CLOSED], "".join)  # a character-level "tokenizer"
    assert "".join(chars[:cut]) == "so x = \\boxed{\\frac{1}{2}}"
    assert not BOX_CLOSED("\\boxed{\\{") and BOX_CLOSED("\\boxed {7}") and not BOX_CLOSED("\\boxed 7")
