"""Disaggregated weight sync with TWO real processes sharing a publish dir (each a single-process JAX program).

The learner publishes steps 1..3 with known params; before each next step it waits for the sampler's
acknowledgement file (so no step is skipped and the recorded steps are deterministic). The sampler restores each
newest complete step onto its own 2-device mesh, checks the params bit for bit and records the step.
"""

import json
import os
import sys
import textwrap

from tests.processes import Child

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_COMMON = textwrap.dedent(
    """
    import json, os, sys, time
    import jax, jax.numpy as jnp, numpy as np

    def known_params(step):
        return {
            "w": jax.random.normal(jax.random.key(step), (64, 32), jnp.float32),
            "b": (jnp.arange(32, dtype=jnp.float32) * step).astype(jnp.bfloat16),
            "count": jnp.int32(step),
        }

    def wait_for(path, timeout=300.0):
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                sys.exit(f"timed out waiting for {path}")
            time.sleep(0.05)
    """
)

_LEARNER = _COMMON + textwrap.dedent(
    """
    from mrt_jax.weight_sync import WeightPublisher
    shared = sys.argv[1]
    pub = WeightPublisher(os.path.join(shared, "publish"), keep=2)
    for step in (1, 2, 3):
        pub.publish(step, known_params(step))
        pub.wait()
        wait_for(os.path.join(shared, f"ack_{step}"))
    pub.close()
    print("learner done", flush=True)
    """
)

_SAMPLER = _COMMON + textwrap.dedent(
    """
    from jax.sharding import NamedSharding, PartitionSpec as P
    from mrt_jax.sharding import make_mesh
    from mrt_jax.weight_sync import WeightSubscriber
    shared = sys.argv[1]
    assert jax.device_count() == 2, jax.devices()
    mesh = make_mesh(1, 1, 2)
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), jax.eval_shape(known_params, 0))
    target["w"] = jax.ShapeDtypeStruct((64, 32), jnp.float32, sharding=NamedSharding(mesh, P(None, "tensor")))
    sub = WeightSubscriber(os.path.join(shared, "publish"), mesh=mesh)
    records, deadline = [], time.monotonic() + 300
    while (not records or records[-1]["step"] < 3) and time.monotonic() < deadline:
        got = sub.poll(target)
        if got is None:
            time.sleep(0.05)
            continue
        params, step = got
        want = known_params(step)
        identical = all(
            np.asarray(params[k]).tobytes() == np.asarray(want[k]).tobytes() and params[k].dtype == want[k].dtype
            for k in want
        )
        records.append({"step": step, "identical": identical, "sub_step": sub.step,
                        "w_devices": len(params["w"].sharding.device_set)})
        open(os.path.join(shared, f"ack_{step}"), "w").close()
    sub.close()
    print(json.dumps(records), flush=True)
    """
)


def test_learner_and_sampler_processes(tmp_path):
    (tmp_path / "learner.py").write_text(_LEARNER)
    (tmp_path / "sampler.py").write_text(_SAMPLER)
    base = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
    learner = Child([sys.executable, str(tmp_path / "learner.py"), str(tmp_path)],
                    env={**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}, log_dir=str(tmp_path))
    sampler = Child([sys.executable, str(tmp_path / "sampler.py"), str(tmp_path)],
                    env={**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, log_dir=str(tmp_path))
    try:
        s_out, s_err = sampler.communicate(timeout=600)
        l_out, l_err = learner.communicate(timeout=120)
    finally:
        for p in (learner, sampler):
            if p.poll() is None:
                p.kill()
    assert sampler.returncode == 0, s_err[-3000:]
    assert learner.returncode == 0, l_err[-3000:]
    assert "learner done" in l_out
    records = json.loads(s_out.strip().splitlines()[-1])
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(r["identical"] for r in records), records
    assert all(r["sub_step"] == r["step"] and r["w_devices"] == 2 for r in records)
