"""Training problems from the user's data: ``--dataset`` / ``--eval_dataset`` of the training job.

A dataset is named by one of:

- a data file (``.jsonl`` / ``.json`` / ``.parquet``) in a published layout (``benchmarks.SPECS``: math500,
  gsm8k, numina, ...), read with ``benchmarks.read_benchmark`` into memory (problem, answer and where only);
- the output of a TFDS builder (``mrt_jax.data.tfds_builders``): its folder (``DATA_DIR/mrt_math_benchmarks/gsm8k``
  or a version folder below it), optionally ``@SPLIT`` (default: ``train`` when there is one, else the only
  split); read with ``tfds_source``, random access from disk: nothing is loaded up front, the way to train on a
  large set;
- a name of a dataset shipped with the package (``BUNDLED``).

Every record is ``{question, answer, where}`` (``where``: the file and row, for errors). Both kinds are streamed by
:class:`PromptStream` through the grain pipeline (``pipeline.prompt_iterator``), whose JSON state goes into the
job's checkpoints: a resumed run reads the same prompts as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from mrt_jax.data.benchmarks import DATA_SUFFIXES, SPECS, DataError, read_benchmark

log = logging.getLogger(__name__)

_HERE = os.path.dirname(os.path.abspath(__file__))
# name -> (file, layout): small datasets shipped in the package (see mrt_jax/data/files/README.md).
BUNDLED: dict[str, tuple[str, str]] = {"easy-math": (os.path.join(_HERE, "files", "easy_math.jsonl"), "math500")}


def resolve_bundled(path: str, dataset_format: str) -> tuple[str, str]:
    """(file, layout) of a bundled dataset name (it brings its own layout); any other path as given."""
    return BUNDLED.get(path, (path, dataset_format))
ON_BAD_ROW = ("raise", "skip")


class _Slice:
    """Rows [start, stop) of a random-access source (a list or a TFDS data source), itself random access."""

    def __init__(self, source: Any, start: int, stop: int):
        self.source, self.start, self.stop = source, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.source[self.start + i]


def _tfds_info(folder: str) -> tuple[str, dict] | None:
    """(the version folder, its dataset_info.json) of a prepared TFDS dataset at or one level below ``folder``."""
    for candidate in [folder, *sorted((os.path.join(folder, d) for d in os.listdir(folder)), reverse=True)]:
        path = os.path.join(candidate, "dataset_info.json")
        if os.path.isfile(path):
            with open(path) as f:
                return candidate, json.load(f)
    return None


class Dataset:
    """A resolved ``--dataset`` value: ``len`` and random access to records ``{question, answer, where}``."""

    def __init__(self, spec: str, *, flag: str = "--dataset", dataset_format: str = "math500",
                 on_bad_row: str = "raise"):
        self.spec, self.flag = spec, flag
        if dataset_format not in SPECS:
            raise DataError(f"--dataset_format={dataset_format!r} is not allowed; choose one of {', '.join(SPECS)}")
        if on_bad_row not in ON_BAD_ROW:
            raise DataError(f"--on_bad_row={on_bad_row!r} is not allowed; choose one of {', '.join(ON_BAD_ROW)}")
        path, _, split = spec.partition("@")
        path, dataset_format = resolve_bundled(path, dataset_format)
        self.report: dict[str, Any] = {}
        if os.path.isdir(path):
            self._open_tfds(path, split)
        elif split:
            raise DataError(f"{flag}={spec!r}: @SPLIT applies to a TFDS dataset folder, and {path!r} is not one")
        elif not path.endswith(DATA_SUFFIXES):
            raise DataError(f"{flag}={spec!r}: unknown format; allowed: a {'/'.join(DATA_SUFFIXES)} file, a TFDS "
                            f"dataset folder or a bundled name ({', '.join(BUNDLED)})")
        elif not os.path.isfile(path):
            raise DataError(f"{flag}={spec!r}: no such file")
        else:
            self._read_file(path, dataset_format, on_bad_row)
        if not len(self):
            raise DataError(f"{flag}={spec!r} yields no problems"
                            + (f" ({self.report['skipped']} bad rows skipped)" if self.report.get("skipped") else ""))

    def _read_file(self, path: str, dataset_format: str, on_bad_row: str) -> None:
        try:
            records, self.report = read_benchmark([path], SPECS[dataset_format], on_bad_row=on_bad_row, where=True)
        except DataError as e:
            raise DataError(f"{self.flag}: {e} (read as --dataset_format={dataset_format}; allowed: "
                            f"{', '.join(SPECS)})") from None
        if self.report.get("skipped"):
            log.warning("%s: skipped %d of %d rows (first: %s)", path, self.report["skipped"], self.report["rows"],
                        self.report["skipped_rows"][0])
        self.source: Any = [{"question": r["problem"], "answer": r["answer"], "where": r["where"]} for r in records]
        self.transform: Callable[[Any], dict] | None = None

    def _open_tfds(self, folder: str, split: str) -> None:
        found = _tfds_info(folder)
        if found is None:
            raise DataError(f"{self.flag}={self.spec!r}: {folder!r} is a folder but not a prepared TFDS dataset (no "
                            f"dataset_info.json in it or in a version folder below it)")
        version_dir, info = found
        splits = [s["name"] for s in info.get("splits", [])]
        split = split or ("train" if "train" in splits or len(splits) != 1 else splits[0])
        if split not in splits:
            raise DataError(f"{self.flag}={self.spec!r}: no split {split!r}; the dataset has {', '.join(splits)} "
                            f"(choose one with @SPLIT)")
        config = info.get("configName")
        up = 3 if config else 2  # DATA_DIR/NAME[/CONFIG]/VERSION
        data_dir = os.path.abspath(os.path.join(version_dir, *[os.pardir] * up))
        name = f"{info['name']}{'/' + config if config else ''}:{info['version']}"
        from mrt_jax.data.pipeline import tfds_source

        self.source = tfds_source(name, data_dir=data_dir, split=split)
        self.where = f"{os.path.normpath(folder)}@{split}"
        self.transform = self._from_tfds

    def _from_tfds(self, example: dict) -> dict:
        from mrt_jax.data.pipeline import decode_text

        row = decode_text(example)
        return {"question": row["problem"], "answer": row["answer"], "where": f"{self.where} id {row['id']!r}"}

    def __len__(self) -> int:
        return len(self.source)

    def record(self, i: int) -> dict:
        row = self.source[i]
        return row if self.transform is None else self.transform(row)

    def split_off(self, n: int) -> tuple[_Slice, list[dict]]:
        """(rows to train on, the last ``n`` rows as held-out records)."""
        if n >= len(self):
            raise DataError(f"{self.flag}={self.spec!r} has {len(self)} problems; holding out --eval_problems={n} "
                            f"for evaluation leaves none to train on; pass --eval_dataset or lower --eval_problems")
        keep = len(self) - n
        return _Slice(self.source, 0, keep), [self.record(i) for i in range(keep, len(self))]

    def head(self, n: int) -> list[dict]:
        return [self.record(i) for i in range(min(n, len(self)))]


def _first(batch: Sequence[Any]) -> Any:
    return batch[0]


class PromptStream:
    """Batches of ``batch_size`` problems from a grain stream of single records (seeded shuffle per epoch, repeated,
    sharded ``process_index::process_count``). ``fits(record)`` -> None or why the record cannot be trained on
    (its prompt exceeds the budget): ``on_bad_row="raise"`` raises DataError naming it, ``"skip"`` draws the next
    record and counts the skip. State (``get_state`` / ``set_state``, plain JSON): the stream position and the
    skips so far."""

    def __init__(self, source: Any, *, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1,
                 transform: Callable[[Any], dict] | None = None, fits: Callable[[dict], str | None] | None = None,
                 on_bad_row: str = "raise"):
        from mrt_jax.data.pipeline import PipelineConfig, prompt_iterator

        self.batch_size, self.fits, self.on_bad_row = batch_size, fits, on_bad_row
        cfg = PipelineConfig(batch_size=1, seed=seed, process_index=process_index, process_count=process_count)
        self._it = prompt_iterator(source, cfg, transform=transform, batch_fn=_first)
        self.skipped = 0  # over the whole run (restored on resume)
        self._taken = 0  # skips already reported by take_skipped

    def next_batch(self) -> dict[str, list]:
        """``{question: [...], answer: [...]}`` of ``batch_size`` problems."""
        out: dict[str, list] = {"question": [], "answer": []}
        misses = 0
        while len(out["question"]) < self.batch_size:
            record = next(self._it)
            why = self.fits(record) if self.fits is not None else None
            if why is not None:
                if self.on_bad_row == "raise":
                    raise DataError(f"{record.get('where', '?')}: {why} (--on_bad_row=skip skips such rows)")
                self.skipped += 1
                misses += 1
                if self.skipped <= 3:
                    log.warning("skipping %s: %s", record.get("where", "?"), why)
                if misses > 1000 and not out["question"]:
                    raise DataError(f"the last {misses} problems drawn were all skipped ({why}); is the prompt "
                                    "budget (--max_prompt_tokens) too small?")
                continue
            out["question"].append(record["question"])
            out["answer"].append(record["answer"])
        return out

    def take_skipped(self) -> int:
        """Rows skipped since the last call (for the step's metrics)."""
        new, self._taken = self.skipped - self._taken, self.skipped
        return new

    def get_state(self) -> dict[str, Any]:
        return {**self._it.get_state(), "skipped": self.skipped}

    def set_state(self, state: dict[str, Any]) -> None:
        self._it.set_state({k: v for k, v in state.items() if k != "skipped"})
        self.skipped = self._taken = int(state.get("skipped", 0))
