"""Worked multi-episode SFT examples from procedural tasks, in a prompt format (warm start before RL)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from mrt_jax.data.formats import PLAIN, PromptFormat
from mrt_jax.data.tasks import Problem, get_task


def sft_example(problem: Problem, fmt: PromptFormat = PLAIN, *, seed: int = 0, slip_prob: float = 0.5,
                max_attempts: int = 3) -> dict[str, str | int]:
    """``{"prompt", "completion", "answer", "task", "uid", "num_failed_checks"}`` for one problem."""
    task = get_task(problem.task)
    trace = task.trace(problem, seed=seed, slip_prob=slip_prob, max_attempts=max_attempts,
                       cues=fmt.continuation_cues)
    return {"prompt": fmt.build_prompt(problem.question), "completion": fmt.build_completion(trace.episodes,
            trace.answer), "answer": problem.answer, "task": problem.task, "uid": problem.uid,
            "num_failed_checks": trace.num_failed_checks}


def sft_examples(tasks: Sequence[str], count_per_task: int, *, seed: int = 0, difficulties: Sequence[int] = (1, 2),
                 fmt: PromptFormat = PLAIN, slip_prob: float = 0.5) -> Iterator[dict[str, str | int]]:
    """Examples for every (task, difficulty), ``count_per_task`` each, interleaved round-robin."""
    for i in range(count_per_task):
        for name in tasks:
            for d in difficulties:
                problem = get_task(name).problem(i, seed=seed, difficulty=d)
                yield sft_example(problem, fmt, seed=seed, slip_prob=slip_prob)


def corpus(tasks: Sequence[str], count_per_task: int, *, seed: int = 0, difficulties: Sequence[int] = (1, 2),
           fmt: PromptFormat = PLAIN) -> list[str]:
    """Texts ``prompt + completion`` for tokenizer training."""
    return [str(e["prompt"]) + str(e["completion"])
            for e in sft_examples(tasks, count_per_task, seed=seed, difficulties=difficulties, fmt=fmt)]
