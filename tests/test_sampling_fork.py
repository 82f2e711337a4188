"""Prefix forks: greedy continuation after a fork equals generation from scratch on the concatenated tokens."""

import numpy as np
import pytest

from mrt_jax.sampling import Branch, Sampler
from mrt_jax.sampling.toy import ToyTokenizer
from tests.test_sampling_generate import PROMPTS, lively_model


@pytest.fixture(scope="module", params=[0, None], ids=["shared_prefix", "copied_prefix"])
def sampler(request):
    return Sampler(lively_model(), ToyTokenizer(512), eos_ids=[], max_cache_len=96, share_prefix=request.param)


def test_fork_equals_from_scratch(sampler):
    src = sampler.generate(PROMPTS, max_new_tokens=12, temperature=0, keep_cache=True)
    branches = [Branch(0, 5, [30, 31, 32], n=2), Branch(1, 12, [40]), Branch(2, 0), Branch(1, 3, "ab cd")]
    fk = sampler.fork(src, branches, max_new_tokens=7, temperature=0)
    assert len(fk) == 5
    expect_prefix = [PROMPTS[0] + src.tokens[0][:5] + [30, 31, 32]] * 2 + [
        PROMPTS[1] + src.tokens[1] + [40], PROMPTS[2],
        PROMPTS[1] + src.tokens[1][:3] + sampler.tokenizer.encode("ab cd")]
    assert fk.prompt_tokens == expect_prefix
    scratch = sampler.generate(expect_prefix, max_new_tokens=7, temperature=0)
    assert fk.tokens == scratch.tokens
    for a, b in zip(fk.logprobs, scratch.logprobs):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_fork_of_fork_and_without_cache(sampler):
    src = sampler.generate(PROMPTS, max_new_tokens=8, temperature=0, keep_cache=True)
    f1 = sampler.fork(src, [Branch(2, 4, [50, 51])], max_new_tokens=6, temperature=0, keep_cache=True)
    f2 = sampler.fork(f1, [Branch(0, 3, [60])], max_new_tokens=5, temperature=0)
    no_cache = sampler.fork(src.__class__(**{**src.__dict__, "cache": None}), [Branch(2, 4, [50, 51])],
                            max_new_tokens=6, temperature=0)
    assert no_cache.tokens == f1.tokens
    prefix = PROMPTS[2] + src.tokens[2][:4] + [50, 51] + f1.tokens[0][:3] + [60]
    assert f2.prompt_tokens[0] == prefix
    assert f2.tokens == sampler.generate([prefix], max_new_tokens=5, temperature=0).tokens


def test_sampled_forks_differ_and_are_seeded(sampler):
    src = sampler.generate(PROMPTS[:1], max_new_tokens=6, temperature=0, keep_cache=True)
    a = sampler.fork(src, [Branch(0, 6, [70], n=4)], max_new_tokens=6, temperature=1.0, seed=1)
    b = sampler.fork(src, [Branch(0, 6, [70], n=4)], max_new_tokens=6, temperature=1.0, seed=1)
    assert a.tokens == b.tokens and len({tuple(t) for t in a.tokens}) > 1


def test_bad_branches(sampler):
    src = sampler.generate(PROMPTS, max_new_tokens=4, temperature=0, keep_cache=True)
    with pytest.raises(ValueError, match="position 5 is outside"):
        sampler.fork(src, [Branch(0, 5)], max_new_tokens=2)
    with pytest.raises(ValueError, match="row 3 is outside"):
        sampler.fork(src, [Branch(3, 0)], max_new_tokens=2)
    with pytest.raises(ValueError, match="n must be"):
        sampler.fork(src, [Branch(0, 0, n=0)], max_new_tokens=2)


def test_shared_prefix_fork_equals_copied_prefix_fork(monkeypatch):
    # A sharing fork keeps each source row's prefix once for all its branches; the copying path (one prefix copy
    # per branch) is the reference. Same seed: the same tokens, the same logprobs, rows in branch order.
    sharing = Sampler(lively_model(), ToyTokenizer(512), eos_ids=[], max_cache_len=96, share_prefix=0)
    copying = Sampler(lively_model(), ToyTokenizer(512), eos_ids=[], max_cache_len=96, share_prefix=None)
    calls = []
    real = Sampler._fork_shared
    monkeypatch.setattr(Sampler, "_fork_shared", lambda self, *a: calls.append(self) or real(self, *a))
    src = sharing.generate(PROMPTS, max_new_tokens=10, temperature=1.0, seed=3, keep_cache=True)
    branches = [Branch(1, 4, [30], n=3), Branch(0, 10, [31, 32], n=2), Branch(1, 0, n=1), Branch(2, 7, "ab", n=3)]
    for temperature in (0.0, 1.0):
        shared = sharing.fork(src, branches, max_new_tokens=6, temperature=temperature, seed=5)
        copied = copying.fork(src, branches, max_new_tokens=6, temperature=temperature, seed=5)
        assert shared.prompt_tokens == copied.prompt_tokens
        assert shared.tokens == copied.tokens
        for a, b in zip(shared.logprobs, copied.logprobs):
            np.testing.assert_allclose(a, b, atol=1e-5)
    assert len({tuple(t) for t in shared.tokens}) > 1
    assert calls == [sharing, sharing]  # the sharing path ran (and only for the sharing sampler)


def test_a_fork_too_long_for_the_cache_names_the_callers_row(sampler):
    # The shared-prefix path lays rows out by source row; the error must still name the row as the caller numbered it.
    src = sampler.generate(PROMPTS, max_new_tokens=6, temperature=0, keep_cache=True)
    with pytest.raises(ValueError, match=r"^row 1: .* max_cache_len=96"):
        sampler.fork(src, [Branch(2, 6), Branch(0, 6)], max_new_tokens=[1, 90], temperature=0)
