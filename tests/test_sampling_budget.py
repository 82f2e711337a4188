"""Test-time compute: budget forcing extends early stops; forced termination forks answers at a budget."""

import numpy as np
import pytest

from mrt_jax.sampling import Sampler
from mrt_jax.sampling.budget import budget_force, forced_answers, terminate_at_budget
from mrt_jax.sampling.toy import ToyTokenizer
from tests.test_sampling_generate import PROMPTS, lively_model

TOK = ToyTokenizer(512)


@pytest.fixture(scope="module")
def model():
    return lively_model()


@pytest.fixture(scope="module")
def eos_sampler(model):
    free = Sampler(model, TOK, eos_ids=[], max_cache_len=64).generate(PROMPTS, max_new_tokens=12, temperature=0)
    row0 = free.tokens[0]
    eos = next(t for t in row0[2:] if t not in row0[:2])
    return Sampler(model, TOK, eos_ids=[eos], max_cache_len=64), row0[:row0.index(eos)]


def test_budget_forcing_extends_early_stop(eos_sampler):
    sampler, kept = eos_sampler
    wait = TOK.encode("Wait")
    res = budget_force(sampler, PROMPTS, budget=16, extend_texts=["Wait"], max_extensions=1, temperature=0)
    assert res.extensions[0] == 1
    t0 = res.tokens[0]
    assert t0[:len(kept) + len(wait)] == kept + wait and len(t0) <= 16
    cont = sampler.generate([PROMPTS[0] + kept + wait], max_new_tokens=16 - len(kept) - len(wait), temperature=0)
    assert t0[len(kept) + len(wait):] == cont.tokens[0]
    assert list(res.forced[0]) == [False] * len(kept) + [True] * len(wait) + [False] * len(cont.tokens[0])
    assert np.all(res.logprobs[0][res.forced[0]] == 0) and np.all(res.logprobs[0][~res.forced[0]] < 0)
    for i, r in enumerate(res.extensions):
        assert len(res.tokens[i]) <= 16 and (r > 0 or not any(res.forced[i]))


def test_budget_forcing_row_ids_make_rows_independent_of_their_batch(model):
    """At temperature > 0 a row's trace and extensions depend on its row id only: each row forced alone with its id
    equals the batch (the evaluation's chunks rely on it), and other ids draw other text."""
    sampler = Sampler(model, TOK, eos_ids=list(range(0, 512, 6)), max_cache_len=64)  # early stops to extend
    kw = dict(budget=16, extend_texts=["Wait", "Hmm"], max_extensions=2, temperature=1.0, seed=3)
    ids = [7, 2, 11]
    whole = budget_force(sampler, PROMPTS, row_ids=ids, **kw)
    assert whole.extensions[0] > 0 and sum(whole.extensions[1:]) > 0  # rows extended before and among the checked
    alone = budget_force(sampler, PROMPTS[1:], row_ids=ids[1:], **kw)  # rows 1, 2 without row 0 (fewer fork rows)
    for i in (1, 2):
        assert alone.tokens[i - 1] == whole.tokens[i] and alone.extensions[i - 1] == whole.extensions[i]
        np.testing.assert_allclose(alone.logprobs[i - 1], whole.logprobs[i], atol=1e-5)
    assert budget_force(sampler, PROMPTS, row_ids=[1, 5, 9], **kw).tokens != whole.tokens
    with pytest.raises(ValueError, match="2 row_ids for 3 prompts"):
        budget_force(sampler, PROMPTS, row_ids=[0, 1], **kw)


def test_forced_termination_at_budget(eos_sampler):
    sampler, _ = eos_sampler
    src = sampler.generate(PROMPTS, max_new_tokens=10, temperature=0, keep_cache=True)
    suffix = TOK.encode("Time is up. Answer:")
    out, pairs = terminate_at_budget(sampler, src, 4, suffix, n=2, max_new_tokens=5, temperature=0)
    assert len(out) == 6 and [p[0] for p in pairs] == [0, 1, 2]
    for j, (r, b) in enumerate(pairs):
        assert b == min(4, len(src.tokens[r]) - (src.finish_reasons[r] == "eos"))
        prefix = PROMPTS[r] + src.tokens[r][:b] + suffix
        assert out.prompt_tokens[2 * j] == prefix
        assert out.tokens[2 * j] == out.tokens[2 * j + 1] == sampler.generate(
            [prefix], max_new_tokens=5, temperature=0).tokens[0]
    with pytest.raises(ValueError, match="boundaries has 1 rows"):
        forced_answers(sampler, src, [[1]], suffix)
