"""Cloud TPU VM launcher: dry-run goldens, argument quoting, the spot resume loop with a fake gcloud, bad input."""

import shlex
from pathlib import Path

import pytest

from launch import commands as C
from launch import tpu_vm

GOLDEN = Path(__file__).parent / "golden"
ON_DEMAND = ["--name=mrt-1", "--tpu=v5e-64", "--zone=us-west4-a", "--project=my-proj-123",
             "--run_dir=gs://my-bucket/runs/mrt-1", "--dry_run", "--", "--model=r1-distill-qwen-1.5b",
             "--note=a b'c"]
SPOT = ["--name=mrt-spot", "--tpu=v5p-16", "--zone=us-east5-a", "--project=my-proj-123",
        "--run_dir=gs://my-bucket/runs/mrt-spot", "--spot", "--code=pip", "--pip_spec=mrt-jax[tpu]==0.1.0",
        "--dry_run", "--", "--model=r1-distill-qwen-7b"]


@pytest.mark.parametrize("argv,golden", [(ON_DEMAND, "tpu_vm_on_demand.txt"), (SPOT, "tpu_vm_spot_pip.txt")])
def test_dry_run_matches_golden(argv, golden, capsys):
    assert tpu_vm.main(argv) == 0
    assert capsys.readouterr().out == (GOLDEN / golden).read_text()


