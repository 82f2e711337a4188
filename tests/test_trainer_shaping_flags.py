"""The shaping flags change what is trained: --dual_clip (the learner's update), --length_penalty and
--overlong_buffer (the advantages), --dynamic_sampling (which groups make the batch)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.config import parse_args
from experiments.job_parts import rollout_settings
from experiments.job_setup import learner_config
from mrt_jax.data import PLAIN
from mrt_jax.learner import create_train_state, make_train_step, token_logprobs
from mrt_jax.models import get_preset
from mrt_jax.trainer.collect import dynamic_share
from mrt_jax.trainer.rollout import Share
from mrt_jax.trainer.scoring import score_rows, shape_rewards

C, G = 8, 4


def settings(*flags):
    return rollout_settings(parse_args(["--algo=grpo", f"--max_new_tokens={C}", *flags]), 16, PLAIN)


def arrays(correct, lengths, truncated=None):
    """Per-row arrays of a group as sample_share makes them."""
    correct = np.asarray(correct, np.float32)
    lengths = np.asarray(lengths, np.int32)
    truncated = np.zeros(len(correct), bool) if truncated is None else np.asarray(truncated)
    return correct, lengths, truncated


def scored(s, correct, lengths, truncated=None):
    correct, lengths, truncated = arrays(correct, lengths, truncated)
    rewards, _, row_mask = shape_rewards(correct, truncated, lengths, s)
    mask = (np.arange(C) < lengths[:, None]) * row_mask[:, None]
    adv, loss, metrics = score_rows(dict(rewards=rewards, correct=correct, truncated=truncated.astype(np.int32),
                                         lengths=lengths, mask_nc=mask.astype(np.float32)), s)
    return adv, metrics


def test_length_penalty_prefers_the_shorter_correct_answer():
    plain, _ = scored(settings(), [1, 1, 1, 1], [2, 4, 6, 8])
    np.testing.assert_array_equal(plain, 0.0)  # all correct: no outcome signal
    shaped, m = scored(settings("--length_penalty=0.5"), [1, 1, 1, 1], [2, 4, 6, 8])
    assert shaped[0, 0] > 0 > shaped[3, 0]
    assert m["reward"] == pytest.approx(1 - 0.5 * np.mean([2, 4, 6, 8]) / C)


def test_overlong_buffer_penalises_only_the_last_tokens_before_the_limit():
    shaped, m = scored(settings("--overlong_buffer=4"), [1, 1, 1, 1], [2, 4, 6, 8])
    assert shaped[0, 0] == shaped[1, 0] > shaped[2, 0] > shaped[3, 0]  # lengths <= 8 - 4 are not penalised
    assert m["reward"] == pytest.approx(1 - (0 + 0 + 0.5 + 1) / 4)
    np.testing.assert_array_equal(scored(settings("--overlong_buffer=4", "--overlong_factor=0"),
                                         [1, 1, 1, 1], [2, 4, 6, 8])[0], 0.0)


def test_dynamic_sampling_drops_groups_without_signal_and_refills_the_batch():
    s = settings("--dynamic_sampling", "--dynamic_rounds=3")
    rounds = iter([[[1, 1, 1, 1], [1, 0, 0, 0]], [[0, 0, 0, 0], [0, 1, 1, 0]], [[1, 0, 1, 0], [1, 1, 1, 1]]])

    def sample(round_, prompts, answers):
        correct = np.asarray(next(rounds), np.float32).ravel()
        n = len(correct)
        lengths = np.full(n, 3, np.int32)
        return Share(prompt_ids=[[round_]] * n, tokens=[[1, 2, 3]] * n, logprobs=[np.zeros(3)] * n,
                     texts=[f"r{round_}"] * n, arrays=dict(rewards=correct, correct=correct, lengths=lengths,
                                                           truncated=np.zeros(n, np.int32),
                                                           mask_nc=np.ones((n, C), np.float32)))

    share, m = dynamic_share(sample, (["p", "q"], ["1", "2"]), lambda: (["p", "q"], ["1", "2"]), s)
    # rounds 0 and 1 each give one group with signal: the batch is full after two rounds
    assert share.texts == ["r0"] * G + ["r1"] * G
    assert m == {"dynamic_dropped_frac": 0.5, "dynamic_rounds": 2.0, "dynamic_filled_frac": 0.0}
    adv, _, metrics = score_rows(share.arrays, s)
    assert metrics["zero_variance_groups"] == 0.0 and np.abs(adv).reshape(2, G, C).sum((1, 2)).min() > 0


def test_dynamic_sampling_fills_a_short_batch_with_the_earliest_dropped_groups():
    s = settings("--dynamic_sampling", "--dynamic_rounds=2")
    rounds = iter([[[1, 1, 1, 1], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 1, 1, 0]]])

    def sample(round_, prompts, answers):
        correct = np.asarray(next(rounds), np.float32).ravel()
        n = len(correct)
        return Share(prompt_ids=[[0]] * n, tokens=[[1]] * n, logprobs=[np.zeros(1)] * n,
                     texts=[f"r{round_}g{i // G}" for i in range(n)],
                     arrays=dict(rewards=correct, correct=correct, lengths=np.ones(n, np.int32),
                                 truncated=np.zeros(n, np.int32), mask_nc=np.ones((n, C), np.float32)))

    share, m = dynamic_share(sample, (["p", "q"], ["1", "2"]), lambda: (["p", "q"], ["1", "2"]), s)
    assert share.texts == ["r1g1"] * G + ["r0g0"] * G  # the group with signal, then the first one dropped
    assert m == {"dynamic_dropped_frac": 0.75, "dynamic_rounds": 2.0, "dynamic_filled_frac": 0.5}


def test_dual_clip_flag_changes_the_update():
    assert learner_config(parse_args([])).dual_clip is None
    mc = get_preset("tiny")
    lcs = [dataclasses.replace(learner_config(parse_args(flags)), lr=1e-2, warmup_steps=0, adam_eps=1.0)
           for flags in ([], ["--dual_clip=3"])]
    assert lcs[1].dual_clip == 3.0
    state = create_train_state(mc, lcs[0], seed=0)
    tokens = jax.random.randint(jax.random.key(0), (4, 10), 0, mc.vocab_size)
    attn = jnp.ones((4, 10), bool)
    mask = (jnp.arange(10) >= 3)[None].repeat(4, 0).astype(jnp.float32)
    # the sampler gave these tokens far lower probability (ratio e^3 > c) and they were bad (A < 0)
    batch = dict(tokens=tokens, loss_mask=mask, attn_mask=attn, advantages=-mask,
                 old_logp=token_logprobs(state, tokens, attn) - 3.0 * mask)
    new = [make_train_step(lc, mc)(create_train_state(mc, lc, seed=0), batch)[0] for lc in lcs]
    diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new[0].params, new[1].params)
    assert max(jax.tree.leaves(diff)) > 1e-6
