"""Adapter over reasoning-gym datasets (offline generators with their own scorers) as a ``ProceduralTask``.

Answer key ``rg:<dataset>:<seed>:<size>:<index>`` identifies the generated entry, which ``verify`` regenerates
(deterministic by seed) to call the dataset's ``score_answer`` on the response's extracted final answer.
Difficulty is not mapped (reasoning-gym configs differ per dataset); worked traces are not available.
"""

from __future__ import annotations

import functools
import random
from typing import Any

from mrt_jax.data.answers import extract_answer
from mrt_jax.data.tasks.base import Problem, ProceduralTask, Trace

GYM_SIZE = 10_000  # entries per (dataset, seed); problem index i uses entry i % GYM_SIZE


@functools.lru_cache(maxsize=16)
def _dataset(name: str, seed: int, size: int) -> Any:
    import reasoning_gym  # imported lazily: a few seconds

    return reasoning_gym.create_dataset(name, size=size, seed=seed)


class GymTask(ProceduralTask):
    """``GymTask("basic_arithmetic")``; registered as ``gym:<name>``."""

    max_difficulty = 1

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.name = f"gym:{dataset}"

    def problem(self, index: int, *, seed: int = 0, difficulty: int = 1) -> Problem:
        if difficulty != 1 or index < 0:
            raise ValueError(f"task {self.name!r}: index={index} (>= 0), difficulty={difficulty} (only 1)")
        entry = _dataset(self.dataset, seed, GYM_SIZE)[index % GYM_SIZE]
        key = f"rg:{self.dataset}:{seed}:{GYM_SIZE}:{index % GYM_SIZE}"
        return Problem(self.name, f"{self.name}-s{seed}-{index}", entry["question"], key, str(entry["answer"]), 1)

    def verify(self, response: str, answer: str) -> float:
        parts = answer.split(":")
        if len(parts) != 5 or parts[0] != "rg" or not all(p.isdigit() for p in parts[2:]):
            raise ValueError(f"reasoning-gym answer key {answer!r}; expected 'rg:<dataset>:<seed>:<size>:<index>'")
        data = _dataset(parts[1], int(parts[2]), int(parts[3]))
        extracted = extract_answer(response)
        return 0.0 if extracted is None else float(data.score_answer(extracted, data[int(parts[4])]) >= 1.0)

    def trace(self, problem: Problem, **kwargs: Any) -> Trace:
        raise NotImplementedError(f"{self.name}: reasoning-gym tasks have no worked traces")

    def _generate(self, rng: random.Random, difficulty: int) -> tuple[str, str, str]:
        raise NotImplementedError

    def _attempts(self, problem: Problem, rng: random.Random, slip_prob: float,
                  max_attempts: int) -> tuple[list[str], str, int]:
        raise NotImplementedError
