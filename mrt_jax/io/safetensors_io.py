"""Read and write Hugging Face safetensors weights: one ``model.safetensors`` or shards + ``*.index.json``.

Reading is per tensor (``safe_open`` memory-maps the file), so only the tensor being converted is in host memory.
Pickle-based ``pytorch_model.bin`` files are refused: they can run code when loaded.
"""

from __future__ import annotations

import json
import math
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from mrt_jax.errors import CheckpointError
from mrt_jax.io.layout import expected_hf_tensors, hf_layout
from mrt_jax.models import Decoder, resolve_dtype

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3


def _open(path: str):
    try:
        return safe_open(path, framework="numpy")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e


class SafetensorsSource:
    """A :class:`~mrt_jax.io.assemble.TensorSource` over a folder's safetensors file(s)."""

    def __init__(self, folder: str):
        self.description = folder
        single, index = os.path.join(folder, SINGLE_FILE), os.path.join(folder, INDEX_FILE)
        if os.path.isfile(index):
            try:
                with open(index, encoding="utf-8") as f:
                    weight_map = json.load(f)["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
                raise CheckpointError(f"{index}: not a valid safetensors index (needs a 'weight_map'): {e}") from e
            files = {n: os.path.join(folder, fn) for n, fn in weight_map.items()}
        elif os.path.isfile(single):
            files = None
        else:
            found = sorted(os.listdir(folder))
            hint = " (pickle .bin weights are not loaded: convert them to safetensors)" if any(
                f.endswith(".bin") for f in found) else ""
            raise FileNotFoundError(f"{folder}: neither {SINGLE_FILE} nor {INDEX_FILE} found; files: {found}{hint}")
        self._handles = {}
        if files is None:
            handle = self._handle(single)
            files = {n: single for n in handle.keys()}
        for path in sorted(set(files.values())):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{index}: lists shard {path}, which does not exist")
            keys = set(self._handle(path).keys())
            absent = [n for n, p in files.items() if p == path and n not in keys]
            if absent:
                raise CheckpointError(f"{path}: the index maps {absent[:5]} to this file, but it does not hold them")
        self._files = files

    def _handle(self, path: str):
        if path not in self._handles:
            self._handles[path] = _open(path)
        return self._handles[path]

    def names(self) -> set[str]:
        return set(self._files)

    def where(self, name: str) -> str:
        return self._files[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handle(self._files[name]).get_slice(name).get_shape())

    def get(self, name: str) -> np.ndarray:
        try:
            return self._handle(self._files[name]).get_tensor(name)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{self._files[name]}: cannot read tensor {name!r} ({e})") from e


def _to_host(x: jax.Array) -> np.ndarray:
    if not x.is_fully_addressable:  # multi-process: every process takes part in the gather
        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))


def save_safetensors(model: Decoder, out_dir: str, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> list[str]:
    """Write ``model``'s weights in HF layout; shards of at most ``max_shard_bytes`` (plus an index) if needed.

    Host memory holds one shard at a time. Every process must call this; process 0 writes. Returns file names.
    """
    cfg = model.cfg
    layout = hf_layout(cfg)
    itemsize = np.dtype(resolve_dtype(cfg.param_dtype)).itemsize
    owner = {}  # hf name -> (our name, layer or None)
    for pname, tmap in layout.items():
        for i, n in enumerate(tmap.names(cfg.num_layers)):
            owner[n] = (pname, i if tmap.per_layer else None)
    shards: list[list[str]] = [[]]
    size = 0
    for name, shape in expected_hf_tensors(cfg).items():
        nbytes = math.prod(shape) * itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    n = len(shards)
    fnames = [SINGLE_FILE] if n == 1 else [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
    writer = jax.process_index() == 0
    if writer:
        os.makedirs(out_dir, exist_ok=True)
    for fname, names in zip(fnames, shards):
        tensors = {}
        for name in names:
            pname, i = owner[name]
            arr = getattr(model, pname)[...]
            host = _to_host(arr if i is None else arr[i])
            tensors[name] = np.ascontiguousarray(layout[pname].to_hf(host))
        if writer:
            save_file(tensors, os.path.join(out_dir, fname), metadata={"format": "pt"})
        del tensors
    if writer and n > 1:
        total = sum(math.prod(s) for s in expected_hf_tensors(cfg).values()) * itemsize
        weight_map = {name: f for f, names in zip(fnames, shards) for name in names}
        with open(os.path.join(out_dir, INDEX_FILE), "w", encoding="utf-8") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return fnames
