"""A fork's n copies of a branch share one prefill (fan-out), and rows that hit a stop string leave the decode
batch between chunks (compaction): neither may change a row's tokens, which depend on its own key only."""

import numpy as np
import pytest

from mrt_jax.sampling import Branch, Sampler
from mrt_jax.sampling.sampler import compact_groups
from mrt_jax.sampling.toy import ToyTokenizer
from tests.test_sampling_generate import PROMPTS, lively_model

TOK = ToyTokenizer(512)


@pytest.fixture(scope="module")
def model():
    return lively_model()


def same(a, b):
    assert a.tokens == b.tokens and a.finish_reasons == b.finish_reasons
    for x, y in zip(a.logprobs, b.logprobs):
        np.testing.assert_allclose(x, y, atol=1e-5)


@pytest.mark.parametrize("share_prefix", [0, None], ids=["shared_prefix", "copied_prefix"])
def test_n_copies_of_a_branch_equal_n_single_branches(model, share_prefix):
    s = Sampler(model, TOK, eos_ids=[], max_cache_len=64, share_prefix=share_prefix)
    src = s.generate(PROMPTS, max_new_tokens=8, temperature=1.0, seed=3, keep_cache=True)
    fanned = [Branch(0, 3, [7, 8], 3), Branch(2, 5, [9], 2), Branch(0, 6, [], 1)]
    single = [Branch(b.row, b.position, b.text, 1) for b in fanned for _ in range(b.n)]
    kw = dict(max_new_tokens=6, temperature=1.0, seed=5)
    a, b = s.fork(src, fanned, **kw), s.fork(src, single, **kw)
    same(a, b)
    assert a.prompt_tokens == b.prompt_tokens and len(set(map(tuple, a.tokens[:3]))) > 1  # copies differ


def test_rows_leaving_the_batch_at_a_stop_keep_their_tokens(model):
    prompts = [[5 + i, 6, 7 + i] for i in range(16)]
    stop = [TOK.decode([t])[-1] for t in (11, 12, 13)]  # frequent characters: rows stop at very different lengths
    one_chunk = Sampler(model, TOK, eos_ids=[], max_cache_len=64, chunk=64)
    chunked = Sampler(model, TOK, eos_ids=[], max_cache_len=64, chunk=2)  # compacts as rows stop
    kw = dict(max_new_tokens=24, temperature=1.0, seed=1, stop=stop)
    a, b = one_chunk.generate(prompts, **kw), chunked.generate(prompts, **kw)
    same(a, b)
    stopped = [len(t) for t, r in zip(a.tokens, a.finish_reasons) if r == "stop"]
    # More than half the rows stop by token 14 while others go on: the batch shrinks from 16 rows to 8 on the way.
    assert sum(n <= 14 for n in stopped) > 8 and max(map(len, a.tokens)) > 20


def test_shared_prefix_groups_shrink_as_rows_stop(model, monkeypatch):
    """With a shared prefix the batch is laid out group by group (one group per source row); finished rows leave
    by whole groups and within groups, and every row keeps the tokens an uncompacted copied-prefix fork gives it."""
    import mrt_jax.sampling.sampler as sampler_module

    layouts, real = [], sampler_module.compact_groups

    def spy(done_b, groups):
        rows, keep = real(done_b, groups)
        layouts.append((len(done_b), groups, None if rows is None else (len(rows), len(keep))))
        return rows, keep

    monkeypatch.setattr(sampler_module, "compact_groups", spy)
    shared = Sampler(model, TOK, eos_ids=[], max_cache_len=96, share_prefix=0, chunk=2)
    copied = Sampler(model, TOK, eos_ids=[], max_cache_len=96, share_prefix=None, chunk=64)
    src = shared.generate([[5 + i, 6, 7 + i] for i in range(4)], max_new_tokens=10, temperature=1.0, seed=2,
                          keep_cache=True)
    branches = [Branch(r, p, [9], 4) for r in range(4) for p in (2, 6)]  # 4 groups of 2 branches x 4 copies
    stop = [TOK.decode([t])[-1] for t in (11, 12, 13)]
    kw = dict(max_new_tokens=24, temperature=1.0, seed=3, stop=stop)
    same(shared.fork(src, branches, **kw), copied.fork(src, branches, **kw))
    assert layouts[0][:2] == (32, 4)  # 4 groups of 8 rows
    assert any(shrunk is not None and shrunk[0] < rows for rows, _, shrunk in layouts)


def test_compact_groups_keeps_active_rows_group_by_group():
    done = np.ones(16, bool)  # 4 groups of 4 rows
    done[[1, 2, 9]] = False  # group 0: rows 1, 2; group 2: row 9
    rows, groups = compact_groups(done, 4)
    assert list(groups) == [0, 2] and list(rows) == [1, 2, 9, 8]  # 2 groups x 2 rows, active rows first
    assert compact_groups(np.zeros(16, bool), 4) == (None, None)  # nothing finished: no smaller layout
    assert compact_groups(np.ones(16, bool), 4) == (None, None)  # nothing active
