"""Run and eval reports: tables with known numbers, valid non-blank PNGs, self-contained escaped HTML, optional eval
keys, deterministic charts, and one real tiny training run rendered end to end."""

import json
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from experiments import report
from experiments.compare import main as compare_main
from experiments.report import write_eval_report, write_report
from experiments.reporting.curves import regret_by_budget
from experiments.reporting.plots import CHART_SIZE, DPI, moving_average, plain_text
from tests.report_fixtures import eval_dict, make_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTILE = "<script>alert('x')</script>"
OPTIONAL = dict(extrapolation={"budgets": [128, 256], "pass_at_budget": [0.65, 0.7]},
                maj_at_k={"k": [1, 2, 4], "total_tokens": [64, 128, 256], "accuracy": [0.6, 0.66, 0.7]},
                regret_at_budget={"budgets": [8, 16, 32, 64], "constant": [0.9, 0.7, 0.5, 0.4],
                                  "maj_or_continue": [0.5, 0.4, 0.3, 0.2]},
                pass_at_episode=[0.1, 0.3, 0.5], episodes=[1, 2, 3], tokens_to_accuracy={"0.5": 30.0, "0.9": None})


def assert_png(path, size=None):
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        if size:
            assert im.size == size
        assert im.mode in ("RGB", "RGBA")
        colours = im.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 10, f"{path} looks blank"


def assert_self_contained(html_text):
    assert "<script" not in html_text.lower()
    assert not re.search(r"\b(src|href)\s*=\s*[\"'](?!data:image/png;base64,)", html_text)
    assert "http://" not in html_text and "https://" not in html_text and "url(" not in html_text
    assert "<link" not in html_text.lower()


def _result(run_dir, algo="mrt"):
    with open(os.path.join(run_dir, "result.json")) as f:
        result = json.load(f)
    result["config"]["algo"] = algo
    return result


def test_moving_average_and_regret_by_budget_by_hand():
    assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([5.0], 3) == [5.0]
    assert plain_text("_seed $1") == " _seed \\$1"  # no mathtext, and a legend keeps the label
    # piecewise linear from (0, 0): regret(8) = 1 - 0.4/8, regret(16) = 1 - (0.4 + 1.2)/16
    assert regret_by_budget([8, 16], [0.1, 0.2]) == pytest.approx([0.95, 0.9])


def test_run_report_tables_charts_and_html(tmp_path):
    run_dir = make_run(tmp_path / "run")
    result = _result(run_dir)
    result["config"]["learning_rate"] = 0.0003
    path = write_report(run_dir, result)
    md = open(path).read()
    assert "| accuracy | 0.400 | 0.600 |" in md
    assert "| before | 0.100 | 0.200 | 0.300 | 0.400 |" in md
    assert "| after | 0.200 | 0.400 | 0.500 | 0.600 |" in md
    assert md.startswith(f"# Run report: mrt on {result['config']['task']} (model ")
    result["config"]["dataset"] = "easy-math"  # a run on a file is titled by the file, not the (unused) task
    assert open(write_report(run_dir, result)).read().startswith("# Run report: mrt on easy-math (model ")
    md = open(write_report(run_dir, dict(result, config={**result["config"], "dataset": ""}))).read()
    assert "| learning_rate | 0.0003 |" in md and "| seed | 0 |" in md
    for png in ("accuracy_vs_budget.png", "regret_vs_budget.png", "training_curves.png"):
        assert f"]({png})" in md
        assert_png(os.path.join(run_dir, png))
    assert_png(os.path.join(run_dir, "accuracy_vs_budget.png"), (int(CHART_SIZE[0] * DPI), int(CHART_SIZE[1] * DPI)))
    assert not os.path.exists(os.path.join(run_dir, "maj_at_k.png"))  # no maj@k in this eval: no chart
    html_text = open(os.path.join(run_dir, "report.html")).read()
    assert_self_contained(html_text)
    assert html_text.count("data:image/png;base64,") == 3
    assert json.load(open(os.path.join(run_dir, "result.json")))["steps_done"] == 5


def test_hostile_names_are_escaped(tmp_path):
    run_dir = make_run(tmp_path / "<b>run&co")
    result = _result(run_dir, algo=HOSTILE)
    result["config"]["task"] = "a|b"
    write_report(run_dir, result)
    html_text = open(os.path.join(run_dir, "report.html")).read()
    assert_self_contained(html_text)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html_text
    assert "&lt;b&gt;run&amp;co" in html_text
    md = open(os.path.join(run_dir, "report.md")).read()
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "a\\|b" in md  # a pipe cannot break a Markdown table


def test_eval_report_draws_optional_keys(tmp_path):
    ev = eval_dict([0.2, 0.4, 0.5, 0.6], **OPTIONAL, model=HOSTILE)
    path = write_eval_report(str(tmp_path), ev, f"eval of {HOSTILE}")
    md = open(path).read()
    for png in ("accuracy_vs_budget.png", "regret_vs_budget.png", "maj_at_k.png", "pass_at_episode.png"):
        assert_png(tmp_path / png)
        assert f"]({png})" in md
    assert "| 4 | 256 | 0.700 |" in md  # maj@k table row
    assert "| 0.5 | 30.0 |" in md and "| 0.9 | never |" in md  # tokens_to_accuracy (null: never reached)
    assert "| maj or continue | 0.500 | 0.400 | 0.300 | 0.200 |" in md
    assert "| pass@1 | 0.650 | 0.700 |" in md  # extrapolation
    assert "| model | &lt;script&gt;" in md  # an unknown field is listed, escaped
    assert not (tmp_path / "training_curves.png").exists()
    assert_self_contained((tmp_path / "report.html").read_text())


