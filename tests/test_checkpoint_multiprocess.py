"""Checkpointer and PreemptionGuard across TWO real JAX processes (gloo CPU collectives, 2 fake devices each).

Saves a state sharded over all 4 devices, breaks the newest step, restores onto another mesh (both processes fall
back to the same earlier step and quarantine the broken one together, even when one of them comes to the restore
late: a race CI once hit), and checks that a stop requested on
process 1 alone stops both.
"""

import json
import os
import socket
import sys
import textwrap

from tests.processes import Child, finish_all

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    pid, port, shared = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    import jax.numpy as jnp, numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding, PartitionSpec as P
    from mrt_jax.checkpointing import Checkpointer, PreemptionGuard
    from mrt_jax.sharding import make_mesh

    def global_w(step):
        return (np.arange(8 * 16, dtype=np.float32).reshape(8, 16) + 1000 * step)

    def state(step, mesh):
        sh = NamedSharding(mesh, P("fsdp", None))
        w = jax.make_array_from_callback((8, 16), sh, lambda idx: global_w(step)[idx])
        return {"w": w, "rng": jax.random.key(step)}

    mesh_a = make_mesh(1, 4, 1)
    ckpt = Checkpointer(os.path.join(shared, "ck"), save_every=1, keep_last=3)
    for step in (1, 2):
        ckpt.maybe_save(step, state(step, mesh_a), {"data": step}, metrics={"eval_accuracy": step / 10})
    ckpt.close()
    multihost_utils.sync_global_devices("saved")
    if pid == 0:
        os.remove(os.path.join(shared, "ck", "2", "_CHECKPOINT_METADATA"))
    multihost_utils.sync_global_devices("broken")

    mesh_b = make_mesh(2, 1, 2)
    sh_b = NamedSharding(mesh_b, P("data", "tensor"))
    target = {"w": jax.ShapeDtypeStruct((8, 16), jnp.float32, sharding=sh_b),
              "rng": jax.eval_shape(lambda: jax.random.key(0))}
    reader = Checkpointer(os.path.join(shared, "ck"), save_every=1)
    if pid == 1:  # lag behind: process 0 must not quarantine step 2 before this process has seen it
        time.sleep(3)
    restored, items, step = reader.restore(target)
    shards = restored["w"].addressable_shards
    local_ok = all(np.array_equal(np.asarray(s.data), global_w(step)[s.index]) for s in shards)
    steps_after = reader.all_steps()
    reader.close()

    with PreemptionGuard() as guard:
        first = guard.should_stop()
        if pid == 1:
            guard.request()
        second = guard.should_stop()
    print(json.dumps({"step": step, "items": items, "local_ok": local_ok, "steps_after": steps_after,
                      "n_local": len(restored["w"].addressable_shards), "stop": [first, second]}), flush=True)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_save_fall_back_restore_and_agree_to_stop(tmp_path):
    (tmp_path / "worker.py").write_text(_WORKER)
    port = str(_free_port())
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    procs = [Child([sys.executable, str(tmp_path / "worker.py"), str(pid), port, str(tmp_path)], env=env,
                   log_dir=str(tmp_path)) for pid in (0, 1)]
    outs = finish_all(procs, timeout=600)
    for p in procs:
        assert p.returncode == 0, "\n---\n".join(e[-2500:] for _, e in outs)
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    for r in results:
        assert r["step"] == 1 and r["items"] == {"data": 1}
        assert r["local_ok"] and r["n_local"] == 2
        assert r["steps_after"] == [1]
        assert r["stop"] == [False, True]
