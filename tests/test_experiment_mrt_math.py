"""The training job end to end on the tiny preset: files, determinism, resume after SIGKILL (in a local run dir and
in one on an object store, the fake GCS of ``tests/fake_gcs``), SIGTERM, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.config import parse_args
from experiments.mrt_math import main
from tests import fake_gcs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--preset=tiny", "--steps=4", "--save_every=1", "--eval_every=4"]


def _job(run_dir, *extra, gcs=None, cwd=ROOT, cache=None, **popen):
    """The job as a child; ``gcs``: the fake GCS server its gs:// paths reach (then ``cwd`` is where a write that
    bypassed the run-dir layer would land, as a local ``gs:/...`` folder)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", MRT_JAX_CACHE=str(cache or f"{run_dir}_cache"))
    if gcs is not None:
        env = fake_gcs.child_env(gcs.url, env)
    cmd = [sys.executable, "-m", "experiments.mrt_math", *TINY, f"--run_dir={run_dir}", *extra]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)


def _finish(proc, timeout=900):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _read(run_dir, name: str, gcs=None) -> str:
    """A file of a run dir, local or on the fake GCS (read from the store itself, not through the job's layer)."""
    if gcs is None:
        with open(os.path.join(run_dir, name)) as f:
            return f.read()
    prefix = str(run_dir).removeprefix(f"gs://{fake_gcs.BUCKET}/")
    try:
        return gcs.read(fake_gcs.BUCKET, f"{prefix}/{name}").decode()
    except KeyError:
        raise FileNotFoundError(f"{run_dir}/{name}") from None


def _ckpt_steps(run_dir, gcs=None) -> list[int]:
    if gcs is None:
        return sorted(int(d) for d in os.listdir(os.path.join(run_dir, "checkpoints")) if d.isdigit())
    prefix = str(run_dir).removeprefix(f"gs://{fake_gcs.BUCKET}/") + "/checkpoints/"
    return sorted({int(n[len(prefix):].split("/")[0]) for n in gcs.names(fake_gcs.BUCKET) if n.startswith(prefix)})


def _committed(run_dir, step: int, gcs=None) -> bool:
    """Orbax finalised the step: locally its dir has its final name (renamed), on a bucket commit_success.txt."""
    try:
        if gcs is not None:
            _read(run_dir, f"checkpoints/{step}/commit_success.txt", gcs)
        return "commit_timestamp_nsecs" in json.loads(_read(run_dir, f"checkpoints/{step}/_CHECKPOINT_METADATA", gcs))
    except (FileNotFoundError, ValueError):
        return False


def _final_params(run_dir, gcs=None):
    """The fingerprints Orbax metadata stores for the newest checkpoint (exact bit checksums of every array)."""
    step = max(_ckpt_steps(run_dir, gcs))
    return step, json.loads(_read(run_dir, f"checkpoints/{step}/meta/metadata", gcs))["fingerprints"]