def test_eval_report_of_the_evaluate_schema(tmp_path):
    """What experiments.evaluate / analyze_traces write: nulls for unmeasured points and never-reached targets,
    episode 0, episode_tokens, nested source/cost; an episode-only analysis has no budget curve at all."""
    ev = eval_dict([0.2, 0.4, 0.5, 0.6], tokens_to_half_max=None, episodes=[0, 1, 2], pass_at_episode=[0.1, None, 0.4],
                   episode_tokens=[0.0, 12.5, 30.0], source={"model": HOSTILE, "dataset": "arithmetic:1"},
                   cost={"seconds": 3.5}, num_problems=4, num_traces=8)
    os.makedirs(tmp_path / "full")
    md = open(write_eval_report(str(tmp_path / "full"), ev, "eval")).read()
    assert "| pass@1 | 0.100 | - | 0.400 |" in md and "| mean tokens | 0.0 | 12.5 | 30.0 |" in md
    assert "| num_traces | 8 |" in md and "&lt;script&gt;" in md
    assert_png(tmp_path / "full" / "pass_at_episode.png")
    episodes_only = {"episodes": [0, 1], "pass_at_episode": [0.2, 0.3], "num_traces": 4}
    os.makedirs(tmp_path / "episodes")
    md = open(write_eval_report(str(tmp_path / "episodes"), episodes_only, "offline")).read()
    assert "](pass_at_episode.png)" in md and "accuracy_vs_budget" not in md
    assert_png(tmp_path / "episodes" / "pass_at_episode.png")


def test_eval_report_rejects_garbled_eval(tmp_path):
    with pytest.raises(ValueError, match="no curve to show"):
        write_eval_report(str(tmp_path), {"accuracy": 0.5}, "t")
    with pytest.raises(ValueError, match="'budgets' has 4 values but 'pass_at_budget' has 3"):
        write_eval_report(str(tmp_path), eval_dict([0.1, 0.2, 0.3]), "t")
    with pytest.raises(ValueError, match="'maj_at_k': 'k' has 3 values but 'accuracy' has 2"):
        write_eval_report(str(tmp_path), eval_dict([0.1, 0.2, 0.3, 0.4], maj_at_k={
            "k": [1, 2, 4], "total_tokens": [1, 2, 3], "accuracy": [0.1, 0.2]}), "t")


def test_charts_are_deterministic(tmp_path):
    ev = eval_dict([0.2, 0.4, 0.5, 0.6], **OPTIONAL)
    for sub in ("a", "b"):
        os.makedirs(tmp_path / sub)
        write_eval_report(str(tmp_path / sub), ev, "same")
    for name in ("accuracy_vs_budget.png", "maj_at_k.png", "report.html"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_failing_chart_is_noted_not_fatal(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no canvas")

    monkeypatch.setattr(report, "write_eval_charts", broken)
    run_dir = make_run(tmp_path / "run")
    md = open(write_report(run_dir, _result(run_dir))).read()
    assert "Charts could not be drawn: RuntimeError: no canvas" in md
    assert "| accuracy | 0.400 | 0.600 |" in md


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """ONE real training run (tiny preset, one step): the job writes its report through write_report."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", MRT_JAX_CACHE=str(run_dir) + "_cache")
    cmd = [sys.executable, "-m", "experiments.mrt_math", "--preset=tiny", "--steps=1", "--eval_every=1",
           "--eval_problems=2", f"--run_dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return run_dir


def test_real_tiny_run_report(tiny_run):
    md = (tiny_run / "report.md").read_text()
    assert "| accuracy |" in md and "| before |" in md and "| after |" in md
    for png in ("accuracy_vs_budget.png", "regret_vs_budget.png", "training_curves.png"):
        assert_png(tiny_run / png)
    html_text = (tiny_run / "report.html").read_text()
    assert_self_contained(html_text)
    assert html_text.count("data:image/png;base64,") == 3


def test_real_tiny_run_compares_with_an_eval_dir(tiny_run, tmp_path, capsys):
    ev_dir = tmp_path / "ev"
    os.makedirs(ev_dir)
    (ev_dir / "eval.json").write_text(json.dumps(eval_dict([0.25, 0.5, 0.5, 0.5], budgets=[3, 6, 9, 12])))
    out = tmp_path / "cmp"
    assert compare_main([str(tiny_run), str(ev_dir), f"--out={out}"]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert [g["label"] for g in result["groups"]] == ["base", "mrt", "ev"]
    assert result["groups"][1]["steps"]["mean"] == 1
    assert_png(out / "accuracy_vs_budget.png")
    assert_png(out / "training_curves.png")
