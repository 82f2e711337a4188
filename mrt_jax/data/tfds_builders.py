"""TFDS builders (array_record files, no TensorFlow) for math benchmarks read from ``--manual_dir`` and for the
procedural tasks. Read back with ``tfds.data_source(name, data_dir=..., split=...)`` (see ``pipeline.py``).

    builder = MathBenchmarks(config="gsm8k", data_dir=d, on_bad_row="skip")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=m))
    src = tfds.data_source("mrt_math_benchmarks/gsm8k", data_dir=d, split="test")

Every example: ``id, problem, answer, solution, source`` (text, read back as bytes). The bad-row report of each
split (see ``benchmarks.read_benchmark``) is logged and stored in ``builder.info.metadata["report"]``.
Procedural examples add ``task, difficulty`` and ``trace`` (a worked multi-episode completion, plain format).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from mrt_jax.data.benchmarks import SPECS, DataError, find_files, read_benchmark
from mrt_jax.data.formats import PLAIN
from mrt_jax.data.tasks import get_task

_TEXT_FIELDS = ("id", "problem", "answer", "solution", "source")
log = logging.getLogger(__name__)


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base: array_record files; ``code_path`` given directly because tfds' own lookup imports the
    ``importlib_resources`` backport, which is not installed (and these builders download nothing)."""

    code_path = epath.Path(__file__)

    def __init__(self, **kwargs):
        super().__init__(file_format="array_record", **kwargs)


def _features(extra: dict | None = None) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({**{k: tfds.features.Text() for k in _TEXT_FIELDS}, **(extra or {})})


class MathBenchmarks(_Builder):
    """Math benchmarks from published files; one config per benchmark (``benchmarks.SPECS``)."""

    name = "mrt_math_benchmarks"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n) for n in SPECS]
    MANUAL_DOWNLOAD_INSTRUCTIONS = ("Put the benchmark's published .jsonl/.json/.parquet files in --manual_dir (or "
                                    "in its subfolder named after the config); see mrt_jax/data/benchmarks.py.")

    def __init__(self, *, on_bad_row: str = "raise", **kwargs):
        if on_bad_row not in ("raise", "skip"):
            raise ValueError(f"MathBenchmarks: on_bad_row={on_bad_row!r}; allowed: 'raise', 'skip'")
        self.on_bad_row = on_bad_row
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, description=f"{self.builder_config.name} (from manual_dir)",
                                     features=_features(), metadata=tfds.core.MetadataDict())

    def _split_generators(self, dl_manager):
        spec = SPECS[self.builder_config.name]
        try:
            manual_dir = str(dl_manager.manual_dir)
        except AssertionError as e:  # tfds asserts that the folder exists and is not empty
            where = getattr(dl_manager, "_manual_dir", None)
            raise DataError(f"{spec.name}: manual_dir {str(where)!r} is not a folder or is empty; put the published "
                            f"files there (see mrt_jax/data/benchmarks.py)") from e
        files = find_files(manual_dir, spec)
        # Read everything now so that a bad file fails before any split is written.
        self.info.metadata["report"] = {}
        out = {}
        for split, paths in files.items():
            records, report = read_benchmark(paths, spec, on_bad_row=self.on_bad_row)
            self.info.metadata["report"][split] = report
            if report["skipped"]:
                log.warning("%s/%s: skipped %d of %d rows (first: %s)", spec.name, split, report["skipped"],
                            report["rows"], report["skipped_rows"][0])
            out[split] = self._generate_examples(records, spec.name)
        return out

    def _generate_examples(self, records, source):
        for i, r in enumerate(records):
            yield i, {**r, "source": source}


@dataclasses.dataclass
class ProceduralConfig(tfds.core.BuilderConfig):
    """``task`` (see ``tasks.TASKS``), ``difficulty``, split sizes and ``seed``. Test problems never repeat a
    train question."""

    task: str = "arithmetic"
    difficulty: int = 1
    num_train: int = 2000
    num_test: int = 200
    seed: int = 0
    trace_slip_prob: float = 0.5


class ProceduralTasks(_Builder):
    """Procedural task problems with worked traces; default configs at difficulty 1."""

    name = "mrt_procedural"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [ProceduralConfig(name=t, task=t) for t in ("arithmetic", "linear", "countdown")]

    def _info(self) -> tfds.core.DatasetInfo:
        extra = {"task": tfds.features.Text(), "trace": tfds.features.Text(), "difficulty": np.int32}
        return tfds.core.DatasetInfo(builder=self, description="procedural reasoning tasks", features=_features(extra))

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        task = get_task(cfg.task)
        train = task.problems(cfg.num_train, seed=cfg.seed, difficulty=cfg.difficulty)
        seen = {p.question for p in train}
        test, index = [], 0
        while len(test) < cfg.num_test:
            if index > 100 * cfg.num_test + 1000:
                raise ValueError(f"{cfg.name}: cannot find {cfg.num_test} test problems unlike the train split; "
                                 f"lower num_train or raise difficulty")
            p = task.problem(index, seed=cfg.seed + 1, difficulty=cfg.difficulty)
            index += 1
            if p.question not in seen:
                seen.add(p.question)
                test.append(p)
        return {"train": self._generate_examples(train), "test": self._generate_examples(test)}

    def _generate_examples(self, problems):
        cfg = self.builder_config
        for i, p in enumerate(problems):
            trace = get_task(p.task).trace(p, seed=cfg.seed, slip_prob=cfg.trace_slip_prob)
            yield i, {"id": p.uid, "problem": p.question, "answer": p.answer, "solution": p.solution,
                      "source": p.task, "task": p.task, "difficulty": p.difficulty,
                      "trace": PLAIN.build_completion(trace.episodes, trace.answer)}
