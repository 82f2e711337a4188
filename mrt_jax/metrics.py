"""Run metrics: ``metrics.jsonl`` + TensorBoard events (tensorboardX) + a console progress bar + a run summary.

Only process 0 writes or prints (``is_main``). ``metrics.jsonl`` holds one JSON object per step, appended and
flushed at once; on resume from step ``s`` every line with ``step > s`` (and a torn last line) is dropped first, so
the file never holds a step twice. TensorBoard gets ``purge_step = s + 1`` for the same effect on its side.
Non-finite values are written as JSON ``null`` (JSON has no NaN) and counted in the summary.

``StepTimer`` splits a step's wall time into named sections (sample / score / learn / sync)::

    timer = StepTimer()
    with timer("learn") as t:
        state, m = train_step(state, batch)
        t.block(state)                      # JAX is asynchronous: wait, or the time lands in a later section
    logger.log(step, {**m, **timer.pop()})  # -> {"time/learn": seconds, ...}
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from mrt_jax import run_files

log = logging.getLogger(__name__)

TB_SYNC_SECS = 10  # a bucket run dir gets the TensorBoard events this often (and at close)

# metric key -> short console label, in display order (missing keys are skipped)
CONSOLE_KEYS = {
    "reward_mean": "reward",
    "accuracy": "acc",
    "response_len_mean": "len",
    "progress_mean": "prog",
    "eval_accuracy": "eval",
}
TIME_PREFIX = "time/"


class StepTimer:
    """Accumulates wall seconds per named section; ``pop()`` returns ``{"time/<name>": s}`` and resets."""

    def __init__(self):
        self._totals: dict[str, float] = {}

    def __call__(self, name: str) -> _Section:
        return _Section(self, name)

    def add(self, name: str, seconds: float) -> None:
        self._totals[name] = self._totals.get(name, 0.0) + seconds

    def pop(self) -> dict[str, float]:
        out = {TIME_PREFIX + k: v for k, v in self._totals.items()}
        self._totals = {}
        return out


class _Section:
    def __init__(self, timer: StepTimer, name: str):
        self.timer, self.name, self._wait_for = timer, name, None

    def block(self, tree: Any) -> None:
        """Wait for ``tree``'s arrays before the section ends (so its device time counts here)."""
        self._wait_for = tree

    def __enter__(self) -> _Section:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self._wait_for is not None and exc[0] is None:
            jax.block_until_ready(self._wait_for)
        self.timer.add(self.name, time.perf_counter() - self._t0)


_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compiles: list[int] = []  # [count] once the listener is registered


def compile_count() -> int:
    """XLA compilations in this process since the first call (jax.monitoring's backend-compile event): the step
    loop logs the difference per step as ``compiles`` (a warm step compiles nothing; a recompiling one shows)."""
    if not _compiles:
        _compiles.append(0)

        def on_event(event: str, duration: float, **_) -> None:
            if event == _COMPILE_EVENT:
                _compiles[0] += 1

        jax.monitoring.register_event_duration_secs_listener(on_event)
    return _compiles[0]


def _to_jsonable(value: Any) -> Any:
    """Scalars (Python, numpy, 0-d JAX arrays) -> float/int/bool/None (non-finite -> None); strings pass."""
    if isinstance(value, (str, bool)) or value is None:
        return value
    arr = np.asarray(value)
    if arr.ndim != 0:
        raise ValueError(f"metric values must be scalars, got shape {arr.shape}")
    item = arr.item()
    if isinstance(item, float) and not math.isfinite(item):
        return None
    return item


def _kept_lines(path, keep_through_step: int) -> tuple[list[str], int]:
    """The lines of ``path`` with ``step <= keep_through_step`` (torn or unparseable lines dropped) and how many
    were dropped; ([], 0) when there is no file."""
    try:
        text = run_files.read_text(path)
    except FileNotFoundError:
        return [], 0
    kept, dropped = [], 0
    for line in text.splitlines(keepends=True):
        try:
            row = json.loads(line)
            step = int(row["step"])
        except (ValueError, KeyError, TypeError):
            dropped += 1
            continue
        if step <= keep_through_step:
            kept.append(json.dumps(row) + "\n")
        else:
            dropped += 1
    return kept, dropped


def truncate_jsonl(path: str, keep_through_step: int) -> int:
    """Drop lines with ``step > keep_through_step`` and unparseable (torn) lines; returns how many were dropped.
    Rewrites the file as a whole (``run_files.write_text``: atomic locally, one object on a bucket)."""
    kept, dropped = _kept_lines(path, keep_through_step)
    if dropped:
        run_files.write_text(path, "".join(kept))
    return dropped


