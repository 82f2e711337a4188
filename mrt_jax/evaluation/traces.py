"""Per-trace evaluation records and the JSONL formats they are read from and written to.

A ``TraceRecord`` is everything the summary needs about one trace: its pass@1 curve in tokens (forced answers at
token budgets), optionally the majority-vote curve at the same points, its pass@1 after each episode, and its own
final answer. ``experiments.evaluate`` writes one per line (``traces.jsonl``); ``experiments.analyze_traces`` reads
them back, together with raw forced-answer records.

Accepted JSONL lines (one JSON object each; blank lines are skipped):

1. J-curve record (one per trace)::

     {"problem_id": str|int, "trace_id": str|int (optional, default: the line number),
      "tokens": [t_1 < t_2 < ...] (numbers >= 0), "accuracy": [a_1, ...] (each in [0, 1], same length),
      "maj_accuracy": [...] (optional: majority vote of the forced answers at each point, in [0, 1]),
      "episode_accuracy": [J_0, J_1, ...] (optional: pass@1 after 0, 1, ... episodes, in [0, 1]),
      "final_answer": str|null, "final_correct": number in [0, 1], "length": int >= 0 (optional, all three
      needed for maj@k)}

2. Raw forced-answer record (one per forced answer; k records at one point are k samples)::

     {"problem_id": str|int, "trace_id": str|int, "budget": int >= 0  OR  "episode": int >= 0,
      "correct": bool or number in [0, 1], "answer": str|null (optional: enables the majority-vote comparator)}

   A trace's token curve is the mean ``correct`` at each budget; its majority curve needs ``answer`` on every
   record at its budgets. Its episode values are the mean ``correct`` per episode.

A trace's token curve comes from one J-curve record or from its raw budget records, never both; its episode
values from ``episode_accuracy`` or from raw episode records, never both. Anything else is an error that names the
file and line.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from mrt_jax.evaluation.majority import answer_key, majority_correct


class TraceFormatError(ValueError):
    """A malformed trace line; the message names the file and line and what is allowed."""


@dataclasses.dataclass
class TraceRecord:
    problem_id: str
    trace_id: str
    tokens: list[float] = dataclasses.field(default_factory=list)
    accuracy: list[float] = dataclasses.field(default_factory=list)
    maj_accuracy: list[float] | None = None
    episodes: dict[int, float] = dataclasses.field(default_factory=dict)  # episode -> pass@1 after it
    final_answer: str | None = None
    final_correct: float | None = None
    length: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The J-curve line (format 1)."""
        out: dict[str, Any] = {"problem_id": self.problem_id, "trace_id": self.trace_id, "tokens": self.tokens,
                               "accuracy": self.accuracy}
        if self.maj_accuracy is not None:
            out["maj_accuracy"] = self.maj_accuracy
        if self.episodes:
            out["episode_accuracy"] = [self.episodes[e] for e in range(max(self.episodes) + 1)]
        if self.final_correct is not None:
            out.update(final_answer=self.final_answer, final_correct=self.final_correct, length=self.length)
        return out


def _id(obj: dict, field: str, where: str, default: str | None = None) -> str:
    value = obj.get(field, default)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise TraceFormatError(f"{where}: field {field!r} must be a non-empty string or an integer, got {value!r}")
    return str(value)


