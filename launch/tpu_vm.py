"""Run an experiment on a Cloud TPU VM slice with the gcloud CLI, and clean up afterwards.

    python -m launch.tpu_vm [run] --name=mrt-1 --tpu=v5e-64 --zone=us-west4-a --project=my-proj \\
        --run_dir=gs://my-bucket/runs/mrt-1 --model_path=gs://my-bucket/models/R1-1.5B [--spot] [--dry_run] \\
        [-- JOB FLAGS]          (or -- --model=arch:r1-distill-qwen-1.5b for random weights of that shape)
    python -m launch.tpu_vm logs   --name=mrt-1 --zone=us-west4-a --project=my-proj [--worker=all] [--follow]
    python -m launch.tpu_vm status --name=mrt-1 --zone=us-west4-a --project=my-proj [--spot]
    python -m launch.tpu_vm ssh    --name=mrt-1 --zone=us-west4-a --project=my-proj [--worker=0] [-- COMMAND]

Steps: create the VM (spot: a queued resource, waited for until ACTIVE); ship the code to every worker (a tarball
of this checkout, or ``--code=pip --pip_spec=...``) and install pinned ``jax[tpu]`` in a venv; run
``python -m experiments.mrt_math --tpu=<slice> --run_dir=<gs://...> --resume <args after -->`` on all workers,
streaming their output here; delete the VM on success, failure or Ctrl-C. A spot VM that is preempted is deleted,
re-created and the job resumed from the checkpoints in ``--run_dir``, up to ``--max_restarts`` times.
``--model_path=gs://...`` copies the weights to every worker before the run and passes them as ``--model``.
``--dry_run`` prints the commands instead of running them.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from launch import commands as C

# Runs one argv list; returns (exit code, stdout). The default streams output through to our stdout.
Runner = Callable[[list[str], bool], tuple[int, str]]
CODE_PATHS = ("mrt_jax", "experiments", "launch", "setup.cfg", "pyproject.toml", "README.md")


def subprocess_runner(argv: list[str], capture: bool) -> tuple[int, str]:
    if capture:
        p = subprocess.run(argv, capture_output=True, text=True, check=False)
        return p.returncode, p.stdout
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as p:
        for line in p.stdout:  # stream every worker's output as it arrives
            sys.stdout.write(line)
            sys.stdout.flush()
        return p.wait(), ""


def plan(job: C.JobSpec) -> list[tuple[str, list[str]]]:
    """The commands of one attempt, in order: (step, argv)."""
    steps = [("create", C.create_cmd(job))]
    if job.spot:
        steps.append(("wait until ACTIVE (polled)", C.queued_state_cmd(job)))
    if job.code == "copy":
        steps.append(("copy code", C.copy_cmd(job)))
    steps.append(("install", C.setup_cmd(job)))
    if job.model_path:
        steps.append(("stage model", C.stage_model_cmd(job)))
    steps.append(("run", C.run_cmd(job)))
    if job.spot:
        steps.append(("on failure: check for preemption", C.node_state_cmd(job)))
    steps.append(("delete", C.delete_cmd(job)))
    return steps


def dry_run_text(job: C.JobSpec, max_restarts: int) -> str:
    lines = [f"# job {job.name}: {job.tpu} ({job.accelerator_type}, image {job.image}) in {job.zone}"]
    for step, argv in plan(job):
        lines += [f"# {step}", shlex.join(argv)]
    if job.spot:
        lines.append(f"# if PREEMPTED: delete, then repeat from create (at most {max_restarts} restarts); "
                     "--resume continues from the last checkpoint in --run_dir")
    return "\n".join(lines) + "\n"


def make_tarball(root: Path, out: Path) -> Path:
    """Pack the code this job needs (no .git, caches or run outputs)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    skip = ("__pycache__", ".pytest_cache", ".egg-info")
    with tarfile.open(out, "w:gz") as tar:
        for rel in CODE_PATHS:
            if (root / rel).exists():
                tar.add(root / rel, arcname=rel, filter=lambda ti: None if any(s in ti.name for s in skip) else ti)
    return out


