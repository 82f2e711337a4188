"""Math equivalence via math-verify: one item -> one status code.

Self-contained on purpose (standard library + math_verify only): the worker processes of `pool.MathScorer` run this
file directly (`runpy.run_path`), so they never import the `mrt_jax` package (and never pull in JAX).

Untrusted text (model answers, dataset golds) only reaches math-verify's LaTeX parser, never eval/exec/sympify.
Time limits are NOT enforced here: math-verify is called with `parsing_timeout=None, timeout_seconds=None` (its own
limits use signal.alarm, which fails off the main thread); the caller enforces them (worker kill, or SIGALRM on the
main thread for the in-process path).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading

# Status codes (plain ints so that this file needs nothing from mrt_jax; `result.Status` names them).
WRONG, CORRECT, NO_ANSWER, TIMEOUT, INVALID_GOLD, TRUNCATED, ERROR = range(7)

_UNICODE = {
    "\u2212": "-",  # minus sign
    "\u2013": "-",  # en dash, often a minus in model output
    "\u221e": "\\infty ",
    "\u2264": "\\le ",
    "\u2265": "\\ge ",
    "\u2260": "\\ne ",
    "\u00b7": "\\cdot ",
    "\u00f7": "\\div ",
    "\u00b0": "^\\circ ",
}
# Full-width ASCII (U+FF01..U+FF5E) -> ASCII, e.g. "５" -> "5".
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_SQRT_RE = re.compile(r"\u221a\s*(\d+(?:\.\d+)?|[A-Za-z]|\{)")
_TEXT_GROUP_RE = re.compile(r"\\(?:text|mathrm|textbf|mathbf|textit|operatorname|mbox)\s*\{[^{}]*\}")
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_PROSE_RE = re.compile(r"[A-Za-z]{3,}\s+[A-Za-z]{3,}")
_DELIMITED_RE = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed|\\fbox")  # an escaped \$ is money, not math
_PLACEHOLDERS = frozenset({"n/a", "na", "null", "nan", "tbd", "todo", "?"})


def normalize_unicode(text: str) -> str:
    """Map common Unicode math symbols to LaTeX/ASCII: "−3" -> "-3", "√8" -> "\\sqrt{8}", "∞" -> "\\infty",
    full-width "５" -> "5". Other characters are kept."""
    text = text.translate(_FULLWIDTH)
    text = _SQRT_RE.sub(lambda m: "\\sqrt" + (m.group(1) if m.group(1) == "{" else "{" + m.group(1) + "}"), text)
    for src, dst in _UNICODE.items():
        text = text.replace(src, dst)
    return text


def gold_is_prose(gold: str) -> bool:
    """True when a gold answer reads as prose ("see solution") or is a placeholder ("N/A", "null"): after dropping
    \\text{...}-style groups, LaTeX commands and `$`, it still holds two consecutive words of 3+ letters. math-verify
    would otherwise parse such text as a product of one-letter symbols. (Raw units outside \\text, as in
    "5 square units", are caught too: such golds are counted invalid, never scored.)"""
    if gold.strip().lower() in _PLACEHOLDERS:
        return True
    stripped = _COMMAND_RE.sub(" ", _TEXT_GROUP_RE.sub(" ", gold)).replace("$", " ")
    return _PROSE_RE.search(stripped) is not None


def wrap_math(text: str) -> str:
    """Raw LaTeX without delimiters (MATH golds: `\\sqrt{8}`, `\\{1,2\\}`, `x^2+1`) -> `$...$` so that
    math-verify's LaTeX extractor reads all of it; text with `$`, `\\(`, `\\[` or a box is kept as is."""
    text = text.strip()
    if _DELIMITED_RE.search(text):
        return text
    return "$" + text + "$"


def _parse(text: str) -> list:
    from math_verify import parse

    return parse(wrap_math(normalize_unicode(text)), parsing_timeout=None)


def _has_expression(parsed: list) -> bool:
    from sympy import Basic, MatrixBase

    return any(isinstance(x, (Basic, MatrixBase)) for x in parsed)


class GoldCache:
    """Parsed gold answers, keyed by the gold string (golds repeat G times in a GRPO batch). Bounded: cleared when
    full. A value of None marks an invalid gold."""

    def __init__(self, max_items: int = 4096):
        self.max_items = max_items
        self._items: dict[str, list | None] = {}

    def get(self, gold: str) -> list | None:
        if gold not in self._items:
            if len(self._items) >= self.max_items:
                self._items.clear()
            parsed = None
            if gold.strip() and not gold_is_prose(gold):
                candidate = _parse(gold)
                parsed = candidate if _has_expression(candidate) else None
            self._items[gold] = parsed
        return self._items[gold]


def verify_item(answer: str | None, gold: str, cache: GoldCache) -> int:
    """Status of one extracted answer against one gold:
    INVALID_GOLD if the gold is empty, prose, or parses to no mathematical expression (checked first, so invalid
    golds are counted even when the answer is missing); NO_ANSWER if `answer` is None or math-verify extracts
    nothing from it; CORRECT if `math_verify.verify(gold, answer)` (gold FIRST: verify is not symmetric); else WRONG.
    No time limit here (see module docstring)."""
    from math_verify import verify

    parsed_gold = cache.get(gold)
    if parsed_gold is None:
        return INVALID_GOLD
    if answer is None:
        return NO_ANSWER
    parsed_answer = _parse(answer)
    if not parsed_answer:
        return NO_ANSWER
    return CORRECT if verify(parsed_gold, parsed_answer, timeout_seconds=None) else WRONG


_WARM = []


def warm_up() -> None:
    """Run one small check so that lazy imports and parser construction (about 1-3 s on a first call) are not
    charged to the first item's time limit. Idempotent."""
    if not _WARM:
        quiet_math_verify()
        verify_item("0.5", "\\frac{1}{2}", GoldCache())
        _WARM.append(True)


def quiet_math_verify() -> None:
    """math-verify warns once per process that its timeouts are off (we enforce them ourselves) and on every
    internal timeout/parse failure; keep those out of the training logs."""
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _exit_when_orphaned(parent_pid: int) -> None:
    # A worker stuck in sympy never reads EOF on stdin; leave when the parent is gone.
    while True:
        threading.Event().wait(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


def serve(memory_limit_mb: int | None) -> None:
    """Worker loop: one JSON request per stdin line, {"a": answer or null, "g": gold}, one reply per line
    {"s": status}. Prints {"ready": true} once imports are done; exits on EOF."""
    warm_up()  # before the ready line, so that item time limits exclude start-up work

    if memory_limit_mb:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):  # some platforms refuse RLIMIT_AS; the time limit still holds
            pass
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    # The protocol gets its own copy of stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    cache = GoldCache()
    out.write('{"ready": true}\n')
    out.flush()
    try:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                status = verify_item(request["a"], request["g"], cache)
            except Exception:  # noqa: BLE001  MemoryError, RecursionError, sympy bugs: one item, worker lives on
                status = ERROR
            out.write(json.dumps({"s": status}) + "\n")
            out.flush()
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports it
        pass


if __name__ == "__main__":
    serve(int(os.environ.get("MRT_JAX_REWARD_MEMORY_MB", "0")) or None)
