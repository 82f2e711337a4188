"""Multi-step integer arithmetic: ``Compute 3+4*2-5.`` (``*`` before ``+``/``-``, then left to right).

Difficulty d (0..6): d+1 operations, operands up to 9 (d <= 2), 20 (d <= 4) or 50; d=0 is a single operation. A
worked attempt writes each step (``4*2=8, 3+8=11, 11-5=6``); its check inverts every step in order (``8/2=4, 11-8=3,
6+5=11``) and stops at the first mismatch, so a slipped step is caught and the retry resumes from it.
"""

from __future__ import annotations

import random
from fractions import Fraction

from mrt_jax.data.answers import format_rational, rational_match
from mrt_jax.data.tasks.base import Problem, ProceduralTask

_SLIPS = (-10, -2, -1, 1, 2, 10)


def _parse(question: str) -> tuple[list[int], list[str]]:
    expr = question.removeprefix("Compute ").rstrip(".")
    nums, ops, cur = [], [], ""
    for ch in expr:
        if ch in "+-*":
            nums.append(int(cur))
            ops.append(ch)
            cur = ""
        else:
            cur += ch
    nums.append(int(cur))
    return nums, ops


def _next_step(nums: list[int], ops: list[str]) -> int:
    """Index of the operator evaluated next: first ``*``, else the first operator."""
    return ops.index("*") if "*" in ops else 0


def _apply(a: int, op: str, b: int) -> int:
    return a * b if op == "*" else a + b if op == "+" else a - b


def _inverse(a: int, op: str, b: int, c: int) -> tuple[str, Fraction]:
    """Text and value of the inverse step that should give back ``a`` from ``c`` and ``b``."""
    if op == "*":
        return f"{c}/{b}", Fraction(c, b)
    if op == "+":
        return f"{c}-{b}", Fraction(c - b)
    return f"{c}+{b}", Fraction(c + b)


class Arithmetic(ProceduralTask):
    name = "arithmetic"
    min_difficulty = 0

    def _generate(self, rng: random.Random, difficulty: int) -> tuple[str, str, str]:
        top = 9 if difficulty <= 2 else 20 if difficulty <= 4 else 50
        nums = [rng.randint(1, top) for _ in range(difficulty + 2)]
        ops = [rng.choices("+-*", weights=(4, 4, 3))[0] for _ in range(difficulty + 1)]
        text = "".join(f"{n}{o}" for n, o in zip(nums, ops)) + str(nums[-1])
        value = self._value(nums, ops)
        return f"Compute {text}.", str(value), str(value)

    @staticmethod
    def _value(nums: list[int], ops: list[str]) -> int:
        nums, ops = list(nums), list(ops)
        while ops:
            i = _next_step(nums, ops)
            nums[i: i + 2] = [_apply(nums[i], ops[i], nums[i + 1])]
            del ops[i]
        return nums[0]

    def verify(self, response: str, answer: str) -> float:
        return rational_match(response, answer)

    def _attempts(self, problem: Problem, rng: random.Random, slip_prob: float,
                  max_attempts: int) -> tuple[list[str], str, int]:
        nums, ops = _parse(problem.question)
        bodies, failed = [], 0
        for attempt in range(max_attempts):
            slip = attempt < max_attempts - 1 and rng.random() < slip_prob
            slip_at = rng.randrange(len(ops)) if slip else -1
            work_n, work_o, steps = list(nums), list(ops), []
            while work_o:
                i = _next_step(work_n, work_o)
                a, op, b = work_n[i], work_o[i], work_n[i + 1]
                c = _apply(a, op, b) + (rng.choice(_SLIPS) if len(steps) == slip_at else 0)
                steps.append((a, op, b, c, list(work_n), list(work_o)))
                work_n[i: i + 2] = [c]
                del work_o[i]
            checks, bad = [], None
            for k, (a, op, b, c, _before_n, _before_o) in enumerate(steps):
                inv, val = _inverse(a, op, b, c)
                checks.append(f"{inv}={format_rational(val)}")
                if val != a:
                    checks[-1] += f", not {a}."
                    bad = k
                    break
            work = ", ".join(f"{a}{op}{b}={c}" for a, op, b, c, _, _ in steps)
            if bad is None:
                bodies.append(f"{work}. Check: {', '.join(checks)}. OK.")
                return bodies, str(steps[-1][3]), failed
            bodies.append(f"{work}. Check: {', '.join(checks)}")
            failed += 1
            nums, ops = steps[bad][4], steps[bad][5]  # resume from the state before the slipped step
        raise AssertionError("the last attempt never slips")