class MetricsLogger:
    """Writes ``<run_dir>/metrics.jsonl``, TensorBoard events under ``<run_dir>/tb`` and a tqdm progress bar.

    ``run_dir`` may be a bucket path (``mrt_jax.run_files``): objects cannot be appended to, so there every step
    rewrites ``metrics.jsonl`` whole (about 1 KB per logged step), and TensorBoard writes to a local staging dir
    that is uploaded every ``TB_SYNC_SECS`` and at close.

    ``start_step``: the step the run resumes from (0 for a fresh run); ``total_steps``: the last step, for ETA.
    ``console_keys``: metric key -> short label shown on the bar and summarised (default ``CONSOLE_KEYS``).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        total_steps: int,
        *,
        start_step: int = 0,
        is_main: bool | None = None,
        tensorboard: bool = True,
        progress: bool = True,
        console_keys: Mapping[str, str] | None = None,
        stream=None,
    ):
        self.run_dir = os.fspath(run_dir)
        self.total_steps, self.start_step = total_steps, start_step
        self.console_keys = dict(CONSOLE_KEYS if console_keys is None else console_keys)
        self.is_main = jax.process_index() == 0 if is_main is None else is_main
        self.jsonl_path = run_files.run_path(self.run_dir, "metrics.jsonl")
        self._rows: list[dict[str, Any]] = []
        self._nonfinite = 0
        self._t_start = time.time()
        self._tb = self._bar = self._file = self._tb_stage = None
        self._lines: list[str] = []  # a bucket's metrics.jsonl, rewritten whole on every step
        if not self.is_main:
            return
        run_files.makedirs(self.run_dir)
        self._lines, dropped = _kept_lines(self.jsonl_path, start_step)
        if dropped:
            run_files.write_text(self.jsonl_path, "".join(self._lines))
            log.warning("metrics: dropped %d line(s) after resumed step %d in %s", dropped, start_step, self.jsonl_path)
        if not run_files.is_remote(self.run_dir):
            self._file = open(self.jsonl_path, "a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb_stage = run_files.Staging(run_files.run_path(self.run_dir, "tb"))
            self._tb_synced = time.time()
            # The start step in the file name: a resume within the same second (names carry seconds) would otherwise
            # get the same name and, on a bucket, replace the earlier run's events.
            self._tb = SummaryWriter(self._tb_stage.local, purge_step=start_step + 1, flush_secs=10,
                                     filename_suffix=f".from{start_step}")
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True,
                             file=stream or sys.stderr, unit="step")

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Record one step's scalars (``time/*`` keys from ``StepTimer`` become the step-time split)."""
        if not self.is_main:
            return
        row: dict[str, Any] = {"step": int(step), "wall": round(time.time() - self._t_start, 3)}
        for key, value in metrics.items():
            try:
                row[key] = _to_jsonable(value)
            except ValueError as e:
                raise ValueError(f"metrics.log(step={step}): {key!r}: {e}") from e
            if row[key] is None and value is not None:
                self._nonfinite += 1
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        else:
            self._lines.append(json.dumps(row) + "\n")
            run_files.write_text(self.jsonl_path, "".join(self._lines))
        self._rows.append(row)
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, global_step=int(step))
            if self._tb_stage.remote and time.time() - self._tb_synced >= TB_SYNC_SECS:
                self._tb.flush()
                self._tb_stage.sync()
                self._tb_synced = time.time()
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(row), refresh=False)
            self._bar.update(max(0, int(step) - self._bar.n))

    def _postfix(self, row: Mapping[str, Any]) -> str:
        keys = self.console_keys.items()
        parts = [f"{label}={row[k]:.3g}" for k, label in keys if isinstance(row.get(k), (int, float))]
        times = {k[len(TIME_PREFIX):]: v for k, v in row.items() if k.startswith(TIME_PREFIX) and v is not None}
        if times:
            parts.append("t[" + " ".join(f"{k} {v:.2f}s" for k, v in times.items()) + "]")
        return " ".join(parts)

    def summary(self) -> dict[str, Any]:
        """Steps logged, wall time, last and best values of the console keys, mean seconds per timed section."""
        rows = self._rows
        out: dict[str, Any] = {
            "steps_logged": len(rows),
            "first_step": rows[0]["step"] if rows else None,
            "last_step": rows[-1]["step"] if rows else None,
            "wall_seconds": round(time.time() - self._t_start, 2),
            "nonfinite_values": self._nonfinite,
        }
        keys = list(self.console_keys) + sorted({k for r in rows for k in r if k.startswith(TIME_PREFIX)})
        for key in keys:
            vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
            if not vals:
                continue
            if key.startswith(TIME_PREFIX):
                out[f"{key}_mean"] = float(np.mean(vals))
            else:
                out[f"{key}_last"], out[f"{key}_best"] = float(vals[-1]), float(max(vals))
        return out

    def close(self, print_summary: bool = True) -> dict[str, Any]:
        """Flush and close everything; write ``summary.json``; print the summary table. Returns the summary."""
        summary = self.summary()
        if not self.is_main:
            return summary
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
            self._tb_stage.close()
        if self._file is not None:
            self._file.close()
        run_files.write_json(run_files.run_path(self.run_dir, "summary.json"), summary, indent=1)
        if print_summary:
            print(format_table(summary))
        return summary


def format_table(summary: Mapping[str, Any]) -> str:
    """Two aligned columns: metric, value."""
    width = max((len(k) for k in summary), default=0)
    lines = ["run summary", "-" * (width + 14)]
    for key, value in summary.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def read_event_scalars(logdir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Scalars from the TensorBoard event files in ``logdir``: ``{tag: [(step, value), ...]}`` in file order.

    Parses the TFRecord framing (u64 length, u32 length CRC, payload, u32 payload CRC; CRCs not verified) and the
    Event protos with tensorboardX's bundled protobuf classes, so neither TensorFlow nor tensorboard is needed.
    """
    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for name in run_files.listdir(logdir):
        if "tfevents" not in name:
            continue
        data = run_files.run_path(logdir, name).read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack_from("<Q", data, pos)
            payload = data[pos + 12 : pos + 12 + length]
            if len(payload) < length:
                raise ValueError(f"{name}: truncated record at byte {pos}")
            pos += 12 + length + 4
            event = event_pb2.Event.FromString(payload)
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
    return out