def wait_active(job: C.JobSpec, run: Runner, poll_s: float, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        rc, out = run(C.queued_state_cmd(job), True)
        state = out.strip()
        if rc == 0 and state == "ACTIVE":
            return
        if state in ("FAILED", "SUSPENDED"):
            raise RuntimeError(f"queued resource {job.name} is {state}; see `{shlex.join(C.queued_state_cmd(job))}`")
        if time.monotonic() > deadline:
            raise RuntimeError(f"queued resource {job.name} not ACTIVE after {timeout_s:.0f} s (last state {state!r})")
        time.sleep(poll_s)


def execute(job: C.JobSpec, run: Runner = subprocess_runner, *, max_restarts: int = 3, keep: bool = False,
            poll_s: float = 30.0, wait_timeout_s: float = 24 * 3600.0) -> int:
    """Run the job; returns the job's exit code. The VM is deleted at the end unless ``keep``."""
    attempt = 0
    while True:
        created = False
        try:
            rc, _ = run(C.create_cmd(job), False)
            if rc:
                raise RuntimeError(f"creating {job.name} failed (exit {rc})")
            created = True
            if job.spot:
                wait_active(job, run, poll_s, wait_timeout_s)
            for step, argv in plan(job):
                if step in ("copy code", "install", "stage model"):
                    rc, _ = run(argv, False)
                    if rc:
                        raise RuntimeError(f"step '{step}' failed on {job.name} (exit {rc})")
            rc, _ = run(C.run_cmd(job), False)
            preempted = rc != 0 and job.spot and run(C.node_state_cmd(job), True)[1].strip() == "PREEMPTED"
        finally:
            if created and not keep:
                run(C.delete_cmd(job), False)
        if not preempted:
            return rc
        if attempt >= max_restarts:
            print(f"{job.name} preempted {attempt + 1} times; giving up (raise --max_restarts)", file=sys.stderr)
            return rc
        attempt += 1
        print(f"{job.name} was preempted; re-creating and resuming (restart {attempt}/{max_restarts})",
              file=sys.stderr)


SUBCOMMANDS = ("run", "logs", "status", "ssh")


def _where_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--name", required=True, help="TPU VM name")
    ap.add_argument("--zone", required=True)
    ap.add_argument("--project", required=True)


def parse_vm(command: str, argv: list[str]) -> tuple[C.VmRef, argparse.Namespace]:
    """``logs`` / ``status`` / ``ssh`` on a VM the launcher made: flags before ``--``, a remote command after
    (``ssh`` only; none: an interactive shell)."""
    remote: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, remote = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(prog=f"python -m launch.tpu_vm {command}")
    _where_args(ap)
    # Each subcommand takes only the flags it uses (an accepted flag that does nothing would mislead).
    if command == "status":
        ap.add_argument("--spot", action="store_true", help="also the queued resource's state")
    else:
        ap.add_argument("--worker", default="all" if command == "logs" else "0", help="all or a worker index")
    if command == "logs":
        ap.add_argument("--lines", type=int, default=200, help="how many lines per worker")
        ap.add_argument("--follow", action="store_true", help="keep following (tail -F)")
    ap.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    a = ap.parse_args(argv)
    if remote and command != "ssh":
        raise ValueError(f"`{command}` takes no command after --; use `ssh`")
    a.remote = shlex.join(remote) if remote else None
    return C.VmRef(name=a.name, zone=a.zone, project=a.project, spot=getattr(a, "spot", False)), a


def vm_commands(command: str, ref: C.VmRef, a: argparse.Namespace) -> list[list[str]]:
    if command == "logs":
        return [C.logs_cmd(ref, a.lines, a.worker, a.follow)]
    if command == "status":
        return C.status_cmds(ref)
    return [C.ssh_cmd(ref, a.remote, a.worker)]


def parse(argv: list[str]) -> tuple[C.JobSpec, argparse.Namespace]:
    job_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, job_args = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(prog="python -m launch.tpu_vm", description=__doc__.split("\n")[0])
    _where_args(ap)
    ap.add_argument("--tpu", required=True, help="slice preset, e.g. v5e-64")
    ap.add_argument("--run_dir", required=True, help="gs://BUCKET/PATH for checkpoints and logs")
    ap.add_argument("--model_path", default="", help="gs://BUCKET/PATH of weights (HF folder or .gguf), copied "
                    "to every worker and passed to the job as --model")
    ap.add_argument("--spot", action="store_true", help="spot capacity via queued resources, resumed on preemption")
    ap.add_argument("--code", default="copy", choices=("copy", "pip"))
    ap.add_argument("--pip_spec", default="")
    ap.add_argument("--jax_version", default="0.10.2")
    ap.add_argument("--python", default="python3")
    ap.add_argument("--runtime_version", default="")
    ap.add_argument("--module", default="experiments.mrt_math")
    ap.add_argument("--max_restarts", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="do not delete the VM at the end")
    ap.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    a = ap.parse_args(argv)
    job = C.JobSpec(name=a.name, tpu=a.tpu, zone=a.zone, project=a.project, run_dir=a.run_dir, spot=a.spot,
                    code=a.code, pip_spec=a.pip_spec, jax_version=a.jax_version, python=a.python,
                    runtime_version=a.runtime_version, module=a.module, job_args=tuple(job_args),
                    model_path=a.model_path)
    return job, a


def vm_main(command: str, argv: list[str], run: Runner = subprocess_runner) -> int:
    try:
        ref, a = parse_vm(command, argv)
        cmds = vm_commands(command, ref, a)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.dry_run:
        sys.stdout.write("".join(shlex.join(c) + "\n" for c in cmds))
        return 0
    if shutil.which("gcloud") is None:
        print(_NO_GCLOUD, file=sys.stderr)
        return 2
    if command == "ssh":  # interactive: the terminal belongs to gcloud
        return subprocess.call(cmds[0])
    rc = 0
    for c in cmds:
        rc = run(c, False)[0] or rc
    return rc


_NO_GCLOUD = ("error: the gcloud CLI is not on PATH; install the Google Cloud SDK "
              "(https://cloud.google.com/sdk/docs/install) and run `gcloud auth login`")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in SUBCOMMANDS else "run"
    if command != "run":
        return vm_main(command, argv)
    try:
        job, a = parse(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.dry_run:
        sys.stdout.write(dry_run_text(job, a.max_restarts))
        return 0
    if shutil.which("gcloud") is None:
        print(_NO_GCLOUD, file=sys.stderr)
        return 2
    if job.code == "copy":
        make_tarball(Path.cwd(), Path(C.CODE_TARBALL))
    try:
        return execute(job, max_restarts=a.max_restarts, keep=a.keep)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
