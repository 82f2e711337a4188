"""Segment reasoning traces into episodes and return token boundaries (MRT.md, "Episodes").

Three rules, one config:
- ``markers`` (R1-style open-ended traces): split the text into paragraphs on ``separator`` ("\\n\\n"); a paragraph
  that starts with a marker ("Wait", "Alternatively", ...) starts a new episode, unless it lies fewer than
  ``min_gap`` paragraphs after the previous kept boundary (or the trace start); at most ``max_boundaries`` are kept;
  then consecutive episodes are merged ``group`` at a time (every ``group``-th boundary survives).
- ``backtrack``: the same machinery on lines (``separator="\\n"``) with markers such as "Backtrack to".
- ``grid``: a boundary every ``grid`` tokens (model-agnostic).

A boundary is a completion-token index n (0 < n < len(tokens)): episode j spans tokens[b_j:b_{j+1}], and the prefix
``tokens[:n]`` is what the meta-prover is forked from (``Branch(row, n, suffix)``). A text boundary at character c
maps to the largest n whose decoded text ``decode(tokens[:n])`` has at most c characters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

R1_MARKERS = ("Wait", "But wait", "Alternatively", "Is there another way to think about this?",
              "But let me double-check", "But hold on")
BACKTRACK_MARKERS = ("Backtrack to Line", "Backtrack to beginning")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EpisodeRules:
    """How to cut a trace into episodes. See the module docstring; presets: ``r1()``, ``backtrack()``, ``grid()``."""

    mode: str = "markers"  # "markers" | "grid"
    markers: tuple[str, ...] = R1_MARKERS
    separator: str = "\n\n"
    min_gap: int = 2  # paragraphs (or lines) between kept boundaries
    max_boundaries: int | None = None
    group: int = 1  # merge this many consecutive episodes
    grid: int = 0  # tokens per episode in grid mode

    def __post_init__(self):
        if self.mode not in ("markers", "grid"):
            raise ValueError(f"EpisodeRules.mode must be 'markers' or 'grid', got {self.mode!r}")
        if self.mode == "grid" and self.grid < 1:
            raise ValueError(f"EpisodeRules.grid must be >= 1 tokens in grid mode, got {self.grid}")
        if self.mode == "markers" and (not self.markers or not self.separator):
            raise ValueError("EpisodeRules in markers mode needs non-empty markers and separator")
        if self.min_gap < 0 or self.group < 1 or (self.max_boundaries is not None and self.max_boundaries < 0):
            raise ValueError(f"EpisodeRules: need min_gap >= 0, group >= 1, max_boundaries >= 0 or None; got "
                             f"min_gap={self.min_gap}, group={self.group}, max_boundaries={self.max_boundaries}")

    @staticmethod
    def r1(**kw) -> EpisodeRules:
        return EpisodeRules(**{"mode": "markers", "markers": R1_MARKERS, "separator": "\n\n", **kw})

    @staticmethod
    def backtrack(**kw) -> EpisodeRules:
        return EpisodeRules(**{"mode": "markers", "markers": BACKTRACK_MARKERS, "separator": "\n", "min_gap": 0,
                               **kw})

    @staticmethod
    def grid_of(tokens: int, **kw) -> EpisodeRules:
        return EpisodeRules(**{"mode": "grid", "grid": tokens, **kw})


def _thin(bounds: list[int], rules: EpisodeRules) -> list[int]:
    if rules.max_boundaries is not None:
        bounds = bounds[:rules.max_boundaries]
    return bounds[rules.group - 1::rules.group]


def text_boundaries(text: str, rules: EpisodeRules) -> list[int]:
    """Character offsets where a new episode starts (each > 0), by the markers rule."""
    sep = rules.separator
    out, last_par, par, offset = [], 0, 0, 0
    for piece in text.split(sep):
        if par > 0 and piece.lstrip().startswith(rules.markers) and par - last_par >= rules.min_gap:
            out.append(offset)
            last_par = par
        offset += len(piece) + len(sep)
        par += 1
    return _thin(out, rules)


def char_to_token(tokens: Sequence[int], chars: Sequence[int], decode: Callable[[Sequence[int]], str]) -> list[int]:
    """For each character offset c, the largest n with ``len(decode(tokens[:n])) <= c`` (binary search)."""
    out = []
    for c in chars:
        lo, hi = 0, len(tokens)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(decode(tokens[:mid])) <= c:
                lo = mid
            else:
                hi = mid - 1
        out.append(lo)
    return out


def episode_boundaries(tokens: Sequence[int], rules: EpisodeRules,
                       decode: Callable[[Sequence[int]], str] | None = None) -> list[int]:
    """Token boundaries (sorted, unique, each in 1..len(tokens)-1) of one completion."""
    T = len(tokens)
    if rules.mode == "grid":
        return _thin(list(range(rules.grid, T, rules.grid)), rules)
    if decode is None:
        raise ValueError("episode rules with markers need a decode function (tokenizer.decode)")
    bounds = char_to_token(tokens, text_boundaries(decode(tokens), rules), decode)
    return sorted({b for b in bounds if 0 < b < T})
