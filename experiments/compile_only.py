"""``--compile_only``: lower and compile the training job's own programs for a TPU slice on this host, and print
what one chip holds while the job runs.

Compiled at the job's numerics (``--param_dtype`` / ``--compute_dtype`` / ``--remat``) and on the job's meshes:
- the learner step exactly as the job builds it (``make_train_step``: the same jit, shardings and donation), on
  the job's mesh (data=1, fsdp=all chips, tensor=1; ICI-ordered), for the job's batch;
- the Sampler's prefill and layerwise decode loop (the engine's own jitted functions) on the sampler's mesh (one
  process's chips, rows split over them), for the rollout call and the meta-prover fork of one step.
Besides those programs a chip holds the learner's TrainState shard, the sampler's full weight replica and its
per-layer fast-weights copy; the phases of a step add them up (``phase_memory``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from experiments.job_shapes import JobShapes, job_shapes, sampler_calls
from mrt_jax.distributed.memory import GiB


def per_chip_bytes(tree) -> int:
    """Bytes one chip stores of a pytree of sharded ShapeDtypeStructs (the first device's shards)."""
    total = 0
    for x in jax.tree.leaves(tree):
        shard = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
        total += int(np.prod(shard, dtype=np.int64)) * np.dtype(x.dtype).itemsize
    return total


def _compile(name, lowered_fn) -> dict:
    from mrt_jax.distributed.aot import compiled_stats

    t0 = time.perf_counter()
    compiled = lowered_fn().compile()
    return dataclasses.asdict(compiled_stats(name, compiled, time.perf_counter() - t0))


def _peak(s: dict) -> int:
    return s["argument"] + s["output"] - s["alias"] + s["temp"]


def phase_memory(programs: dict, resident: dict) -> dict[str, dict[str, int]]:
    """Bytes per chip in each phase of a step, by part. A program's peak counts its arguments (so the learner
    step includes the TrainState and batch; a decode includes the fast weights and the cache it carries); what
    the phase keeps alive beside it is added: the sampler's replica and fast weights while learning, the
    TrainState and replica while sampling (plus the rollout cache that a fork reads, and the full cache behind a
    windowed decode), and during the weight sync one extra copy of the larger of replica and fast weights."""
    r = resident
    out = {"learn": {"train step": _peak(programs["train"]), "sampler replica": r["replica"],
                     "fast weights": r["fast_weights"], "reference params": r["reference"]}}
    for call in ("rollout", "fork"):
        if f"{call} decode" not in programs:
            continue
        phase = {"train state": r["train_state"], "sampler replica": r["replica"], "reference params": r["reference"]}
        for prog in ("prefill", "decode"):
            phase[f"{call} {prog}"] = _peak(programs[f"{call} {prog}"])
        # the programs run one after the other: count the larger, and the caches living beside it
        phase[f"{call} program"] = max(phase.pop(f"{call} prefill"), phase.pop(f"{call} decode"))
        phase["caches held"] = r[f"{call} caches held"]
        out[call] = phase
    out["sync"] = {"train state": r["train_state"], "sampler replica": r["replica"],
                   "fast weights": r["fast_weights"], "transient copy": max(r["replica"], r["fast_weights"]),
                   "reference params": r["reference"]}
    return {k: {n: v for n, v in parts.items() if v} for k, parts in out.items()}


def _cache_bytes(cfg_model, shape, shards: int, slots: int) -> int:
    from mrt_jax.models import resolve_dtype

    per_row = 2 * cfg_model.num_layers * cfg_model.num_kv_heads * slots * cfg_model.head_dim
    return shape.rows // shards * per_row * np.dtype(resolve_dtype(cfg_model.dtype)).itemsize


def compile_job(cfg, lcfg, shapes: JobShapes | None = None) -> dict:
    """Compile the job's programs for ``cfg.tpu`` and return the report (a JSON-able dict)."""
    from experiments.job_setup import sampler_mesh_for
    from mrt_jax.distributed import get_slice
    from mrt_jax.distributed.aot import one_host_slice, slice_devices
    from mrt_jax.learner import abstract_train_state, batch_sharding, make_train_step
    from mrt_jax.sampling.programs import abstract_weights, sampler_programs, sampler_shards
    from mrt_jax.sharding import make_mesh

    spec = get_slice(cfg.tpu)
    shapes = job_shapes(cfg) if shapes is None else shapes
    mcfg = shapes.model_cfg
    devices = slice_devices(spec)
    mesh = make_mesh(1, len(devices), 1, devices=devices)  # the job's learner mesh (experiments.mrt_math._mesh)
    # One process's chips, as the job lays them out: rows split over them, the weights whole or split over tensor.
    sampler_mesh, sampler_specs = sampler_mesh_for(cfg, mesh, mcfg)
    tensor = sampler_mesh.shape["tensor"]
    processes = len(devices) // len(sampler_mesh.devices.flat)
    programs: dict[str, dict] = {}

    state = abstract_train_state(mcfg, lcfg, mesh)
    bt = (shapes.train_rows, shapes.train_len)
    dtypes = {"tokens": jnp.int32, "attn_mask": jnp.bool_}
    batch = {k: jax.ShapeDtypeStruct(bt, dtypes.get(k, jnp.float32), sharding=batch_sharding(mesh, bt))
             for k in shapes.batch_keys}
    step = make_train_step(lcfg, mcfg, mesh)
    programs["train"] = _compile("train", lambda: step.lower(state, batch))

    shards = sampler_shards(sampler_mesh)
    calls = sampler_calls(cfg, shapes, processes, shards)
    notes = []

    def compile_sampler(on_mesh):
        for call in calls:
            for prog in sampler_programs(mcfg, on_mesh, call.shape, pad_id=shapes.pad_id, n_stops=shapes.n_stops,
                                         greedy=call.greedy, use_filter=call.use_filter):
                with jax.set_mesh(on_mesh):
                    programs[f"{call.name} {prog.name}"] = _compile(
                        f"{call.name} {prog.name}", lambda p=prog: p.fn.lower(*p.args, **p.kwargs))

    try:
        compile_sampler(sampler_mesh)
    except jax.errors.JaxRuntimeError as e:
        if spec.hosts == 1:
            raise
        # libtpu will not compile for a part of a multi-host v5e slice (v5e-64: "limited ICI routing"; v5e-16: a
        # replica group of device ids it does not expect). One host's chips are a one-host slice of the same
        # shape: compile there (the per-chip bytes are those of the job's sampler mesh).
        host = one_host_slice(spec)
        why = re.sub(r"^.*?RET_CHECK failure \([^)]*\) ", "", str(e).strip().splitlines()[0])[:240]
        sampler_mesh = make_mesh(len(sampler_mesh.devices.flat) // tensor, 1, tensor, devices=slice_devices(host))
        notes.append(f"libtpu refuses to compile for {len(sampler_mesh.devices.flat)} of the {len(devices)} chips of "
                     f"{spec.name} ({why}); the sampler programs were compiled on a one-host {host.name} instead. "
                     f"The job's per-host sampler may meet the same refusal on the real slice: check it there")
        compile_sampler(sampler_mesh)

    # The fast weights share the replica's embedding and final norm (and, tied, the output head); the rest is a copy.
    weights = abstract_weights(mcfg, sampler_mesh)
    fast_own = per_chip_bytes(weights.layers) + (0 if mcfg.tie_word_embeddings else per_chip_bytes(weights.head))
    specs = sampler_specs or {}  # none: a full copy per chip; else each chip holds its tensor shard of every weight
    replica = per_chip_bytes({n: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(
        sampler_mesh, specs.get(n, PartitionSpec()))) for n, x in state.params.items()})
    held = {}
    for i, call in enumerate(calls):
        s = call.shape
        behind = _cache_bytes(mcfg, s, shards, s.slots) if s.window < s.slots else 0  # full cache behind a window
        source = _cache_bytes(mcfg, calls[0].shape, shards, calls[0].shape.slots) if i else 0  # the fork's source
        held[f"{call.name} caches held"] = behind + source
    resident = {"train_state": per_chip_bytes(state), "replica": replica, "fast_weights": fast_own,
                "reference": per_chip_bytes(state.params) if cfg.kl_coef > 0 else 0, **held}
    phases = phase_memory(programs, resident)
    return {"slice": spec.name, "model": cfg.model, "chips": len(devices), "processes": processes,
            "hbm_per_chip": spec.memory_per_chip(), "dtype": {"param": mcfg.param_dtype, "compute": mcfg.dtype},
            "remat": mcfg.remat, "learner_mesh": dict(mesh.shape), "sampler_mesh": dict(sampler_mesh.shape),
            "train_batch": list(bt), "sampler_calls": {c.name: c.shape._asdict() for c in calls},
            "programs": programs, "resident": resident, "phases": phases, "notes": notes,
            "peak": max(sum(p.values()) for p in phases.values())}


def report_table(rep: dict) -> str:
    hbm = rep["hbm_per_chip"]
    lines = [f"{rep['slice']}: {rep['model']} in {rep['dtype']['param']} params / {rep['dtype']['compute']} compute "
             f"(--param_dtype / --compute_dtype), remat={rep['remat']}; learner mesh {rep['learner_mesh']}, "
             f"sampler mesh {rep['sampler_mesh']} on each of {rep['processes']} processes",
             f"learner batch {rep['train_batch'][0]} x {rep['train_batch'][1]}; sampler calls per process: "
             + "; ".join(f"{n} {s['rows']} rows x {s['slots']} slots" for n, s in rep["sampler_calls"].items()), "",
             f"{'program':<16}{'args GiB':>10}{'out GiB':>10}{'alias GiB':>10}{'temp GiB':>10}{'peak GiB':>10}"
             f"{'TFLOP':>9}{'compile s':>10}"]
    for name, s in rep["programs"].items():
        lines.append(f"{name:<16}{s['argument'] / GiB:10.3f}{s['output'] / GiB:10.3f}{s['alias'] / GiB:10.3f}"
                     f"{s['temp'] / GiB:10.3f}{_peak(s) / GiB:10.3f}{s['flops'] / 1e12:9.2f}{s['compile_s']:10.1f}")
    lines += ["", f"per chip, by phase of a step (HBM {hbm / GiB:.1f} GiB):"]
    for phase, parts in rep["phases"].items():
        total = sum(parts.values())
        top = max(parts, key=parts.get)
        lines.append(f"  {phase:<8}{total / GiB:8.2f} GiB  dominated by {top} ({parts[top] / GiB:.2f} GiB); "
                     + ", ".join(f"{k} {v / GiB:.2f}" for k, v in parts.items()))
    lines += [f"note: {n}" for n in rep["notes"]]
    verdict = "fits" if rep["peak"] <= hbm else (
        f"does NOT fit: over by {(rep['peak'] - hbm) / GiB:.2f} GiB; the sampler's weights shrink with "
        f"--param_dtype=bf16 or --sampler_tensor=N (split over N of a host's chips; N divides them and the KV heads)")
    lines.append(f"peak {rep['peak'] / GiB:.2f} GiB per chip: {verdict}")
    return "\n".join(lines)


def run_compile_only(cfg, lcfg) -> int:
    """Print the table, then one JSON line (the learner's length comes from the job's prompts, ``job_shapes``)."""
    rep = compile_job(cfg, lcfg)
    print(report_table(rep))
    print(json.dumps(rep, sort_keys=True))
    return 0