def _steps(run_dir, gcs=None):
    return [json.loads(line)["step"] for line in _read(run_dir, "metrics.jsonl", gcs).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def gcs():
    with fake_gcs.serving() as server:
        yield server


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("jobs") / "full"
    code, out = _finish(_job(run_dir))
    assert code == 0, out[-3000:]
    return run_dir


def write_problems(path, golds=None):
    """A MATH-500-layout file of 16 one-operation problems (``golds``: replace the gold answers)."""
    rows = [{"problem": f"What is ${a} + {b}$?", "solution": f"$\\boxed{{{a + b}}}$", "answer": str(a + b),
             "unique_id": f"test/easy/{a}_{b}.json"} for a in range(1, 5) for b in range(1, 5)]
    for row, gold in zip(rows, golds or []):
        row["answer"] = gold
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# The tiny job on a data file: math-verify rewards in a worker pool, the held-out rows at the file's end. Its
# prompts fit the procedural task's budget (32 tokens), so its programs are the ones the other tiny runs compile.
ON_FILE = ["--max_prompt_tokens=32", "--reward_workers=1"]


@pytest.fixture(scope="module")
def uninterrupted_on_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("file_jobs")
    data = write_problems(root / "easy.jsonl")
    run_dir = root / "full"
    code, out = _finish(_job(run_dir, f"--dataset={data}", *ON_FILE))
    assert code == 0, out[-3000:]
    return run_dir, [f"--dataset={data}", *ON_FILE]


def test_training_on_a_file_scores_with_math_verify_and_counts_what_it_could_not_score(uninterrupted_on_file):
    run_dir, _ = uninterrupted_on_file
    assert _steps(run_dir) == [1, 2, 3, 4]
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    for row in rows:
        assert row["reward_timeouts"] == 0 and row["reward_errors"] == 0 and row["invalid_gold_frac"] == 0
        assert 0 <= row["no_answer_frac"] <= 1 and row["data_skipped_rows"] == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"].endswith("easy.jsonl") and config["max_prompt_tokens"] == 32
    assert len(json.loads((run_dir / "eval_before.json").read_text())["pass_at_budget"]) == 6


def test_tiny_run_writes_the_run_dir(uninterrupted):
    for name in ("config.json", "metrics.jsonl", "report.md", "result.json", "eval_before.json", "tb"):
        assert os.path.exists(uninterrupted / name), name
    assert _steps(uninterrupted) == [1, 2, 3, 4]
    row = json.loads(open(uninterrupted / "metrics.jsonl").read().splitlines()[-1])
    for key in ("reward", "accuracy", "mean_length", "loss", "grad_norm", "time/sample", "time/learn", "time/sync"):
        assert key in row, key
    assert "| accuracy |" in open(uninterrupted / "report.md").read()


def test_same_seed_same_parameters(uninterrupted, tmp_path):
    code, out = _finish(_job(tmp_path / "again"))
    assert code == 0, out[-3000:]
    assert _final_params(tmp_path / "again") == _final_params(uninterrupted)


@pytest.mark.parametrize("case", ["task-local", "file-bucket"])
def test_sigkill_then_resume_is_bit_identical(case, tmp_path, request):
    """A procedural task in a local run dir; a data file (its prompt stream's position and skip count are in the
    checkpoint) with the run dir on an object store (gs:// on the fake GCS: no rename, no append, no directories):
    everything lands there, nothing in a local ``gs:`` folder, the resume finds the newest checkpoint, and the
    evaluator restores it and scores the run's held-out rows."""
    problems, where = case.split("-")
    if problems == "task":
        uninterrupted, flags = request.getfixturevalue("uninterrupted"), []
    else:
        uninterrupted, flags = request.getfixturevalue("uninterrupted_on_file")
    gcs = request.getfixturevalue("gcs") if where == "bucket" else None
    run_dir = f"gs://{fake_gcs.BUCKET}/{tmp_path.name}/killed" if gcs else tmp_path / "killed"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    opts = dict(gcs=gcs, cwd=str(cwd) if gcs else ROOT, cache=tmp_path / "cache")
    # Evaluating every step leaves the parameters alone (eval_every may change on resume) and makes the remaining
    # steps take seconds, so on a fast idle machine the job is still running when the kill comes.
    proc = _job(run_dir, "--eval_every=1", *flags, **opts)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if _committed(run_dir, 1, gcs):  # a complete checkpoint, mid-run
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the job ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(_steps(run_dir, gcs)) < 4, "killed after the last step: nothing left to resume"
    code, out = _finish(_job(run_dir, *flags, **opts))
    assert code == 0, out[-3000:]
    assert "resumed from step" in out
    assert _final_params(run_dir, gcs) == _final_params(uninterrupted)
    assert _steps(run_dir, gcs) == [1, 2, 3, 4]  # no duplicated rows after the resume
    if gcs is not None:
        names = gcs.names(fake_gcs.BUCKET)
        for name in ("config.json", "metrics.jsonl", "summary.json", "eval_before.json", "result.json", "report.md",
                     "report.html", "accuracy_vs_budget.png", "checkpoints/4/commit_success.txt"):
            assert f"{tmp_path.name}/killed/{name}" in names, name
        assert [n for n in names if n.startswith(f"{tmp_path.name}/killed/tb/events.out.tfevents.")]  # uploaded
        assert "| accuracy |" in _read(run_dir, "report.md", gcs)
        # the evaluator restores the newest checkpoint from the bucket and writes its results there
        env = fake_gcs.child_env(gcs.url, dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="",
                                               MRT_JAX_CACHE=str(tmp_path / "cache")))
        ev = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"--run_dir={run_dir}", "--problems=2",
                             "--n=1"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert ev.returncode == 0, ev.stderr[-3000:]
        assert json.loads(_read(run_dir, "eval_step4/eval.json", gcs))["source"]["checkpoint_step"] == 4
        assert _read(run_dir, "eval_step4/report.md", gcs)
        assert os.listdir(cwd) == [], "the job or the evaluator wrote a local file instead of an object"


def test_sigterm_saves_a_complete_checkpoint_and_exits_cleanly(tmp_path):
    run_dir = tmp_path / "term"
    proc = _job(run_dir, "--steps=50", "--save_every=100")
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(run_dir / "metrics.jsonl") and len(_steps(run_dir)) >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    code, out = _finish(proc)
    assert code == 0, out[-3000:]
    step, fingerprints = _final_params(run_dir)
    assert 1 <= step < 50 and fingerprints


