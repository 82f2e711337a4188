"""The disaggregated job (experiments.disaggregated): learner and sampler as two real OS processes that talk only
through the run dir; equality with the colocated job at max_staleness=0, with the run dir local and on an object
store (gs:// on the fake GCS of ``tests/fake_gcs``: no rename, no append, listings cached per process as gcsfs
caches them); a stale batch dropped and counted; the batch files' checks; bad input.

All subprocesses share one XLA compilation cache (the colocated run fills it, the two roles reuse it).
"""

import json
import os
import sys
import time

import numpy as np
import pytest

from experiments import rollout_queue as rq
from experiments.disagg_learner import choose_batch
from experiments.disagg_sampler import sampler_queue_limit
from tests import fake_gcs
from tests.processes import Child

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# entropy_coef > 0: every update moves the weights (the tiny model's rewards are all 0, so the policy gradient is),
# and the rollouts of step 2 and 3 depend on the updates before them.
JOB = ["--preset=tiny", "--steps=3", "--seed=3", "--entropy_coef=0.05", "--eval_every=3"]
TIMEOUT = 600


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    caches = tmp_path_factory.mktemp("caches")
    # The XLA compilation cache is the session's (conftest), shared with the other tests' tiny jobs.
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", PYTHONPATH=ROOT, MRT_JAX_CACHE=str(caches / "mrt"))


def _start(env, module, *args):
    return Child([sys.executable, "-m", module, *args], cwd=ROOT, env=env)


def _local(run_dir):
    """A reader of a local run dir's files: name -> text."""
    def read(name):
        with open(os.path.join(run_dir, name)) as f:
            return f.read()
    return read


def _rows(run_dir, read=None):
    text = (read or _local(run_dir))("metrics.jsonl")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _fingerprints(run_dir, step, read=None):
    return json.loads((read or _local(run_dir))(f"checkpoints/{step}/meta/metadata"))["fingerprints"]


def _assert_same_as_colocated(read, colocated):
    """The run whose files ``read`` returns trained, checkpointed and evaluated as the colocated run did, bit for
    bit (every metric both log, the fingerprints of the checkpoints kept, the evaluations)."""
    ours, theirs = _rows(None, read), _rows(colocated)
    assert [r["step"] for r in ours] == [r["step"] for r in theirs] == [1, 2, 3]
    assert all(r["grad_norm"] > 0 for r in theirs)  # the weights really change between steps
    for a, b in zip(ours, theirs):
        common = [k for k in b if k in a and k not in ("wall", "compiles") and not k.startswith("time/")]
        assert len(common) > 20
        assert {k: a[k] for k in common} == {k: b[k] for k in common}
    for step in (2, 3):  # the checkpoints kept (keep_last=2)
        assert _fingerprints(None, step, read) == _fingerprints(colocated, step)
    for name in ("eval_before.json", "eval_step3.json"):
        assert json.loads(read(name)) == json.loads((colocated / name).read_text())


def _complete(step_dir):
    return os.path.exists(os.path.join(step_dir, "_CHECKPOINT_METADATA"))


