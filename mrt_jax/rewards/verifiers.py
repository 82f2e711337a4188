"""Verifier protocol, a registry by name, the built-in exact verifiers and a batched dispatcher.

Built-ins: `math` (math-verify, in-process, 5 s limit), `exact_int`, `exact_string`. Procedural tasks register their
own (`register_verifier("countdown", fn)`); a name `task:<name>` not registered resolves to
`mrt_jax.data.tasks.get_task(<name>).verify` at first use. Verifiers other than `math` run in the calling process
without a time limit: they must be exact, fast and bounded (no sympy on raw text).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from mrt_jax.rewards.extraction import extract_answer
from mrt_jax.rewards.math_reward import score_math
from mrt_jax.rewards.result import InvalidGoldError, ScoreResult, as_truncated, make_result
from mrt_jax.rewards.scorer import score_with  # the per-item status rules, shared with ExactScorer

_INT_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.0*)?")
_TEXT_RE = re.compile(r"\\(?:text|mathrm|textbf)\s*\{([^{}]*)\}")


class Verifier(Protocol):
    """`verifier(completion, gold) -> reward` in [0, 1] (1.0 = correct). Raises InvalidGoldError for a gold it
    cannot use."""

    def __call__(self, completion: str, gold: str) -> float: ...


def parse_int(text: str | None) -> int | None:
    """Integer value of an answer string, or None. Accepts a sign, thousands commas ("1,234"), a zero fractional part
    ("12.0"), math delimiters and a `\\text{...}` wrapper; nothing is evaluated ("2+3" -> None)."""
    if text is None:
        return None
    s = _TEXT_RE.sub(r"\1", text).replace("$", "").replace("{,}", ",").strip()
    if len(s) > 400 or not _INT_RE.fullmatch(s):  # 400 chars keeps int() cheap
        return None
    return int(s.split(".")[0].replace(",", ""))


def normalize_string(text: str) -> str:
    """Whitespace-collapsed, `\\text{...}`-unwrapped, `$`-free string, without a trailing period."""
    s = _TEXT_RE.sub(r"\1", text).replace("$", "")
    return " ".join(s.split()).rstrip(".").strip()


def exact_int(completion: str, gold: str) -> float:
    """1.0 iff `parse_int(extract_answer(completion)) == parse_int(gold)`; InvalidGoldError if the gold is no int."""
    want = parse_int(gold)
    if want is None:
        raise InvalidGoldError(f"exact_int: gold {gold[:200]!r} is not an integer")
    return 1.0 if parse_int(extract_answer(completion)) == want else 0.0


def exact_string(completion: str, gold: str) -> float:
    """1.0 iff `normalize_string(extract_answer(completion)) == normalize_string(gold)` (case-sensitive);
    InvalidGoldError for an empty gold."""
    want = normalize_string(gold)
    if not want:
        raise InvalidGoldError(f"exact_string: gold {gold[:200]!r} is empty")
    answer = extract_answer(completion)
    return 1.0 if answer is not None and normalize_string(answer) == want else 0.0


_REGISTRY: dict[str, Verifier] = {"math": score_math, "exact_int": exact_int, "exact_string": exact_string}


def register_verifier(name: str, fn: Callable[[str, str], float], *, overwrite: bool = False) -> None:
    """Register `fn` under `name`. A taken name raises ValueError unless `overwrite=True`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_verifier: name must be a non-empty str, got {name!r}")
    if not callable(fn):
        raise TypeError(f"register_verifier({name!r}): fn must be callable (completion, gold) -> float")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"register_verifier: {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = fn


def registered_verifiers() -> tuple[str, ...]:
    """Names registered so far (sorted); `task:<name>` names resolve on demand as well."""
    return tuple(sorted(_REGISTRY))


def get_verifier(name: str) -> Verifier:
    """The verifier registered as `name`, or for `task:<task>` the procedural task's own `verify`."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith("task:") and len(name) > 5:
        from mrt_jax.data.tasks import get_task  # lazy: rewards does not depend on data otherwise

        _REGISTRY[name] = get_task(name[5:]).verify
        return _REGISTRY[name]
    raise ValueError(f"unknown verifier {name!r}; registered: {list(registered_verifiers())}, or 'task:<task name>'")


def score_items(
    completions: Sequence[str],
    golds: Sequence[str],
    verifier_names: Sequence[str],
    *,
    truncated: Sequence[bool] | None = None,
    math_scorer=None,
) -> ScoreResult:
    """Score a mixed batch: item i with `get_verifier(verifier_names[i])`.

    `math` items go to `math_scorer.score` (a `MathScorer`: workers and time limits), by default an in-process
    `MathScorer(num_workers=0)` (main thread only). Other items: reward = verifier(completion, gold); status
    CORRECT if reward >= 1, INVALID_GOLD (reward 0) on InvalidGoldError, ERROR (reward 0) if it raised anything
    else, NO_ANSWER/TRUNCATED when the reward is 0 and `extract_answer` finds nothing, else WRONG (partial credit
    kept in reward_b).
    """
    batch = len(completions)
    if not len(golds) == len(verifier_names) == batch:
        raise ValueError(f"score_items: {batch} completions, {len(golds)} golds, {len(verifier_names)} verifier names;"
                         " need one of each per item")
    truncated_b = as_truncated(truncated, batch)
    reward_b = np.zeros(batch, np.float32)
    status_b = np.zeros(batch, np.int8)
    answers: list[str | None] = [None] * batch
    math_idx = [i for i, n in enumerate(verifier_names) if n == "math"]
    if math_idx:
        if math_scorer is None:
            from mrt_jax.rewards.pool import MathScorer

            math_scorer = MathScorer(num_workers=0)
        sub = math_scorer.score([completions[i] for i in math_idx], [golds[i] for i in math_idx],
                                truncated_b[math_idx])
        reward_b[math_idx], status_b[math_idx] = sub.reward_b, sub.status_b
        for j, i in enumerate(math_idx):
            answers[i] = sub.answers[j]
    done = set(math_idx)
    for i in range(batch):
        if i not in done:
            reward_b[i], status_b[i], answers[i] = score_with(get_verifier(verifier_names[i]), completions[i],
                                                              golds[i], bool(truncated_b[i]))
    return make_result(reward_b, status_b, truncated_b, tuple(answers))
