"""Read what a report or a comparison draws from: a training run dir, an eval dir or an offline-analysis dir.

- Training run (``experiments.mrt_math``): ``config.json``, ``metrics.jsonl``, ``eval_before.json``,
  ``eval_step<k>.json``, ``eval_after.json`` and, once finished, ``result.json`` (before/after, wall time, steps).
  The after-eval is ``result.json``'s, else ``eval_after.json``, else the latest ``eval_step<k>.json`` (the job
  reuses its last periodic eval as the after-eval).
- Eval dir (``experiments.evaluate``): ``eval.json``; offline-analysis dir: ``analysis.json`` (same keys). When a
  dir holds both, the analysis keys are laid over the eval ones.

Every file is checked on the way in; bad input raises ``SourceError`` with one line: the file, what is wrong, and
what is allowed. Values read here are untrusted text: callers escape them before they reach HTML or Markdown.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

from mrt_jax import run_files

EVAL_STEP_FILE = re.compile(r"^eval_step(\d+)\.json$")
RUN_MARKERS = ("config.json", "metrics.jsonl", "result.json", "eval_before.json")
# optional eval keys that hold x/y lists: key -> (x field, [y fields])
OPTIONAL_CURVES = {
    "maj_at_k": ("k", ["total_tokens", "accuracy"]),
    "regret_at_budget": ("budgets", ["constant", "maj_or_continue"]),
    "extrapolation": ("budgets", ["pass_at_budget"]),
}


class SourceError(ValueError):
    """A directory or file that cannot be read as a run, eval or analysis (message: one line)."""


@dataclasses.dataclass
class RunSource:
    path: str
    kind: str  # "run", "eval" or "analysis"
    name: str  # the directory's base name
    config: dict
    before: dict | None
    after: dict
    step_evals: list[tuple[int, dict]]  # (step, eval) in step order
    metrics: list[dict]  # metrics.jsonl rows in file order ([] for eval dirs)
    steps_done: int | None
    wall_seconds: float | None

    @property
    def algo(self) -> str | None:
        algo = self.config.get("algo")
        return algo if isinstance(algo, str) and algo else None

    @property
    def default_label(self) -> str:
        return self.algo or self.name


def read_json(path: str) -> dict:
    try:
        value = json.loads(run_files.read_text(path))
    except json.JSONDecodeError as e:
        raise SourceError(f"{path}: not valid JSON (line {e.lineno}): {e.msg}") from None
    except UnicodeDecodeError:
        raise SourceError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror}") from None
    if not isinstance(value, dict):
        raise SourceError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_metrics(path: str) -> list[dict]:
    """``metrics.jsonl`` rows; each must be a JSON object with an integer ``step``."""
    rows = []
    try:
        lines = run_files.read_text(path).splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: cannot read: {e}") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise SourceError(f"{path}:{i}: not valid JSON: {e.msg}") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int) or isinstance(row.get("step"), bool):
            raise SourceError(f"{path}:{i}: each line must be a JSON object with an integer 'step'")
        rows.append(row)
    return rows


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number_list(value, where: str, *, increasing: bool = False, missing_ok: bool = False) -> list:
    """A non-empty list of numbers (``missing_ok``: ``null`` entries allowed, "not measured" there)."""
    ok = lambda v: _is_number(v) or (missing_ok and v is None)  # noqa: E731
    if not isinstance(value, list) or not value or not all(ok(v) for v in value):
        raise SourceError(f"{where}: expected a non-empty list of numbers" + (" or nulls" if missing_ok else ""))
    if increasing and any(b <= a for a, b in zip(value, value[1:])):
        raise SourceError(f"{where}: values must be strictly increasing, got {value}")
    return value


def _pair(ev: dict, x_key: str, y_key: str, where: str, *, missing_ok: bool = False) -> tuple[list, list]:
    """Aligned x/y lists of one curve: x strictly increasing numbers, y numbers, same length."""
    x = _number_list(ev.get(x_key), f"{where}: '{x_key}'", increasing=True)
    y = _number_list(ev.get(y_key), f"{where}: '{y_key}'", missing_ok=missing_ok)
    if len(x) != len(y):
        raise SourceError(f"{where}: '{x_key}' has {len(x)} values but '{y_key}' has {len(y)}; they must match one "
                          "to one")
    return x, y


def has_budget_curve(ev: dict) -> bool:
    return "budgets" in ev or "pass_at_budget" in ev


def check_eval(ev: dict, where: str) -> dict:
    """Check an eval dict's curves (the eval.json schema of ``mrt_jax.evaluation.suite``): ``budgets`` with
    ``pass_at_budget``, ``episodes`` with ``pass_at_episode``, and the optional blocks; at least one curve."""
    if not any(k in ev for k in ("budgets", "pass_at_budget", "pass_at_episode", "maj_at_k")):
        raise SourceError(f"{where}: no curve to show; an eval needs 'budgets' + 'pass_at_budget', 'episodes' + "
                          "'pass_at_episode' or 'maj_at_k'")
    if has_budget_curve(ev):
        budgets, passes = _pair(ev, "budgets", "pass_at_budget", where)
        if budgets[0] <= 0:
            raise SourceError(f"{where}: 'budgets' must be positive token counts, got {budgets}")
        if any(not 0 <= v <= 1 for v in passes):
            raise SourceError(f"{where}: 'pass_at_budget' values must lie in [0, 1], got {passes}")
    for key in ("accuracy", "regret", "mean_length"):
        if key in ev and ev[key] is not None and not _is_number(ev[key]):
            raise SourceError(f"{where}: '{key}' must be a number, got {ev[key]!r}")
    if "pass_at_episode" in ev or "episodes" in ev:
        _pair(ev, "episodes", "pass_at_episode", where, missing_ok=True)
    for key, (x_key, y_keys) in OPTIONAL_CURVES.items():
        if key not in ev:
            continue
        block = ev[key]
        if not isinstance(block, dict):
            raise SourceError(f"{where}: '{key}' must be an object with '{x_key}' and {y_keys}")
        for y_key in y_keys:
            if y_key in block:
                _pair(block, x_key, y_key, f"{where}: '{key}'", missing_ok=True)
    if "tokens_to_accuracy" in ev and not isinstance(ev["tokens_to_accuracy"], dict):
        raise SourceError(f"{where}: 'tokens_to_accuracy' must be an object {{target: tokens}}")
    return ev


def _step_evals(path: str) -> list[tuple[int, dict]]:
    found = []
    for name in run_files.listdir(path):
        m = EVAL_STEP_FILE.match(name)
        if m:
            full = run_files.join(path, name)
            found.append((int(m.group(1)), check_eval(read_json(full), full)))
    return sorted(found, key=lambda t: t[0])


def _optional_json(path: str) -> dict | None:
    return read_json(path) if run_files.exists(path) else None


def _load_run(path: str, name: str) -> RunSource:
    metrics_path = run_files.join(path, "metrics.jsonl")
    if not run_files.exists(metrics_path):
        raise SourceError(f"{path}: a run dir without metrics.jsonl (no training step was logged)")
    metrics = read_metrics(metrics_path)
    if not metrics:
        raise SourceError(f"{metrics_path}: no metrics (the file is empty)")
    config = _optional_json(run_files.join(path, "config.json")) or {}
    result = _optional_json(run_files.join(path, "result.json")) or {}
    steps = _step_evals(path)
    before = result.get("before") or _optional_json(run_files.join(path, "eval_before.json"))
    after = result.get("after") or _optional_json(run_files.join(path, "eval_after.json")) or (
        steps[-1][1] if steps else None)
    if not after:
        raise SourceError(f"{path}: no evaluation after training (result.json, eval_after.json or "
                          "eval_step<k>.json)")
    check_eval(after, f"{path} (after-eval)")
    if before:
        check_eval(before, f"{path} (before-eval)")
    steps_done = result.get("steps_done", metrics[-1]["step"])
    wall = result.get("wall_seconds", metrics[-1].get("wall"))
    return RunSource(path=path, kind="run", name=name, config=result.get("config") or config, before=before or None,
                     after=after, step_evals=steps, metrics=metrics,
                     steps_done=steps_done if _is_number(steps_done) else None,
                     wall_seconds=float(wall) if _is_number(wall) and math.isfinite(wall) else None)


def _load_eval(path: str, name: str) -> RunSource:
    eval_path, analysis_path = run_files.join(path, "eval.json"), run_files.join(path, "analysis.json")
    read = [p for p in (eval_path, analysis_path) if run_files.exists(p)]
    merged = {}
    for p in read:  # analysis keys over eval keys
        merged.update(read_json(p))
    check_eval(merged, " + ".join(read))
    kind = "eval" if eval_path in read else "analysis"
    config = merged.get("config") if isinstance(merged.get("config"), dict) else {}
    return RunSource(path=path, kind=kind, name=name, config=config, before=None, after=merged, step_evals=[],
                     metrics=[], steps_done=None, wall_seconds=None)


def load_source(path: str) -> RunSource:
    """A run, eval or analysis dir -> ``RunSource``; anything else -> ``SourceError``."""
    if not run_files.isdir(path):
        raise SourceError(f"{path}: not a directory (expected a run dir, an eval dir or an analysis dir)")
    name = run_files.basename(path)
    if any(run_files.exists(run_files.join(path, m)) for m in RUN_MARKERS):
        return _load_run(path, name)
    if run_files.exists(run_files.join(path, "eval.json")) or run_files.exists(run_files.join(path, "analysis.json")):
        return _load_eval(path, name)
    raise SourceError(f"{path}: neither a training run dir (config.json, metrics.jsonl) nor an eval dir "
                      "(eval.json) nor an analysis dir (analysis.json)")
