"""The training job as N cooperating CPU processes (jax.distributed, gloo collectives) on localhost.

1 process x 4 devices, 2 processes x 2 devices and 4 processes x 1 device, same seed and global batch (with DAPO
dynamic sampling, whose refills move rows between processes), must log the same metrics and end with bit-identical
parameters and optimizer state; a 2-process run resumed from its own
checkpoint must end where the uninterrupted run ended. Only process 0 logs and writes files. The 2- and 4-process
runs keep their run dirs on an object store (gs:// on the fake GCS of ``tests/fake_gcs``: no rename, no append, no
directories), so the comparison also shows that a bucket run dir changes nothing; the 2-process run resumes there.

Every spawned process has a timeout; a failure prints the tail of each process's log. The runs share the test
session's persistent JAX compilation cache (conftest; a run after the first of its layout compiles nothing), which
keeps the file's wall time down.
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests import fake_gcs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# DAPO dynamic sampling is on in every run: each process samples its share of every round, the choice of groups is
# made on the whole batch and rows move to the process that trains them, the hardest path for layout equality. The
# tiny random model is never correct; the length penalty gives a few groups a signal (rows of different lengths),
# and seed 1 is a draw where some rows end early (EOS), so step 1 refills a round and fills the batch with dropped
# groups (asserted below).
ARGS = ["--preset=tiny", "--steps=2", "--prompts_per_step=4", "--eval_every=100", "--eval_problems=2",
        "--save_every=1", "--keep_last=2", "--dynamic_sampling", "--dynamic_rounds=2", "--length_penalty=0.5",
        "--seed=1"]
TIMEOUT_S = 600
LAYOUTS = {"1x4": (1, 4), "2x2": (2, 2), "4x1": (4, 1)}  # processes x devices per process
ON_GCS = ("2x2", "4x1")  # layouts whose run dir is gs://BUCKET/multiprocess/<layout> on the fake GCS
PREFIX = "multiprocess"  # their object-name prefix in the bucket


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Job:
    """One run of the job as ``processes`` local processes with ``devices`` fake CPU devices each."""

    def __init__(self, run_dir, processes: int, devices: int, shared, *extra: str, gcs=None, local=None):
        """``gcs``: the fake GCS server a gs:// ``run_dir`` is on; then ``local`` (a local dir) holds the logs and
        is the processes' working dir, where a write that bypassed the run-dir layer would land."""
        self.run_dir, self.logs, self.procs = run_dir, [], []
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                   MRT_JAX_CACHE=str(shared / "assets"))  # XLA compilation cache: the session's (conftest)
        if gcs is not None:
            env = fake_gcs.child_env(gcs.url, env)
        port = _free_port()
        for i in range(processes):
            flags = [f"--coordinator=127.0.0.1:{port}", f"--num_processes={processes}", f"--process_id={i}"]
            log = open(f"{local / 'job' if gcs else run_dir}.p{i}.log", "w")
            self.logs.append(log.name)
            cmd = [sys.executable, "-m", "experiments.mrt_math", *ARGS, f"--run_dir={run_dir}", *extra,
                   *(flags if processes > 1 else [])]
            self.procs.append(subprocess.Popen(cmd, cwd=local if gcs else ROOT, env=env, stdout=log,
                                               stderr=subprocess.STDOUT))
            log.close()
        self.started = time.time()

    def finish(self) -> float:
        """Wait (with a deadline) for every process; on failure kill the rest and show each one's log tail."""
        deadline = self.started + TIMEOUT_S
        try:
            for p in self.procs:
                p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pass
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        codes = [p.returncode for p in self.procs]
        if any(codes):
            tails = "\n".join(f"--- process {i} (exit {c}) ---\n{self.log(i)[-2500:]}" for i, c in enumerate(codes))
            pytest.fail(f"job in {self.run_dir} failed: exit codes {codes}\n{tails}")
        return time.time() - self.started

    def log(self, i: int) -> str:
        with open(self.logs[i]) as f:
            return f.read()


_SERVED: list = []  # the module's fake GCS server, while it runs


