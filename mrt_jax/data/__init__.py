"""Data: procedural reasoning tasks with exact verifiers and worked traces, prompt formats, a cached sentencepiece
tokenizer, readers and TFDS builders for math benchmarks, and resumable grain prompt pipelines.

TFDS builders live in ``mrt_jax.data.tfds_builders`` (imported on demand: it imports tensorflow_datasets).
"""

from mrt_jax.data.answers import extract_answer, last_boxed, parse_rational, rational_match
from mrt_jax.data.benchmarks import SPECS, BenchmarkSpec, DataError, find_files, read_benchmark
from mrt_jax.data.formats import FORMATS, MRT_REFERENCE_SUFFIX, PLAIN, R1, PromptFormat, chat_format, get_format
from mrt_jax.data.pipeline import (
                                   PipelineConfig,
                                   ResumableIterator,
                                   collate,
                                   decode_text,
                                   make_dataset,
                                   pad_left,
                                   prompt_iterator,
                                   tfds_source,
)
from mrt_jax.data.sft import corpus, sft_example, sft_examples
from mrt_jax.data.spm import SpmSettings, cached_spm, load_spm, train_spm
from mrt_jax.data.tasks import TASKS, Problem, ProceduralTask, Trace, get_task, verify

__all__ = [
    "BenchmarkSpec", "DataError", "FORMATS", "MRT_REFERENCE_SUFFIX", "PLAIN", "PipelineConfig", "Problem",
    "ProceduralTask", "PromptFormat", "R1", "ResumableIterator", "SPECS", "SpmSettings", "TASKS", "Trace",
    "cached_spm", "chat_format", "collate", "corpus", "decode_text", "extract_answer", "find_files", "get_format",
    "get_task", "last_boxed", "load_spm", "make_dataset", "pad_left", "parse_rational", "prompt_iterator",
    "rational_match", "read_benchmark", "sft_example", "sft_examples", "tfds_source", "train_spm", "verify",
]
