"""Mesh planner: choose (data, fsdp, tensor) for a model, batch and slice, and refuse plans that do not fit.

Choice rule: among meshes whose data*fsdp divides the training and sampling batches and whose per-chip estimate
fits in ``usable_fraction`` of a chip's memory, take the smallest ``tensor`` (tensor parallelism talks inside every
layer), then the largest ``fsdp`` (least memory per chip; its all-gathers overlap with compute). Axes the caller fixes
are kept as given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
from jax.sharding import Mesh

from mrt_jax.distributed.memory import GiB, MemoryEstimate, estimate_memory
from mrt_jax.distributed.slices import SLICES, SliceSpec, resolve_slice
from mrt_jax.models import ModelConfig
from mrt_jax.sharding import make_mesh


class PlanError(ValueError):
    """No mesh satisfies the request; the message says by how much and what to change."""


@dataclasses.dataclass(frozen=True)
class MeshPlan:
    slice: SliceSpec
    data: int
    fsdp: int
    tensor: int
    memory: MemoryEstimate
    usable_bytes: int

    @property
    def fits(self) -> bool:
        return self.memory.total <= self.usable_bytes

    @property
    def axes(self) -> tuple[int, int, int]:
        return (self.data, self.fsdp, self.tensor)

    def make_mesh(self, devices: Sequence[jax.Device] | None = None) -> Mesh:
        """The planned mesh over ``devices`` (default: all); TPUs in ICI order (``sharding.device_grid``)."""
        return make_mesh(*self.axes, devices=list(jax.devices() if devices is None else devices))

    def table(self) -> str:
        head = (f"slice {self.slice.name}: mesh data={self.data} fsdp={self.fsdp} tensor={self.tensor}; "
                f"estimate per chip (usable {self.usable_bytes / GiB:.2f} GiB)")
        return head + "\n" + self.memory.table()

    def to_dict(self) -> dict:
        return {"slice": self.slice.name, "data": self.data, "fsdp": self.fsdp, "tensor": self.tensor,
                "usable_bytes": self.usable_bytes, "fits": self.fits, **self.memory.parts(),
                "total": self.memory.total}


def _factorizations(n: int):
    for d in range(1, n + 1):
        if n % d:
            continue
        for f in range(1, n // d + 1):
            if (n // d) % f == 0:
                yield d, f, n // d // f


def candidate_axes(n: int, batch: int, sample_batch: int, data=None, fsdp=None, tensor=None) -> list[tuple]:
    """All (data, fsdp, tensor) with product ``n`` whose batch shards (data*fsdp) divide both batches."""
    for name, v in (("data", data), ("fsdp", fsdp), ("tensor", tensor)):
        if v is not None and (not isinstance(v, int) or v < 1 or n % v):
            raise PlanError(f"mesh axis {name}={v!r} must be a positive divisor of the device count {n}")
    fixed = [v for v in (data, fsdp, tensor) if v is not None]
    if len(fixed) == 3 and data * fsdp * tensor != n:
        raise PlanError(f"mesh data={data} x fsdp={fsdp} x tensor={tensor} = {data * fsdp * tensor}, "
                        f"but the slice has {n} devices; choose axis sizes whose product is {n}")
    out = []
    for d, f, t in _factorizations(n):
        if any(v is not None and v != got for v, got in zip((data, fsdp, tensor), (d, f, t))):
            continue
        if batch % (d * f) or (sample_batch and sample_batch % (d * f)):
            continue
        out.append((d, f, t))
    if not out:
        raise PlanError(
            f"no mesh of {n} devices (fixed axes data={data}, fsdp={fsdp}, tensor={tensor}) shards the batch: "
            f"data*fsdp must divide batch={batch}" + (f" and sample_batch={sample_batch}" if sample_batch else "")
            + f"; use batches that are multiples of {n} (or of {n}/tensor), or fix fewer axes")
    return out


def plan_mesh(
    cfg: ModelConfig,
    slice_: str | SliceSpec,
    *,
    batch: int,
    seq: int,
    sample_batch: int | None = None,
    cache_slots: int | None = None,
    data: int | None = None,
    fsdp: int | None = None,
    tensor: int | None = None,
    remat: bool | None = None,
    master_fp32: bool = False,
    usable_fraction: float = 0.9,
    num_devices: int | None = None,
    suggest: bool = True,
) -> MeshPlan:
    """The mesh plan for training ``batch`` sequences of ``seq`` tokens (and sampling ``sample_batch`` rows with
    ``cache_slots`` KV slots; defaults: ``batch`` and ``seq``) on ``slice_``. Raises PlanError when nothing fits."""
    spec = resolve_slice(slice_, num_devices)
    for name, v in (("batch", batch), ("seq", seq)):
        if not isinstance(v, int) or v < 1:
            raise PlanError(f"{name} must be a positive int, got {v!r}")
    sample_batch = batch if sample_batch is None else sample_batch
    cache_slots = seq if cache_slots is None else cache_slots
    usable = int(spec.memory_per_chip() * usable_fraction)
    kw = dict(batch=batch, seq=seq, sample_batch=sample_batch, cache_slots=cache_slots, remat=remat,
              master_fp32=master_fp32)
    plans = [MeshPlan(spec, d, f, t, estimate_memory(cfg, d, f, t, **kw), usable)
             for d, f, t in candidate_axes(spec.chips, batch, sample_batch, data, fsdp, tensor)]
    fitting = [p for p in plans if p.fits]
    if fitting:
        return min(fitting, key=lambda p: (p.tensor, -p.fsdp, p.memory.total))
    best = min(plans, key=lambda p: p.memory.total)
    raise PlanError(_refusal(cfg, best, kw, usable_fraction, (data, fsdp, tensor), suggest))


def _refusal(cfg, best: MeshPlan, kw: dict, usable_fraction: float, fixed: tuple, suggest: bool) -> str:
    m = best.memory
    parts = sorted(m.parts().items(), key=lambda kv: -kv[1])[:3]
    msg = (f"model does not fit: needs {m.total / GiB:.2f} GiB per chip on {best.slice.name} with the leanest mesh "
           f"(data={best.data}, fsdp={best.fsdp}, tensor={best.tensor}), but {best.usable_bytes / GiB:.2f} GiB are "
           f"usable ({usable_fraction:.0%} of {best.slice.memory_per_chip() / GiB:.1f} GiB): over by "
           f"{(m.total - best.usable_bytes) / GiB:.2f} GiB. Largest parts: "
           + ", ".join(f"{k} {v / GiB:.2f} GiB" for k, v in parts))
    if not suggest:
        return msg
    tries = []
    if any(v is not None for v in fixed):
        tries.append(("let the planner choose the axes (more fsdp)", cfg, dict(kw), best.slice.name, False))
    if not (cfg.remat if kw["remat"] is None else kw["remat"]):
        tries.append(("remat=True", cfg, dict(kw, remat=True), best.slice.name, True))
    if kw["batch"] > 1:
        tries.append((f"batch={kw['batch'] // 2}", cfg, dict(kw, batch=kw["batch"] // 2), best.slice.name, True))
    if cfg.param_dtype == "float32":
        tries.append(("param_dtype='bfloat16'", cfg.replace(param_dtype="bfloat16"), kw, best.slice.name, True))
    bigger = [s for s in SLICES.values() if s.generation == best.slice.generation and s.chips > best.slice.chips]
    for s in sorted(bigger, key=lambda s: s.chips):
        tries.append((f"a bigger slice {s.name}", cfg, kw, s.name, False))
    hints = []
    for label, c, k, name, keep_axes in tries:
        axes = dict(zip(("data", "fsdp", "tensor"), fixed)) if keep_axes else {}
        try:
            p = plan_mesh(c, name, usable_fraction=usable_fraction, suggest=False, **axes, **k)
            hints.append(f"{label} -> {p.memory.total / GiB:.2f} GiB (fits)")
        except PlanError:
            continue
        if label.startswith("a bigger slice"):
            break
    if not hints:  # no single change is enough: remat + bf16 + the largest halved batch, here or on a bigger slice
        c = cfg.replace(param_dtype="bfloat16", dtype="bfloat16")
        for name in [best.slice.name] + [s.name for s in sorted(bigger, key=lambda s: s.chips)]:
            b = kw["batch"]
            while b >= 1 and not hints:
                k = dict(kw, remat=True, batch=b, sample_batch=min(kw["sample_batch"], b) if kw["sample_batch"] else 0)
                try:
                    p = plan_mesh(c, name, usable_fraction=usable_fraction, suggest=False, **k)
                    hints.append(f"remat=True, bfloat16 params and compute, batch={b} on {name} -> "
                                 f"{p.memory.total / GiB:.2f} GiB")
                except PlanError:
                    b //= 2
            if hints:
                break
    return msg + ". " + ("Options that fit: " + "; ".join(hints) if hints else
                         "Nothing fits even with remat, bf16 and batch 1 on the largest slice: use shorter "
                         "sequences")


def sampler_weight_bytes(cfg: ModelConfig) -> int:
    """Bytes of a colocated sampler's weights on one chip without tensor parallelism: the full replica plus its
    per-layer fast-weights copy (everything but the embedding and final norm it shares with the replica; a tied
    output head is that embedding, an untied one is copied like the layers)."""
    from mrt_jax.distributed.memory import _itemsize

    n = cfg.num_params
    shared = cfg.vocab_size * cfg.hidden_size + cfg.hidden_size
    return (2 * n - shared) * _itemsize(cfg.param_dtype)


def learner_shard_bytes(cfg: ModelConfig, chips: int) -> int:
    """What each chip keeps of a learner fsdp over ``chips`` between steps (params and AdamW moments:
    ``estimate_memory``'s persistent part): what lives beside a colocated sampler's weights."""
    return estimate_memory(cfg, 1, chips, 1, batch=0, seq=0).persistent


def sampler_tensor(cfg: ModelConfig, chips: int, chip_bytes: int, *, beside: int = 0,
                   usable_fraction: float = 0.9, sync_copy: bool = False) -> int:
    """The smallest tensor-parallel degree over one host's ``chips`` at which the sampler's weights
    (:func:`sampler_weight_bytes` / t) and ``beside`` (what else a chip holds: the learner's shard, caches) fit
    in ``usable_fraction`` of ``chip_bytes``. It divides ``chips`` and the KV heads (the cache splits by head too).
    ``sync_copy``: count the new replica a weight sync builds while the old one is still held (the peak of a
    colocated job's sync phase in ``--compile_only``). Raises PlanError naming what would fit when even all of the
    host's chips are not enough."""
    from mrt_jax.distributed.memory import _itemsize

    weights, usable = sampler_weight_bytes(cfg), int(chip_bytes * usable_fraction)
    if sync_copy:
        weights += cfg.num_params * _itemsize(cfg.param_dtype)
    options = [t for t in range(1, chips + 1) if chips % t == 0 and cfg.num_kv_heads % t == 0]
    for t in options:
        if -(-weights // t) + beside <= usable:
            return t
    t = options[-1]
    raise PlanError(f"the sampler's weights need {weights / GiB:.2f} GiB per chip unsharded; split over tensor={t} "
                    f"(the most that divides {chips} chips and {cfg.num_kv_heads} KV heads) they need "
                    f"{weights / t / GiB:.2f} GiB + {beside / GiB:.2f} GiB beside, over the {usable / GiB:.2f} GiB "
                    f"usable: use bf16 weights (param_dtype='bfloat16') or a slice with more memory per chip")
