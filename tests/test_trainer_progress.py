"""The episode/J index mapping of one step (mrt_jax.trainer.progress), on hand-made traces: which boundaries start
episodes, where the meta-prover forks, which J slot each answer fills and which episode each token belongs to."""

import numpy as np
import pytest

from mrt_jax.trainer.progress import assemble_j, episode_starts, fork_plan

E = 3  # max_episodes: K = 4 J slots per row


def test_episode_starts_keep_inner_boundaries_up_to_max_episodes_minus_one():
    assert episode_starts([4, 8], 10, E) == [4, 8]
    # 0 and the end are not episode starts; duplicates and order do not matter
    assert episode_starts([10, 0, 4, 4], 10, E) == [4]
    # past max_episodes: only the first max_episodes - 1 starts are kept (so at most E episodes)
    assert episode_starts([2, 4, 6, 8], 10, E) == [2, 4]
    assert episode_starts([12, 15], 10, E) == []  # boundaries beyond the completion
    assert episode_starts([2, 4], 10, 1) == []  # one episode: no fork inside the trace


def test_hand_made_group_maps_every_answer_to_its_slot_and_every_token_to_its_episode():
    G = 2
    # Row 0: 10 tokens, boundaries past max_episodes (4 of them, only 2 kept); row 1: 5 tokens, no boundary.
    # Row 2 (second group): 6 tokens with a boundary at 3.
    lengths = [10, 5, 6, 6]
    starts = [episode_starts(b, n, E) for b, n in zip([[2, 5, 7, 9], [], [3], [0, 6]], lengths)]
    assert starts == [[2, 5], [], [3], []]
    plan = fork_plan(starts, G)
    # J_0 once per group on its first row at position 0, then every start of every row in order
    assert list(zip(plan.rows, plan.positions, plan.slots)) == [
        (0, 0, 0), (2, 0, 0), (0, 2, 1), (0, 5, 2), (2, 3, 1)]
    j_branch = np.asarray([0.25, 0.5, 0.4, 0.6, 0.75], np.float32)
    outcome = np.asarray([1.0, 0.0, 1.0, 0.0], np.float32)
    a = assemble_j(plan, starts, lengths, j_branch, outcome, G, E, width=12)
    np.testing.assert_array_equal(a["j_nk"], np.asarray([
        [0.25, 0.4, 0.6, 1.0],   # J_0, J at the starts of episodes 1 and 2, the outcome closes episode 2
        [0.25, 0.0, 0.0, 0.0],   # one episode: J_0 then its outcome, in slot 1
        [0.5, 0.75, 1.0, 0.0],
        [0.5, 0.0, 0.0, 0.0]], np.float32))
    np.testing.assert_array_equal(a["valid_nk"], [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(a["episodes_n"], [3, 1, 2, 1])
    np.testing.assert_array_equal(a["episode_nc"][0], [0, 0, 1, 1, 1, 2, 2, 2, 2, 2, -1, -1])
    np.testing.assert_array_equal(a["episode_nc"][1], [0] * 5 + [-1] * 7)
    np.testing.assert_array_equal(a["episode_nc"][2], [0, 0, 0, 1, 1, 1] + [-1] * 6)
    # every episode id a token carries has both of its J ends valid: progress is defined for it
    for i in range(4):
        ids = a["episode_nc"][i][a["episode_nc"][i] >= 0]
        assert a["valid_nk"][i, ids].all() and a["valid_nk"][i, ids + 1].all()


def test_one_estimate_per_planned_branch():
    plan = fork_plan([[1], []], 2)
    with pytest.raises(ValueError, match="1 J estimates for 2 planned branches"):
        assemble_j(plan, [[1], []], [3, 3], np.zeros(1), np.zeros(2), 2, E, width=4)
