"""Named random streams (mrt_jax.random_streams): every draw of a run has a key of its own."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from mrt_jax.random_streams import STREAMS, as_key, offset, stream_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(key) -> tuple[int, ...]:
    return tuple(int(x) for x in jax.random.key_data(key))


def test_streams_steps_samplers_and_rounds_never_share_a_key():
    keys = [_data(stream_key(0, s, step, sampler, round_)) for s in STREAMS for step in range(40)
            for sampler in range(3) for round_ in range(2)]
    assert len(set(keys)) == len(keys)
    # a function of the names and indices only: a resumed run (or another machine) draws the same keys. Pinned
    # (jax's default threefry PRNG): renumbering STREAMS or changing the folding would change every run's draws.
    assert _data(stream_key(0, "fork", 7, 1, 0)) == (2737731592, 4279963270)
    assert _data(stream_key(0, "fork", 7)) != _data(stream_key(1, "fork", 7))


def test_a_substream_is_not_the_key_of_any_row():
    base = stream_key(3, "eval", 5)
    sub = _data(offset(base, 1))
    assert sub not in {_data(jax.random.fold_in(base, r)) for r in range(4096)}
    assert offset(5, 1) == 6  # int seeds keep their historical meaning
    assert _data(as_key(base)) == _data(base)


def test_unknown_stream_is_refused():
    with pytest.raises(ValueError, match="unknown random stream 'train'"):
        stream_key(0, "train", 1)


def test_no_two_draws_of_a_run_share_a_key(tmp_path):
    """A tiny MRT run whose evaluation samples too: every sampled row of every rollout, meta-prover fork and
    evaluation (before, after each step) gets a key no other row of the run has. (Before named streams, the fork of
    step t drew with the seed of step t+1's rollouts, and the evaluation with that of step 7.)"""
    out = tmp_path / "draws.json"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", MRT_JAX_CACHE=str(tmp_path / "cache"))
    flags = ["--preset=tiny", "--steps=3", "--eval_every=1", "--eval_temperature=1.0", "--eval_samples=2",
             "--eval_problems=2", f"--run_dir={tmp_path / 'run'}"]
    proc = subprocess.run([sys.executable, "-m", "tests.key_recorder", str(out), *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    draws = json.loads(out.read_text())["draws"]
    # 3 steps x (4 rollout rows + forks) + 4 evaluations x (4 traces + their forced answers)
    assert len(draws) > 3 * 4 + 4 * 4
    keys = [tuple(d) for d in draws]
    dup = len(keys) - len(set(keys))
    assert dup == 0, f"{dup} of {len(keys)} sampled rows reuse another row's key"
    assert np.asarray(draws).shape[1] == 2
