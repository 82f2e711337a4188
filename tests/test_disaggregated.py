"""The disaggregated job (experiments.disaggregated): learner and sampler as two real OS processes that talk only
through the run dir; equality with the colocated job at max_staleness=0; a stale batch dropped and counted; the
batch files' checks; bad input.

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


def _rows(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _fingerprints(run_dir, step):
    with open(os.path.join(run_dir, "checkpoints", str(step), "meta", "metadata")) as f:
        return json.load(f)["fingerprints"]


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
    run_dir = two_processes["run_dir"]
    assert two_processes["learner"][0] == 0
    ours, theirs = _rows(run_dir), _rows(colocated)
    assert [r["step"] for r in theirs] == [1, 2, 3]
    assert all(r["grad_norm"] > 0 for r in theirs)  # the weights really change between steps
    for a, b in zip(ours, theirs):
        common = [k for k in b if k in a and k not in ("wall", "compiles") and not k.startswith("time/")]
        assert len(common) > 20
        assert {k: a[k] for k in common} == {k: b[k] for k in common}
    for step in (2, 3):  # the checkpoints kept (keep_last=2)
        assert _fingerprints(run_dir, step) == _fingerprints(colocated, step)
    for name in ("eval_before.json", "eval_step3.json"):
        assert json.loads((run_dir / name).read_text()) == json.loads((colocated / name).read_text())


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
