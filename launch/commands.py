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
REMOTE_MODELS = "mrt_jax_model"  # in each worker's home: weights staged from --model_path

_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]")
_PROJECT = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
_GCS = re.compile(r"gs://[a-z0-9][-_.a-z0-9]{1,220}[a-z0-9](/[-_.a-zA-Z0-9=/]*)?")
_VERSION = re.compile(r"[0-9]+(\.[0-9]+){1,3}")
_PYTHON = re.compile(r"python3(\.[0-9]+)?")
_MODEL = re.compile(r"gs://[a-z0-9][-_.a-z0-9]{1,220}[a-z0-9]/([-_.a-zA-Z0-9=]+/)*[-_.a-zA-Z0-9=]+/?")
_WORKER = re.compile(r"all|[0-9]{1,4}")


def _check(field: str, value, pattern: re.Pattern, allowed: str) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"--{field}={value!r} is not valid; expected {allowed}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class VmRef:
    """An existing TPU VM (for ``logs``, ``status``, ``ssh``): its name, zone and project, validated."""

    name: str
    zone: str
    project: str
    spot: bool = False  # a queued resource holds it: status also shows the queued resource's state

    def __post_init__(self):
        _check("name", self.name, _NAME, "lowercase letters, digits and '-', starting with a letter")
        _check("zone", self.zone, _ZONE, "a zone such as us-central2-b")
        _check("project", self.project, _PROJECT, "a project id such as my-project-123")


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
    model_path: str = ""  # gs://... weights (HF folder or .gguf), copied to every worker before the run

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
            _check(field, value, pattern, allowed)
        if self.code not in ("copy", "pip"):
            raise ValueError(f"--code={self.code!r} is not valid; allowed: copy, pip")
        if self.code == "pip" and not self.pip_spec:
            raise ValueError("--code=pip needs --pip_spec (a pip requirement such as 'mrt-jax==0.1.0')")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", self.module):
            raise ValueError(f"--module={self.module!r} is not a Python module path")
        if self.model_path:
            _check("model_path", self.model_path, _MODEL, "gs://BUCKET/PATH of a Hugging Face folder or a .gguf file")
            if any(a == "--model" or a.startswith("--model=") for a in self.job_args):
                raise ValueError("pass the weights either as --model_path=gs://... or as --model after --, not both")

    @property
    def model_name(self) -> str:
        """The last part of ``model_path``: the staged folder's (or file's) name on every worker."""
        return self.model_path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def accelerator_type(self) -> str:
        return get_slice(self.tpu).accelerator_type

    @property
    def image(self) -> str:
        return self.runtime_version or get_slice(self.tpu).runtime_version


def _where(job: JobSpec | VmRef) -> list[str]:
    return [f"--zone={job.zone}", f"--project={job.project}"]


def create_cmd(job: JobSpec) -> list[str]:
    """On-demand: create the TPU VM. Spot: a queued resource that provisions it when capacity frees up."""
    if job.spot:
        return ["gcloud", "compute", "tpus", "queued-resources", "create", job.name, *_where(job),
                f"--node-id={job.name}", f"--accelerator-type={job.accelerator_type}",
                f"--runtime-version={job.image}", "--spot"]
    return ["gcloud", "compute", "tpus", "tpu-vm", "create", job.name, *_where(job),
            f"--accelerator-type={job.accelerator_type}", f"--version={job.image}"]


def queued_state_cmd(job: JobSpec | VmRef) -> list[str]:
    """Prints the queued resource's state (WAITING_FOR_RESOURCES, PROVISIONING, ACTIVE, FAILED, SUSPENDED...)."""
    return ["gcloud", "compute", "tpus", "queued-resources", "describe", job.name, *_where(job),
            "--format=value(state.state)"]


def node_state_cmd(job: JobSpec) -> list[str]:
    """Prints the TPU VM's state (READY, PREEMPTED, ...)."""
    return ["gcloud", "compute", "tpus", "tpu-vm", "describe", job.name, *_where(job), "--format=value(state)"]