def test_remote_command_keeps_user_args_whole():
    job, _ = tpu_vm.parse(ON_DEMAND)
    remote = shlex.split(C.run_remote(job))
    assert "--note=a b'c" in remote and "--resume" in remote and "--tpu=v5e-64" in remote
    assert C.run_cmd(job)[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"] and "--worker=all" in C.run_cmd(job)


class FakeGcloud:
    """Records argv lists; the job's run fails with preemption ``preemptions`` times, then succeeds."""

    def __init__(self, preemptions=0, run_rc=0, fail_step=None):
        self.calls, self.preemptions, self.run_rc, self.fail_step = [], preemptions, run_rc, fail_step

    def __call__(self, argv, capture):
        self.calls.append(argv)
        remote = next((a for a in argv if a.startswith("--command=")), "")
        if "describe" in argv:
            return 0, "ACTIVE\n" if "queued-resources" in argv else "PREEMPTED\n"
        if self.fail_step and self.fail_step in remote:
            return 7, ""
        if "experiments.mrt_math" in remote:
            if self.preemptions:
                self.preemptions -= 1
                return 255, ""
            return self.run_rc, ""
        return 0, ""

    def count(self, *words):
        return sum(all(w in argv for w in words) for argv in self.calls)


def _job(spot):
    return tpu_vm.parse(SPOT if spot else ON_DEMAND)[0]


def test_spot_preemption_recreates_and_resumes():
    fake = FakeGcloud(preemptions=2)
    assert tpu_vm.execute(_job(True), fake, max_restarts=3, poll_s=0) == 0
    assert fake.count("queued-resources", "create") == 3 and fake.count("queued-resources", "delete") == 3
    runs = [a for a in fake.calls if any("experiments.mrt_math" in x for x in a)]
    assert len(runs) == 3 and all("--resume" in shlex.split(a[-1].split("=", 1)[1]) for a in runs)


def test_spot_gives_up_after_max_restarts():
    fake = FakeGcloud(preemptions=5)
    assert tpu_vm.execute(_job(True), fake, max_restarts=1, poll_s=0) == 255
    assert fake.count("queued-resources", "create") == 2 and fake.count("queued-resources", "delete") == 2


def test_failure_deletes_vm_and_returns_code():
    fake = FakeGcloud(run_rc=3)
    assert tpu_vm.execute(_job(False), fake) == 3
    assert fake.calls[-1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "delete"]
    fake = FakeGcloud(fail_step="venv")
    with pytest.raises(RuntimeError, match="step 'install' failed"):
        tpu_vm.execute(_job(False), fake)
    assert fake.calls[-1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "delete"]
    assert fake.count("tpu-vm", "describe") == 0  # on-demand failures are not treated as preemption


@pytest.mark.parametrize("bad,message", [
    ("--tpu=v9-8", "unknown slice 'v9-8'"),
    ("--tpu=cpu", "not a TPU slice"),
    ("--run_dir=/local/dir", "--run_dir='/local/dir' is not valid; expected gs://"),
    ("--name=x;rm -rf", "--name='x;rm -rf' is not valid"),
    ("--zone=us west", "--zone='us west' is not valid"),
])
def test_bad_input(bad, message, capsys):
    key = bad.split("=")[0]
    argv = [a for a in ON_DEMAND if not a.startswith(key + "=")]
    assert tpu_vm.main([bad, *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_gcloud(monkeypatch, capsys):
    monkeypatch.setattr(tpu_vm.shutil, "which", lambda name: None)
    argv = [a for a in ON_DEMAND if a != "--dry_run"]
    assert tpu_vm.main(argv) == 2
    assert "gcloud CLI is not on PATH" in capsys.readouterr().err


def test_tarball_has_code_only(tmp_path):
    root = tmp_path / "repo"
    (root / "mrt_jax" / "__pycache__").mkdir(parents=True)
    (root / "mrt_jax" / "a.py").write_text("x = 1\n")
    (root / "mrt_jax" / "__pycache__" / "a.pyc").write_bytes(b"0")
    (root / "secrets.txt").write_text("no")
    import tarfile

    with tarfile.open(tpu_vm.make_tarball(root, tmp_path / "c.tar.gz")) as t:
        assert sorted(t.getnames()) == ["mrt_jax", "mrt_jax/a.py"]


MODEL = ["--name=mrt-1", "--tpu=v5e-64", "--zone=us-west4-a", "--project=my-proj-123",
         "--run_dir=gs://my-bucket/runs/mrt-1", "--model_path=gs://my-bucket/models/DeepSeek-R1-Distill-Qwen-1.5B/",
         "--spot", "--dry_run", "--", "--steps=100"]
WHERE = ["--name=mrt-1", "--zone=us-west4-a", "--project=my-proj-123", "--dry_run"]


def test_model_path_dry_run_matches_golden(capsys):
    assert tpu_vm.main(MODEL) == 0
    assert capsys.readouterr().out == (GOLDEN / "tpu_vm_model_path.txt").read_text()


def test_model_path_is_staged_then_passed_as_model():
    job, _ = tpu_vm.parse([a for a in MODEL if a != "--dry_run"])
    steps = [step for step, _ in tpu_vm.plan(job)]
    assert steps.index("install") < steps.index("stage model") < steps.index("run")
    copy = shlex.split(C.stage_model_remote(job).rsplit("; ", 1)[1])
    assert copy == ["gcloud", "storage", "cp", "-r", "gs://my-bucket/models/DeepSeek-R1-Distill-Qwen-1.5B",
                    "~/mrt_jax_model/"]
    remote = shlex.split(C.run_remote(job))
    assert "--model=$HOME/mrt_jax_model/DeepSeek-R1-Distill-Qwen-1.5B" in remote
    fake = FakeGcloud()
    assert tpu_vm.execute(job, fake, poll_s=0) == 0
    staged = [i for i, a in enumerate(fake.calls) if any("gcloud storage cp" in x for x in a)]
    runs = [i for i, a in enumerate(fake.calls) if any("experiments.mrt_math" in x for x in a)]
    assert len(staged) == 1 and staged[0] < runs[0]
    fake = FakeGcloud(fail_step="gcloud storage cp")  # a failed copy stops before the run and deletes the VM
    with pytest.raises(RuntimeError, match="step 'stage model' failed"):
        tpu_vm.execute(job, fake, poll_s=0)
    assert not any("experiments.mrt_math" in x for a in fake.calls for x in a)
    assert fake.calls[-1][:5] == ["gcloud", "compute", "tpus", "queued-resources", "delete"]


@pytest.mark.parametrize("bad,message", [
    ("--model_path=/local/model", "--model_path='/local/model' is not valid; expected gs://"),
    ("--model_path=gs://b/x;rm", "is not valid"),
    ("--model_path=gs://bucket/m y", "is not valid"),
])
def test_bad_model_path(bad, message, capsys):
    argv = [a for a in MODEL if not a.startswith("--model_path=")]
    assert tpu_vm.main([bad, *argv]) == 2
    assert message in capsys.readouterr().err


def test_model_path_and_model_flag_together_are_refused(capsys):
    assert tpu_vm.main([*MODEL, "--model=r1-distill-qwen-1.5b"]) == 2
    assert "either as --model_path=gs://... or as --model after --" in capsys.readouterr().err


def test_subcommands_dry_run_match_golden(capsys):
    for argv in (["logs", "--follow", "--lines=50"], ["status", "--spot"], ["ssh", "--worker=3"]):
        assert tpu_vm.main([*argv, *WHERE]) == 0
    assert tpu_vm.main(["ssh", *WHERE, "--", "df", "-h", "~"]) == 0
    assert capsys.readouterr().out == (GOLDEN / "tpu_vm_subcommands.txt").read_text()


def test_subcommands_run_gcloud_and_refuse_bad_input(capsys, monkeypatch):
    monkeypatch.setattr(tpu_vm.shutil, "which", lambda name: "/usr/bin/gcloud")
    fake = FakeGcloud()
    assert tpu_vm.vm_main("status", [a for a in WHERE if a != "--dry_run"] + ["--spot"], fake) == 0
    assert [a[3:5] for a in fake.calls] == [["queued-resources", "describe"], ["tpu-vm", "describe"]]
    assert tpu_vm.main(["logs", *WHERE, "--", "ls"]) == 2
    assert "`logs` takes no command after --; use `ssh`" in capsys.readouterr().err
    assert tpu_vm.main(["ssh", *WHERE, "--worker=1;x"]) == 2
    assert "--worker='1;x' is not valid" in capsys.readouterr().err
    assert tpu_vm.main(["logs", *WHERE, "--lines=0"]) == 2
    assert "--lines=0 is not valid" in capsys.readouterr().err
    for command, flag in (("status", "--lines=5"), ("status", "--worker=1"), ("ssh", "--follow"), ("logs", "--spot")):
        with pytest.raises(SystemExit) as e:  # a subcommand takes only the flags it uses
            tpu_vm.main([command, *WHERE, flag])
        assert e.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
    assert tpu_vm.main(["status", "--name=Bad_Name", "--zone=us-west4-a", "--project=my-proj-123"]) == 2
    assert "--name='Bad_Name' is not valid" in capsys.readouterr().err
    monkeypatch.setattr(tpu_vm.shutil, "which", lambda name: None)
    assert tpu_vm.main(["logs", *[a for a in WHERE if a != "--dry_run"]]) == 2
    assert "gcloud CLI is not on PATH" in capsys.readouterr().err
