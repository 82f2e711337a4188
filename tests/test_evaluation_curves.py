"""Evaluation curves against hand-computed answers: regret with both comparators, maj@k, token efficiency, the
summary's means over traces then problems, strict JSON, and the settings' validation (no model needed)."""

import json

import pytest

from mrt_jax.evaluation.curves import curve_at, token_efficiency, trace_regrets
from mrt_jax.evaluation.jsonio import json_safe, write_json
from mrt_jax.evaluation.majority import answer_key, default_ks, maj_at_k, majority_correct
from mrt_jax.evaluation.summary import problem_j_curves, summarize
from mrt_jax.evaluation.traces import TraceRecord, parse_trace_lines


def test_constant_curve():
    # pass@1 is 0.6 from the first token on: area 0.6 * C0, whatever C0 is.
    const, moc = trace_regrets([0, 100], [0.6, 0.6], [50, 100], maj_accuracy=[0.6, 0.6])
    assert const == pytest.approx([0.4, 0.4])
    assert moc == pytest.approx([0.0, 0.0])  # continuing gives 0.6, voting gives 0.6: nothing to regret


def test_step_curve():
    # 0 up to 50 tokens, ramps to 1 at 60, flat after: area over [0, 100] = 5 + 40 = 45.
    tokens, acc = [50, 60, 100], [0.0, 1.0, 1.0]
    const, moc = trace_regrets(tokens, acc, [55, 100], maj_accuracy=acc)
    # At C0 = 55: area 0.5 * 5 * 0.5 = 1.25; continuing to 55 is worth 0.5, above the curve on all of [0, 55].
    assert const == pytest.approx([1 - 1.25 / 55, 0.55])
    assert moc == pytest.approx([(0.5 * 55 - 1.25) / 55, 0.55])


def test_linear_curve_held_flat_after_its_last_point():
    const, _ = trace_regrets([100], [1.0], [100, 200])
    assert const == pytest.approx([0.5, 0.25])  # area 50 of 100; 50 + 100 of 200
    const, moc = trace_regrets([0, 100], [0.0, 1.0], [50, 100], maj_accuracy=[0.5, 0.5])
    # C0 = 50: comparator max(0.5, curve(50) = 0.5) = 0.5, area 12.5 -> (25 - 12.5) / 50.
    assert const == pytest.approx([0.75, 0.5])
    assert moc == pytest.approx([0.25, 0.5])


def test_majority_comparator_that_crosses_continuing():
    # Forced answers: pass@1 0.6 at 50 tokens, 0.2 at 100; their majority is right at 50, wrong at 100.
    # Comparator max(maj(t), 0.2): 0.2 on [0, 10], t/50 on [10, 50], falls to 0.2 at 90, 0.2 to 100: area 52.
    # pass@1 area: 15 + 20 = 35.
    const, moc = trace_regrets([50, 100], [0.6, 0.2], [100], maj_accuracy=[1.0, 0.0])
    assert const == pytest.approx([0.65])
    assert moc == pytest.approx([0.17])


def test_curve_at_and_token_efficiency():
    assert curve_at([100], [1.0], [0, 25, 100, 300]).tolist() == pytest.approx([0, 0.25, 1, 1])
    eff = token_efficiency([100, 200], [0.5, 1.0], [0.25, 0.75, 1.0])
    assert eff == {"0.25": pytest.approx(50.0), "0.75": pytest.approx(150.0), "1": pytest.approx(200.0)}
    assert token_efficiency([100], [0.4], [0.5]) == {"0.5": None}


def test_majority_vote_ties_and_equivalent_numbers():
    assert answer_key("1/2") == answer_key("0.5") == answer_key("\\frac{1}{2}") == "1/2"
    assert answer_key(" x + 1 ") == "x+1" and answer_key(None) is None and answer_key("  ") is None
    assert majority_correct(["1", "1", "2"], [1, 1, 0]) == 1.0
    assert majority_correct(["1", "2"], [1, 0]) == 0.5  # a tie: the expected correctness of a random pick
    assert majority_correct(["2", None, None], [0, 0, 0]) == 0.0  # no answer does not vote
    assert majority_correct([None], [0]) == 0.0
    assert majority_correct([answer_key(a) for a in ("0.5", "1/2", "3")], [1, 1, 0]) == 1.0


