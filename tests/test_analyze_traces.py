"""``python -m experiments.analyze_traces`` on a small hand-written JSONL (both record formats), checked against
hand-computed curves and regrets; bad input gives exit code 2 and one line on stderr."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Problem p1: two J-curve records. Problem p2: one trace given as raw forced-answer records.
LINES = [
    {"problem_id": "p1", "trace_id": "t0", "tokens": [50, 100], "accuracy": [0.6, 0.2], "maj_accuracy": [1, 0],
     "episode_accuracy": [0, 0.5, 1]},
    {"problem_id": "p1", "trace_id": "t1", "tokens": [50, 100], "accuracy": [0, 1], "maj_accuracy": [0, 1]},
    {"problem_id": "p2", "trace_id": "a", "budget": 50, "correct": True, "answer": "3"},
    {"problem_id": "p2", "trace_id": "a", "budget": 50, "correct": 1, "answer": "3.0"},
    {"problem_id": "p2", "trace_id": "a", "budget": 100, "correct": 1, "answer": "3"},
    {"problem_id": "p2", "trace_id": "a", "episode": 0, "correct": 0},
    {"problem_id": "p2", "trace_id": "a", "episode": 1, "correct": 1},
    {"problem_id": "p2", "trace_id": "a", "episode": 1, "correct": 0},
]


def _run(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    return subprocess.run([sys.executable, "-m", "experiments.analyze_traces", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_hand_written_traces(tmp_path):
    traces = _write(tmp_path / "traces.jsonl", LINES)
    proc = _run(traces, f"--out={tmp_path / 'out'}", "--targets=0.5,0.75,0.9")
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert res["num_problems"] == 2 and res["num_traces"] == 3
    assert res["budgets"] == [50, 100]
    # p1: traces (0.6, 0.2) and (0, 1) -> (0.3, 0.6); p2: (1, 1); mean over problems.
    assert res["pass_at_budget"] == pytest.approx([0.65, 0.8])
    # Constant comparator. C0=50: t0 area 15 -> 0.7, t1 -> 1, p2 area 25 -> 0.5.
    # C0=100: t0 area 35 -> 0.65, t1 area 25 -> 0.75, p2 area 75 -> 0.25.
    reg = res["regret_at_budget"]
    assert reg["budgets"] == [50, 100]
    assert reg["constant"] == pytest.approx([(0.85 + 0.5) / 2, (0.7 + 0.25) / 2])
    assert res["regret"] == pytest.approx(0.475)
    # Majority-or-continue. C0=50: t0 comparator max(t/50, 0.6) has area 34 -> (34 - 15) / 50 = 0.38; t1 0; p2
    # comparator 1 -> 0.5. C0=100: t0 0.17 (curve crossing, see test_evaluation_curves); t1 0.75; p2 0.25.
    assert reg["maj_or_continue"] == pytest.approx([(0.19 + 0.5) / 2, (0.46 + 0.25) / 2])
    # Token efficiency on (0,0) -> (50, 0.65) -> (100, 0.8).
    assert res["tokens_to_accuracy"] == {"0.5": pytest.approx(50 * 0.5 / 0.65),
                                         "0.75": pytest.approx(50 + 50 * 0.1 / 0.15), "0.9": None}
    assert res["tokens_to_half_max"] == pytest.approx(50 * 0.4 / 0.65)
    # Episodes: p1 has only t0's (0, 0.5, 1); p2 (0, 0.5), held at 0.5 after its last episode.
    assert res["episodes"] == [0, 1, 2] and res["pass_at_episode"] == pytest.approx([0.0, 0.5, 0.75])
    assert "maj_at_k" not in res  # p2's trace has no final answer
    assert res["accuracy"] == pytest.approx(0.8) and res["mean_length"] is None
    curves = [json.loads(line) for line in (tmp_path / "out" / "j_curves.jsonl").read_text().splitlines()]
    assert [c["problem_id"] for c in curves] == ["p1", "p2"] and curves[0]["accuracy"] == pytest.approx([0.3, 0.6])
    assert (tmp_path / "out" / "report.md").exists()
    assert "regret at the largest budget 0.475" in proc.stdout


def test_budget_grid_flag(tmp_path):
    traces = _write(tmp_path / "traces.jsonl", LINES[:2])
    proc = _run(traces, f"--out={tmp_path / 'out'}", "--budgets=25,100")
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert res["budgets"] == [25, 100] and res["pass_at_budget"] == pytest.approx([0.15, 0.6])


@pytest.mark.parametrize("rows, args, message", [
    ([LINES[0], '{"problem_id": "p", "tokens": [3, 2], "accuracy": [0, 1]}'], [], "traces.jsonl:2: 'tokens' must"),
    ([LINES[0], LINES[1], "{oops"], [], "traces.jsonl:3: malformed JSON"),
    ([], [], "no trace records"),
    ([LINES[0]], ["--targets=0.5,2"], "--targets must lie in (0, 1]"),
    ([LINES[0]], ["--budgets=0,10"], "--budgets must be a comma list of positive numbers"),
])
def test_bad_input_is_one_line(tmp_path, capsys, rows, args, message):
    from experiments.analyze_traces import main

    traces = _write(tmp_path / "traces.jsonl", rows)
    try:
        code = main([str(traces), f"--out={tmp_path / 'out'}", *args])
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out" / "analysis.json").exists()


def test_missing_file_in_a_real_process(tmp_path):
    proc = _run(tmp_path / "nope.jsonl", f"--out={tmp_path / 'out'}")
    assert proc.returncode == 2 and proc.stderr == f"error: '{tmp_path / 'nope.jsonl'}': no such file\n"
