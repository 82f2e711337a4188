"""Accelerator slice presets: chips, hosts, memory and speed of the machines we plan and compile for.

Naming follows Cloud TPU: for v4 and v5p the ``-N`` suffix counts TensorCores (2 per chip, so ``v5p-16`` is 8 chips);
for v5e and v6e it counts chips (``v5e-64`` is 64 chips). ``cpu`` and ``gpu`` describe the local machine and take
their device count from ``jax.devices()`` at use (see :func:`resolve_slice`).

Figures are the vendor's published per-chip numbers (bf16 dense FLOP/s, HBM capacity and bandwidth).
"""

from __future__ import annotations

import dataclasses
import os

GiB = 1024**3


@dataclasses.dataclass(frozen=True, kw_only=True)
class SliceSpec:
    """One slice shape. ``chips == hosts * chips_per_host``; one JAX device per chip (megacore on v4/v5p)."""

    name: str
    platform: str  # 'tpu' | 'cpu' | 'gpu'
    generation: str  # 'v4' | 'v5e' | 'v5p' | 'v6e' | 'cpu' | 'gpu'
    chips: int
    hosts: int
    hbm_bytes_per_chip: int | None  # None: host RAM shared by the local devices (cpu)
    peak_bf16_flops_per_chip: float
    hbm_bytes_per_s_per_chip: float
    topology: str = ""  # chip grid, e.g. '8x8' or '2x2x2'
    chips_per_host_bounds: tuple[int, int, int] = (1, 1, 1)
    chip_config_name: str = "default"
    accelerator_type: str = ""  # gcloud --accelerator-type
    runtime_version: str = ""  # gcloud TPU VM image

    @property
    def chips_per_host(self) -> int:
        return self.chips // self.hosts

    @property
    def topology_name(self) -> str:
        """What ``jax.experimental.topologies.get_topology_desc(topology_name=...)`` expects, e.g. 'v5e:8x8'."""
        return f"{self.generation}:{self.topology}" if self.platform == "tpu" else ""

    def memory_per_chip(self) -> int:
        """Usable bytes per device; for ``cpu`` the host's RAM divided by its devices."""
        if self.hbm_bytes_per_chip is not None:
            return self.hbm_bytes_per_chip
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return ram // max(self.chips, 1)


# generation -> (HBM bytes, bf16 FLOP/s, HBM bytes/s) per chip, and the TPU VM image to boot.
_CHIP = {
    "v4": (32 * GiB, 275e12, 1.2e12, "tpu-ubuntu2204-base"),
    "v5e": (16 * GiB, 197e12, 0.819e12, "v2-alpha-tpuv5-lite"),
    "v5p": (95 * GiB, 459e12, 2.765e12, "v2-alpha-tpuv5"),
    "v6e": (32 * GiB, 918e12, 1.64e12, "v2-alpha-tpuv6e"),
}


def _tpu(gen: str, suffix: int, topology: str, hosts: int, per_host_bounds=(2, 2, 1)) -> SliceSpec:
    hbm, flops, bw, image = _CHIP[gen]
    chips = suffix // 2 if gen in ("v4", "v5p") else suffix
    acc = f"v5litepod-{suffix}" if gen == "v5e" else f"{gen}-{suffix}"
    return SliceSpec(
        name=f"{gen}-{suffix}", platform="tpu", generation=gen, chips=chips, hosts=hosts, hbm_bytes_per_chip=hbm,
        peak_bf16_flops_per_chip=flops, hbm_bytes_per_s_per_chip=bw, topology=topology,
        chips_per_host_bounds=per_host_bounds, chip_config_name="megacore" if gen == "v4" else "default",
        accelerator_type=acc, runtime_version=image,
    )


_PRESET_LIST = [
    _tpu("v4", 8, "2x2x1", 1), _tpu("v4", 16, "2x2x2", 2), _tpu("v4", 32, "2x2x4", 4),
    _tpu("v5e", 1, "1x1", 1, (1, 1, 1)), _tpu("v5e", 4, "2x2", 1), _tpu("v5e", 8, "2x4", 1, (2, 4, 1)),
    _tpu("v5e", 16, "4x4", 4), _tpu("v5e", 32, "4x8", 8), _tpu("v5e", 64, "8x8", 16),
    _tpu("v5e", 128, "8x16", 32), _tpu("v5e", 256, "16x16", 64),
    _tpu("v5p", 8, "2x2x1", 1), _tpu("v5p", 16, "2x2x2", 2), _tpu("v5p", 32, "2x2x4", 4),
    _tpu("v5p", 64, "2x4x4", 8),
    _tpu("v6e", 8, "2x4", 1, (2, 4, 1)), _tpu("v6e", 16, "4x4", 4), _tpu("v6e", 64, "8x8", 16),
    _tpu("v6e", 256, "16x16", 64),
    # Local machines; ``chips`` is replaced by the local device count in resolve_slice.
    SliceSpec(name="cpu", platform="cpu", generation="cpu", chips=1, hosts=1, hbm_bytes_per_chip=None,
              peak_bf16_flops_per_chip=1e11, hbm_bytes_per_s_per_chip=2e10),
    # One H200-class GPU (the lent device machine: about 139 GiB usable, 4.8 TB/s, ~989 TFLOP/s bf16 dense).
    SliceSpec(name="gpu", platform="gpu", generation="gpu", chips=1, hosts=1, hbm_bytes_per_chip=139 * GiB,
              peak_bf16_flops_per_chip=989e12, hbm_bytes_per_s_per_chip=4.8e12),
]
SLICES: dict[str, SliceSpec] = {s.name: s for s in _PRESET_LIST}


def get_slice(name: str) -> SliceSpec:
    """The preset called ``name`` (e.g. 'v5e-64'); an unknown name raises ValueError listing the allowed ones."""
    if name not in SLICES:
        raise ValueError(f"unknown slice {name!r}; allowed: {', '.join(SLICES)}")
    return SLICES[name]


def resolve_slice(name_or_spec: str | SliceSpec, num_devices: int | None = None) -> SliceSpec:
    """A preset with ``chips`` set to the local device count for ``cpu``/``gpu`` (``num_devices`` or jax.devices())."""
    spec = get_slice(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    if spec.platform == "tpu":
        if num_devices is not None and num_devices != spec.chips:
            raise ValueError(f"slice {spec.name} has {spec.chips} chips, but num_devices={num_devices} was given")
        return spec
    if num_devices is None:
        import jax

        num_devices = len(jax.devices())
    return dataclasses.replace(spec, chips=num_devices)
