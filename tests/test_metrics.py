"""Metrics: JSONL + TensorBoard files, resume truncation, progress bar text, summary, StepTimer, process 0 only."""

import io
import json
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest

from mrt_jax.metrics import MetricsLogger, StepTimer, format_table, read_event_scalars, truncate_jsonl


def _rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_files_written_and_readable(tmp_path):
    stream = io.StringIO()
    logger = MetricsLogger(tmp_path, total_steps=4, stream=stream)
    for step in (1, 2, 3):
        logger.log(step, {"reward_mean": jnp.float32(0.1 * step), "accuracy": np.float64(0.2 * step),
                          "response_len_mean": 100 + step, "loss": float("nan") if step == 2 else 0.5,
                          "time/sample": 1.5, "time/learn": 0.25})
    summary = logger.close(print_summary=False)
    rows = _rows(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[1]["loss"] is None and rows[0]["loss"] == 0.5
    assert math.isclose(rows[2]["reward_mean"], 0.3, rel_tol=1e-6)
    tb = read_event_scalars(tmp_path / "tb")
    assert [s for s, _ in tb["accuracy"]] == [1, 2, 3]
    assert math.isclose(tb["accuracy"][2][1], 0.6, rel_tol=1e-6)
    assert [s for s, _ in tb["loss"]] == [1, 3]  # the NaN step is not a scalar
    assert tb["time/sample"][0] == (1, 1.5)
    bar = stream.getvalue()
    assert "3/4" in bar and "acc=0.6" in bar and "sample 1.50s" in bar and "learn 0.25s" in bar
    assert summary["steps_logged"] == 3 and summary["nonfinite_values"] == 1
    assert summary["accuracy_best"] == pytest.approx(0.6) and summary["time/sample_mean"] == 1.5
    assert json.load(open(tmp_path / "summary.json")) == summary
    table = format_table(summary)
    assert "accuracy_best" in table and "0.6" in table


def test_resume_drops_lines_after_resumed_step(tmp_path):
    logger = MetricsLogger(tmp_path, total_steps=10, progress=False)
    for step in range(1, 7):
        logger.log(step, {"reward_mean": step})
    logger.close(print_summary=False)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "rew')  # torn last line from a crash mid-write
    resumed = MetricsLogger(tmp_path, total_steps=10, start_step=4, progress=False)
    for step in (5, 6, 7):
        resumed.log(step, {"reward_mean": 10 * step})
    resumed.close(print_summary=False)
    rows = _rows(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["reward_mean"] for r in rows] == [1, 2, 3, 4, 50, 60, 70]


def test_truncate_missing_file_and_count(tmp_path):
    assert truncate_jsonl(str(tmp_path / "absent.jsonl"), 3) == 0
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 6)))
    assert truncate_jsonl(str(path), 2) == 3
    assert [r["step"] for r in _rows(path)] == [1, 2]


def test_only_process_zero_writes(tmp_path):
    logger = MetricsLogger(tmp_path / "run", total_steps=3, is_main=False)
    logger.log(1, {"reward_mean": 1.0})
    logger.close()
    assert not os.path.exists(tmp_path / "run")


def test_bad_metric_value_names_key_and_step(tmp_path):
    logger = MetricsLogger(tmp_path, total_steps=3, progress=False, tensorboard=False)
    with pytest.raises(ValueError, match=r"step=2.*'per_token'.*shape \(3,\)"):
        logger.log(2, {"per_token": np.zeros(3)})
    logger.close(print_summary=False)


def test_step_timer_sections_and_block():
    timer = StepTimer()
    with timer("sample"):
        pass
    with timer("learn") as t:
        out = jnp.ones((64, 64)) @ jnp.ones((64, 64))
        t.block(out)
    with timer("sample"):
        pass
    times = timer.pop()
    assert set(times) == {"time/sample", "time/learn"}
    assert all(v >= 0 for v in times.values())
    assert timer.pop() == {}
