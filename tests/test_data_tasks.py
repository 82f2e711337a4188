"""Procedural tasks: determinism, exact verifiers (gold accepted, near misses rejected), worked traces."""

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrt_jax.data.answers import extract_answer, last_boxed, parse_rational, rational_match
from mrt_jax.data.tasks import TASKS, get_task, verify
from mrt_jax.data.tasks.countdown import evaluate, parse_key

SETTINGS = settings(max_examples=25, deadline=None)
problems = st.tuples(st.sampled_from(sorted(TASKS)), st.integers(0, 10_000), st.integers(0, 50), st.integers(1, 6))


def test_extract_answer_rules():
    assert last_boxed(r"a \boxed{1} b \boxed{\frac{3}{4}} c") == r"\frac{3}{4}"
    # One extractor for the project (mrt_jax.rewards): an unclosed last box (a truncated final answer) is no answer,
    # never an earlier box the model moved away from.
    assert last_boxed(r"\boxed{1} then \boxed{2") is None
    assert last_boxed("\\boxed{" * 20_000 + "}") is None  # long adversarial output (linear scan): last box unclosed
    assert last_boxed(r"\boxed{a{b}c}") == "a{b}c" and last_boxed("none") is None
    assert extract_answer(r"<think>\boxed{5}</think> so \boxed{7}") == "7"
    assert extract_answer(r"<think>\boxed{5} and I ran out") is None  # boxed inside unfinished thinking
    assert extract_answer("work\nAnswer: 12.\nmore") == "12"
    assert extract_answer("no answer here") is None
    assert parse_rational(r"-\frac{3}{6}") == Fraction(-1, 2)
    assert parse_rational("x = 1.5") == Fraction(3, 2)
    assert parse_rational("1,234") == 1234
    assert parse_rational("2+2") is None and parse_rational("1/0") is None and parse_rational("12,34") is None
    with pytest.raises(ValueError, match="gold answer"):
        rational_match(r"\boxed{1}", "pi")


@SETTINGS
@given(problems)
def test_problems_are_deterministic(args):
    name, seed, index, difficulty = args
    task = get_task(name)
    a = task.problem(index, seed=seed, difficulty=difficulty)
    assert a == task.problem(index, seed=seed, difficulty=difficulty)
    assert task.trace(a, seed=1) == task.trace(a, seed=1)


def test_different_seeds_and_indices_differ():
    for name, task in TASKS.items():
        qs = {task.problem(i, seed=s, difficulty=3).question for i in range(20) for s in (0, 1)}
        assert len(qs) >= 35, name


def _near_misses(name, problem):
    if name == "countdown":
        target, numbers = parse_key(problem.answer)
        gold = problem.solution
        _, used = evaluate(gold)
        last = used[-1]
        bumped = gold[: gold.rfind(str(last))] + str(last + 1)  # the last number applies at top level
        x = used[0]
        reuse = gold + f"+{x}-{x}" * (numbers.count(x) + 1)  # same value, a number used too often
        return [bumped, reuse, str(target), f"{gold}+0"]
    value = Fraction(problem.answer)
    misses = [value + 1, value - 1, value + Fraction(1, 2)]
    if value != 0:
        misses.append(-value)
    if value not in (0, 1, -1):
        misses.append(1 / value)
    return [str(m.numerator) if m.denominator == 1 else f"{m.numerator}/{m.denominator}" for m in misses]


@SETTINGS
@given(problems)
def test_verifier_accepts_gold_and_rejects_near_misses(args):
    name, seed, index, difficulty = args
    task = get_task(name)
    p = task.problem(index, seed=seed, difficulty=difficulty)
    assert task.verify(rf"work \boxed{{{p.solution}}}", p.answer) == 1.0
    assert task.verify(f"work\nAnswer: {p.solution}", p.answer) == 1.0
    assert verify(name, rf"<think>\boxed{{{p.solution}}}</think> \boxed{{{p.solution}}}", p.answer) == 1.0
    assert task.verify("I do not know", p.answer) == 0.0
    for miss in _near_misses(name, p):
        assert task.verify(rf"\boxed{{{miss}}}", p.answer) == 0.0, (p, miss)


@SETTINGS
@given(problems)
def test_traces_end_correct_and_retries_follow_failed_checks(args):
    name, seed, index, difficulty = args
    task = get_task(name)
    p = task.problem(index, seed=seed, difficulty=min(difficulty, 3))
    trace = task.trace(p, seed=seed, cues=("Wait", "But wait"))
    assert task.verify(rf"\boxed{{{trace.answer}}}", p.answer) == 1.0
    assert len(trace.episodes) == trace.num_failed_checks + 1
    assert all(e.startswith(("Wait, ", "But wait, ")) for e in trace.episodes[1:])
    assert trace.episodes[-1].endswith("OK.") and not any(e.endswith("OK.") for e in trace.episodes[:-1])


def test_traces_sometimes_fail_and_stay_short():
    for name, task in TASKS.items():
        traces = [task.trace(p) for p in task.problems(60, difficulty=1)]
        failed = sum(t.num_failed_checks > 0 for t in traces)
        assert 10 <= failed <= 50, (name, failed)  # slip_prob 0.5: about half the traces retry
        assert max(len(t.text()) for t in traces) < 700, name
        assert task.trace(task.problem(0), slip_prob=0.0).num_failed_checks == 0


def test_countdown_evaluator_is_a_parser_not_eval():
    assert evaluate("(8-5)*8") == (Fraction(24), [8, 5, 8])
    assert evaluate(r"3 \times 4 = 12") == (Fraction(12), [3, 4])
    assert evaluate("8/(4-4)") is None
    for junk in ("__import__('os')", "2**10", "(1+2", "1+", "", "1 2"):
        assert evaluate(junk) is None, junk
    with pytest.raises(ValueError, match="countdown answer key"):
        parse_key("24")


def test_bad_arguments_name_what_is_allowed():
    with pytest.raises(ValueError, match=r"difficulty=9.*1\.\.6"):
        get_task("linear").problem(0, difficulty=9)
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(ValueError, match=r"difficulty=0.*1\.\.6"):
        get_task("countdown").problem(0, difficulty=0)


def test_arithmetic_difficulty_zero_is_one_operation_with_a_checked_trace():
    task = get_task("arithmetic")
    for i in range(20):
        p = task.problem(i, seed=2, difficulty=0)
        expr = p.question.removeprefix("Compute ").rstrip(".")
        assert sum(expr[1:].count(op) for op in "+-*") == 1, p.question  # one operator (a leading digit, no sign)
        trace = task.trace(p, seed=i)
        assert trace.answer == p.answer and trace.episodes[-1].endswith("OK.")


def test_reasoning_gym_adapter():
    task = get_task("gym:basic_arithmetic")
    p = task.problem(3, seed=5)
    assert p == task.problem(3, seed=5)
    assert task.verify(rf"\boxed{{{p.solution}}}", p.answer) == 1.0
    assert task.verify(r"\boxed{123456789}", p.answer) == 0.0
    with pytest.raises(ValueError, match="reasoning-gym answer key"):
        task.verify("x", "bad")
