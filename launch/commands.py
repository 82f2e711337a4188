"""The gcloud commands of a Cloud TPU VM job, built as argv lists from validated values.

Nothing here runs anything. Local commands are argv lists (never a shell string). The one string that a remote
shell interprets (``ssh --command``) is assembled from validated names and ``shlex.quote``-d values only.
"""

from __future__ import annotations

import dataclasses
import re
import shlex

from mrt_jax.distributed.slices import get_slice

CODE_TARBALL = ".launch/mrt_jax_code.tar.gz"  # local path, relative to the directory the launcher runs in
REMOTE_TARBALL = "mrt_jax_code.tar.gz"  # in each worker's home
REMOTE_DIR = "~/mrt_jax"
REMOTE_VENV = "~/mrt_jax_venv"
REMOTE_LOG = "~/mrt_jax_run.log"

_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]")
_PROJECT = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
_GCS = re.compile(r"gs://[a-z0-9][-_.a-z0-9]{1,220}[a-z0-9](/[-_.a-zA-Z0-9=/]*)?")
_VERSION = re.compile(r"[0-9]+(\.[0-9]+){1,3}")
_PYTHON = re.compile(r"python3(\.[0-9]+)?")


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One job: where it runs, how the code gets there, and what each worker executes."""

    name: str
    tpu: str
    zone: str
    project: str
    run_dir: str
    spot: bool = False
    code: str = "copy"  # 'copy': ship this checkout as a tarball; 'pip': pip-install ``pip_spec``
    pip_spec: str = ""
    jax_version: str = "0.10.2"
    python: str = "python3"
    runtime_version: str = ""  # default: the slice preset's image
    module: str = "experiments.mrt_math"
    job_args: tuple[str, ...] = ()

    def __post_init__(self):
        spec = get_slice(self.tpu)  # unknown slice -> ValueError listing the allowed ones
        if spec.platform != "tpu":
            raise ValueError(f"--tpu={self.tpu!r} is not a TPU slice; allowed: TPU presets such as v5e-64")
        checks = [("name", self.name, _NAME, "lowercase letters, digits and '-', starting with a letter"),
                  ("zone", self.zone, _ZONE, "a zone such as us-central2-b"),
                  ("project", self.project, _PROJECT, "a project id such as my-project-123"),
                  ("run_dir", self.run_dir, _GCS, "gs://BUCKET/PATH (letters, digits, -_.=/)"),
                  ("jax_version", self.jax_version, _VERSION, "a version such as 0.10.2"),
                  ("python", self.python, _PYTHON, "python3 or python3.N")]
        for field, value, pattern, allowed in checks:
            if not isinstance(value, str) or not pattern.fullmatch(value):
                raise ValueError(f"--{field}={value!r} is not valid; expected {allowed}")
        if self.code not in ("copy", "pip"):
            raise ValueError(f"--code={self.code!r} is not valid; allowed: copy, pip")
        if self.code == "pip" and not self.pip_spec:
            raise ValueError("--code=pip needs --pip_spec (a pip requirement such as 'mrt-jax==0.1.0')")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", self.module):
            raise ValueError(f"--module={self.module!r} is not a Python module path")

    @property
    def accelerator_type(self) -> str:
        return get_slice(self.tpu).accelerator_type

    @property
    def image(self) -> str:
        return self.runtime_version or get_slice(self.tpu).runtime_version


def _where(job: JobSpec) -> list[str]:
    return [f"--zone={job.zone}", f"--project={job.project}"]


def create_cmd(job: JobSpec) -> list[str]:
    """On-demand: create the TPU VM. Spot: a queued resource that provisions it when capacity frees up."""
    if job.spot:
        return ["gcloud", "compute", "tpus", "queued-resources", "create", job.name, *_where(job),
                f"--node-id={job.name}", f"--accelerator-type={job.accelerator_type}",
                f"--runtime-version={job.image}", "--spot"]
    return ["gcloud", "compute", "tpus", "tpu-vm", "create", job.name, *_where(job),
            f"--accelerator-type={job.accelerator_type}", f"--version={job.image}"]


def queued_state_cmd(job: JobSpec) -> list[str]:
    """Prints the queued resource's state (WAITING_FOR_RESOURCES, PROVISIONING, ACTIVE, FAILED, SUSPENDED...)."""
    return ["gcloud", "compute", "tpus", "queued-resources", "describe", job.name, *_where(job),
            "--format=value(state.state)"]


def node_state_cmd(job: JobSpec) -> list[str]:
    """Prints the TPU VM's state (READY, PREEMPTED, ...)."""
    return ["gcloud", "compute", "tpus", "tpu-vm", "describe", job.name, *_where(job), "--format=value(state)"]


def ssh_cmd(job: JobSpec, remote: str) -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", job.name, *_where(job), "--worker=all",
            f"--command={remote}"]


def copy_cmd(job: JobSpec) -> list[str] | None:
    if job.code != "copy":
        return None
    return ["gcloud", "compute", "tpus", "tpu-vm", "scp", CODE_TARBALL, f"{job.name}:{REMOTE_TARBALL}",
            *_where(job), "--worker=all"]


def setup_remote(job: JobSpec) -> str:
    """Shell text run on every worker: a venv with pinned jax[tpu] and the code (copied tarball or pip spec)."""
    pip = f"{REMOTE_VENV}/bin/pip install -q"
    jax_req = shlex.quote(f"jax[tpu]=={job.jax_version}")
    steps = ["set -e", f"{job.python} -m venv {REMOTE_VENV}", f"{pip} --upgrade pip"]
    if job.code == "copy":
        steps += [f"rm -rf {REMOTE_DIR} && mkdir -p {REMOTE_DIR}", f"tar -xzf ~/{REMOTE_TARBALL} -C {REMOTE_DIR}",
                  f"{pip} {jax_req} -e {REMOTE_DIR}"]
    else:
        steps += [f"mkdir -p {REMOTE_DIR}", f"{pip} {jax_req} {shlex.quote(job.pip_spec)}"]
    return "; ".join(steps)


def run_remote(job: JobSpec) -> str:
    """Shell text run on every worker: the job, always with ``--resume`` (a fresh run_dir simply starts at 0)."""
    argv = [f"{REMOTE_VENV}/bin/python", "-m", job.module, f"--tpu={job.tpu}", f"--run_dir={job.run_dir}",
            "--resume", *job.job_args]
    cmd = " ".join(shlex.quote(a) if i else a for i, a in enumerate(argv))
    return f"set -o pipefail; cd {REMOTE_DIR} && {cmd} 2>&1 | tee -a {REMOTE_LOG}"


def setup_cmd(job: JobSpec) -> list[str]:
    return ssh_cmd(job, setup_remote(job))


def run_cmd(job: JobSpec) -> list[str]:
    return ssh_cmd(job, run_remote(job))


def delete_cmd(job: JobSpec) -> list[str]:
    """Deletes the VM (on-demand) or the queued resource together with its VM (spot)."""
    if job.spot:
        return ["gcloud", "compute", "tpus", "queued-resources", "delete", job.name, *_where(job), "--force",
                "--quiet"]
    return ["gcloud", "compute", "tpus", "tpu-vm", "delete", job.name, *_where(job), "--quiet"]


def logs_cmd(job: JobSpec, lines: int = 200) -> list[str]:
    """Shows the last lines of every worker's job log (the run also streams them while it runs)."""
    return ssh_cmd(job, f"tail -n {int(lines)} {REMOTE_LOG}")
