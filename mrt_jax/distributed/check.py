"""Multi-host smoke check: every process runs a sharded tiny-Decoder forward over one global mesh.

Run it on all workers of a slice (``gcloud ... ssh --worker=all --command='python -m mrt_jax.distributed.check'``)
or as N local CPU processes with ``--coordinator=127.0.0.1:PORT --num_processes=N --process_id=i``. Process 0
prints one JSON line (and writes the gathered logits to ``--out`` if given); the result must not depend on how
the devices are split into processes.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def run(tensor: int = 2, batch: int = 8, seq: int = 16, out: str | None = None) -> dict:
    import jax
    from flax import nnx
    from jax.experimental import multihost_utils

    from mrt_jax.distributed.multihost import global_array_from_local, is_main_process, local_rows
    from mrt_jax.models import create_model, get_preset
    from mrt_jax.sharding import make_mesh, named_sharding

    n = jax.device_count()
    if n % tensor:
        raise ValueError(f"--tensor={tensor} must divide the global device count {n}")
    mesh = make_mesh(1, n // tensor, tensor)  # jax.devices() is ordered by process, so rows stay contiguous
    cfg = get_preset("tiny")
    model = create_model(cfg, mesh, seed=0)
    graphdef, state = nnx.split(model)
    tokens_bt = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, seq), dtype=np.int32)
    sharding = named_sharding(mesh, ("batch", "seq"), tokens_bt.shape)
    start, stop = local_rows(sharding, tokens_bt.shape)
    tokens = global_array_from_local(tokens_bt[start:stop], sharding, tokens_bt.shape)

    @jax.jit
    def forward(state, tokens):
        logits = nnx.merge(graphdef, state)(tokens)
        return logits, logits.sum()  # the sum is a cross-process reduction

    with jax.set_mesh(mesh):
        logits, total = forward(state, tokens)
    full = np.asarray(multihost_utils.process_allgather(logits, tiled=True))
    result = {"processes": jax.process_count(), "devices": n, "local_rows": [start, stop],
              "logits_sum": float(total), "gathered_sum": float(full.astype(np.float64).sum())}
    if out and is_main_process():
        np.save(out, full)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mrt_jax.distributed.check", description=__doc__.split("\n")[0])
    ap.add_argument("--coordinator", default=None, help="host:port of process 0 (omit on TPU VMs)")
    ap.add_argument("--num_processes", type=int, default=None)
    ap.add_argument("--process_id", type=int, default=None)
    ap.add_argument("--tensor", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the gathered logits here (.npy, process 0)")
    a = ap.parse_args(argv)
    from mrt_jax.distributed.multihost import init_distributed, is_main_process

    try:
        init_distributed(a.coordinator, a.num_processes, a.process_id)
        result = run(tensor=a.tensor, out=a.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if is_main_process():
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