def test_maj_at_k_on_hand_made_votes():
    # Four traces: answers 1, 1, 2, 3 (gold 1), lengths 10..40. Cyclic windows of 2: {0,1} right, {1,2} tie (0.5),
    # {2,3} tie of two wrong answers (0), {3,0} tie (0.5) -> 0.5; window sums 30, 50, 70, 50 -> 50 tokens.
    res = maj_at_k([["1", "1", "2", "3"]], [[1, 1, 0, 0]], [[10, 20, 30, 40]])
    assert res["k"] == [1, 2, 4]
    assert res["accuracy"] == pytest.approx([0.5, 0.5, 1.0])
    assert res["total_tokens"] == pytest.approx([25.0, 50.0, 100.0])
    two = maj_at_k([["7", "7"], ["1", "2"]], [[1, 1], [0, 1]], [[4, 6], [1, 1]], ks=[2])
    assert two["accuracy"] == pytest.approx([(1.0 + 0.5) / 2]) and two["total_tokens"] == pytest.approx([6.0])
    assert default_ks(6) == [1, 2, 4, 6] and default_ks(1) == [1]
    with pytest.raises(ValueError, match="outside 1..2"):
        maj_at_k([["1", "2"]], [[1, 0]], [[1, 1]], ks=[3])


def _trace(pid, tid, acc, final, length, answer="1"):
    return TraceRecord(pid, tid, [10.0, 20.0], acc, list(acc), final_answer=answer, final_correct=final,
                       length=length)


def test_summary_means_over_traces_then_problems():
    # Problem a has two traces (curves 0 and 1, mean 0.5), problem b one (curve 1): the mean over problems is 0.75;
    # a mean over all traces would be 2/3.
    recs = [_trace("a", "0", [0.0, 0.0], 0.0, 10), _trace("a", "1", [1.0, 1.0], 1.0, 20),
            _trace("b", "0", [1.0, 1.0], 1.0, 30)]
    s = summarize(recs)
    assert s["budgets"] == [10, 20]
    assert s["pass_at_budget"] == pytest.approx([0.75, 0.75])  # (0.5 + 1) / 2, not 2/3
    assert s["accuracy"] == pytest.approx(0.75)
    assert s["mean_length"] == pytest.approx(20.0)
    # Regret: trace curve 1 from 10 tokens: area at C0=10 is 5 -> 0.5; at 20: 15 -> 0.25; curve 0 -> 1.
    assert s["regret_at_budget"]["constant"] == pytest.approx([(0.75 + 0.5) / 2, (0.625 + 0.25) / 2])
    assert s["regret"] == s["regret_at_budget"]["constant"][-1]
    assert s["num_problems"] == 2 and s["num_traces"] == 3
    assert s["maj_at_k"]["k"] == [1]
    curves = problem_j_curves(recs)
    assert [c["problem_id"] for c in curves] == ["a", "b"] and curves[0]["accuracy"] == pytest.approx([0.5, 0.5])


def test_summary_leaves_out_what_it_cannot_compute():
    recs = [TraceRecord("a", "0", [10.0], [1.0])]  # no majority curve, no final answer, no episodes
    s = summarize(recs)
    assert "maj_or_continue" not in s["regret_at_budget"]
    assert "maj_at_k" not in s and "episodes" not in s and "pass_at_episode" not in s
    assert s["accuracy"] == 1.0 and s["mean_length"] is None


def test_episode_curve_holds_the_last_value_of_finished_traces():
    a = TraceRecord("p", "0", episodes={0: 0.0, 1: 1.0})
    b = TraceRecord("p", "1", episodes={0: 0.0, 1: 0.0, 2: 0.0, 3: 1.0})
    s = summarize([a, b])
    assert s["episodes"] == [0, 1, 2, 3]
    assert s["pass_at_episode"] == pytest.approx([0.0, 0.5, 0.5, 1.0])


def test_parse_both_record_formats():
    lines = [
        json.dumps({"problem_id": "p", "trace_id": "t", "tokens": [5, 10], "accuracy": [0, 1],
                    "episode_accuracy": [0, 0.5]}),
        json.dumps({"problem_id": 7, "trace_id": 1, "budget": 10, "correct": True, "answer": "3"}),
        json.dumps({"problem_id": 7, "trace_id": 1, "budget": 10, "correct": 0, "answer": "4"}),
        json.dumps({"problem_id": 7, "trace_id": 1, "budget": 10, "correct": 1, "answer": "3.0"}),
        "",
        json.dumps({"problem_id": 7, "trace_id": 1, "budget": 5, "correct": False, "answer": None}),
        json.dumps({"problem_id": 7, "trace_id": 1, "episode": 2, "correct": 1}),
    ]
    curve, raw = parse_trace_lines(lines)
    assert (curve.problem_id, curve.tokens, curve.accuracy, curve.episodes) == ("p", [5, 10], [0, 1], {0: 0, 1: 0.5})
    assert (raw.problem_id, raw.trace_id, raw.tokens) == ("7", "1", [5.0, 10.0])
    assert raw.accuracy == pytest.approx([0.0, 2 / 3]) and raw.maj_accuracy == [0.0, 1.0]
    assert raw.episodes == {2: 1.0}


