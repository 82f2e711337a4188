"""The meta-prover's forced answers follow the prompt format (issue 15): its stop rule and answer budget reach the
rollout settings, and under the R1 suffix (which opens a multi-line "Step-by-Step Explanation") a model that
answers correctly scores J > 0, where the old hard-coded "\\n" stop scored it 0."""

import dataclasses

import jax
import pytest

from experiments.config import parse_args
from experiments.job_parts import rollout_settings
from experiments.setup_model import build, prompt_format
from mrt_jax.data import PLAIN, R1, get_task
from mrt_jax.errors import UserError
from mrt_jax.rewards.scorer import ExactScorer
from mrt_jax.sampling import Branch, Sampler
from mrt_jax.sampling.stops import BOX_CLOSED
from mrt_jax.sampling.toy import ToyTokenizer
from mrt_jax.sft import SFTExample, pack_examples, train_sft
from mrt_jax.trainer.rollout import estimate_j

R1_JOB = ["--preset=tiny", "--prompt_format=r1", "--meta_max_tokens=0", "--meta_temperature=0", "--meta_samples=1"]


def test_the_settings_take_the_formats_stop_rule_and_budget():
    plain = rollout_settings(parse_args([]), 32, PLAIN)  # the default job: one line, 16 tokens, as before
    assert (plain.answer_stop, plain.meta_max_tokens, plain.forced_suffix) == (("\n",), 16, "\n\nAnswer:")
    r1 = rollout_settings(parse_args(R1_JOB), 32, R1)
    assert (r1.answer_stop, r1.meta_max_tokens, r1.forced_suffix) == ((BOX_CLOSED,), 256,
                                                                      R1.forced_termination_suffix)
    assert rollout_settings(parse_args([*R1_JOB, "--meta_max_tokens=40"]), 32, R1).meta_max_tokens == 40


def test_formats_that_cannot_work_are_refused(capsys):
    with pytest.raises(SystemExit) as e:  # from-scratch models have no chat template: refused while parsing
        parse_args(["--preset=tiny", "--prompt_format=chat"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--prompt_format=chat needs a checkpoint with a chat" in err[0]
    cfg = parse_args(["--model=/a/checkpoint", "--prompt_format=chat_think"])  # a checkpoint without a template
    with pytest.raises(UserError, match="chat_think: the tokenizer of --model=/a/checkpoint has no chat template"):
        prompt_format(cfg, ToyTokenizer())
    assert prompt_format(parse_args(["--model=/a/checkpoint"]), ToyTokenizer()) is PLAIN  # auto: plain


def test_j_is_nonzero_under_the_r1_suffix_where_the_old_newline_stop_scored_zero():
    """A tiny model taught (SFT) to answer the R1 suffix as R1-Distill does: a bold step, a line break, the box."""
    cfg = parse_args(R1_JOB)
    model, tok, fmt, _ = build(cfg, None)
    assert fmt is R1
    prompt, thinking = tok.encode(fmt.build_prompt("Compute 2+3.")), tok.encode("2+3=5. Check: 5-3=2. OK.")
    answer = tok.encode("Add.** 2+3=5.\n\n\\boxed{5}")
    example = SFTExample(prompt + thinking + tok.encode(fmt.forced_termination_suffix), answer)
    tokens, mask = pack_examples([example], -(-(len(example.prompt_ids) + len(answer)) // 32) * 32, tok.pad_id)
    model, _ = train_sft(model, tokens, mask, steps=40, batch_size=1, learning_rate=1e-2, log_every=0)

    sampler = Sampler(model, tok, max_cache_len=1024)
    trace = sampler.prefill([prompt], [thinking])
    branch = [Branch(row=0, position=len(thinking), text=fmt.forced_termination_suffix, n=1)]
    s = rollout_settings(cfg, 32, fmt)
    scorer = ExactScorer(get_task("arithmetic").verify)  # the task's exact verifier, as the job scores it
    j, _, _ = estimate_j(sampler, trace, branch, ["5"], scorer, s, jax.random.key(0))
    assert j[0] == 1.0
    wrong, _, _ = estimate_j(sampler, trace, branch, ["6"], scorer, s, jax.random.key(0))
    assert wrong[0] == 0.0  # the verifier reads the box: J measures correctness, not just an answer
    old = dataclasses.replace(s, answer_stop=("\n",), meta_max_tokens=16)  # the stop hard-coded before issue 15
    j_old, spent, _ = estimate_j(sampler, trace, branch, ["5"], scorer, old, jax.random.key(0))
    assert j_old[0] == 0.0 and spent[0] < len(answer)
