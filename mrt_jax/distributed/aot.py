"""Ahead-of-time compilation for a TPU slice on any host (needs libtpu: ``pip install 'jax[tpu]==0.10.2'``).

``compile_for_slice`` plans the mesh, builds it over the slice's *described* devices
(``jax.experimental.topologies``), lowers and compiles a stand-in training step and the Sampler's decode loop,
and reports XLA's per-chip memory next to the planner's estimate. No TPU is needed; nothing is allocated.

    python -m mrt_jax.distributed.aot --tpu=v5e-64 --model=r1-distill-qwen-1.5b
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jax

from mrt_jax.distributed.memory import GiB
from mrt_jax.distributed.planner import MeshPlan, PlanError, plan_mesh
from mrt_jax.distributed.slices import SliceSpec, get_slice, resolve_slice
from mrt_jax.distributed.steps import StepBuilder, StepShape, default_decode_spec, default_train_spec
from mrt_jax.models import ModelConfig, get_preset


def libtpu_available() -> bool:
    """True when libtpu is installed (it is what describes and compiles for TPU topologies)."""
    import importlib.util

    return importlib.util.find_spec("libtpu") is not None


def slice_devices(spec: SliceSpec) -> list:
    """The slice's devices: described TPU devices from the topology, or this host's devices for cpu/gpu."""
    if spec.platform != "tpu":
        return list(jax.devices())
    if not libtpu_available():
        from mrt_jax.errors import MissingDependencyError

        raise MissingDependencyError(f"compiling for {spec.name} needs libtpu, which is not installed: "
                                     f"pip install 'jax[tpu]=={jax.__version__}'")
    # Compiling never touches a chip, so let several compile-only processes share libtpu's host lock.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies

    topo = topologies.get_topology_desc(
        platform="tpu", topology_name=spec.topology_name, chip_config_name=spec.chip_config_name,
        chips_per_host_bounds=spec.chips_per_host_bounds, num_slices=1)
    if len(topo.devices) != spec.chips:
        raise RuntimeError(f"topology {spec.topology_name} has {len(topo.devices)} devices, preset says {spec.chips}")
    return list(topo.devices)


def one_host_slice(spec: SliceSpec) -> SliceSpec:
    """The single-host slice of ``spec``'s generation with one host's chips (v5e-64 -> v5e-4): where programs
    that run on one host's chips are compiled when libtpu refuses a part of ``spec`` (v5e: "limited ICI
    routing": a device assignment must cover the whole slice)."""
    from mrt_jax.distributed.slices import SLICES

    for s in SLICES.values():
        if s.generation == spec.generation and s.hosts == 1 and s.chips == spec.chips_per_host:
            return s
    raise ValueError(f"no single-host {spec.generation} slice with {spec.chips_per_host} chips among the presets")


@dataclasses.dataclass(frozen=True)
class CompiledStats:
    """XLA's per-chip bytes for one compiled step; peak = arguments + outputs - aliased (donated) + temporaries."""

    name: str
    argument: int
    output: int
    alias: int
    temp: int
    code: int
    flops: float
    compile_s: float

    @property
    def peak(self) -> int:
        return self.argument + self.output - self.alias + self.temp


@dataclasses.dataclass(frozen=True)
class AotReport:
    plan: MeshPlan
    model: str
    shape: StepShape
    steps: tuple[CompiledStats, ...]

    def table(self) -> str:
        m = self.plan.memory
        est = {"train": m.train_peak, "decode": m.sample_step}
        lines = [self.plan.table(), "",
                 f"{'step':<8}{'args GiB':>10}{'out GiB':>10}{'alias GiB':>10}{'temp GiB':>10}{'peak GiB':>10}"
                 f"{'estimate':>10}{'TFLOP':>9}{'compile s':>10}"]
        for s in self.steps:
            e = est.get(s.name)
            lines.append(f"{s.name:<8}{s.argument / GiB:10.3f}{s.output / GiB:10.3f}{s.alias / GiB:10.3f}"
                         f"{s.temp / GiB:10.3f}{s.peak / GiB:10.3f}{'' if e is None else f'{e / GiB:10.3f}':>10}"
                         f"{s.flops / 1e12:9.2f}{s.compile_s:10.1f}")
        return "\n".join(lines)

    def to_json(self) -> str:
        d = {"slice": self.plan.slice.name, "model": self.model, **dataclasses.asdict(self.shape),
             "mesh": {"data": self.plan.data, "fsdp": self.plan.fsdp, "tensor": self.plan.tensor},
             "estimate": {**self.plan.memory.parts(), "train_peak": self.plan.memory.train_peak,
                          "sample_peak": self.plan.memory.sample_peak, "sample_step": self.plan.memory.sample_step},
             "compiled": {s.name: {**dataclasses.asdict(s), "peak": s.peak} for s in self.steps}}
        return json.dumps(d, sort_keys=True)


