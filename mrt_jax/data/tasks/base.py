"""Procedural reasoning tasks: problems deterministic by (task, seed, index, difficulty), exact verifiers, and
worked multi-episode traces (attempt, check, "Wait", retry, answer) for an SFT warm start.

A trace is a list of episodes separated by blank lines; every episode after the first starts with a continuation cue
("Wait, ..."), which is exactly where MRT's episode segmentation splits a trace. Attempts fail their check with
probability ``slip_prob`` (the last attempt never does), so the forced answer after episode j is wrong before the
first passing check and right after it: episodes carry real progress.
"""

from __future__ import annotations

import abc
import dataclasses
import random
from collections.abc import Sequence
from typing import ClassVar


@dataclasses.dataclass(frozen=True)
class Problem:
    """One task instance. ``answer`` is the verification key passed to ``verify``; ``solution`` is a gold final
    answer (what a correct response puts in ``\\boxed{}``). For numeric tasks the two are equal."""

    task: str
    uid: str
    question: str
    answer: str
    solution: str
    difficulty: int

    def to_record(self) -> dict[str, str | int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Trace:
    """A worked trace: ``episodes`` (paragraphs, retries start with a cue) and the final answer text."""

    episodes: tuple[str, ...]
    answer: str
    num_failed_checks: int

    def text(self) -> str:
        return "\n\n".join(self.episodes)


def seeded_rng(*parts: object) -> random.Random:
    """A Random seeded from the text of ``parts`` (str seeds hash with SHA-512: stable across processes/runs)."""
    return random.Random(":".join(str(p) for p in parts))


class ProceduralTask(abc.ABC):
    """Base class; subclasses implement ``_generate``, ``verify`` and ``_attempts``."""

    name: ClassVar[str]
    min_difficulty: ClassVar[int] = 1
    max_difficulty: ClassVar[int] = 6

    def problem(self, index: int, *, seed: int = 0, difficulty: int = 1) -> Problem:
        """Problem number ``index`` of the stream (task, seed, difficulty); the same arguments give the same problem."""
        if not self.min_difficulty <= difficulty <= self.max_difficulty:
            raise ValueError(f"task {self.name!r}: difficulty={difficulty!r}; "
                             f"allowed {self.min_difficulty}..{self.max_difficulty}")
        if index < 0:
            raise ValueError(f"task {self.name!r}: index={index!r}; must be >= 0")
        rng = seeded_rng(self.name, seed, difficulty, index)
        question, answer, solution = self._generate(rng, difficulty)
        uid = f"{self.name}-d{difficulty}-s{seed}-{index}"
        return Problem(self.name, uid, question, answer, solution, difficulty)

    def problems(self, count: int, *, seed: int = 0, difficulty: int = 1, start: int = 0) -> list[Problem]:
        return [self.problem(i, seed=seed, difficulty=difficulty) for i in range(start, start + count)]

    def trace(self, problem: Problem, *, seed: int = 0, slip_prob: float = 0.5, max_attempts: int = 3,
              cues: Sequence[str] = ("Wait",)) -> Trace:
        """A worked trace for ``problem``: up to ``max_attempts`` attempts, each failing its check with probability
        ``slip_prob`` except the last; retries start with a cue drawn from ``cues``."""
        if max_attempts < 1 or not 0.0 <= slip_prob <= 1.0 or not cues:
            raise ValueError(f"trace: max_attempts={max_attempts} (>= 1), slip_prob={slip_prob} (in [0, 1]), "
                             f"cues={list(cues)} (non-empty) required")
        rng = seeded_rng("trace", problem.uid, seed)
        bodies, final, failed = self._attempts(problem, rng, slip_prob, max_attempts)
        episodes = [bodies[0][0].upper() + bodies[0][1:]]
        episodes += [f"{rng.choice(list(cues))}, {b[0].lower()}{b[1:]}" for b in bodies[1:]]
        return Trace(tuple(episodes), final, failed)

    @abc.abstractmethod
    def _generate(self, rng: random.Random, difficulty: int) -> tuple[str, str, str]:
        """(question, answer key, gold solution)."""

    @abc.abstractmethod
    def verify(self, response: str, answer: str) -> float:
        """1.0 if ``response``'s final answer is correct for the answer key ``answer``, else 0.0."""

    @abc.abstractmethod
    def _attempts(self, problem: Problem, rng: random.Random, slip_prob: float,
                  max_attempts: int) -> tuple[list[str], str, int]:
        """(episode bodies without cues, final answer text, number of failed checks)."""
