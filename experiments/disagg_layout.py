"""The shared run dir of a disaggregated run: the only channel between the learner and the sampler processes.

    RUN/config.json          the learner's resolved config
    RUN/checkpoints/<step>/  the learner's TrainState (Orbax), as in the colocated job
    RUN/weights/<step>/      published params (Orbax; WeightPublisher), step 0 and after every update
    RUN/rollouts/            pending rollout batches: s<sampler>-b<index>.npz + .json (experiments.rollout_queue)
    RUN/samplers/s<id>.json  each sampler's resumable state (data position, batches written, weight steps loaded)
    RUN/DONE                 written by the learner when it stops: {"final_step", "steps", "time"}
    RUN/metrics.jsonl, eval_*.json, report.md, ...   the learner's logs, as in the colocated job

All paths go through ``mrt_jax.run_files`` (etils.epath), so RUN may be a bucket path (gs://...): every file is
written whole (a temporary name renamed locally, one object on a bucket), markers are read, never stat'ed, and
nothing relies on a rename, an append, a lock or a modification time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from etils import epath

from mrt_jax import run_files
from mrt_jax.checkpointing.manager import absolute_dir


@dataclasses.dataclass(frozen=True)
class RunLayout:
    root: epath.Path

    @classmethod
    def of(cls, run_dir: str | os.PathLike) -> RunLayout:
        return cls(absolute_dir(run_dir))

    @property
    def weights(self) -> epath.Path:
        return self.root / "weights"

    @property
    def rollouts(self) -> epath.Path:
        return self.root / "rollouts"

    @property
    def done(self) -> epath.Path:
        return self.root / "DONE"

    def sampler_state(self, sampler_id: int) -> epath.Path:
        return self.root / "samplers" / f"s{sampler_id:03d}.json"


def write_json_atomic(path: epath.Path, value: dict) -> None:
    """Readers never see half of it: renamed into place locally, one whole object on a bucket (run_files)."""
    run_files.write_json(path, value, sort_keys=True)


def read_json(path: epath.Path) -> dict | None:
    """The JSON object at ``path``, or None when it is missing or unreadable (e.g. replaced while read)."""
    try:
        value = json.loads(run_files.read_text(path))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def mark_done(layout: RunLayout, final_step: int, steps: int) -> None:
    write_json_atomic(layout.done, {"final_step": final_step, "steps": steps, "time": time.time()})


def learner_finished(layout: RunLayout, steps: int, since: float) -> bool:
    """Whether the learner has stopped: a DONE marker for the full ``steps``, or one written after ``since`` (the
    caller's start: a learner stopped early by a signal). An older marker of a shorter run is ignored, so a
    sampler of a resumed run with more steps keeps going."""
    marker = read_json(layout.done)
    if marker is None:
        return False
    final, written = marker.get("final_step"), marker.get("time")
    return (isinstance(final, int) and final >= steps) or (isinstance(written, (int, float)) and written >= since)