def compiled_stats(name: str, compiled, seconds: float) -> CompiledStats:
    """XLA's per-chip memory and FLOPs of a compiled program."""
    ma = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
    flops = float((cost or {}).get("flops", 0.0))
    get = lambda k: int(getattr(ma, k, 0) or 0)  # noqa: E731
    return CompiledStats(name, get("argument_size_in_bytes"), get("output_size_in_bytes"),
                         get("alias_size_in_bytes"), get("temp_size_in_bytes"),
                         get("generated_code_size_in_bytes"), flops, seconds)


def compile_for_slice(
    slice_name: str,
    model_cfg: ModelConfig,
    batch: int,
    seq: int,
    *,
    sample_batch: int | None = None,
    cache_slots: int | None = None,
    data: int | None = None,
    fsdp: int | None = None,
    tensor: int | None = None,
    check_fit: bool = True,
    model_name: str = "",
    train_builder: StepBuilder | None = default_train_spec,
    decode_builder: StepBuilder | None = default_decode_spec,
) -> AotReport:
    """Plan, lower and compile the train and decode steps for ``slice_name``; returns XLA's per-chip memory.

    ``train_builder`` / ``decode_builder`` make a StepSpec from ``(cfg, mesh, StepShape)``; pass the real learner's
    and sampler's builders when they exist, or None to skip a step. ``check_fit=False`` compiles plans the
    estimate refuses (to see what XLA says).
    """
    spec = resolve_slice(slice_name)
    devices = slice_devices(spec)
    sample_batch = batch if sample_batch is None else sample_batch
    cache_slots = seq if cache_slots is None else cache_slots
    kw = dict(batch=batch, seq=seq, sample_batch=sample_batch, cache_slots=cache_slots, data=data, fsdp=fsdp,
              tensor=tensor, num_devices=len(devices) if spec.platform != "tpu" else None)
    try:
        plan = plan_mesh(model_cfg, spec, **kw)
    except PlanError:
        if check_fit:
            raise
        plan = plan_mesh(model_cfg, spec, usable_fraction=1e6, **kw)  # same axes rule, fit ignored
    mesh = plan.make_mesh(devices)
    shape = StepShape(batch, seq, sample_batch, cache_slots)
    steps = []
    for builder in (train_builder, decode_builder):
        if builder is None:
            continue
        step = builder(model_cfg, mesh, shape)
        t0 = time.perf_counter()
        with jax.set_mesh(mesh):
            if hasattr(step.fn, "lower"):  # already jitted (the Sampler's engine): lower it as it is
                lowered = step.fn.lower(*step.args, **step.kwargs)
            else:
                lowered = jax.jit(step.fn, donate_argnums=step.donate_argnums).lower(*step.args)
            compiled = lowered.compile()
        steps.append(compiled_stats(step.name, compiled, time.perf_counter() - t0))
    return AotReport(plan, model_name, shape, tuple(steps))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mrt_jax.distributed.aot", description=__doc__.split("\n")[0])
    ap.add_argument("--tpu", required=True, help="slice preset, e.g. v5e-64 (or cpu)")
    ap.add_argument("--model", required=True, help="model preset, e.g. r1-distill-qwen-1.5b")
    ap.add_argument("--batch", type=int, default=0, help="training sequences per step (default: chips)")
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--sample_batch", type=int, default=None)
    ap.add_argument("--cache_slots", type=int, default=None)
    ap.add_argument("--data", type=int, default=None)
    ap.add_argument("--fsdp", type=int, default=None)
    ap.add_argument("--tensor", type=int, default=None)
    ap.add_argument("--dtype", default="bfloat16", help="param and compute dtype")
    ap.add_argument("--remat", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--check_fit", action=argparse.BooleanOptionalAction, default=True)
    a = ap.parse_args(argv)
    try:
        spec = get_slice(a.tpu)
        if spec.platform == "tpu" and "JAX_PLATFORMS" not in os.environ:
            jax.config.update("jax_platforms", "cpu")  # describing a slice needs no accelerator backend
        cfg = get_preset(a.model, param_dtype=a.dtype, dtype=a.dtype, remat=a.remat)
        batch = a.batch or (spec.chips if spec.platform == "tpu" else len(jax.devices()))
        report = compile_for_slice(a.tpu, cfg, batch, a.seq, sample_batch=a.sample_batch, cache_slots=a.cache_slots,
                                   data=a.data, fsdp=a.fsdp, tensor=a.tensor, check_fit=a.check_fit,
                                   model_name=a.model)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table())
    print(report.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
