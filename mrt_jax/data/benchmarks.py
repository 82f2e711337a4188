"""Readers for math benchmarks in the layouts they are published in (files the user already has).

Formats: ``.jsonl`` (one object per line), ``.json`` (a list of objects) and ``.parquet`` (needs pyarrow).
Fields read per benchmark (the first present name wins; ``answer`` is always stored as text):

- ``math500`` (HuggingFaceH4/MATH-500 ``test.jsonl``): problem; answer, else the last \\boxed{} of solution;
  id from unique_id.
- ``aime24`` (HuggingFaceH4/aime_2024 parquet; Maxwell-Jia/AIME_2024 jsonl): problem | Problem; answer | Answer.
- ``aime25`` (yentinglin/aime_2025, opencompass/AIME2025 jsonl): problem | question; answer.
- ``amc23`` (AI-MO/aimo-validation-amc parquet, zwhe99/amc23 jsonl): problem | question; answer (a float such as
  ``142.0`` is stored as ``142``).
- ``gsm8k`` (openai/gsm8k ``main/{train,test}-*.parquet`` or jsonl): question; the answer field's text after the
  ``#### `` line (thousands commas dropped) is the answer, the text before it the solution.
- ``minerva`` (math-ai/minervamath ``test.jsonl``): problem | question; answer, else the last \\boxed{} of solution.
- ``numina`` (AI-MO/NuminaMath-CoT / -1.5 parquet): problem; answer unless empty/``proof``/``notfound``, else the
  last \\boxed{} of solution; these sets have rows with no answer, use ``on_bad_row="skip"`` to count them.

Ids come from unique_id | id | ID | idx, else ``file:row``. gsm8k and numina take the split from the file name
prefix (train/validation/test); the other benchmarks put every file in ``test``.

Bad input never drops silently: a malformed row, a missing field or an empty file raises ``DataError`` naming the
file and row; with ``on_bad_row="skip"`` bad rows are skipped, counted and listed in the returned report.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from typing import Any

from mrt_jax.data.answers import last_boxed

DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
SPLIT_NAMES = ("train", "validation", "test")


class DataError(ValueError):
    """Bad input data; the message names the file, the row and what is allowed."""


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    problem_fields: tuple[str, ...]
    answer_fields: tuple[str, ...]
    solution_fields: tuple[str, ...] = ("solution", "Solution")
    id_fields: tuple[str, ...] = ("unique_id", "id", "ID", "idx")
    answer_mode: str = "field"  # "field" | "field_or_boxed" | "gsm8k"
    splits_by_file_name: bool = False  # False: every file is the "test" split


SPECS: dict[str, BenchmarkSpec] = {s.name: s for s in (
    BenchmarkSpec("math500", ("problem",), ("answer",), answer_mode="field_or_boxed"),
    BenchmarkSpec("aime24", ("problem", "Problem"), ("answer", "Answer")),
    BenchmarkSpec("aime25", ("problem", "question", "Problem"), ("answer", "Answer")),
    BenchmarkSpec("amc23", ("problem", "question"), ("answer",)),
    BenchmarkSpec("gsm8k", ("question",), ("answer",), solution_fields=(), answer_mode="gsm8k",
                  splits_by_file_name=True),
    BenchmarkSpec("minerva", ("problem", "question"), ("answer",), answer_mode="field_or_boxed"),
    BenchmarkSpec("numina", ("problem",), ("answer",), answer_mode="field_or_boxed", splits_by_file_name=True),
)}
_NO_ANSWER = ("", "proof", "notfound", "none")


def read_rows(path: str) -> Iterator[tuple[int, Any]]:
    """(row number from 1, row) for every row of a data file; a malformed row raises DataError naming it."""
    if path.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise DataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from e
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=4096)  # streamed: NuminaMath is ~2 GB
            n = 0
            for batch in batches:
                for row in batch.to_pylist():
                    n += 1
                    yield n, row
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataError(f"{path}: not a readable parquet file: {e}") from e
    elif path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as e:
                    yield n, DataError(f"{path}:{n}: malformed JSON line ({e.msg} at column {e.colno})")
    elif path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from e
        if not isinstance(data, list):
            raise DataError(f"{path}: a .json file must hold a list of objects, got {type(data).__name__}")
        yield from enumerate(data, 1)
    else:
        raise DataError(f"{path}: unsupported file type; allowed: {', '.join(DATA_SUFFIXES)}")


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _pick(row: dict, names: tuple[str, ...]) -> Any:
    for n in names:
        if n in row and row[n] is not None:
            return row[n]
    return None


def parse_row(row: Any, spec: BenchmarkSpec, where: str) -> dict[str, str]:
    """One record ``{id, problem, answer, solution}`` from a published row; DataError names ``where``."""
    if isinstance(row, DataError):
        raise row
    if not isinstance(row, dict):
        raise DataError(f"{where}: row is {type(row).__name__}, expected an object with fields")
    problem = _pick(row, spec.problem_fields)
    if problem is None or not _text(problem):
        raise DataError(f"{where}: missing problem field; expected one of {list(spec.problem_fields)}, "
                        f"row has {sorted(row)}")
    raw_answer = _pick(row, spec.answer_fields)
    solution = _pick(row, spec.solution_fields)
    solution = "" if solution is None else _text(solution)
    answer = None if raw_answer is None else _text(raw_answer)
    if spec.answer_mode == "gsm8k":
        if answer is None or "####" not in answer:
            raise DataError(f"{where}: gsm8k answer field must end with a '#### <number>' line; got {raw_answer!r}")
        solution, answer = (s.strip() for s in answer.rsplit("####", 1))
        answer = answer.replace(",", "")
    elif spec.answer_mode == "field_or_boxed" and (answer is None or answer.lower() in _NO_ANSWER):
        answer = last_boxed(solution)
    if answer is None or answer.strip().lower() in _NO_ANSWER:
        raise DataError(f"{where}: no answer; expected a non-empty field {list(spec.answer_fields)}"
                        + (" or a \\boxed{} answer in the solution" if spec.answer_mode == "field_or_boxed" else ""))
    uid = _pick(row, spec.id_fields)
    return {"id": where if uid is None else _text(uid), "problem": _text(problem), "answer": answer.strip(),
            "solution": solution}


def find_files(manual_dir: str, spec: BenchmarkSpec) -> dict[str, list[str]]:
    """Data files under ``manual_dir`` (or its ``<benchmark name>/`` subfolder) grouped by split, sorted."""
    if not os.path.isdir(manual_dir):
        raise DataError(f"{spec.name}: manual_dir {manual_dir!r} is not a folder; put the published "
                        f"{'/'.join(DATA_SUFFIXES)} files there")
    root = os.path.join(manual_dir, spec.name) if os.path.isdir(os.path.join(manual_dir, spec.name)) else manual_dir
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(DATA_SUFFIXES))
    if not paths:
        raise DataError(f"{spec.name}: no {'/'.join(DATA_SUFFIXES)} files under {root!r}")
    splits: dict[str, list[str]] = {}
    for p in paths:
        base = os.path.basename(p).lower()
        split = "test"
        if spec.splits_by_file_name:
            split = next((s for s in SPLIT_NAMES if base.startswith(s)), "")
            if not split:
                raise DataError(f"{spec.name}: cannot tell the split of {p!r}; file names must start with one of "
                                f"{list(SPLIT_NAMES)}")
        splits.setdefault(split, []).append(p)
    return splits


def read_benchmark(paths: list[str], spec: BenchmarkSpec, *, on_bad_row: str = "raise", where: bool = False
                   ) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """All records of ``paths`` and a report ``{rows, kept, skipped, skipped_rows (first 50)}``. ``where``: each
    record also names its ``file:row`` (the training job's errors point there)."""
    if on_bad_row not in ("raise", "skip"):
        raise ValueError(f"on_bad_row={on_bad_row!r}; allowed: 'raise', 'skip'")
    records, skipped = [], []
    rows = 0
    for path in paths:
        before = rows
        for n, row in read_rows(path):
            rows += 1
            try:
                record = parse_row(row, spec, f"{path}:{n}")
                records.append({**record, "where": f"{path}:{n}"} if where else record)
            except DataError as e:
                if on_bad_row == "raise":
                    raise
                skipped.append(str(e))
        if rows == before:
            raise DataError(f"{path}: empty file (no rows)")
    report = {"rows": rows, "kept": len(records), "skipped": len(skipped), "skipped_rows": skipped[:50]}
    return records, report
