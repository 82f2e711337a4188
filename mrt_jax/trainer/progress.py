"""Where the meta-prover forks, and how its answers become per-row J estimates: the episode/J index mapping.

Row i of a batch of N = B*G rows (G per prompt) has K = max_episodes + 1 J slots:
slot 0 = J_0, the meta-prover's J from the prompt alone (forked once per group, on its first row, shared by the
group); slot k (1 <= k <= n_i - 1) = J forced at the start of episode k, i.e. after episodes 0..k-1; slot n_i =
the trace's outcome (its reward), n_i the number of episodes. Episode starts are the boundaries strictly inside
the completion (0 < p < length), at most ``max_episodes - 1`` of them, so n_i <= max_episodes. Completion token t
belongs to episode ``#{starts <= t}``. Pure numpy: tested on hand-made traces (tests/test_trainer_progress.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


def episode_starts(boundaries: Sequence[int], length: int, max_episodes: int) -> list[int]:
    """The boundaries that start an episode: inside the completion, sorted, the first ``max_episodes - 1``."""
    return sorted({int(p) for p in boundaries if 0 < p < length})[: max_episodes - 1]


@dataclasses.dataclass(frozen=True)
class ForkPlan:
    """The J branches of one batch: ``rows[j]`` forks at completion position ``positions[j]`` into J slot
    ``slots[j]`` of that row (slot 0: the group's J_0, forked at position 0 of the group's first row)."""

    rows: list[int]
    positions: list[int]
    slots: list[int]


def fork_plan(starts: Sequence[Sequence[int]], group_size: int) -> ForkPlan:
    rows, positions, slots = [], [], []
    for b in range(len(starts) // group_size):
        rows.append(b * group_size), positions.append(0), slots.append(0)
    for i, st in enumerate(starts):
        for k, p in enumerate(st):
            rows.append(i), positions.append(int(p)), slots.append(k + 1)
    return ForkPlan(rows, positions, slots)


def assemble_j(plan: ForkPlan, starts: Sequence[Sequence[int]], lengths: Sequence[int], j_branch: np.ndarray,
               outcome_n: np.ndarray, group_size: int, max_episodes: int, width: int) -> dict[str, np.ndarray]:
    """Per-row arrays from the branch estimates ``j_branch`` (one per ``plan`` entry) and the outcomes:
    ``j_nk`` [N, K] float32, ``valid_nk`` [N, K] int32, ``episode_nc`` [N, width] int32 (-1 past the completion),
    ``episodes_n`` [N] int32."""
    N, K = len(starts), max_episodes + 1
    if len(j_branch) != len(plan.rows):
        raise ValueError(f"{len(j_branch)} J estimates for {len(plan.rows)} planned branches")
    j_nk = np.zeros((N, K), np.float32)
    valid_nk = np.zeros((N, K), np.int32)
    for row, slot, j in zip(plan.rows, plan.slots, j_branch):
        if slot == 0:  # the group's J_0, shared by every row of the group
            j_nk[row:row + group_size, 0] = j
            valid_nk[row:row + group_size, 0] = 1
        else:
            j_nk[row, slot], valid_nk[row, slot] = j, 1
    episode_nc = np.full((N, width), -1, np.int32)
    for i, st in enumerate(starts):
        last = len(st) + 1  # the outcome closes the last episode
        j_nk[i, last], valid_nk[i, last] = outcome_n[i], 1
        episode_nc[i, :lengths[i]] = np.searchsorted(np.asarray(st, np.int64), np.arange(lengths[i]), side="right")
    return dict(j_nk=j_nk, valid_nk=valid_nk, episode_nc=episode_nc,
                episodes_n=np.asarray([len(st) + 1 for st in starts], np.int32))