def _unit(value: Any, where: str, field: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
        raise TraceFormatError(f"{where}: {field} must be a number in [0, 1] (or true/false), got {value!r}")
    return float(value)


def _unit_list(obj: dict, field: str, where: str, size: int | None = None) -> list[float]:
    values = obj.get(field)
    if not isinstance(values, list) or not values:
        raise TraceFormatError(f"{where}: field {field!r} must be a non-empty list of numbers in [0, 1]")
    if size is not None and len(values) != size:
        raise TraceFormatError(f"{where}: {field!r} has {len(values)} values but 'tokens' has {size}")
    return [_unit(v, where, f"{field}[{i}]") for i, v in enumerate(values)]


def _nonneg_int(value: Any, where: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TraceFormatError(f"{where}: {field} must be an integer >= 0, got {value!r}")
    return value


def _curve_record(obj: dict, where: str, line: int) -> TraceRecord:
    tokens = obj.get("tokens")
    ok = isinstance(tokens, list) and tokens and all(
        isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t >= 0 for t in tokens)
    if not ok or any(b <= a for a, b in zip(tokens, tokens[1:])):
        raise TraceFormatError(f"{where}: 'tokens' must be a non-empty list of numbers >= 0, strictly increasing; "
                               f"got {tokens!r}"[:300])
    rec = TraceRecord(_id(obj, "problem_id", where), _id(obj, "trace_id", where, str(line)),
                      [float(t) for t in tokens], _unit_list(obj, "accuracy", where, len(tokens)))
    if "maj_accuracy" in obj:
        rec.maj_accuracy = _unit_list(obj, "maj_accuracy", where, len(tokens))
    if "episode_accuracy" in obj:
        rec.episodes = dict(enumerate(_unit_list(obj, "episode_accuracy", where)))
    final = [f for f in ("final_answer", "final_correct", "length") if f in obj]
    if final:
        if len(final) < 3:
            raise TraceFormatError(f"{where}: 'final_answer', 'final_correct' and 'length' go together; got {final}")
        answer = obj["final_answer"]
        if answer is not None and not isinstance(answer, str):
            raise TraceFormatError(f"{where}: final_answer must be a string or null, got {answer!r}"[:300])
        rec.final_answer = answer
        rec.final_correct = _unit(obj["final_correct"], where, "final_correct")
        rec.length = _nonneg_int(obj["length"], where, "length")
    return rec


@dataclasses.dataclass
class _RawTrace:
    budgets: dict[int, list[tuple[float, Any]]] = dataclasses.field(default_factory=dict)
    episodes: dict[int, list[float]] = dataclasses.field(default_factory=dict)
    first_line: int = 0


_MISSING = object()


def _raw_record(obj: dict, where: str, raw: _RawTrace) -> None:
    has_budget, has_episode = "budget" in obj, "episode" in obj
    if has_budget == has_episode:
        raise TraceFormatError(f"{where}: a forced-answer record needs exactly one of 'budget' or 'episode'")
    correct = _unit(obj.get("correct"), where, "correct")
    answer = obj.get("answer", _MISSING)
    if answer is not _MISSING and answer is not None and not isinstance(answer, str):
        raise TraceFormatError(f"{where}: answer must be a string or null, got {answer!r}"[:300])
    if has_budget:
        raw.budgets.setdefault(_nonneg_int(obj["budget"], where, "budget"), []).append((correct, answer))
    else:
        raw.episodes.setdefault(_nonneg_int(obj["episode"], where, "episode"), []).append(correct)


def _from_raw(rec: TraceRecord | None, pid: str, tid: str, raw: _RawTrace, where: str) -> TraceRecord:
    if rec is None:
        rec = TraceRecord(pid, tid)
    if raw.budgets:
        if rec.tokens:
            raise TraceFormatError(f"{where}: trace ({pid!r}, {tid!r}) has both a J-curve record and raw 'budget' "
                                   "records; give one of them")
        points = sorted(raw.budgets)
        rec.tokens = [float(b) for b in points]
        rec.accuracy = [sum(c for c, _ in raw.budgets[b]) / len(raw.budgets[b]) for b in points]
        if all(a is not _MISSING for b in points for _, a in raw.budgets[b]):
            rec.maj_accuracy = [majority_correct([answer_key(a) for _, a in raw.budgets[b]],
                                                 [c for c, _ in raw.budgets[b]]) for b in points]
    if raw.episodes:
        if rec.episodes:
            raise TraceFormatError(f"{where}: trace ({pid!r}, {tid!r}) has both 'episode_accuracy' and raw "
                                   "'episode' records; give one of them")
        rec.episodes = {e: sum(v) / len(v) for e, v in sorted(raw.episodes.items())}
    return rec


def parse_trace_lines(lines, source: str = "<traces>") -> list[TraceRecord]:
    """TraceRecords from JSONL lines (either format, mixed), in order of first appearance."""
    curves: dict[tuple[str, str], TraceRecord] = {}
    raws: dict[tuple[str, str], _RawTrace] = {}
    order: list[tuple[str, str]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TraceFormatError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise TraceFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        if "tokens" in obj or "accuracy" in obj:
            rec = _curve_record(obj, where, n)
            key = (rec.problem_id, rec.trace_id)
            if key in curves:
                raise TraceFormatError(f"{where}: a second J-curve record for trace {key}")
            curves[key] = rec
        elif "correct" in obj:
            key = (_id(obj, "problem_id", where), _id(obj, "trace_id", where))
            raw = raws.setdefault(key, _RawTrace(first_line=n))
            _raw_record(obj, where, raw)
        else:
            raise TraceFormatError(f"{where}: neither a J-curve record ('tokens', 'accuracy') nor a forced-answer "
                                   f"record ('correct' with 'budget' or 'episode'); fields: {sorted(obj)}"[:300])
        if key not in order:
            order.append(key)
    if not order:
        raise TraceFormatError(f"{source}: no trace records (the file is empty)")
    out = []
    for key in order:
        rec = curves.get(key)
        if key in raws:
            rec = _from_raw(rec, *key, raws[key], f"{source}:{raws[key].first_line}")
        if not rec.tokens and not rec.episodes:
            raise TraceFormatError(f"{source}: trace {key} has no token or episode points")
        out.append(rec)
    return out


def read_traces(path: str) -> list[TraceRecord]:
    """``parse_trace_lines`` over a file (errors name ``path:line``)."""
    with open(path, encoding="utf-8") as f:
        return parse_trace_lines(f, path)


def write_traces(path: str, records: list[TraceRecord]) -> None:
    from mrt_jax import run_files  # a bucket path too: the file is written as one object

    run_files.write_text(path, "".join(json.dumps(rec.to_json()) + "\n" for rec in records))
