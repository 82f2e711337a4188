"""Math rewards in the calling process: `score_math` for one item, `verify_in_process` for tiny batches and tests.

The time limit here is SIGALRM-based (`signal.setitimer`), so it only works on the main thread and only interrupts
Python-level work. For training use `pool.MathScorer(num_workers>=1)`: worker processes that are killed on timeout.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

from mrt_jax.rewards import _mv_core
from mrt_jax.rewards.extraction import DEFAULT_EXTRACTION, ExtractionConfig, extract_answer, gold_answer
from mrt_jax.rewards.result import InvalidGoldError, Status

_GOLD_CACHE = _mv_core.GoldCache()


class _ItemTimeout(BaseException):
    """Raised by the alarm handler. A BaseException so that math-verify's `except Exception` does not swallow it."""


class MainThreadRequiredError(RuntimeError):
    """A SIGALRM time limit was requested off the main thread."""


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise `_ItemTimeout` inside the block after `seconds` of wall time (None: no limit). Main thread only."""
    if seconds is None:
        yield
        return
    if seconds <= 0:
        raise ValueError(f"time limit must be > 0 seconds or None, got {seconds}")
    if threading.current_thread() is not threading.main_thread():
        raise MainThreadRequiredError(
            "In-process math scoring with a time limit needs the main thread (it uses SIGALRM); off the main thread "
            "use MathScorer(num_workers>=1), or pass timeout=None to run without a limit."
        )

    def _on_alarm(signum, frame):
        raise _ItemTimeout()

    previous = signal.signal(signal.SIGALRM, _on_alarm)
    outer_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay > 0:  # re-arm a caller's own timer with what is left of it (at least 1 ms)
            signal.setitimer(signal.ITIMER_REAL, max(outer_delay - (time.monotonic() - started), 1e-3))


def verify_in_process(answer: str | None, gold: str, timeout_s: float | None) -> Status:
    """Status of an extracted answer against a gold (see `_mv_core.verify_item`), checked in this process within
    `timeout_s` seconds (TIMEOUT past it; ERROR if the checker raised)."""
    _mv_core.warm_up()
    try:
        with time_limit(timeout_s):
            return Status(_mv_core.verify_item(answer, gold, _GOLD_CACHE))
    except _ItemTimeout:
        return Status.TIMEOUT
    except MainThreadRequiredError:
        raise
    except Exception:  # noqa: BLE001  MemoryError, RecursionError, a sympy bug: this item only
        return Status.ERROR


def score_math(
    completion: str,
    gold: str,
    timeout: float | None = 5.0,
    *,
    extraction: ExtractionConfig = DEFAULT_EXTRACTION,
) -> float:
    """1.0 if the final answer of `completion` is mathematically equivalent to `gold`, else 0.0.

    answer = `extract_answer(completion, extraction)` (text after `</think>`, last box, else Answer: line);
    reward = 1.0 iff `math_verify.verify(parse(gold), parse(answer))` (gold first; raw LaTeX golds such as
    `\\frac{1}{2}` are wrapped in `$...$`; a worked solution is reduced to its last box). No answer or a timeout
    (`timeout` seconds, main thread only; None = no limit) scores 0.0.

    Raises InvalidGoldError when the gold is empty, prose ("see solution") or parses to no expression.
    """
    if not isinstance(gold, str):
        raise TypeError(f"score_math: gold must be str, got {type(gold).__name__}")
    status = verify_in_process(extract_answer(completion, extraction), gold_answer(gold), timeout)
    if status == Status.INVALID_GOLD:
        raise InvalidGoldError(f"score_math: gold answer {gold[:200]!r} is not a mathematical expression "
                               "(empty, prose, or unparseable by math-verify)")
    return 1.0 if status == Status.CORRECT else 0.0
