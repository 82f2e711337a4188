"""MathScorer: worker processes, per-item timeouts that cost one item, worker replacement, statuses and counts."""

import threading

import numpy as np
import pytest

from mrt_jax.rewards import MathScorer, Status

HANG = "\\boxed{9^{9^{9^{9}}}}"  # sympy runs for minutes on this without a limit


@pytest.fixture(scope="module")
def scorer():
    with MathScorer(num_workers=2, timeout_s=1.5) as s:
        yield s


def test_statuses_rewards_and_counts(scorer):
    completions = ["\\boxed{0.5}", "\\boxed{3}", "I don't know", "\\boxed{5}", "thinking... (cut off)",
                   "<think>\\boxed{2}"]
    golds = ["\\frac{1}{2}", "4", "1", "see solution", "2", "2"]
    truncated = [False, False, False, False, True, True]
    result = scorer.score(completions, golds, truncated=truncated)
    assert result.status_b.tolist() == [
        Status.CORRECT, Status.WRONG, Status.NO_ANSWER, Status.INVALID_GOLD, Status.TRUNCATED, Status.TRUNCATED]
    assert result.reward_b.dtype == np.float32 and result.status_b.dtype == np.int8
    np.testing.assert_array_equal(result.reward_b, [1, 0, 0, 0, 0, 0])
    assert result.answers == ("0.5", "3", None, "5", None, None)
    counts = result.counts
    assert counts["correct"] == 1 and counts["invalid_gold"] == 1 and counts["truncated"] == 2
    assert counts["truncated_total"] == 2 and counts["total"] == 6
    metrics = result.metrics()
    assert metrics["reward/mean"] == pytest.approx(1 / 6)
    assert metrics["reward/frac_invalid_gold"] == pytest.approx(1 / 6)


def test_truncated_with_answer_keeps_its_status(scorer):
    result = scorer.score(["\\boxed{2}", "\\boxed{3}"], ["2", "2"], truncated=[True, True])
    assert result.status_b.tolist() == [Status.CORRECT, Status.WRONG]
    assert result.truncated_b.tolist() == [True, True]


def test_hang_costs_one_item_and_pool_survives(scorer):
    killed_before = scorer.stats["workers_killed"]
    completions = [HANG, "\\boxed{1/2}", "\\boxed{7}", "\\boxed{\\sqrt{8}}", "\\boxed{x^2+1}"]
    golds = ["5", "0.5", "7", "2\\sqrt{2}", "1+x^2"]
    result = scorer.score(completions, golds)
    assert result.status_b.tolist() == [Status.TIMEOUT] + [Status.CORRECT] * 4
    assert result.counts["timeout"] == 1
    assert scorer.stats["workers_killed"] == killed_before + 1
    # The replacement worker scores the next batch.
    again = scorer.score(["\\boxed{3}", "\\boxed{4}"], ["3", "5"])
    assert again.status_b.tolist() == [Status.CORRECT, Status.WRONG]
    assert scorer.num_alive_workers == 2


def test_hang_inside_a_worker_queue(scorer):
    # Workers get several items at once; a hang in the middle of a queue sends the items behind it elsewhere.
    completions = [f"\\boxed{{{i}}}" for i in range(40)]
    completions[23] = HANG
    result = scorer.score(completions, [str(i) for i in range(40)])
    expected = [Status.CORRECT] * 40
    expected[23] = Status.TIMEOUT
    assert result.status_b.tolist() == expected


def test_duplicates_are_checked_once(scorer):
    before = scorer.stats["items_checked"]
    result = scorer.score(["\\boxed{6}"] * 8 + ["\\boxed{5}"] * 8, ["6"] * 16)
    assert result.reward_b.tolist() == [1.0] * 8 + [0.0] * 8
    assert scorer.stats["items_checked"] == before + 2


def test_worker_killed_from_outside_is_replaced(scorer):
    scorer.score(["\\boxed{1}"], ["1"])  # make sure workers exist
    victim = scorer._workers[0]
    victim.proc.kill()  # our own child process, as an OOM kill would
    victim.proc.wait()
    result = scorer.score(["\\boxed{1}", "\\boxed{2}", "\\boxed{3}"], ["1", "2", "4"])
    assert result.status_b.tolist() == [Status.CORRECT, Status.CORRECT, Status.WRONG]


def test_score_from_a_thread(scorer):
    out = {}
    thread = threading.Thread(target=lambda: out.update(r=scorer.score(["\\boxed{0.25}"], ["\\frac14"])))
    thread.start()
    thread.join()
    assert out["r"].reward_b.tolist() == [1.0]


def test_in_process_path_matches_and_times_out():
    with MathScorer(num_workers=0, timeout_s=1.5) as local:
        result = local.score([HANG, "\\boxed{0.5}", "x"], ["5", "1/2", "1"])
        assert result.status_b.tolist() == [Status.TIMEOUT, Status.CORRECT, Status.NO_ANSWER]
        assert local.num_alive_workers == 0


def test_bad_input_and_close():
    s = MathScorer(num_workers=1, timeout_s=1.0)
    assert s.num_alive_workers == 0  # started lazily
    with pytest.raises(ValueError, match="2 completions but 1 golds"):
        s.score(["a", "b"], ["1"])
    with pytest.raises(TypeError, match="item 1"):
        s.score(["a", None], ["1", "2"])
    with pytest.raises(ValueError, match="truncated must be a bool sequence of length 1"):
        s.score(["a"], ["1"], truncated=[1])
    assert s.score([], []).counts["total"] == 0
    assert s.score(["\\boxed{2}"], ["2"]).reward_b.tolist() == [1.0]
    assert s.num_alive_workers == 1
    workers = list(s._workers)
    s.close()
    s.close()  # idempotent
    assert all(w.proc.poll() is not None for w in workers)
    with pytest.raises(RuntimeError, match="closed"):
        s.score(["\\boxed{2}"], ["2"])
    with pytest.raises(ValueError, match="num_workers"):
        MathScorer(num_workers=-1)
    with pytest.raises(ValueError, match="timeout_s"):
        MathScorer(timeout_s=0)


def test_too_long_answer_is_wrong_without_parsing():
    with MathScorer(num_workers=0, timeout_s=1.0, max_answer_chars=10) as local:
        result = local.score(["\\boxed{" + "1+" * 20 + "1}", "\\boxed{2}"], ["21", "2"])
        assert result.status_b.tolist() == [Status.WRONG, Status.CORRECT]