def _bucket_names(run_dir: str) -> list[str]:
    """The names (relative to ``run_dir``) of the objects in a gs:// run dir, as the server's store holds them."""
    prefix = str(run_dir).removeprefix(f"gs://{fake_gcs.BUCKET}/") + "/"
    return [n[len(prefix):] for n in _SERVED[0].names(fake_gcs.BUCKET) if n.startswith(prefix)]


def _assert_only_logs_local(job: Job, processes: int) -> None:
    """The processes' working dir (a write that bypassed the run-dir layer lands there) holds their logs only."""
    local = os.path.dirname(job.logs[0])
    assert sorted(os.listdir(local)) == [f"job.p{i}.log" for i in range(processes)]


def _text(run_dir, name: str) -> str:
    """A file of a run dir, local or in the fake bucket (read from the server's store, not through the layer)."""
    if str(run_dir).startswith("gs://"):
        prefix = str(run_dir).removeprefix(f"gs://{fake_gcs.BUCKET}/")
        return _SERVED[0].read(fake_gcs.BUCKET, f"{prefix}/{name}").decode()
    with open(os.path.join(run_dir, name)) as f:
        return f.read()


def _rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in _text(run_dir, "metrics.jsonl").splitlines() if line.strip()]


def _computed(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("time/") and k not in ("wall", "compiles")}


def _final_state(run_dir) -> tuple[int, dict[str, np.ndarray]]:
    """The newest checkpoint's arrays (params, optimizer state, counters, RNG), read back by Orbax as numpy
    (from a gs:// run dir too, while the fake GCS serves this process)."""
    from etils import epath

    ckpt = epath.Path(str(run_dir)) / "checkpoints"
    step = max(int(d.name) for d in ckpt.iterdir() if d.name.isdigit())
    path = ckpt / str(step) / "state"
    reader = ocp.PyTreeCheckpointer()
    shapes = reader.metadata(path).item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), shapes)
    return step, reader.restore(path, restore_args=args)


def _assert_bit_identical(a: dict, b: dict, what: str) -> None:
    assert sorted(a) == sorted(b), what
    bad = {k: float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))))
           for k in a if not np.array_equal(a[k], b[k])}
    assert not bad, f"{what}: {len(bad)} of {len(a)} arrays differ; max abs diff per array: {bad}"


