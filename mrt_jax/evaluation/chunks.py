"""Evaluation in chunks of rows: bounded memory, the same numbers as one call over every row.

A kept KV cache (the traces that forced answers fork from) grows with the rows of a call, so the evaluators sample
``rows_per_call`` rows at a time. A chunk is a contiguous run of whole problems (all traces of a problem in one
chunk), and every sampling call passes each output row the random-stream id the single call would give it
(``Sampler.generate``/``fork`` ``row_ids``), so no number depends on the chunk size.
"""

from __future__ import annotations

from collections.abc import Sequence


def check_rows_per_call(value, where: str = "rows_per_call") -> int | None:
    """``value`` if it is None (every row in one call) or an integer >= 1; else a ValueError naming ``where``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be an integer >= 1 (rows sampled per call) or None (every row in one "
                         f"call), got {value!r}")
    return value


def row_chunks(row_problems: Sequence, rows_per_call: int | None) -> list[tuple[int, int]]:
    """[start, stop) row ranges covering ``row_problems`` (the problem of each row; a problem's rows adjacent), each
    of whole problems and at most ``rows_per_call`` rows, except one problem with more rows than that, which is a
    chunk of its own. None: one chunk."""
    check_rows_per_call(rows_per_call)
    total = len(row_problems)
    if rows_per_call is None or total <= rows_per_call:
        return [(0, total)] if total else []
    groups, start = [], 0  # [start, stop) of each problem's run of rows
    for i in range(1, total + 1):
        if i == total or row_problems[i] != row_problems[start]:
            groups.append((start, i))
            start = i
    chunks: list[tuple[int, int]] = []
    for lo, hi in groups:
        if chunks and hi - chunks[-1][0] <= rows_per_call:
            chunks[-1] = (chunks[-1][0], hi)
        else:
            chunks.append((lo, hi))
    return chunks


class GlobalRows:
    """A view of a ``Sampler`` for a routine that samples one chunk as if it sampled every row
    (``mrt_jax.sampling.budget_force``, which takes no ``row_ids``): ``generate`` gives its rows the ids
    ``first_row, first_row + 1, ...``, and the i-th ``fork`` call of the chunk numbers its output rows on from the
    rows the i-th fork of earlier chunks produced (``fork_counts``, shared by the chunks). This is the unchunked
    numbering when each fork call lists its rows in row order, as ``budget_force``'s extension rounds do; the
    chunked evaluation is tested equal to the unchunked one. Everything else is the sampler's."""

    def __init__(self, sampler, first_row: int, fork_counts: list[int]):
        self._sampler, self._first, self._counts, self._forks = sampler, first_row, fork_counts, 0

    def __getattr__(self, name):
        return getattr(self._sampler, name)

    def generate(self, prompts, **kw):
        return self._sampler.generate(prompts, row_ids=range(self._first, self._first + len(prompts)), **kw)

    def fork(self, source, branches, **kw):
        call, self._forks = self._forks, self._forks + 1
        if call == len(self._counts):
            self._counts.append(0)
        start = self._counts[call]
        self._counts[call] += sum(b.n for b in branches)
        return self._sampler.fork(source, branches, row_ids=range(start, self._counts[call]), **kw)