def ssh_cmd(job: JobSpec | VmRef, remote: str | None, worker: str = "all") -> list[str]:
    """ssh to ``worker`` (``all`` or an index) and run ``remote``; None: an interactive shell."""
    _check("worker", worker, _WORKER, "all or a worker index such as 0")
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", job.name, *_where(job), f"--worker={worker}",
            *([f"--command={remote}"] if remote is not None else [])]


def copy_cmd(job: JobSpec) -> list[str] | None:
    if job.code != "copy":
        return None
    return ["gcloud", "compute", "tpus", "tpu-vm", "scp", CODE_TARBALL, f"{job.name}:{REMOTE_TARBALL}",
            *_where(job), "--worker=all"]


# gs:// run dirs: etils.epath (the job's files, Orbax's metadata) reaches GCS through gcsfs, and Orbax asks
# google-cloud-storage about the bucket (mrt_jax.run_files); setup.cfg's ``gcs`` extra names the same two.
GCS_PACKAGES = "gcsfs google-cloud-storage"


def setup_remote(job: JobSpec) -> str:
    """Shell text run on every worker: a venv with pinned jax[tpu], the GCS clients and the code (copied tarball
    or pip spec)."""
    pip = f"{REMOTE_VENV}/bin/pip install -q"
    jax_req = shlex.quote(f"jax[tpu]=={job.jax_version}") + " " + GCS_PACKAGES
    steps = ["set -e", f"{job.python} -m venv {REMOTE_VENV}", f"{pip} --upgrade pip"]
    if job.code == "copy":
        steps += [f"rm -rf {REMOTE_DIR} && mkdir -p {REMOTE_DIR}", f"tar -xzf ~/{REMOTE_TARBALL} -C {REMOTE_DIR}",
                  f"{pip} {jax_req} -e {REMOTE_DIR}"]
    else:
        steps += [f"mkdir -p {REMOTE_DIR}", f"{pip} {jax_req} {shlex.quote(job.pip_spec)}"]
    return "; ".join(steps)


def stage_model_remote(job: JobSpec) -> str:
    """Shell text run on every worker: copy ``model_path`` from the bucket to ``~/mrt_jax_model/<name>`` (the
    TPU VM images carry the gcloud CLI; the VM's service account reads the bucket). Each worker loads the weights
    from its own disk, so loading does not wait on the bucket 16 or 64 times over."""
    dest = f"~/{REMOTE_MODELS}"
    return (f"set -e; rm -rf {dest}/{job.model_name} && mkdir -p {dest}; "
            f"gcloud storage cp -r {shlex.quote(job.model_path.rstrip('/'))} {dest}/")


def stage_model_cmd(job: JobSpec) -> list[str] | None:
    return ssh_cmd(job, stage_model_remote(job)) if job.model_path else None


def run_remote(job: JobSpec) -> str:
    """Shell text run on every worker: the job, always with ``--resume`` (a fresh run_dir simply starts at 0)."""
    argv = [f"{REMOTE_VENV}/bin/python", "-m", job.module, f"--tpu={job.tpu}", f"--run_dir={job.run_dir}",
            "--resume", *job.job_args]
    cmd = " ".join(shlex.quote(a) if i else a for i, a in enumerate(argv))
    if job.model_path:  # $HOME unquoted so the worker's shell expands it; the name is validated ([-_.=a-zA-Z0-9])
        cmd += f" --model=$HOME/{REMOTE_MODELS}/{job.model_name}"
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


def logs_cmd(job: JobSpec | VmRef, lines: int = 200, worker: str = "all", follow: bool = False) -> list[str]:
    """Shows the last lines of the job log on ``worker`` (the run also streams them while it runs)."""
    if not isinstance(lines, int) or lines < 1:
        raise ValueError(f"--lines={lines!r} is not valid; expected a positive number of lines")
    return ssh_cmd(job, f"tail -n {lines}{' -F' if follow else ''} {REMOTE_LOG}", worker)


def status_cmds(ref: JobSpec | VmRef) -> list[list[str]]:
    """The VM's state, type and health (and, for spot, its queued resource's state)."""
    cmds = [["gcloud", "compute", "tpus", "tpu-vm", "describe", ref.name, *_where(ref),
             "--format=table(name.basename(),state,acceleratorType,health,runtimeVersion)"]]
    if ref.spot:
        cmds.insert(0, queued_state_cmd(ref))
    return cmds
