"""The study driver: which runs it plans (dry run), and that it refuses flags it owns."""

import subprocess
import sys

from experiments import study


def test_dry_run_plans_base_and_algos_per_seed_then_compares(capsys, tmp_path):
    assert study.main([f"--out={tmp_path}", "--seeds=3,4", "--dry_run", "--steps=5", "--task=arithmetic",
                       "--difficulty=0"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("$ ")]
    train = [ln for ln in lines if "experiments.mrt_math" in ln]
    assert len(train) == 6  # base, grpo, mrt for each of 2 seeds
    assert sum("--learning_rate=0" in ln and "--steps=1" in ln for ln in train) == 2
    for seed in (3, 4):
        for name in ("base", "grpo", "mrt"):
            assert any(f"--run_dir={tmp_path}/{name}-s{seed}" in ln and f"--seed={seed}" in ln for ln in train)
    assert all("--steps=5" in ln and "--difficulty=0" in ln for ln in train)
    evals = [ln for ln in lines if "experiments.evaluate" in ln]
    assert len(evals) == 6 and all("--dataset=arithmetic:1" in ln for ln in evals)  # one difficulty up
    compares = [ln for ln in lines if "experiments.compare" in ln]
    assert len(compares) == 2 and "--labels=base,grpo,mrt,base,grpo,mrt" in compares[0]


def test_a_dataset_study_is_titled_by_its_dataset_and_has_no_automatic_ood(capsys, tmp_path):
    assert study.main([f"--out={tmp_path}", "--seeds=0", "--dry_run", "--preset=smollm2-math"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("$ ")]
    assert not [ln for ln in lines if "experiments.evaluate" in ln] and "--ood=auto evaluates nothing" in out
    compares = [ln for ln in lines if "experiments.compare" in ln]
    assert len(compares) == 1 and "easy-math (smollm2-135m), in distribution" in compares[0]


def test_refuses_flags_the_study_sets_and_bad_job_flags():
    for flags in (["--seed=1"], ["--run_dir=x"], ["--algos=ppo"], ["--group_size=0"]):
        p = subprocess.run([sys.executable, "-m", "experiments.study", "--dry_run", *flags], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 2, (flags, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "error" in p.stderr, (flags, p.stderr)


def test_a_run_stopped_early_is_not_kept_as_finished(tmp_path):
    # A job stopped by SIGTERM/SIGINT saves, writes result.json and exits 0: the study must resume it, not keep it.
    import json

    from experiments.study import _finished

    run = tmp_path / "mrt-s1"
    assert not _finished(str(run), 30)
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"steps": 30}))
    (run / "result.json").write_text(json.dumps({"config": {"steps": 30}, "steps_done": 28}))
    assert not _finished(str(run), 30)
    (run / "result.json").write_text(json.dumps({"config": {"steps": 30}, "steps_done": 30}))
    assert _finished(str(run), 30)


def test_a_run_made_for_another_step_count_is_refused_not_kept(tmp_path):
    # Equal-compute GRPO follows MRT's token count: when that moves, an old grpo_eqtok run no longer fits.
    import json

    import pytest

    from experiments.study import _finished

    run = tmp_path / "grpo_eqtok-s0"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"steps": 49}))  # killed before result.json: refused all the same
    with pytest.raises(SystemExit, match=r"--steps=49 but this study asks for 50.*delete"):
        _finished(str(run), 50)
    (run / "result.json").write_text(json.dumps({"config": {"steps": 49}, "steps_done": 49}))
    with pytest.raises(SystemExit, match=r"--steps=49 but this study asks for 50.*delete"):
        _finished(str(run), 50)


def test_an_ood_eval_of_an_earlier_checkpoint_is_redone(tmp_path):
    import json

    from experiments.study import _ood_is_current

    run, out = tmp_path / "mrt-s1", tmp_path / "mrt-s1" / "eval_ood"
    out.mkdir(parents=True)
    assert not _ood_is_current(str(run), str(out))
    (run / "result.json").write_text(json.dumps({"config": {"steps": 30}, "steps_done": 30}))
    (out / "eval.json").write_text(json.dumps({"source": {"checkpoint_step": 28}}))
    assert not _ood_is_current(str(run), str(out))
    (out / "eval.json").write_text(json.dumps({"source": {"checkpoint_step": 30}}))
    assert _ood_is_current(str(run), str(out))


