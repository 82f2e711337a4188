"""Resume safety: config compatibility check, and SIGTERM -> save at the step boundary -> exit code 0."""

import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

from mrt_jax.checkpointing import Checkpointer, ConfigMismatchError, PreemptionGuard, check_config_compatible

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_config_check_lists_every_differing_field():
    stored = {"model": {"preset": "tiny", "dtype": "bf16"}, "rl": {"group": 4, "eps": [0.2, 0.28]}, "steps": 100}
    check_config_compatible(stored, {**stored, "rl": {"group": 4, "eps": (0.2, 0.28)}})  # tuple == JSON list
    new = {"model": {"preset": "smollm2-135m", "dtype": "bf16"}, "rl": {"group": 8, "eps": [0.2, 0.28]},
           "steps": 200, "seed": 1}
    with pytest.raises(ConfigMismatchError) as err:
        check_config_compatible(stored, new, ignore=("steps",))
    msg = str(err.value)
    assert "model.preset: stored='tiny' new='smollm2-135m'" in msg
    assert "rl.group: stored=4 new=8" in msg
    assert "seed: stored='<absent>' new=1" in msg
    assert "steps" not in [f for f, _, _ in err.value.differences]
    assert len(err.value.differences) == 3
    check_config_compatible(stored, new, ignore=("model.*", "rl", "steps", "seed"))


def test_guard_request_and_signal_in_process():
    with PreemptionGuard() as guard:
        assert not guard.should_stop()
        os.kill(os.getpid(), signal.SIGTERM)  # handled: sets the flag, does not kill us
        assert guard.should_stop()
    assert signal.getsignal(signal.SIGTERM) is not guard._handler  # previous handler restored


_TRAIN_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import jax, jax.numpy as jnp
    from mrt_jax.checkpointing import Checkpointer, PreemptionGuard
    ckpt = Checkpointer(sys.argv[1], save_every=1000, keep_last=2)
    state = {"w": jnp.zeros(4), "step": jnp.int32(0), "rng": jax.random.key(0)}
    with PreemptionGuard() as guard:
        for step in range(1, 100000):
            state = {"w": state["w"] + 1, "step": jnp.int32(step), "rng": jax.random.fold_in(state["rng"], step)}
            print("step", step, flush=True)
            if guard.should_stop():
                ckpt.maybe_save(step, state, {"data": {"next": step + 1}}, force=True)
                ckpt.close()
                print("saved", step, flush=True)
                sys.exit(0)
            time.sleep(0.02)
    """
)


def test_sigterm_saves_at_step_boundary_and_exits_zero(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_TRAIN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "ck")], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        for line in proc.stdout:
            if line.startswith("step 3"):
                proc.send_signal(signal.SIGTERM)
                break
        rest = proc.stdout.read()
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = int(rest.strip().splitlines()[-1].split()[1])
    assert saved >= 3
    ckpt = Checkpointer(tmp_path / "ck", save_every=1000)
    target = {"w": jax.ShapeDtypeStruct((4,), jnp.float32), "step": jax.ShapeDtypeStruct((), jnp.int32),
              "rng": jax.ShapeDtypeStruct((), jax.random.key(0).dtype)}
    state, items, step = ckpt.restore(target)
    assert step == saved and items == {"data": {"next": saved + 1}}
    assert int(state["step"]) == saved and float(state["w"][0]) == saved
    ckpt.close()
