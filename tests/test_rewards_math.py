"""Math equivalence in process (score_math / verify_in_process): forms, raw-LaTeX golds, invalid golds, order."""

import threading

import pytest

from mrt_jax.rewards import InvalidGoldError, Status, score_math, verify_in_process
from mrt_jax.rewards._mv_core import gold_is_prose, normalize_unicode, wrap_math


def boxed(x: str) -> str:
    return "Let me compute. The answer is \\boxed{" + x + "}."


@pytest.mark.parametrize(
    "answer, gold",
    [
        ("0.5", "1/2"),
        ("1/2", "0.5"),
        ("\\frac12", "0.5"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("2\\sqrt{2}", "\\sqrt{8}"),  # raw-LaTeX gold (MATH style)
        ("\\{2,1\\}", "\\{1,2\\}"),  # sets: order-free
        ("[1,2)", "[1,2)"),  # intervals
        ("1+x^2", "x^2+1"),
        ("x = 5", "5"),
        ("1,000", "1000"),
        ("−3", "-3"),  # unicode minus
        ("√8", "2\\sqrt{2}"),  # unicode root
        ("\\infty", "∞"),
        ("$\\frac{3}{4}$", "$\\frac{3}{4}$"),  # delimited gold kept as is
        ("\\$5", "5"),  # an escaped dollar is currency, not a math delimiter
    ],
)
def test_equivalent_forms(answer, gold):
    assert score_math(boxed(answer), gold) == 1.0


@pytest.mark.parametrize(
    "answer, gold",
    [("6", "5"), ("0.51", "1/2"), ("(1,2]", "[1,2)"), ("\\{1,3\\}", "\\{1,2\\}"), ("x^2-1", "x^2+1"), ("-5", "5")],
)
def test_wrong_answers_rejected(answer, gold):
    assert score_math(boxed(answer), gold) == 0.0


def test_units_and_percentages_as_math_verify_decides():
    # math-verify drops units and treats 50% as 0.5 but also accepts the bare 50; we pass its verdict through.
    assert score_math(boxed("5 \\text{ cm}"), "5") == 1.0
    assert score_math(boxed("5 cm"), "5") == 1.0
    assert score_math(boxed("50\\%"), "0.5") == 1.0
    assert score_math(boxed("0.5"), "50\\%") == 1.0


def test_gold_comes_first():
    # verify(gold, answer) is not symmetric: an interval answer matches an inequality gold, not the reverse.
    assert score_math(boxed("(1,2)"), "1<x<2") == 1.0
    assert score_math(boxed("1<x<2"), "(1,2)") == 0.0


def test_answers_in_thinking_score_nothing():
    assert score_math("<think>it is \\boxed{5}</think> Therefore \\boxed{5}.", "5") == 1.0
    assert score_math("<think>it is \\boxed{5}</think> I give up.", "5") == 0.0
    assert score_math("<think>it is \\boxed{5}", "5") == 0.0
    assert score_math("Final Answer: The final answer is $5$. I hope it is correct.", "5") == 1.0
    assert score_math("", "5") == 0.0


@pytest.mark.parametrize("gold", ["see solution", "", "   ", "N/A", "\\frac{", "The answer is given above"])
def test_invalid_gold_raises(gold):
    with pytest.raises(InvalidGoldError, match="not a mathematical expression"):
        score_math(boxed("5"), gold)
    # Even an answer that repeats the gold verbatim is never scored correct.
    assert verify_in_process(gold, gold, 2.0) == Status.INVALID_GOLD
    assert verify_in_process(None, gold, 2.0) == Status.INVALID_GOLD  # counted before no_answer


def test_worked_solution_gold_uses_its_last_box():
    solution = "Since $2x = 1$, we get $x = \\frac{1}{2}$. So the answer is $\\boxed{\\frac{1}{2}}$."
    assert score_math(boxed("0.5"), solution) == 1.0
    assert score_math(boxed("2"), solution) == 0.0


def test_helpers():
    assert wrap_math("\\sqrt{8}") == "$\\sqrt{8}$"
    assert wrap_math("$5$") == "$5$" and wrap_math("\\boxed{5}") == "\\boxed{5}"
    assert gold_is_prose("see solution") and not gold_is_prose("\\text{no solution}") and not gold_is_prose("5")
    assert normalize_unicode("−√12 ５") == "-\\sqrt{12} 5"


def test_status_codes_in_process():
    assert verify_in_process("5", "5", 2.0) == Status.CORRECT
    assert verify_in_process("6", "5", 2.0) == Status.WRONG
    assert verify_in_process(None, "5", 2.0) == Status.NO_ANSWER


def test_in_process_timeout():
    # A power tower that makes sympy run for minutes without a limit; the SIGALRM limit stops it.
    assert verify_in_process("9^{9^{9^{9}}}", "5", 0.5) == Status.TIMEOUT
    assert score_math(boxed("9^{9^{9^{9}}}"), "5", timeout=0.5) == 0.0
    assert verify_in_process("5", "5", 2.0) == Status.CORRECT  # the alarm was cleared


def test_in_process_limit_needs_main_thread():
    errors = []

    def run():
        try:
            score_math(boxed("5"), "5", timeout=1.0)
        except RuntimeError as e:
            errors.append(str(e))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors and "main thread" in errors[0]
    with pytest.raises(TypeError, match="gold must be str"):
        score_math(boxed("5"), 5)