def test_bad_flag_values_are_one_line_errors(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["--algo=ppo"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--algo='ppo' is not allowed; choose one of mrt, grpo, dr_grpo, rloo, mrt_star")


def test_missing_model_path_is_a_one_line_error(tmp_path, capsys):
    code = main([f"--run_dir={tmp_path / 'r'}", "--model=/nonexistent/model.gguf", "--steps=1"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/nonexistent/model.gguf" in err[0]


@pytest.mark.parametrize("run_dir", ["under_a_file/run", "nosuch://bucket/run", "s3://bucket/run"])
def test_unusable_run_dir_is_a_one_line_error(tmp_path, capsys, run_dir):
    (tmp_path / "under_a_file").write_text("")
    run_dir = run_dir if "://" in run_dir else str(tmp_path / run_dir)
    code = main(["--preset=tiny", f"--run_dir={run_dir}", "--steps=1"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--run_dir={run_dir!r} cannot be written" in err[0], err
    assert not os.path.exists(os.path.join(ROOT, "nosuch:")) and not os.path.exists("nosuch:")


def test_run_dir_of_another_config_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "other"
    (run_dir / "checkpoints" / "3").mkdir(parents=True)
    stored = parse_args(["--preset=tiny", f"--run_dir={run_dir}", "--alpha=0.5"]).to_dict()
    (run_dir / "config.json").write_text(json.dumps(stored))
    code = main(["--preset=tiny", f"--run_dir={run_dir}", "--alpha=2.0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to resume" in err and "alpha" in err
    assert json.loads((run_dir / "config.json").read_text())["alpha"] == 0.5  # nothing overwritten


def test_every_preset_parses():
    from experiments.config import PRESETS

    for name in PRESETS:
        assert parse_args([f"--preset={name}"]).preset == name
    assert np.isfinite(parse_args([]).alpha)


def test_loss_aggregations_match_the_learner():
    from experiments.config import LOSS_AGGREGATIONS
    from mrt_jax.rl.losses import AGGREGATIONS

    assert tuple(LOSS_AGGREGATIONS) == tuple(AGGREGATIONS)


def test_compile_only_compiles_the_real_learner_step_for_a_tpu_slice(capsys):
    from mrt_jax.distributed.aot import libtpu_available

    if not libtpu_available() and not os.environ.get("CI"):
        pytest.skip("libtpu is not installed (scripts/setup.sh installs it); in CI this test runs and fails")
    assert main(["--compile_only", "--tpu=v5e-4", "--model=tiny", "--preset=tiny"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    # The job's meshes and dtypes: the learner over every chip (fsdp), the sampler on one process's chips.
    assert report["slice"] == "v5e-4" and report["learner_mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
    assert report["sampler_mesh"] == {"data": 4, "fsdp": 1, "tensor": 1}
    assert report["dtype"] == {"param": "float32", "compute": "float32"} and report["remat"] is False
    # MRT's step runs the learner, the rollout's prefill + decode loop and the meta-prover fork's.
    assert sorted(report["programs"]) == ["fork decode", "fork prefill", "rollout decode", "rollout prefill",
                                          "train"]
    for s in report["programs"].values():
        assert s["argument"] + s["output"] - s["alias"] + s["temp"] > 0
    assert report["train_batch"][0] == 4 and set(report["phases"]) == {"learn", "rollout", "fork", "sync"}
    assert report["peak"] == max(sum(p.values()) for p in report["phases"].values()) > 0
    assert any("dominated by" in line for line in out) and "per chip: fits" in out[-2]


def test_compile_only_without_libtpu_is_a_one_line_error_with_the_install_command(capsys, monkeypatch):
    from mrt_jax.distributed import aot

    monkeypatch.setattr(aot, "libtpu_available", lambda: False)
    assert main(["--compile_only", "--tpu=v5e-4", "--model=tiny", "--preset=tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs libtpu" in err[0] and "pip install 'jax[tpu]==" in err[0], err


@pytest.mark.parametrize("algo", ["grpo", "mrt_star"])
def test_other_algorithms_run_a_step(algo, tmp_path, monkeypatch):
    monkeypatch.setenv("MRT_JAX_CACHE", str(tmp_path / "cache"))
    code = main(["--preset=tiny", f"--algo={algo}", "--steps=1", "--eval_every=1", f"--run_dir={tmp_path / algo}"])
    assert code == 0
    row = json.loads((tmp_path / algo / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["step"] == 1 and np.isfinite(row["loss"])
    assert ("star_selected_frac" in row) == (algo == "mrt_star")
    assert ("j0_mean" in row) == (algo == "mrt_star")


def test_a_real_models_name_without_weights_is_refused_not_trained_from_random_weights(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert main([f"--run_dir={run_dir}", "--model=r1-distill-qwen-1.5b", "--steps=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights are not here" in err[0] and "--model=arch:r1-distill-qwen-1.5b" in err[0], err
    assert not run_dir.exists()  # refused before the run dir is written
    assert main([f"--run_dir={run_dir}", "--model=arch:no-such-preset", "--steps=1"]) == 2
    assert "no architecture preset 'no-such-preset'" in capsys.readouterr().err


def test_arch_prefix_trains_random_weights_of_the_preset_shape(tmp_path, monkeypatch):
    from experiments.setup_model import build

    monkeypatch.setenv("MRT_JAX_CACHE", str(tmp_path / "cache"))
    cfg = parse_args(["--preset=tiny", "--model=arch:tiny"])
    model, _, _, info = build(cfg, None)
    assert info == {"random_weights": True} and model.cfg.num_layers == 2