@pytest.mark.parametrize("line, message", [
    ("{not json", ":2: malformed JSON"),
    ('{"problem_id": "p", "tokens": [5, 5], "accuracy": [0, 1]}', ":2: 'tokens' must be"),
    ('{"problem_id": "p", "tokens": [5], "accuracy": [1.5]}', ":2: accuracy[0] must be a number in [0, 1]"),
    ('{"problem_id": "p", "tokens": [5, 6], "accuracy": [1]}', ":2: 'accuracy' has 1 values but 'tokens' has 2"),
    ('{"problem_id": "p", "trace_id": 1, "budget": 5, "episode": 1, "correct": 1}', ":2: a forced-answer record"),
    ('{"problem_id": "p", "trace_id": 1, "budget": -5, "correct": 1}', ":2: budget must be an integer >= 0"),
    ('{"trace_id": 1, "budget": 5, "correct": 1}', ":2: field 'problem_id' must be"),
    ('{"problem_id": "p", "hello": 1}', ":2: neither a J-curve record"),
    ('[1, 2]', ":2: expected a JSON object"),
])
def test_malformed_lines_are_named(line, message):
    good = json.dumps({"problem_id": "q", "tokens": [1], "accuracy": [0]})
    with pytest.raises(ValueError) as e:
        parse_trace_lines([good, line], "t.jsonl")
    assert f"t.jsonl{message}" in str(e.value)


def test_strict_json_writes_inf_as_null(tmp_path):
    value = {"a": float("inf"), "b": [1.0, float("nan")], "c": {0.5: 2}}
    assert json_safe(value) == {"a": None, "b": [1.0, None], "c": {"0.5": 2}}
    path = write_json(str(tmp_path / "x.json"), value)
    assert json.loads(open(path).read(), parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))["a"] is None


def test_settings_validation():
    from mrt_jax.evaluation.suite import EvalSettings

    s = EvalSettings(max_new_tokens=12)
    assert s.budgets == (2, 4, 6, 8, 10, 12) and s.extrapolate == ()
    assert EvalSettings(max_new_tokens=12, budgets=(12, 4, 4)).budgets == (4, 12)
    for bad, match in [(dict(budgets=(0, 4)), "budgets must be positive"), (dict(budgets=(24,)), "<= max_new"),
                       (dict(extrapolate=(8,)), "must exceed"), (dict(n=0), "n must be"),
                       (dict(maj_ks=(4,), n=2), "maj_ks must be <= n"),
                       (dict(rows_per_call=0), r"EvalSettings.rows_per_call must be an integer >= 1 \(rows sampled "
                                               r"per call\) or None \(every row in one call\), got 0"),
                       (dict(rows_per_call=-4), "rows_per_call must be an integer >= 1"),
                       (dict(rows_per_call=2.0), "rows_per_call must be an integer >= 1")]:
        with pytest.raises(ValueError, match=match):
            EvalSettings(max_new_tokens=12, **bad)


def test_row_chunks_keep_problems_whole():
    from mrt_jax.evaluation.chunks import row_chunks

    rows = [p for p in "abcde" for _ in range(2)]  # 5 problems x 2 traces
    assert row_chunks(rows, None) == row_chunks(rows, 10) == row_chunks(rows, 64) == [(0, 10)]
    assert row_chunks(rows, 4) == row_chunks(rows, 5) == [(0, 4), (4, 8), (8, 10)]
    assert row_chunks(rows, 6) == [(0, 6), (6, 10)]
    assert row_chunks(rows, 1) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]  # a problem is never split
    assert row_chunks(list("aaabcc"), 3) == [(0, 3), (3, 6)] and row_chunks(list("abbbc"), 2) == [(0, 1), (1, 4),
                                                                                                    (4, 5)]


def test_suite_refuses_repeated_problem_ids():
    from types import SimpleNamespace

    from mrt_jax.evaluation.suite import EvalSettings, evaluate_suite

    fake = SimpleNamespace(tokenizer=object())  # the ids are checked before anything is sampled
    with pytest.raises(ValueError, match="problem_ids must be 2 distinct ids"):
        evaluate_suite(fake, [[1], [2]], ["1", "2"], lambda t, g: 0.0, forced_suffix="A:",
                       settings=EvalSettings(max_new_tokens=4), problem_ids=["p", "p"])