def test_spaced_job_flags_and_equal_compute_without_both_algorithms_are_refused(capsys, tmp_path):
    """The study edits job flags by name (per algorithm it drops the ones that do nothing), so a value passed as
    its own item would be left behind as a stray argument; --equal_compute needs an MRT and a GRPO arm."""
    for argv, message in ((["--alpha", "0.5"], "got '0.5' on its own"),
                          (["--algos=mrt,rloo", "--equal_compute"], "needs both mrt and grpo")):
        try:
            code = study.main([f"--out={tmp_path}", "--dry_run", *argv])
        except SystemExit as e:
            code = e.code
        assert code == 2 and message in capsys.readouterr().err
    assert study.main([f"--out={tmp_path}", "--dry_run", "--algos=mrt,rloo"]) == 0  # off by default there


def test_a_study_in_a_bucket_keeps_its_finished_runs_and_writes_its_summary_there(tmp_path, monkeypatch, capsys):
    """``--out=gs://...`` (the fake GCS of ``tests/fake_gcs``): a run finished in the bucket is found and kept (a
    resumed study retrains nothing), its sampled tokens are read from there, and compare (a child process reading
    and writing the bucket), STUDY.md and the logs land in the bucket; nothing is written in the working dir."""
    import json

    from experiments.study import _finished, _sampled_tokens
    from mrt_jax import run_files
    from tests import fake_gcs
    from tests.report_fixtures import make_run

    metrics = [{"step": s, "reward": 0.1 * s, "sampled_tokens": 100.0, "meta_tokens": 20.0 * s} for s in (1, 2, 3)]
    local = make_run(tmp_path / "grpo-s0", algo="grpo", seed=0, steps=3, metrics=metrics)
    cwd = tmp_path / "cwd"  # a write that bypassed run_files would make a local "gs:" folder here
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with fake_gcs.serving() as gcs:
        for key, value in fake_gcs.child_env(gcs.url, {}).items():  # the study's children reach the fake server
            monkeypatch.setenv(key, value)
        prefix = tmp_path.name
        out = f"gs://{fake_gcs.BUCKET}/{prefix}"
        run_files.upload_tree(local, f"{out}/grpo-s0")
        assert _sampled_tokens(f"{out}/grpo-s0") == (300.0 + 120.0, 3)
        assert _finished(f"{out}/grpo-s0", 3) and not _finished(f"{out}/mrt-s0", 3)
        argv = [f"--out={out}", "--seeds=0", "--algos=grpo", "--no-base", "--ood=none", "--preset=tiny", "--steps=3"]
        for _ in range(2):  # the second time, the bucket's compare.log is fetched and appended to
            assert study.main(argv) == 0
            printed = capsys.readouterr().out
            assert "grpo-s0: finished earlier, kept" in printed and "experiments.mrt_math" not in printed
            assert f"uploaded to {out}/logs" in printed and f"study: {out}/STUDY.md" in printed

        def stored(name: str) -> str:
            return gcs.read(fake_gcs.BUCKET, f"{prefix}/{name}").decode()

        groups = json.loads(stored("compare/compare.json"))["groups"]
        assert [(g["label"], g["members"]) for g in groups] == [("base", ["grpo-s0 (before)"]), ("grpo", ["grpo-s0"])]
        summary = stored("STUDY.md")
        assert "## In distribution" in summary and "| grpo | 1 |" in summary
        assert "](compare/accuracy_vs_budget.png)" in summary
        assert gcs.read(fake_gcs.BUCKET, f"{prefix}/compare/accuracy_vs_budget.png").startswith(b"\x89PNG")
        assert stored("logs/compare.log").count("compared 2 run(s)") == 2
    assert list(cwd.iterdir()) == []


def test_keep_study_runs_copies_the_small_files_of_finished_runs_only(tmp_path):
    """scripts/keep_study_runs.py: what a study spanning sessions carries over (no checkpoints), and the study
    keeps the copied runs as finished."""
    import importlib.util
    import json
    import os

    spec = importlib.util.spec_from_file_location("keep", os.path.join(os.path.dirname(__file__), "..", "scripts",
                                                                       "keep_study_runs.py"))
    keep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(keep)
    src = tmp_path / "study"
    for name, done in (("grpo-s0", 20), ("mrt-s0", 12)):
        run = src / name
        (run / "checkpoints" / "5").mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"steps": 20}))
        (run / "result.json").write_text(json.dumps({"steps_done": done}))
        for f in ("metrics.jsonl", "eval_before.json", "eval_step20.json", "report.md", "report.html", "c.png"):
            (run / f).write_text("x")
    (src / "logs").mkdir()
    assert keep.main(str(src), str(tmp_path / "kept")) == ["grpo-s0"]
    assert sorted(os.listdir(tmp_path / "kept")) == ["grpo-s0"]
    assert sorted(os.listdir(tmp_path / "kept" / "grpo-s0")) == [
        "config.json", "eval_before.json", "eval_step20.json", "metrics.jsonl", "report.md", "result.json"]
    assert study._finished(str(tmp_path / "kept" / "grpo-s0"), 20)
