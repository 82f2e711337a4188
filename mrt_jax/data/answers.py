"""Exact comparison of procedural-task answers (no sympy, no eval); extraction is ``mrt_jax.rewards``'.

The final answer of a response is the content of its last ``\\boxed{...}`` (braces may nest); without one, the text
after the last ``Answer:``. When the response holds ``</think>`` only the text after the last ``</think>`` counts (a
boxed value inside the thinking is not an answer); an unclosed ``<think>`` has no answer.
Numbers compare exactly as rationals: ``3/2 == \\frac{3}{2} == 1.5 == x = 1.5``.
"""

from __future__ import annotations

import re
from fractions import Fraction

from mrt_jax.rewards.extraction import extract_answer, last_boxed  # noqa: F401  (one extractor for all)

_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")
_NUM = re.compile(r"^[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/[-+]?\d+)?$")
MAX_ANSWER_CHARS = 200  # longer "answers" are not numbers we compare; refuse before parsing


def parse_rational(text: str | None) -> Fraction | None:
    """Exact value of an integer / decimal / ``a/b`` / ``\\frac{a}{b}`` answer (``x = `` and ``$`` allowed), else None.

    Never evaluates expressions: ``2+2`` is not a number and gives None.
    """
    if text is None or len(text) > MAX_ANSWER_CHARS:
        return None
    s = text.replace("$", "").replace(" ", "").replace("\\!", "").replace("{,}", ",")
    s = re.sub(r"^[a-zA-Z]=", "", s).rstrip(".")
    s = re.sub(r"^\\left\((.*)\\right\)$", r"\1", s)
    m = _FRAC.match(s)
    if m:
        num, den = int(m.group(2)), int(m.group(3))
        if den == 0:
            return None
        value = Fraction(num, den)
        return -value if m.group(1) else value
    if not _NUM.match(s):
        return None
    s = s.replace(",", "")
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def rational_match(response: str, gold: str) -> float:
    """1.0 when the response's final answer equals ``gold`` exactly as a rational number, else 0.0.

    Raises ValueError when ``gold`` itself is not a number: an unparseable gold must never score as correct.
    """
    gold_value = parse_rational(gold)
    if gold_value is None:
        raise ValueError(f"gold answer {gold!r} is not an integer, decimal or fraction")
    value = parse_rational(extract_answer(response))
    return float(value is not None and value == gold_value)


def format_rational(value: Fraction) -> str:
    """Canonical text of a rational: ``7``, ``-3/2``."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