def _assert_same_metrics(rows_a: list[dict], rows_b: list[dict], what: str) -> None:
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b], what
    for ra, rb in zip(rows_a, rows_b):
        a, b = _computed(ra), _computed(rb)
        assert sorted(a) == sorted(b), what
        for k in a:
            if isinstance(a[k], float) and isinstance(b[k], float):
                # Cross-process all-reduces (gloo) may sum in another order than in-process ones: 1 ulp at most.
                assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-9), f"{what}: step {ra['step']} {k}"
            else:
                assert a[k] == b[k], f"{what}: step {ra['step']} {k}"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The module's asset cache (the tiny model's tokenizer is trained once)."""
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared):
    """The three layouts, run side by side -> {layout: (run_dir, Job, wall seconds)}; 1x4's run dir is local (base/1x4),
    2x2's and 4x1's are gs://BUCKET/multiprocess/<layout> on the fake GCS, their logs (and nothing else) in
    base/<layout>."""
    base = tmp_path_factory.mktemp("multiprocess")
    with fake_gcs.serving() as gcs:
        _SERVED.append(gcs)
        jobs = {}
        for name, (p, d) in LAYOUTS.items():
            if name in ON_GCS:
                (base / name).mkdir()
                jobs[name] = Job(f"gs://{fake_gcs.BUCKET}/{PREFIX}/{name}", p, d, shared, gcs=gcs, local=base / name)
            else:
                jobs[name] = Job(base / name, p, d, shared)
        yield {name: (job.run_dir, job, job.finish()) for name, job in jobs.items()}
        _SERVED.clear()


def test_layouts_log_the_same_metrics_and_end_with_bit_identical_state(runs):
    ref_dir = runs["1x4"][0]
    ref_step, ref_state = _final_state(ref_dir)
    assert ref_step == 2 and len(ref_state) > 10
    for name in ON_GCS:
        run_dir = runs[name][0]
        assert str(run_dir).startswith("gs://"), run_dir
        _assert_same_metrics(_rows(ref_dir), _rows(run_dir), f"{name} vs 1x4 metrics")
        step, state = _final_state(run_dir)
        assert step == ref_step
        _assert_bit_identical(ref_state, state, f"{name} vs 1x4 final state")
        for tag in ("before", "step2"):
            assert _text(run_dir, f"eval_{tag}.json") == _text(ref_dir, f"eval_{tag}.json"), tag
    rows = _rows(ref_dir)
    assert np.isfinite(rows[-1]["loss"]) and "progress_mean" in rows[-1]
    shown = {k: v for k, v in rows[0].items() if "dynamic" in k or "length" in k}
    assert rows[0]["dynamic_rounds"] == 2.0 and 0 < rows[0]["dynamic_dropped_frac"] < 1, shown


@pytest.mark.parametrize("name", ON_GCS)
def test_only_process_zero_logs_and_writes(runs, name):
    run_dir, job, _ = runs[name]
    processes = LAYOUTS[name][0]
    assert "run dir:" in job.log(0) and "train: 100%" in job.log(0)
    for i in range(1, processes):
        out = job.log(i)
        assert "run dir:" not in out and "train:" not in out and " INFO mrt_math" not in out, out[-2000:]
    names = _bucket_names(run_dir)  # the run dir is in the bucket: every file, no temporary names
    for file in ("config.json", "metrics.jsonl", "report.md", "result.json", "eval_before.json", "summary.json",
                 "checkpoints/2/commit_success.txt"):
        assert file in names, file
    assert [n for n in names if n.startswith("tb/events.out.tfevents.")]
    assert not [n for n in _SERVED[0].names(fake_gcs.BUCKET) if ".tmp" in n]
    _assert_only_logs_local(job, processes)
    result = json.loads(_text(run_dir, "result.json"))
    assert result["config"]["num_processes"] == processes and result["steps_done"] == 2


def test_two_process_run_resumes_from_its_checkpoint(runs, tmp_path, shared):
    """On the bucket: the 2x2 run's objects copied to a new prefix without step 2's checkpoint (as if killed after
    step 1's save), the 2-process job run there again resumes from step 1 and ends bit-identical."""
    source, _, _ = runs["2x2"]
    gcs = _SERVED[0]
    run_dir = f"gs://{fake_gcs.BUCKET}/{PREFIX}/2x2-resumed"
    copied = gcs.copy_prefix(fake_gcs.BUCKET, f"{PREFIX}/2x2", f"{PREFIX}/2x2-resumed", skip=("checkpoints/2/",))
    assert copied and f"{PREFIX}/2x2-resumed/checkpoints/1/commit_success.txt" in copied
    assert not [n for n in _bucket_names(run_dir) if n.startswith("checkpoints/2/")]
    (tmp_path / "resumed").mkdir()
    job = Job(run_dir, 2, 2, shared, gcs=gcs, local=tmp_path / "resumed")
    job.finish()
    assert "resumed from step 1" in job.log(0) and "resumed from step" not in job.log(1)
    assert "checkpoints/2/commit_success.txt" in _bucket_names(run_dir)
    assert not [n for n in _bucket_names(run_dir) if ".tmp" in n]
    _assert_only_logs_local(job, 2)
    _assert_same_metrics(_rows(source), _rows(run_dir), "resumed vs uninterrupted")
    _assert_bit_identical(_final_state(source)[1], _final_state(run_dir)[1], "resumed vs uninterrupted state")


def test_multiprocess_flag_mistakes_are_one_line_errors(capsys):
    from experiments.config import parse_args

    cases = {("--num_processes=2",): "needs --coordinator=HOST:PORT",
             ("--coordinator=127.0.0.1:1", "--num_processes=2", "--process_id=2"): "must be in [0, --num_processes=2)",
             ("--coordinator=localhost", "--num_processes=2"): "must be HOST:PORT",
             ("--coordinator=h:1", "--num_processes=3", "--prompts_per_step=8"): "multiple of --num_processes=3"}
    for argv, message in cases.items():
        with pytest.raises(SystemExit) as e:
            parse_args(list(argv))
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    cfg = parse_args(["--coordinator=10.0.0.2:8476", "--num_processes=4", "--process_id=3"])
    assert (cfg.coordinator, cfg.num_processes, cfg.process_id) == ("10.0.0.2:8476", 4, 3)
