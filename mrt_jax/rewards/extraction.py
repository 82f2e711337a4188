"""Final-answer extraction from a completion: thinking block, last box, answer tag, "Answer:" lines.

All scanning is linear-time string work (no backtracking-prone regexes over the whole completion), so it is safe on
untrusted model output of any length and runs in the trainer process before anything reaches sympy.
"""

from __future__ import annotations

import dataclasses
import re

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_TOKEN_RE = re.compile(r"[^\s$]*")
_OPEN_TAG_RE = re.compile(r"<answer>", re.IGNORECASE)
_CLOSE_TAG_RE = re.compile(r"</answer>", re.IGNORECASE)
# "Answer: X", "Final Answer: X", "**Final Answer**: X", "答案：X" (one line each).
_ANSWER_LINE_RE = re.compile(r"(?:final\s+answer|answer|答案)[*_ \t]*[:：][ \t*_]*([^\n]*)", re.IGNORECASE)
# Minerva: "Final Answer: The final answer is X. I hope it is correct."
_MINERVA_RE = re.compile(r"the\s+final\s+answer\s+is[ \t:]*([^\n]*)", re.IGNORECASE)
_HOPE_RE = re.compile(r"\s*I\s+hope\s+it\s+is\s+correct\.?\s*$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExtractionConfig:
    """Where the final answer is read from.

    think_open / think_close: thinking-block tags. Only text after the last `think_close` counts; a completion with
      `think_open` but no `think_close` (an unclosed block) has no answer.
    prompt_opens_think: the prompt already ends inside a thinking block (R1-distill templates end with "<think>\\n"),
      so a completion without `think_close` is an unclosed block too. Without this, a truncated R1 trace would be
      read whole and a box inside its thinking would be rewarded.
    answer_lines: also accept `<answer>...</answer>` tags and "Answer:" / Minerva lines when there is no box.
    """

    think_open: str = "<think>"
    think_close: str = "</think>"
    prompt_opens_think: bool = False
    answer_lines: bool = True

    def __post_init__(self):
        if not self.think_open or not self.think_close:
            raise ValueError(
                f"ExtractionConfig: think_open={self.think_open!r} and think_close={self.think_close!r} must be "
                "non-empty strings"
            )


DEFAULT_EXTRACTION = ExtractionConfig()


def answer_region(completion: str, cfg: ExtractionConfig = DEFAULT_EXTRACTION) -> str | None:
    """The part of `completion` that may hold the final answer, or None for an unclosed thinking block.

    - `think_close` present: the text after its LAST occurrence (cut at a later `think_open`, if one reopens).
    - no `think_close` but `think_open` present, or `cfg.prompt_opens_think`: None (unclosed: scores nothing).
    - no tags at all: the whole completion.
    """
    close = completion.rfind(cfg.think_close)
    if close >= 0:
        return completion[close + len(cfg.think_close):].split(cfg.think_open, 1)[0]
    if cfg.prompt_opens_think or cfg.think_open in completion:
        return None
    return completion


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """For text[start] == "{": (content, index after the matching "}"), or None if unbalanced. Backslash-escaped
    characters (`\\{`, `\\}`, `\\\\`) do not count toward nesting."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last top-level `\\boxed{...}` / `\\fbox{...}` (nesting-aware), or of `\\boxed X` without
    braces (X = the next whitespace/`$`-free token). None if there is no box, the last box is empty, or the last
    box is unclosed (a truncated box is not an answer; an earlier box is not taken in its place)."""
    found: str | None = None
    pos = 0
    while True:
        m = _BOX_RE.search(text, pos)
        if m is None:
            return found
        j = m.end()
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            braced = _braced(text, j)
            if braced is None:
                return None
            content, pos = braced
            found = content.strip() or None
        elif j > m.end():
            token = _TOKEN_RE.match(text, j).group(0).rstrip(".,;")
            found = token or None
            pos = j + max(len(token), 1)
        else:  # "\boxed\frac..." or "\boxed" at the very end: not an answer
            found = None
            pos = j


def _last_match(regex: re.Pattern, text: str, end: int) -> re.Match | None:
    found = None
    for m in regex.finditer(text, 0, end):
        found = m
    return found


def _answer_tag(text: str) -> str | None:
    close = _last_match(_CLOSE_TAG_RE, text, len(text))
    opening = _last_match(_OPEN_TAG_RE, text, close.start()) if close else None
    return text[opening.end():close.start()] if opening else None


def _answer_line(text: str) -> str | None:
    best: tuple[int, str] | None = None
    for regex in (_ANSWER_LINE_RE, _MINERVA_RE):
        for m in regex.finditer(text):
            if best is None or m.start() > best[0]:
                best = (m.start(), m.group(1))
    if best is None:
        return None
    return _HOPE_RE.sub("", best[1])


def clean_answer(answer: str) -> str:
    """Strip what surrounds an answer but is not part of it: whitespace, markdown `*`/`_` emphasis, math delimiters
    (`$`, `\\(`..`\\)`, `\\[`..`\\]`; an escaped `\\$` is kept) and a trailing period or comma."""
    s = answer.strip().strip("*_").strip()
    s = re.sub(r"(?<!\\)\$", "", s)
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right):
            s = s[len(left):-len(right)]
    return s.strip().rstrip(".,").strip()


def gold_answer(gold: str) -> str:
    """The gold answer to compare against: the content of the last box when the gold is a worked solution
    (MATH `solution` fields end in `\\boxed{...}`), else the gold unchanged."""
    if _BOX_RE.search(gold):
        boxed = last_boxed(gold)
        if boxed is not None:
            return boxed
    return gold


def extract_answer(completion: str, cfg: ExtractionConfig = DEFAULT_EXTRACTION) -> str | None:
    """The final answer of a completion, cleaned, or None.

    Order: region = `answer_region(completion)` (None -> None); then the last box in the region; else (with
    `cfg.answer_lines`) the last `<answer>...</answer>` tag; else the last "Answer:" / "Final Answer:" /
    "The final answer is X. I hope it is correct." line. An empty result is None.
    """
    if not isinstance(completion, str):
        raise TypeError(f"extract_answer: completion must be str, got {type(completion).__name__}")
    region = answer_region(completion, cfg)
    if region is None:
        return None
    if _BOX_RE.search(region):
        found = last_boxed(region)
    elif cfg.answer_lines:
        found = _answer_tag(region)
        if found is None:
            found = _answer_line(region)
    else:
        found = None
    if found is None:
        return None
    return clean_answer(found) or None
