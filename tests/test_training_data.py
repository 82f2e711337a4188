"""The training job's data and rewards without training: --dataset resolution and its one-line errors, the
resumable prompt stream with counted skips, and the batch scorers the trainer calls."""

import json
import os

import numpy as np
import pytest

from experiments.config import DATASET_FORMATS, ON_BAD_ROW, parse_args
from experiments.mrt_math import main
from mrt_jax.data import SPECS
from mrt_jax.data.benchmarks import DataError
from mrt_jax.data.training_data import BUNDLED, Dataset, PromptStream
from mrt_jax.data.training_data import ON_BAD_ROW as DATA_ON_BAD_ROW
from mrt_jax.rewards import ExactScorer, MathScorer, Status, as_scorer
from mrt_jax.trainer.scoring import reward_status_metrics

ROWS = [{"problem": f"What is ${a}+{b}$?", "answer": str(a + b), "unique_id": f"p{a}{b}"}
        for a in range(1, 4) for b in range(1, 4)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_the_configs_choices_are_the_readers():
    assert DATASET_FORMATS == tuple(SPECS) and ON_BAD_ROW == DATA_ON_BAD_ROW


def test_a_file_in_a_published_layout_gives_records_that_name_their_row(tmp_path):
    data = Dataset(write_jsonl(tmp_path / "d.jsonl", ROWS))
    assert len(data) == 9 and data.record(0) == {"question": "What is $1+1$?", "answer": "2",
                                                 "where": f"{tmp_path / 'd.jsonl'}:1"}
    train, held_out = data.split_off(2)
    assert len(train) == 7 and [r["answer"] for r in held_out] == ["5", "6"]  # the last rows
    with pytest.raises(DataError, match="leaves none to train on"):
        data.split_off(9)
    assert len(Dataset("easy-math")) == 160 and os.path.isfile(BUNDLED["easy-math"][0])


@pytest.mark.parametrize("case", ["missing", "unknown_format", "wrong_layout", "empty", "all_rows_bad"])
def test_bad_datasets_are_one_line_errors_before_the_run_dir(case, tmp_path, capsys):
    files = {
        "missing": (str(tmp_path / "nope.jsonl"), "no such file"),
        "unknown_format": (write_jsonl(tmp_path / "d.csv", ROWS), "unknown format"),
        "wrong_layout": (write_jsonl(tmp_path / "gsm.jsonl", [{"question": "Q?", "answer": "x #### 3"}]),
                         "missing problem field"),
        "empty": (write_jsonl(tmp_path / "e.jsonl", []), "empty file"),
        "all_rows_bad": (write_jsonl(tmp_path / "bad.jsonl", [{"problem": "P", "answer": ""}]), "yields no problems"),
    }
    path, message = files[case]
    run_dir = tmp_path / "run"
    extra = ["--on_bad_row=skip"] if case == "all_rows_bad" else []
    assert main(["--preset=tiny", f"--run_dir={run_dir}", f"--dataset={path}", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and os.path.basename(path) in err[0], err
    assert not run_dir.exists()


def test_bad_rows_raise_naming_the_row_or_are_skipped_and_counted(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [*ROWS[:2], {"problem": "P"}, ROWS[2]])
    with pytest.raises(DataError, match=r"d.jsonl:3: no answer"):
        Dataset(path)
    data = Dataset(path, on_bad_row="skip")
    assert len(data) == 3 and data.report["skipped"] == 1


def test_the_stream_resumes_exactly_and_counts_skips(tmp_path):
    data = Dataset(write_jsonl(tmp_path / "d.jsonl", ROWS))
    long_ones = {"What is $2+2$?", "What is $3+1$?"}
    fits = lambda r: "too long" if r["question"] in long_ones else None  # noqa: E731

    def stream(on_bad_row="skip"):
        return PromptStream(data.source, batch_size=2, seed=3, fits=fits, on_bad_row=on_bad_row)

    a = stream()
    batches = [a.next_batch() for _ in range(3)]
    state = json.loads(json.dumps(a.get_state()))  # plain JSON, as checkpoints store it
    rest = [a.next_batch() for _ in range(6)]
    assert not any(q in long_ones for b in batches + rest for q in b["question"])
    assert a.skipped > 0 and a.take_skipped() == a.skipped and a.take_skipped() == 0
    b = stream()
    b.set_state(state)
    assert [b.next_batch() for _ in range(6)] == rest and b.skipped == a.skipped
    with pytest.raises(DataError, match=r"d.jsonl:\d+: too long \(--on_bad_row=skip"):
        for _ in range(9):
            stream("raise").next_batch()


def test_exact_scorer_statuses_and_the_step_metrics_they_feed():
    verify = lambda text, gold: float(text.endswith(gold))  # noqa: E731
    scorer = as_scorer(verify)
    assert isinstance(scorer, ExactScorer) and as_scorer(scorer) is scorer
    res = scorer.score(["Answer: 4", "no answer here", "\\boxed{5}", "oops"], ["4", "4", "4", "4"],
                       truncated=np.array([False, True, False, False]))
    assert res.status_b.tolist() == [Status.CORRECT, Status.TRUNCATED, Status.WRONG, Status.NO_ANSWER]
    np.testing.assert_array_equal(res.reward_b, [1, 0, 0, 0])
    metrics = reward_status_metrics({"status_n": np.array([Status.TIMEOUT, Status.INVALID_GOLD, 0, 1]),
                                     "meta_timeouts_n": np.array([1, 0, 2, 0]), "meta_errors_n": np.zeros(4)})
    assert metrics == {"reward_timeouts": 4.0, "reward_errors": 0.0, "invalid_gold_frac": 0.25,
                       "no_answer_frac": 0.0}


def test_math_scorer_is_the_datasets_reward_and_an_invalid_gold_never_scores():
    with MathScorer(num_workers=0, timeout_s=2.0) as scorer:
        res = scorer.score(["<think>\\boxed{3}</think> so \\boxed{4}", "\\boxed{4}"], ["4", "see the solution"])
    assert res.status_b.tolist() == [Status.CORRECT, Status.INVALID_GOLD] and res.reward_b.tolist() == [1.0, 0.0]


def test_dataset_flags_that_would_not_apply_are_refused(capsys):
    for flags, message in ((["--dataset=easy-math", "--task=linear"], "--task='linear' has no effect"),
                           (["--dataset=easy-math", "--reward=task"], "--reward=task scores with"),
                           (["--eval_dataset=x.jsonl"], "--eval_dataset='x.jsonl' has no effect")):
        with pytest.raises(SystemExit):
            parse_args(flags)
        assert message in capsys.readouterr().err
    assert parse_args(["--preset=smollm2-math"]).dataset == "easy-math"
