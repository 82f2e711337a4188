"""Evaluation in chunks of rows: bounded memory, the same numbers as one call over every row.

A kept KV cache (the traces that forced answers fork from) grows with the rows of a call, so the evaluators sample
``rows_per_call`` rows at a time. A chunk is a contiguous run of whole problems (all traces of a problem in one
chunk), and every sampling call passes each output row the random-stream id the single call would give it
(``Sampler.generate``/``fork`` ``row_ids``), so no number depends on the chunk size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

DEFAULT_ROWS_PER_CALL = 64  # rows per sampling call of the evaluators (EvalSettings, the job's eval, evaluate's flag)


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


def sampled_chunks(sampler, rows: Sequence[list[int]], row_problems: Sequence, rows_per_call: int | None,
                   **generate_kw) -> Iterator[tuple[int, int, object]]:
    """``(lo, hi, out)`` for each chunk of ``row_chunks(row_problems, rows_per_call)``: ``out`` is
    ``sampler.generate(rows[lo:hi], keep_cache=True, row_ids=range(lo, hi), **generate_kw)`` (the global ids), its
    kept cache freed when the next chunk is asked for, so at most one chunk's cache is alive."""
    for lo, hi in row_chunks(row_problems, rows_per_call):
        out = sampler.generate(rows[lo:hi], keep_cache=True, row_ids=range(lo, hi), **generate_kw)
        yield lo, hi, out
        out.cache = None
