"""Procedural tasks by name: ``get_task("countdown").problem(i, seed=0, difficulty=2)``; ``gym:<name>`` wraps a
reasoning-gym dataset."""

from __future__ import annotations

from mrt_jax.data.tasks.arithmetic import Arithmetic
from mrt_jax.data.tasks.base import Problem, ProceduralTask, Trace, seeded_rng
from mrt_jax.data.tasks.countdown import Countdown
from mrt_jax.data.tasks.gym import GymTask
from mrt_jax.data.tasks.linear import LinearEquation

TASKS: dict[str, ProceduralTask] = {t.name: t for t in (Arithmetic(), LinearEquation(), Countdown())}


def get_task(name: str) -> ProceduralTask:
    """The task called ``name`` (one of ``TASKS`` or ``gym:<reasoning-gym dataset>``)."""
    if name.startswith("gym:") and len(name) > 4:
        return GymTask(name[4:])
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {sorted(TASKS)} or 'gym:<reasoning-gym dataset>'")
    return TASKS[name]


def verify(task: str, response: str, answer: str) -> float:
    """Score ``response`` against ``answer`` with the verifier of ``task``: 1.0 correct, 0.0 otherwise."""
    return get_task(task).verify(response, answer)


__all__ = ["Arithmetic", "Countdown", "GymTask", "LinearEquation", "ProceduralTask", "Problem", "TASKS", "Trace",
           "get_task", "seeded_rng", "verify"]
