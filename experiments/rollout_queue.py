"""Rollout batches from sampler processes to the learner, through a directory (a local path or a bucket path:
every read, write, listing and delete goes through ``mrt_jax.run_files``).

One batch is two files named ``s<sampler>-b<index>``: ``.npz`` (the learner batch: tokens, loss_mask, old_logp,
advantages, attn_mask) and ``.json`` (the sidecar: sampled_step, sampler_id, batch_index, seed, metrics). Each is
written whole (under a temporary name and renamed locally; one object on a bucket, which has no rename but shows an
object only once its upload completes); the sidecar comes last, so a batch is complete exactly when its sidecar is
listed. Consuming a batch deletes the sidecar first, then the arrays. The queue is found by listing the directory
(one fresh listing per look: on a bucket, a name prefix; ``run_files`` keeps listings uncached).
Files are untrusted input to the learner: arrays load with ``allow_pickle=False`` and are checked for keys, dtypes
and shapes; the sidecar is plain JSON checked field by field. Nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re

import numpy as np

from mrt_jax import run_files

# The learner batch (mrt_jax.trainer.collect): key -> dtype; every array is [N, T].
BATCH_DTYPES = {"tokens": np.int32, "loss_mask": np.float32, "old_logp": np.float32, "advantages": np.float32,
                "attn_mask": np.bool_}
_NAME = re.compile(r"^s(\d{3,})-b(\d{8,})$")


class BadBatch(ValueError):
    """A batch file that is malformed: the learner drops it (counted) and names the file and the reason."""


@dataclasses.dataclass(frozen=True)
class BatchInfo:
    name: str
    sampled_step: int  # the published learner step whose weights sampled this batch
    sampler_id: int
    batch_index: int  # 1-based, per sampler
    seed: int
    metrics: dict  # rollout metrics (str -> float or None)

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "name"}


def batch_name(sampler_id: int, batch_index: int) -> str:
    return f"s{sampler_id:03d}-b{batch_index:08d}"


def write_batch(directory: str | os.PathLike, arrays: dict[str, np.ndarray], info: BatchInfo) -> str:
    """Write one batch (arrays first, sidecar last, each atomically); returns its name."""
    directory = run_files.run_path(directory)  # no mkdir: write_bytes makes the dir locally; a bucket has none
    missing = set(BATCH_DTYPES) - set(arrays)
    if missing:
        raise ValueError(f"write_batch: arrays lack {sorted(missing)}; a batch needs {sorted(BATCH_DTYPES)}")
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(arrays[k], BATCH_DTYPES[k]) for k in BATCH_DTYPES})
    run_files.write_bytes(directory / f"{info.name}.npz", buf.getvalue())
    sidecar = info.to_json()
    # JSON has no NaN: non-finite metrics go as null (the metrics log writes them as null too).
    sidecar["metrics"] = {k: None if v is None or not math.isfinite(v) else float(v) for k, v in info.metrics.items()}
    sidecar_bytes = json.dumps(sidecar, sort_keys=True, allow_nan=False).encode()
    run_files.write_bytes(directory / f"{info.name}.json", sidecar_bytes)
    return info.name


def list_batches(directory: str | os.PathLike) -> list[str]:
    """Names of the complete batches (sidecar present), sorted by name: one listing ([] while there is no dir;
    local temporary names, ``<name>.json.tmp<pid>``, do not count)."""
    return sorted(n[:-5] for n in run_files.listdir(directory) if n.endswith(".json") and _NAME.match(n[:-5]))


def pending_count(directory: str | os.PathLike, sampler_id: int) -> int:
    """Complete batches of one sampler that the learner has not consumed yet (its queue length)."""
    return sum(_NAME.match(n).group(1) == f"{sampler_id:03d}" for n in list_batches(directory))


def _int_field(raw: dict, key: str, where: str, minimum: int) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BadBatch(f"{where}: field {key!r} must be an int >= {minimum}, got {value!r}")
    return value


def read_info(directory: str | os.PathLike, name: str) -> BatchInfo:
    """The sidecar of batch ``name``, validated. Raises BadBatch."""
    path = run_files.run_path(directory, f"{name}.json")
    try:
        raw = json.loads(run_files.read_text(path))
    except (OSError, ValueError) as e:
        raise BadBatch(f"{path}: unreadable sidecar ({e})") from e
    if not isinstance(raw, dict):
        raise BadBatch(f"{path}: sidecar must be a JSON object, got {type(raw).__name__}")
    metrics = raw.get("metrics", {})
    ok_metric = lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
    if not isinstance(metrics, dict) or not all(isinstance(k, str) and ok_metric(v) for k, v in metrics.items()):
        raise BadBatch(f"{path}: field 'metrics' must map names to finite numbers or null")
    return BatchInfo(name=name, sampled_step=_int_field(raw, "sampled_step", str(path), 0),
                     sampler_id=_int_field(raw, "sampler_id", str(path), 0),
                     batch_index=_int_field(raw, "batch_index", str(path), 1),
                     seed=_int_field(raw, "seed", str(path), -(2 ** 63)), metrics=dict(metrics))


def read_arrays(directory: str | os.PathLike, name: str, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """The arrays of batch ``name``; each must be ``shape`` with its dtype in BATCH_DTYPES. Raises BadBatch."""
    path = run_files.run_path(directory, f"{name}.npz")
    try:
        with np.load(io.BytesIO(run_files.read_bytes(path)), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as e:  # ValueError: also an object array that would need pickle
        raise BadBatch(f"{path}: unreadable arrays ({e})") from e
    if set(arrays) != set(BATCH_DTYPES):
        raise BadBatch(f"{path}: arrays {sorted(arrays)}, expected {sorted(BATCH_DTYPES)}")
    for key, dtype in BATCH_DTYPES.items():
        a = arrays[key]
        if a.dtype != dtype or a.shape != tuple(shape):
            raise BadBatch(f"{path}: {key} is {a.dtype}{list(a.shape)}, expected {np.dtype(dtype)}{list(shape)}")
    return arrays


def remove_batch(directory: str | os.PathLike, name: str) -> None:
    """Consume a batch: sidecar first (so it stops counting as complete), then the arrays; either may be gone."""
    for suffix in (".json", ".npz"):
        run_files.remove(run_files.run_path(directory, f"{name}{suffix}"), missing_ok=True)