@pytest.fixture(scope="module")
def colocated(env, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("colocated") / "run"
    out, err = _start(env, "experiments.mrt_math", *JOB, f"--run_dir={run_dir}").communicate(timeout=TIMEOUT)
    assert os.path.exists(run_dir / "result.json"), err[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def two_processes(env, colocated, tmp_path_factory):
    """Learner and sampler started as two OS processes; once the learner has published step 1 the test drops a
    batch sampled with step 0 into the queue (as a lagging second sampler would), which must be dropped."""
    run_dir = tmp_path_factory.mktemp("disaggregated") / "run"
    flags = [*JOB, f"--run_dir={run_dir}", "--max_staleness=0", "--wait_timeout=300"]
    learner = _start(env, "experiments.disaggregated", *flags, "--role=learner")
    sampler = _start(env, "experiments.disaggregated", *flags, "--role=sampler")
    stale = rq.BatchInfo(name=rq.batch_name(7, 1), sampled_step=0, sampler_id=7, batch_index=1, seed=0,
                         metrics={"reward": 0.0})
    injected_before = None
    try:
        deadline = time.monotonic() + TIMEOUT
        while learner.poll() is None and time.monotonic() < deadline:
            if _complete(run_dir / "weights" / "1"):
                rq.write_batch(run_dir / "rollouts", {k: np.zeros((1, 1), v) for k, v in rq.BATCH_DTYPES.items()},
                               stale)
                injected_before = not _complete(run_dir / "weights" / "3")
                break
            time.sleep(0.01)
        l_out, l_err = learner.communicate(timeout=TIMEOUT)
        s_out, s_err = sampler.communicate(timeout=60)
    finally:
        for p in (learner, sampler):
            if p.poll() is None:
                p.kill()
    return dict(run_dir=run_dir, learner=(learner.returncode, l_out, l_err), sampler=(sampler.returncode, s_out, s_err),
                injected_before_end=injected_before, stale_name=stale.name)


def test_two_processes_finish_with_staleness_metrics(two_processes):
    run_dir = two_processes["run_dir"]
    code, _, err = two_processes["learner"]
    assert code == 0, err[-3000:]
    code, _, err = two_processes["sampler"]
    assert code == 0, err[-3000:]
    assert "learner done" in err  # the sampler stopped on the DONE marker, not on a timeout
    assert json.loads((run_dir / "DONE").read_text())["final_step"] == 3
    rows = _rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        for key in ("staleness", "staleness_mean", "staleness_max", "dropped_stale", "dropped_stale_total",
                    "time/wait_data", "time/publish", "sampled_step", "time/learn"):
            assert key in r, key
        # max_staleness=0: each consumed batch was sampled with the learner's current weights
        assert r["staleness"] == 0 and r["sampled_step"] == r["step"] - 1 and r["sampler_id"] == 0
    # Published: step 0 and after every update (the publisher keeps max(3, max_staleness + 2) of them).
    published = sorted(int(d) for d in os.listdir(run_dir / "weights") if d.isdigit())
    assert published == [1, 2, 3] and all(_complete(run_dir / "weights" / str(s)) for s in published)
    sampler_state = json.loads((run_dir / "samplers" / "s000.json").read_text())
    assert sampler_state["loaded_steps"][:3] == [0, 1, 2]  # it saw every step, so step 0 was published too


def test_stale_batch_is_dropped_and_counted(two_processes):
    run_dir = two_processes["run_dir"]
    assert two_processes["injected_before_end"], "the stale batch arrived after the run ended; cannot check it"
    rows = _rows(run_dir)
    assert sum(r["dropped_stale"] for r in rows) == 1 and rows[-1]["dropped_stale_total"] == 1
    dropped_at = next(r for r in rows if r["dropped_stale"] == 1)
    assert dropped_at["staleness_max"] == dropped_at["step"] - 1 >= 1  # learner step - 0 at the time
    assert not (run_dir / "rollouts" / f"{two_processes['stale_name']}.json").exists()
    assert json.loads((run_dir / "result.json").read_text())["dropped_stale"] == 1


def test_max_staleness_0_equals_the_colocated_job(two_processes, colocated):
    """Same seed: the same rollouts, updates and evaluations, bit for bit (same programs on the same device)."""
    assert two_processes["learner"][0] == 0
    _assert_same_as_colocated(_local(two_processes["run_dir"]), colocated)


def test_run_dir_on_a_bucket_equals_the_colocated_job(env, colocated, tmp_path):
    """``--role=both`` (the supervisor, the learner and a sampler: three processes) with ``--run_dir=gs://...``:
    the roles find each other's batches, published weights and DONE marker in the bucket only through fresh
    listings (the fake caches listings per process as gcsfs does: with the cache on, each role waits for the
    other until --wait_timeout), and the run is the colocated one, bit for bit. Every file is a whole object in
    the bucket (no temporary names, every batch complete), and nothing lands in the working dir."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    prefix = f"{tmp_path.name}/run"
    with fake_gcs.serving() as gcs:
        flags = [*JOB, f"--run_dir=gs://{fake_gcs.BUCKET}/{prefix}", "--max_staleness=0", "--wait_timeout=120"]
        job = Child([sys.executable, "-m", "experiments.disaggregated", *flags, "--role=both"], cwd=str(cwd),
                    env=fake_gcs.child_env(gcs.url, env))
        _, err = job.communicate(timeout=TIMEOUT)
        assert job.returncode == 0, err[-4000:]
        assert "Traceback" not in err
        read = lambda name: gcs.read(fake_gcs.BUCKET, f"{prefix}/{name}").decode()
        names = [n[len(prefix) + 1:] for n in gcs.names(fake_gcs.BUCKET) if n.startswith(prefix + "/")]
        _assert_same_as_colocated(read, colocated)
        rows = _rows(None, read)
        assert [(r["staleness"], r["sampled_step"], r["dropped_stale_total"]) for r in rows] == [
            (0, 0, 0), (0, 1, 0), (0, 2, 0)]
        assert json.loads(read("DONE"))["final_step"] == 3
        assert json.loads(read("samplers/s000.json"))["loaded_steps"][:3] == [0, 1, 2]
        assert json.loads(read("result.json"))["dropped_stale"] == 0
    assert not [n for n in names if ".tmp" in n or "orbax-checkpoint-tmp" in n], names
    published = sorted({int(n.split("/")[1]) for n in names if n.startswith("weights/")})
    assert published == [1, 2, 3] and all(f"weights/{s}/commit_success.txt" in names for s in published)
    batches = [n for n in names if n.startswith("rollouts/")]  # consumed ones deleted, the rest complete pairs
    assert sorted(n[:-5] for n in batches if n.endswith(".json")) == sorted(n[:-4] for n in batches
                                                                           if n.endswith(".npz"))
    for name in ("config.json", "metrics.jsonl", "report.md", "checkpoints/3/commit_success.txt"):
        assert name in names, name
    assert os.listdir(cwd) == [], "a role wrote a local file (./gs:/...) instead of an object"


# ---------------------------------------------------------------------------------------------- in-process
def _info(name, sampled_step, sampler_id=0, batch_index=1):
    return rq.BatchInfo(name=name, sampled_step=sampled_step, sampler_id=sampler_id, batch_index=batch_index,
                        seed=0, metrics={})


def test_choose_batch_keeps_within_staleness_oldest_first():
    infos = [_info("a", 5), _info("b", 3, 0, 2), _info("c", 3, 1, 1), _info("d", 2), _info("e", 7)]
    chosen, stale, future = choose_batch(infos, learner_step=5, max_staleness=2)
    assert chosen.name == "c"  # oldest usable: sampled step 3, then the lower per-sampler index (turns)
    assert [i.name for i in stale] == ["d"] and [i.name for i in future] == ["e"]
    chosen, stale, _ = choose_batch(infos[:4], learner_step=5, max_staleness=0)
    assert chosen.name == "a" and sorted(i.name for i in stale) == ["b", "c", "d"]
    assert choose_batch([], 0, 1) == (None, [], [])


def test_sampler_queue_limit_shares_the_staleness_window():
    assert [sampler_queue_limit(1, k) for k in (1, 2, 3)] == [2, 1, 1]
    assert sampler_queue_limit(0, 1) == 1 and sampler_queue_limit(5, 3) == 2


def test_batch_files_round_trip_and_reject_bad_content(tmp_path):
    arrays = {k: np.ones((2, 3), v) for k, v in rq.BATCH_DTYPES.items()}
    info = rq.BatchInfo(name=rq.batch_name(1, 4), sampled_step=2, sampler_id=1, batch_index=4, seed=9,
                        metrics={"reward": 0.5, "nan": float("nan")})
    rq.write_batch(tmp_path, arrays, info)
    assert rq.list_batches(tmp_path) == ["s001-b00000004"] and rq.pending_count(tmp_path, 1) == 1
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    back = rq.read_info(tmp_path, info.name)
    assert back.sampled_step == 2 and back.metrics == {"reward": 0.5, "nan": None}
    got = rq.read_arrays(tmp_path, info.name, (2, 3))
    assert all(got[k].dtype == v and (got[k] == 1).all() for k, v in rq.BATCH_DTYPES.items())
    with pytest.raises(rq.BadBatch, match="expected int32"):
        rq.read_arrays(tmp_path, info.name, (2, 4))
    # An object array can only be read by unpickling: refused.
    with open(tmp_path / "s002-b00000001.npz", "wb") as f:
        np.savez(f, **{**arrays, "tokens": np.array([{"x": 1}, None], dtype=object)})
    with pytest.raises(rq.BadBatch, match="unreadable arrays"):
        rq.read_arrays(tmp_path, "s002-b00000001", (2, 3))
    (tmp_path / "s002-b00000001.json").write_text('{"sampled_step": -1, "sampler_id": 2, "batch_index": 1, "seed": 0}')
    with pytest.raises(rq.BadBatch, match="'sampled_step' must be an int >= 0"):
        rq.read_info(tmp_path, "s002-b00000001")
    rq.remove_batch(tmp_path, info.name)
    assert rq.list_batches(tmp_path) == ["s002-b00000001"]


def test_batch_queue_on_a_bucket_sees_the_other_processes(tmp_path, monkeypatch):
    """The queue on gs:// (the fake GCS, served to this process): batches written whole and listed complete; what
    another process (here: a second client of the store, with gcsfs's default listing cache) adds or consumes is
    seen at the next look, though this process listed the dir before; and that client, cache on, would not."""
    from tests.fake_gcs.client import FakeGCSFileSystem

    monkeypatch.chdir(tmp_path)
    arrays = {k: np.ones((2, 3), v) for k, v in rq.BATCH_DTYPES.items()}
    with fake_gcs.serving() as gcs:
        queue = f"gs://{fake_gcs.BUCKET}/{tmp_path.name}/rollouts"
        assert rq.list_batches(queue) == [] and rq.pending_count(queue, 0) == 0
        first = rq.write_batch(queue, arrays, _info(rq.batch_name(0, 1), 0))
        assert rq.list_batches(queue) == [first] and rq.pending_count(queue, 0) == 1
        assert rq.read_info(queue, first).sampled_step == 0
        assert (rq.read_arrays(queue, first, (2, 3))["tokens"] == 1).all()
        other = FakeGCSFileSystem(use_listings_cache=True, skip_instance_cache=True)  # gcsfs's default
        other.pipe_file(f"{queue}/{rq.batch_name(1, 1)}.npz", b"x")  # another sampler: arrays, no sidecar yet
        assert rq.list_batches(queue) == [first]
        other.pipe_file(f"{queue}/{rq.batch_name(1, 1)}.json", b"{}")
        assert rq.list_batches(queue) == [first, rq.batch_name(1, 1)] and rq.pending_count(queue, 1) == 1
        assert len(other.ls(queue)) == 4  # the other process's listing, now cached
        rq.remove_batch(queue, first)  # consumed by the learner (this process) ...
        assert rq.list_batches(queue) == [rq.batch_name(1, 1)]
        assert f"{queue[5:]}/{first}.json" in other.ls(queue, detail=False), "the fake must cache as gcsfs does"
        other.rm(f"{queue}/{rq.batch_name(1, 1)}.json")  # ... and by another one
        assert rq.list_batches(queue) == [] and rq.pending_count(queue, 1) == 0
        rq.remove_batch(queue, first)  # gone already: no error
        assert sorted(n.rsplit("/", 1)[1] for n in gcs.names(fake_gcs.BUCKET) if "/rollouts/" in n) == [
            f"{rq.batch_name(1, 1)}.npz"]
    assert list(tmp_path.iterdir()) == [], "a write bypassed the run-dir layer"


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input_is_one_line_exit_2(env, tmp_path):
    # A run dir that belongs to another config: the learner refuses to resume it (the sampler would run).
    os.makedirs(tmp_path / "d" / "checkpoints" / "1")
    (tmp_path / "d" / "config.json").write_text('{"seed": 99}')
    procs = {
        "role": _start(env, "experiments.disaggregated", "--preset=tiny", "--role=trainer", f"--run_dir={tmp_path}/a"),
        "no_role": _start(env, "experiments.disaggregated", "--preset=tiny", f"--run_dir={tmp_path}/b"),
        "no_learner": _start(env, "experiments.disaggregated", "--preset=tiny", "--role=sampler", "--wait_timeout=1",
                             f"--run_dir={tmp_path}/c"),
        "both": _start(env, "experiments.disaggregated", "--preset=tiny", "--role=both", "--wait_timeout=60",
                       f"--run_dir={tmp_path}/d"),
    }
    results = {name: p.communicate(timeout=300) for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 2, (name, results[name][1][-2000:])
    lines = {name: [ln for ln in err.splitlines() if ln.strip()] for name, (_, err) in results.items()}
    assert lines["role"] == [lines["role"][-1]] and "--role='trainer' is not allowed" in lines["role"][-1]
    assert lines["no_role"] == ["python -m experiments.disaggregated: error: --role is required: learner, sampler "
                                "or both"]
    assert lines["no_learner"][-1].startswith("error: sampler 0: no published weights in")
    assert "Traceback" not in results["no_learner"][1]
    # --role=both: the learner fails; the supervisor stops the sampler and names the failed role.
    assert any("belongs to a different config" in ln for ln in lines["both"])
    assert lines["both"][-1] == "error: the learner process exited with code 2; stopped the other roles"
    assert "Traceback" not in results["both"][1]
