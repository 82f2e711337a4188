"""grain pipelines for prompts: seeded shuffle (a new order every epoch), sharding by JAX process, repeat,
batching with optional grouping by length, and an iterator whose state is plain JSON (store it with Orbax
``JsonSave`` next to the training state; ``set_state`` resumes exactly where the stream stopped).

Order of operations (all random access, so any position can be resumed without replay):

    source -> shuffle(seed, per epoch) -> repeat(num_epochs) -> [process_index::process_count] -> map(transform)
           -> batches of ``batch_size`` (per process); with ``length_window=W`` every W consecutive batches are
              formed from their W*batch_size elements sorted by length, in a seeded order of batches.

Sharding after the global shuffle gives every process a disjoint part of each epoch, and interleaving the streams
of the processes element by element gives back the single-process stream.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np

from mrt_jax.data.tasks.base import seeded_rng


@dataclasses.dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    batch_size: int  # per process
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = None  # None repeats forever
    process_index: int | None = None  # None: jax.process_index()
    process_count: int | None = None  # None: jax.process_count()
    length_window: int = 0  # batches per length-grouping window; 0 disables grouping
    drop_remainder: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.length_window < 0 or (self.num_epochs is not None and self.num_epochs < 1):
            raise ValueError(f"PipelineConfig: batch_size={self.batch_size} (>= 1), length_window="
                             f"{self.length_window} (>= 0), num_epochs={self.num_epochs} (None or >= 1)")

    def resolved(self) -> PipelineConfig:
        """The config with process_index/process_count filled from JAX when unset; validated."""
        index, count = self.process_index, self.process_count
        if index is None or count is None:
            import jax

            index = jax.process_index() if index is None else index
            count = jax.process_count() if count is None else count
        if not 0 <= index < count:
            raise ValueError(f"PipelineConfig: process_index={index} must be in [0, process_count={count})")
        return dataclasses.replace(self, process_index=index, process_count=count)


def decode_text(example: dict[str, Any]) -> dict[str, Any]:
    """TFDS text features come back as bytes: decode them to str (top level, so grain workers can pickle it)."""
    if not isinstance(example, dict):
        return example.decode("utf-8") if isinstance(example, bytes) else example
    return {k: v.decode("utf-8") if isinstance(v, bytes) else v for k, v in example.items()}


def default_length(example: Any) -> int:
    """Length used for grouping: ``len(prompt_ids)`` if present, else the length of the prompt/problem text."""
    if isinstance(example, dict):
        for key in ("prompt_ids", "prompt", "problem"):
            if key in example:
                return len(example[key])
    return len(example)


def collate(examples: Sequence[Any]) -> dict[str, Any]:
    """A list of dicts -> dict of per-key lists (numbers become arrays); ``prompt_ids`` are also left-padded
    into ``prompt_tokens_bt`` / ``prompt_mask_bt``."""
    if not isinstance(examples[0], dict):
        return {"examples": list(examples)}
    out: dict[str, Any] = {}
    for key in examples[0]:
        values = [e[key] for e in examples]
        out[key] = np.asarray(values) if isinstance(values[0], (int, float, np.number)) else values
    if "prompt_ids" in out:
        out["prompt_tokens_bt"], out["prompt_mask_bt"] = pad_left(out["prompt_ids"])
    return out


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int = 0, multiple: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad token lists to a common length rounded up to ``multiple``: tokens_bt int32, mask_bt bool."""
    width = max(1, max(len(s) for s in seqs))
    width = -(-width // multiple) * multiple
    tokens_bt = np.full((len(seqs), width), pad_id, np.int32)
    mask_bt = np.zeros((len(seqs), width), bool)
    for b, s in enumerate(seqs):
        if len(s):
            tokens_bt[b, width - len(s):] = s
            mask_bt[b, width - len(s):] = True
    return tokens_bt, mask_bt


class _LengthGroupedBatch:
    """Batch ``i`` of a length-grouped stream (see module docstring); caches the last windows it read."""

    def __init__(self, parent: grain.MapDataset, batch_size: int, window: int, seed: int,
                 length_fn: Callable[[Any], int], batch_fn: Callable[[Sequence[Any]], Any]):
        self.parent, self.batch_size, self.window, self.seed = parent, batch_size, window, seed
        self.length_fn, self.batch_fn = length_fn, batch_fn
        self._cache: dict[int, list[list[Any]]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_cache", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _cache={}, _lock=threading.Lock())

    def _window(self, w: int) -> list[list[Any]]:
        with self._lock:
            if w in self._cache:
                return self._cache[w]
        size = self.window * self.batch_size
        stop = min((w + 1) * size, len(self.parent))
        items = [self.parent[i] for i in range(w * size, stop)]
        order = sorted(range(len(items)), key=lambda i: (self.length_fn(items[i]), i))
        batches = [[items[i] for i in order[k: k + self.batch_size]] for k in range(0, len(order), self.batch_size)]
        seeded_rng("length-window", self.seed, w).shuffle(batches)  # no fixed short-to-long drift within a window
        with self._lock:
            if len(self._cache) > 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[w] = batches
        return batches

    def __call__(self, index: int) -> Any:
        return self.batch_fn(self._window(index // self.window)[index % self.window])


def make_dataset(source: Any, config: PipelineConfig, *, transform: Callable[[Any], Any] | None = decode_text,
                 length_fn: Callable[[Any], int] = default_length,
                 batch_fn: Callable[[Sequence[Any]], Any] = collate) -> grain.MapDataset:
    """A grain MapDataset of batches over a random-access ``source`` (a TFDS data source, a list, ...)."""
    cfg = config.resolved()
    if len(source) == 0:
        raise ValueError("make_dataset: the source is empty")
    ds = grain.MapDataset.source(source)
    if cfg.shuffle:
        ds = ds.shuffle(seed=cfg.seed)
    ds = ds.repeat(cfg.num_epochs)
    ds = ds[cfg.process_index:: cfg.process_count]
    if transform is not None:
        ds = ds.map(transform)
    if not cfg.length_window:
        return ds.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder, batch_fn=batch_fn)
    full, rest = divmod(len(ds), cfg.batch_size)
    num_batches = full if cfg.drop_remainder or not rest else full + 1
    if cfg.drop_remainder:  # the last window must not hold a partial batch
        ds = ds[: num_batches * cfg.batch_size]
    grouped = _LengthGroupedBatch(ds, cfg.batch_size, cfg.length_window, cfg.seed, length_fn, batch_fn)
    return grain.MapDataset.range(num_batches).map(grouped)


class ResumableIterator:
    """Iterator over a batch dataset with JSON state: ``{"next_index": i, "fingerprint": {...}}``.

    ``set_state`` refuses a state saved under a different pipeline (seed, sharding, batch size, ...): resuming it
    would silently reorder the data.
    """

    def __init__(self, dataset: grain.MapDataset, fingerprint: dict[str, Any], *, num_threads: int = 2,
                 prefetch: int = 4):
        # A small read-ahead: grain's default (16 threads, 500 elements) would compute hundreds of batches of an
        # endless stream ahead of the sampler. Threads and prefetch do not change the order, so not in the state.
        self._dataset, self._fingerprint = dataset, dict(fingerprint)
        options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
        self._it = iter(dataset.to_iter_dataset(options))

    def __iter__(self) -> ResumableIterator:
        return self

    def __next__(self) -> Any:
        return next(self._it)

    def get_state(self) -> dict[str, Any]:
        return {"next_index": int(self._it.get_state()["next_index"]), "fingerprint": dict(self._fingerprint)}

    def set_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or not isinstance(state.get("next_index"), int):
            raise ValueError(f"ResumableIterator.set_state: expected {{'next_index': int, 'fingerprint': dict}}, "
                             f"got {state!r}")
        saved = state.get("fingerprint", {})
        diff = {k: (saved.get(k), v) for k, v in self._fingerprint.items() if saved.get(k) != v}
        if diff:
            raise ValueError(f"ResumableIterator.set_state: the saved state belongs to another pipeline; "
                             f"differs in (saved, current): {diff}")
        self._it.set_state({"next_index": state["next_index"]})


def prompt_iterator(source: Any, config: PipelineConfig, *, num_threads: int = 2, prefetch: int = 4,
                    **kwargs: Any) -> ResumableIterator:
    """``make_dataset`` (``kwargs`` go there) wrapped in a ``ResumableIterator`` whose fingerprint is the resolved
    config and the source size."""
    cfg = config.resolved()
    fingerprint = {**dataclasses.asdict(cfg), "source_len": len(source)}
    return ResumableIterator(make_dataset(source, cfg, **kwargs), fingerprint, num_threads=num_threads,
                             prefetch=prefetch)


def tfds_source(name: str, *, data_dir: str, split: str) -> Any:
    """``tfds.data_source(name, data_dir=..., split=...)``: random access over prepared array_record files."""
    import tensorflow_datasets as tfds

    return tfds.data_source(name, data_dir=data_dir, split=split)
