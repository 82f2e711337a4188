"""Verifier registry, built-in exact verifiers and the mixed-batch dispatcher."""

import pytest

from mrt_jax.rewards import (
    InvalidGoldError,
    Status,
    exact_int,
    exact_string,
    get_verifier,
    register_verifier,
    registered_verifiers,
    score_items,
)
from mrt_jax.rewards.verifiers import _REGISTRY, parse_int


def test_builtins_registered():
    assert {"math", "exact_int", "exact_string"} <= set(registered_verifiers())
    assert get_verifier("math")("\\boxed{\\frac{2}{4}}", "0.5") == 1.0
    with pytest.raises(ValueError, match="unknown verifier 'nope'"):
        get_verifier("nope")


@pytest.mark.parametrize(
    "completion, gold, reward",
    [
        ("\\boxed{42}", "42", 1.0),
        ("Answer: 1,234", "1234", 1.0),
        ("\\boxed{-7}", "-7", 1.0),
        ("\\boxed{12.0}", "12", 1.0),
        ("\\boxed{\\text{15}}", "15", 1.0),
        ("\\boxed{41}", "42", 0.0),
        ("\\boxed{2+40}", "42", 0.0),  # nothing is evaluated
        ("\\boxed{42.5}", "42", 0.0),
        ("<think>\\boxed{42}</think> no idea", "42", 0.0),
        ("", "42", 0.0),
    ],
)
def test_exact_int(completion, gold, reward):
    assert exact_int(completion, gold) == reward


def test_exact_int_invalid_gold_and_parse():
    with pytest.raises(InvalidGoldError, match="not an integer"):
        exact_int("\\boxed{1}", "one")
    assert parse_int("9" * 500) is None  # refuses huge digit strings instead of converting them
    assert parse_int("$-3$") == -3 and parse_int(None) is None


def test_exact_string():
    assert exact_string("Answer: the  cat sat.", "the cat sat") == 1.0
    assert exact_string("\\boxed{\\text{Monday}}", "Monday") == 1.0
    assert exact_string("\\boxed{monday}", "Monday") == 0.0  # case-sensitive
    assert exact_string("nothing", "Monday") == 0.0
    with pytest.raises(InvalidGoldError, match="empty"):
        exact_string("\\boxed{x}", "  ")


def test_register_and_dispatch():
    def parity(completion: str, gold: str) -> float:
        answer = completion.strip().lower()
        if gold not in ("even", "odd"):
            raise InvalidGoldError(f"parity gold {gold!r}")
        if answer == "boom":
            raise RuntimeError("verifier bug")
        return 1.0 if answer == gold else (0.5 if answer in ("even", "odd") else 0.0)

    try:
        register_verifier("test_parity", parity)
        with pytest.raises(ValueError, match="already registered"):
            register_verifier("test_parity", parity)
        register_verifier("test_parity", parity, overwrite=True)
        with pytest.raises(TypeError, match="callable"):
            register_verifier("test_other", 3)
        assert get_verifier("test_parity") is parity
        result = score_items(
            ["even", "odd", "boom", "even", "\\boxed{0.5}", "\\boxed{3}", "Answer: x"],
            ["even", "even", "odd", "seven", "1/2", "4", "5"],
            ["test_parity"] * 4 + ["math", "exact_int", "exact_int"],
        )
        assert result.status_b.tolist() == [Status.CORRECT, Status.WRONG, Status.ERROR, Status.INVALID_GOLD,
                                            Status.CORRECT, Status.WRONG, Status.WRONG]
        assert result.reward_b.tolist() == [1.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0]
    finally:
        _REGISTRY.pop("test_parity", None)


def test_dispatch_no_answer_and_truncated():
    result = score_items(["", "cut off mid-thought"], ["4", "4"], ["exact_int", "exact_int"], truncated=[False, True])
    assert result.status_b.tolist() == [Status.NO_ANSWER, Status.TRUNCATED]
    with pytest.raises(ValueError, match="need one of each per item"):
        score_items(["a"], ["1", "2"], ["exact_int"])


def test_task_verifier_resolves_lazily():
    try:
        from mrt_jax.data.tasks import TASKS
    except Exception as e:  # noqa: BLE001  the data package is another engineer's; skip cleanly if it is not importable
        pytest.skip(f"mrt_jax.data.tasks not importable: {e}")
    name = min(TASKS)
    verifier = get_verifier(f"task:{name}")
    assert callable(verifier)
    _REGISTRY.pop(f"task:{name}", None)
