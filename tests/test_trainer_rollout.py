"""One step's rollout through the library (mrt_jax.trainer.collect) on a small random model: the learner rows it
lays out, MRT's J estimates, the mixed form's shared prefixes, and its random streams."""

import dataclasses

import numpy as np
import pytest

from mrt_jax.rewards import ExactScorer
from mrt_jax.sampling import Sampler
from mrt_jax.sampling.toy import ToyTokenizer
from mrt_jax.trainer import RolloutSettings, Task, collect
from tests.test_sampling_generate import lively_model

SUFFIX = "\n\nAnswer:"
PROMPTS, GOLDS = ["ab cd", "xyz"], ["a", "e"]
S = RolloutSettings(estimator="mrt_dense", group_size=4, max_prompt_tokens=8, max_new_tokens=16, temperature=1.0,
                    top_p=1.0, meta_samples=2, meta_max_tokens=3, max_episodes=3, forced_suffix=SUFFIX)


@pytest.fixture(scope="module")
def sampler():
    return Sampler(lively_model(), ToyTokenizer(512), eos_ids=[], max_cache_len=128)


def task(sampler):
    return Task(tokenizer=sampler.tokenizer, scorer=ExactScorer(lambda text, gold: float(gold in text)),
                boundaries=lambda toks: list(range(4, len(toks), 4)))


def rows_of(batch, i):
    """(prefix tokens, trained tokens) of learner row i."""
    n = int(batch["attn_mask"][i].sum())
    trained = batch["loss_mask"][i] > 0
    first = int(np.argmax(trained)) if trained.any() else n
    return list(batch["tokens"][i, :first]), list(batch["tokens"][i, first:n])


def test_mrt_rows_are_prompt_plus_completion_with_dense_advantages(sampler):
    ro = collect(sampler, task(sampler), PROMPTS, GOLDS, S, seed=0, step=1)
    b = ro.batch
    assert b["tokens"].shape == (8, S.max_prompt_tokens + S.max_new_tokens)
    for i in range(8):
        prefix, trained = rows_of(b, i)
        assert prefix == sampler.tokenizer.encode(PROMPTS[i // 4]) and len(trained) == S.max_new_tokens
    # episodes of 4 tokens (at most 3): the dense bonus varies inside a trace where J moved
    assert ro.metrics["episodes_mean"] == 3.0 and ro.metrics["progress_count"] > 0
    assert ro.metrics["meta_tokens"] > 0 and "progress_scale" in ro.metrics
    np.testing.assert_array_equal(b["advantages"][b["loss_mask"] == 0], 0.0)


def test_the_same_step_draws_the_same_batch_and_another_step_another(sampler):
    a = collect(sampler, task(sampler), PROMPTS, GOLDS, S, seed=0, step=2)
    b = collect(sampler, task(sampler), PROMPTS, GOLDS, S, seed=0, step=2)
    c = collect(sampler, task(sampler), PROMPTS, GOLDS, S, seed=0, step=3)
    for k in a.batch:
        np.testing.assert_array_equal(a.batch[k], b.batch[k])
    assert not np.array_equal(a.batch["tokens"], c.batch["tokens"])


def test_mixed_groups_share_a_prefix_half_continue_half_are_terminated(sampler):
    s = dataclasses.replace(S, estimator="mrt_mixed")
    ro = collect(sampler, task(sampler), PROMPTS, GOLDS, s, seed=0, step=1)
    suffix = sampler.tokenizer.encode(SUFFIX)
    for g, prompt in enumerate(PROMPTS):
        p = sampler.tokenizer.encode(prompt)
        rows = [rows_of(ro.batch, g * 4 + m) for m in range(4)]
        cut = len(rows[0][0]) - len(p)
        assert cut in (0, 4, 8) and cut + len(suffix) + s.meta_max_tokens <= s.max_new_tokens
        shared = rows[0][0]
        assert shared[:len(p)] == p
        for prefix, trained in rows[:2]:  # continuing: the shared prefix, then up to the budget
            assert prefix == shared and len(trained) == s.max_new_tokens - cut
        for prefix, trained in rows[2:]:  # terminated: the shared prefix, the forced suffix, a short answer
            assert prefix == shared + suffix and 0 < len(trained) <= s.meta_max_tokens
    assert ro.metrics["mixed_groups_frac"] == 1.0  # every group has both kinds (2 continue, 2 terminated)
