"""Countdown, a search task: combine some of the given numbers (each at most once) with ``+ - * /`` and brackets to
reach the target. Several attempts inside one trace raise the chance of success.

Difficulty d: d+2 numbers in 1..(5+5d); the gold expression applies a random order of 2..min(d+2, 5) of them with
``+ - *`` so every intermediate value is positive. Answer key: ``target=24;numbers=3,5,8,1``.
A worked attempt evaluates one candidate step by step and compares it with the target; failed candidates are
random, the last one is the gold expression.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from fractions import Fraction

from mrt_jax.data.answers import extract_answer
from mrt_jax.data.tasks.base import Problem, ProceduralTask

_KEY = re.compile(r"^target=(-?\d+);numbers=(\d+(?:,\d+)*)$")
_TOKEN = re.compile(r"\s*(\d+|[-+*/()])")
MAX_EXPR_CHARS = 200


def parse_key(answer: str) -> tuple[int, list[int]]:
    m = _KEY.match(answer)
    if m is None:
        raise ValueError(f"countdown answer key {answer!r}; expected 'target=T;numbers=a,b,...'")
    return int(m.group(1)), [int(n) for n in m.group(2).split(",")]


def evaluate(expr: str) -> tuple[Fraction, list[int]] | None:
    """Exact value of an arithmetic expression over integers with ``+ - * /`` and brackets, plus the integers used.

    A small recursive-descent parser (never eval): None when the text is not such an expression or divides by 0.
    """
    expr = expr.replace("\\times", "*").replace("\\cdot", "*").replace("\\div", "/").replace("×", "*")
    expr = expr.replace("÷", "/").replace("\\left", "").replace("\\right", "").split("=")[0].strip()
    if not expr or len(expr) > MAX_EXPR_CHARS:
        return None
    tokens, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            if expr[pos:].strip():
                return None
            break
        tokens.append(m.group(1))
        pos = m.end()
    used: list[int] = []

    def atom(i: int) -> tuple[Fraction, int]:
        if i < len(tokens) and tokens[i] == "(":
            v, i = add(i + 1)
            if i >= len(tokens) or tokens[i] != ")":
                raise ValueError
            return v, i + 1
        if i < len(tokens) and tokens[i].isdigit():
            used.append(int(tokens[i]))
            return Fraction(int(tokens[i])), i + 1
        raise ValueError

    def mul(i: int) -> tuple[Fraction, int]:
        v, i = atom(i)
        while i < len(tokens) and tokens[i] in "*/":
            w, j = atom(i + 1)
            v, i = (v * w if tokens[i] == "*" else v / w), j
        return v, i

    def add(i: int) -> tuple[Fraction, int]:
        v, i = mul(i)
        while i < len(tokens) and tokens[i] in "+-":
            w, j = mul(i + 1)
            v, i = (v + w if tokens[i] == "+" else v - w), j
        return v, i

    try:
        value, end = add(0)
    except (ValueError, ZeroDivisionError, RecursionError):
        return None
    return (value, used) if end == len(tokens) else None


def _chain(nums: list[int], ops: list[str]) -> tuple[str, list[str], int]:
    """Expression text, step texts and value of applying ``ops`` left to right (brackets keep the order)."""
    expr, value, steps = str(nums[0]), nums[0], []
    for op, n in zip(ops, nums[1:]):
        new = value + n if op == "+" else value - n if op == "-" else value * n
        steps.append(f"{value}{op}{n}={new}")
        expr = f"({expr}){op}{n}" if op == "*" and ("+" in expr or "-" in expr) else f"{expr}{op}{n}"
        value = new
    return expr, steps, value


def _random_chain(rng: random.Random, numbers: list[int]) -> tuple[str, list[str], int]:
    pick = rng.sample(numbers, rng.randint(2, min(len(numbers), 5)))  # short traces
    ops, value = [], pick[0]
    for n in pick[1:]:
        op = rng.choice("+-*" if value > n else "+*")
        value = value + n if op == "+" else value - n if op == "-" else value * n
        ops.append(op)
    return _chain(pick, ops)


class Countdown(ProceduralTask):
    name = "countdown"

    def _generate(self, rng: random.Random, difficulty: int) -> tuple[str, str, str]:
        numbers = [rng.randint(1, 5 + 5 * difficulty) for _ in range(difficulty + 2)]
        while True:
            expr, _, target = _random_chain(rng, numbers)
            if target not in numbers and target <= 1000:
                break
        listed = ", ".join(map(str, numbers))
        question = (f"Using some of the numbers {listed} (each at most once) and + - * / with brackets, "
                    f"make {target}.")
        return question, f"target={target};numbers={','.join(map(str, numbers))}", expr

    def verify(self, response: str, answer: str) -> float:
        target, numbers = parse_key(answer)
        parsed = evaluate(extract_answer(response) or "")
        if parsed is None:
            return 0.0
        value, used = parsed
        return float(value == target and not Counter(used) - Counter(numbers))

    def _attempts(self, problem: Problem, rng: random.Random, slip_prob: float,
                  max_attempts: int) -> tuple[list[str], str, int]:
        target, numbers = parse_key(problem.answer)
        bodies, failed = [], 0
        for attempt in range(max_attempts):
            guess = attempt < max_attempts - 1 and rng.random() < slip_prob
            if guess:
                expr, steps, value = _random_chain(rng, numbers)
            else:
                gold = evaluate(problem.solution)
                nums = gold[1] if gold else []
                ops = [c for c in problem.solution if c in "+-*"]
                expr, steps, value = _chain(nums, ops)
            if value == target:
                bodies.append(f"try {expr}: {', '.join(steps)}. That is {target}. OK.")
                return bodies, expr, failed
            bodies.append(f"try {expr}: {', '.join(steps)}. That is {value}, not {target}.")
            failed += 1
        raise AssertionError("the last attempt uses the gold expression")
