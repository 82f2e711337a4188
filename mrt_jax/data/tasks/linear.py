"""Linear equations in one unknown: ``Solve for x: 3x + 5 = 2x + 9.`` with an integer (difficulty <= 2) or rational
solution. Coefficients grow with difficulty (up to 9, 20, 50).

A worked attempt writes the collected terms ``(a-c)x = d-b`` and divides; its check substitutes x into both sides.
Slips are the usual ones: a sign error when moving a constant, or dividing by the wrong coefficient.
"""

from __future__ import annotations

import random
import re
from fractions import Fraction

from mrt_jax.data.answers import format_rational, rational_match
from mrt_jax.data.tasks.base import Problem, ProceduralTask

_EQ = re.compile(r"^Solve for x: (-?\d*)x ([+-]) (\d+) = (-?\d*)x ([+-]) (\d+)\.$")


def _side(coef: int, const: int) -> str:
    lead = "" if coef == 1 else "-" if coef == -1 else str(coef)
    return f"{lead}x {'-' if const < 0 else '+'} {abs(const)}"


def _coef(text: str) -> int:
    return 1 if text == "" else -1 if text == "-" else int(text)


def _fmt(v: Fraction) -> str:
    return format_rational(v) if v.denominator == 1 else f"({format_rational(v)})"


class LinearEquation(ProceduralTask):
    name = "linear"

    def _generate(self, rng: random.Random, difficulty: int) -> tuple[str, str, str]:
        top = 9 if difficulty <= 2 else 20 if difficulty <= 4 else 50
        while True:
            a, c = rng.randint(-top, top), rng.randint(-top, top)
            if a != c and a != 0 and c != 0:
                break
        den = 1 if difficulty <= 2 else rng.choice([1, abs(a - c)])
        x = Fraction(rng.randint(-top, top), den)
        b = rng.randint(1, top) * rng.choice([-1, 1])
        d_value = (a - c) * x + b
        if d_value.denominator != 1 or d_value == 0:  # keep all shown numbers integers and non-zero
            d_value = Fraction(b + (a - c) * rng.randint(1, top))
            x = (d_value - b) / (a - c)
        d = int(d_value)
        question = f"Solve for x: {_side(a, b)} = {_side(c, d)}."
        return question, format_rational(x), format_rational(x)

    def verify(self, response: str, answer: str) -> float:
        return rational_match(response, answer)

    def _attempts(self, problem: Problem, rng: random.Random, slip_prob: float,
                  max_attempts: int) -> tuple[list[str], str, int]:
        m = _EQ.match(problem.question)
        if m is None:
            raise ValueError(f"linear: cannot parse question {problem.question!r}")
        a, b = _coef(m.group(1)), int(m.group(3)) * (1 if m.group(2) == "+" else -1)
        c, d = _coef(m.group(4)), int(m.group(6)) * (1 if m.group(5) == "+" else -1)
        bodies, failed = [], 0
        for attempt in range(max_attempts):
            slip = attempt < max_attempts - 1 and rng.random() < slip_prob
            kind = rng.choice(["sign", "divide"]) if slip else ""
            coef, const = a - c, (d + b if kind == "sign" else d - b)
            divisor = (a + c if a + c != 0 else a) if kind == "divide" else coef
            x = Fraction(const, divisor)
            work = f"{divisor}x = {const}, so x = {format_rational(x)}."
            left, right = a * x + b, c * x + d
            check = (f"Check: {a}*{_fmt(x)}{b:+d} = {format_rational(left)}, "
                     f"{c}*{_fmt(x)}{d:+d} = {format_rational(right)}")
            if left == right:
                bodies.append(f"{work} {check}. OK.")
                return bodies, format_rational(x), failed
            bodies.append(f"{work} {check}, not equal.")
            failed += 1
        raise AssertionError("the last attempt never slips")
