"""experiments.compare on hand-built run/eval dirs: seeds aggregated to hand-computed means and spreads, the base
group, labels, different budget grids, escaping, strict JSON, and one-line errors with exit code 2."""

import json
import math
import os

import pytest

from experiments.compare import main
from experiments.reporting.curves import Curve, aggregate
from tests.report_fixtures import eval_dict, make_eval_dir, make_run, write_json
from tests.test_report import assert_png, assert_self_contained

MRT_AFTER = [  # (curve over budgets 8/16/32/64, regret); tokens to pass@1 0.3: 12, 10 + 2/3, 10
    ([0.2, 0.4, 0.5, 0.6], 0.3), ([0.2, 0.5, 0.6, 0.7], 0.4), ([0.2, 0.6, 0.7, 0.8], 0.5)]
GRPO_AFTER = [([0.1, 0.2, 0.25, 0.28], 0.6), ([0.1, 0.2, 0.4, 0.5], 0.5)]  # tokens to 0.3: never, 24


def _metrics(scale):
    return [{"step": s, "reward": scale * s, "accuracy": 0.1, "time/learn": 1.0} for s in (1, 2, 3)]


@pytest.fixture
def study(tmp_path):
    """Three MRT seeds and two GRPO seeds, all from the same base."""
    dirs = []
    for i, (curve, regret) in enumerate(MRT_AFTER):
        dirs.append(make_run(tmp_path / f"mrt{i}", algo="mrt", seed=i, after=eval_dict(curve, regret=regret),
                             metrics=_metrics(1.0 + i), wall=10.0 * (i + 1)))
    for i, (curve, regret) in enumerate(GRPO_AFTER):
        dirs.append(make_run(tmp_path / f"grpo{i}", algo="grpo", seed=i, after=eval_dict(curve, regret=regret),
                             metrics=_metrics(0.5)))
    return dirs


def _run(argv, capsys):
    """Exit code and stderr, whether main returns the code or the argument parser exits with it."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_seeds_are_aggregated_by_hand(study, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run([*study, f"--out={out}", "--targets=0.3"], capsys) == (0, "")
    result = json.loads((out / "compare.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    groups = {g["label"]: g for g in result["groups"]}
    assert list(groups) == ["base", "mrt", "grpo"]
    mrt, grpo = groups["mrt"], groups["grpo"]
    assert mrt["n"] == 3 and mrt["members"] == ["mrt0", "mrt1", "mrt2"]
    assert mrt["final_pass"]["mean"] == pytest.approx(0.7)
    assert mrt["final_pass"]["std"] == pytest.approx(0.1)
    assert (mrt["final_pass"]["min"], mrt["final_pass"]["max"]) == pytest.approx((0.6, 0.8))
    assert mrt["regret"]["mean"] == pytest.approx(0.4)
    assert mrt["pass_at_budget"]["16"]["mean"] == pytest.approx(0.5)
    assert mrt["tokens_to_target"]["0.3"]["mean"] == pytest.approx((12 + 32 / 3 + 10) / 3)
    assert mrt["wall_seconds"]["mean"] == pytest.approx(20.0)
    t = grpo["tokens_to_target"]["0.3"]
    assert (t["mean"], t["n"], t["n_finite"], t["n_never"]) == (pytest.approx(24.0), 2, 1, 1)
    assert groups["base"]["n"] == 1 and groups["base"]["final_pass"]["mean"] == pytest.approx(0.4)
    # curves: the mean with a min/max band
    acc = result["curves"]["mrt"]["eval"]["pass_at_budget"]
    assert acc["y"] == pytest.approx([0.2, 0.5, 0.6, 0.7])
    assert acc["lo"] == pytest.approx([0.2, 0.4, 0.5, 0.6]) and acc["hi"] == pytest.approx([0.2, 0.6, 0.7, 0.8])
    reward = result["curves"]["mrt"]["training"]["reward"]
    assert reward["y"] == pytest.approx([2.0, 4.0, 6.0]) and reward["hi"] == pytest.approx([3.0, 6.0, 9.0])
    md = (out / "compare.md").read_text()
    spread = "0.700 ± 0.100 (0.600–0.800)"  # accuracy and final pass@1, then regret
    assert f"| mrt | 3 | {spread} | {spread} | 0.400 ± 0.100 (0.300–0.500) |" in md
    assert "| grpo | 2 |" in md and "24.0 [1/2 runs reach it]" in md
    assert "| base | mrt0 (before) | 0 |" in md
    for png in ("accuracy_vs_budget.png", "regret_vs_budget.png", "training_curves.png"):
        assert_png(out / png)
    assert_self_contained((out / "compare.html").read_text())


def test_training_metrics_are_averaged_per_run_then_over_runs(study, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run([*study, f"--out={out}"], capsys) == (0, "")
    groups = {g["label"]: g for g in json.loads((out / "compare.json").read_text())["groups"]}
    reward = groups["mrt"]["training"]["reward"]  # run means 2, 4, 6 (reward = scale x step over steps 1-3)
    assert (reward["mean"], reward["std"], reward["min"], reward["max"]) == pytest.approx((4.0, 2.0, 2.0, 6.0))
    assert groups["grpo"]["training"]["reward"]["mean"] == pytest.approx(1.0)
    assert groups["mrt"]["training"]["truncated_frac"]["n_finite"] == 0  # a metric the runs did not log
    md = (out / "compare.md").read_text()
    assert "| mrt | 4.000 ± 2.000 (2.000–6.000) | - | - | - |" in md
    assert "| base | -" not in md.split("## Training, mean over steps")[1].split("## Per run")[0]  # no training


def test_groups_are_paired_by_seed_with_a_paired_t_test(study, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run([*study, f"--out={out}"], capsys) == (0, "")
    paired = {(r["a"], r["b"]): r for r in json.loads((out / "compare.json").read_text())["paired"]}
    base = "base (each seed's before-eval)"
    assert list(paired) == [("mrt", base), ("grpo", base), ("grpo", "mrt")]
    # final pass@1: mrt 0.6 0.7 0.8 (seeds 0-2), grpo 0.28 0.5 (seeds 0-1), every before-eval 0.4
    mrt_base = paired[("mrt", base)]  # differences 0.2 0.3 0.4: t = 0.3 / (0.1 / sqrt 3); d.f. 2: p = 1 - t/sqrt(2+t^2)
    t = 0.3 / (0.1 / math.sqrt(3))
    assert mrt_base["seeds"] == [0, 1, 2] and mrt_base["b_values"] == pytest.approx([0.4] * 3)
    assert (mrt_base["mean_difference"], mrt_base["t"]) == pytest.approx((0.3, t))
    assert mrt_base["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-9)
    grpo_mrt = paired[("grpo", "mrt")]  # seeds 0-1: -0.32, -0.2; d.f. 1 (Cauchy): p = 1 - 2 atan(|t|) / pi
    t = -0.26 / (math.sqrt(0.0072) / math.sqrt(2))
    assert grpo_mrt["seeds"] == [0, 1] and grpo_mrt["t"] == pytest.approx(t)
    assert grpo_mrt["p"] == pytest.approx(1 - 2 * math.atan(abs(t)) / math.pi, abs=1e-9)
    md = (out / "compare.md").read_text()
    assert "| grpo | mrt | 0 1 | 0.280 0.500 | 0.600 0.700 | -0.260 |" in md


def test_pairs_sharing_under_two_seeds_and_equal_differences_give_no_test():
    from experiments.reporting.stats import paired_t, t_two_sided_p

    assert paired_t([0.1]) == (None, None) and paired_t([0.1, 0.1]) == (None, None)
    assert t_two_sided_p(0.0, 5) == pytest.approx(1.0) and t_two_sided_p(1e6, 3) < 1e-12


def test_labels_group_runs_and_are_escaped(study, tmp_path, capsys):
    out = tmp_path / "out"
    labels = "<script>,<script>,_$x^{$,_$x^{$,base"  # "$x^{$" is broken mathtext if it reached matplotlib
    assert _run([*study, f"--out={out}", f"--labels={labels}"], capsys) == (0, "")
    result = json.loads((out / "compare.json").read_text())
    assert [(g["label"], g["n"]) for g in result["groups"]] == [("<script>", 2), ("_$x^{$", 2), ("base", 1)]
    assert_png(out / "accuracy_vs_budget.png")
    html_text = (out / "compare.html").read_text()
    assert_self_contained(html_text)
    assert "&lt;script&gt;" in html_text


def test_eval_and_analysis_dirs_with_other_budget_grids(study, tmp_path, capsys):
    ev = make_eval_dir(tmp_path / "ev", eval_dict([0.3, 0.6], budgets=[10, 100]))
    an = make_eval_dir(tmp_path / "an", eval_dict([0.1, 0.2, 0.3], budgets=[5, 50, 500], maj_at_k={
        "k": [1, 4], "total_tokens": [500, 2000], "accuracy": [0.3, 0.4]}), name="analysis.json")
    out = tmp_path / "out"
    assert _run([study[0], ev, an, f"--out={out}"], capsys) == (0, "")
    result = json.loads((out / "compare.json").read_text())
    assert [r["kind"] for r in result["runs"]] == ["base", "run", "eval", "analysis"]
    assert result["curves"]["ev"]["eval"]["pass_at_budget"]["x"] == [10, 100]
    assert any("different budget grids" in n for n in result["notes"])
    assert "maj_at_k.png" in result["charts"]
    assert result["targets"] == [pytest.approx(0.15)]  # half the lowest final pass@1: the analysis's 0.3


def test_episode_only_analysis_is_compared(study, tmp_path, capsys):
    an = make_eval_dir(tmp_path / "an", {"episodes": [0, 1, 2], "pass_at_episode": [0.1, None, 0.3]},
                       name="analysis.json")
    out = tmp_path / "out"
    assert _run([study[0], an, f"--out={out}", "--targets=0.3"], capsys) == (0, "")
    result = json.loads((out / "compare.json").read_text())
    row = result["runs"][-1]
    assert row["kind"] == "analysis" and row["final_pass"] is None and row["tokens_to_target"] == {"0.3": None}
    assert result["curves"]["an"]["eval"]["pass_at_episode"]["x"] == [0, 2]  # the null point is not drawn
    assert "pass_at_episode.png" in result["charts"]
    assert "| an | 1 | - | - | - | - |" in (out / "compare.md").read_text()


def test_aggregate_keeps_common_points_only():
    a = Curve([1, 2, 3], [0.1, 0.2, 0.3])
    b = Curve([2, 3, 4], [0.4, 0.5, 0.6])
    mean, dropped = aggregate([a, b])
    assert mean.x == [2, 3] and mean.y == pytest.approx([0.3, 0.4]) and dropped == 2
    assert (mean.lo, mean.hi) == ([0.2, 0.3], [0.4, 0.5])


def _bad_dirs(tmp_path):
    (tmp_path / "empty").mkdir()
    os.makedirs(tmp_path / "nometrics")
    write_json(tmp_path / "nometrics" / "config.json", {"algo": "mrt"})
    run = make_run(tmp_path / "torn")
    with open(os.path.join(run, "metrics.jsonl"), "a") as f:
        f.write('{"step": 6, "reward": 0.\n')
    make_eval_dir(tmp_path / "mismatch", {"budgets": [8, 16], "pass_at_budget": [0.1]})
    make_eval_dir(tmp_path / "disjoint_a", eval_dict([0.1, 0.2], budgets=[1, 2]))
    make_eval_dir(tmp_path / "disjoint_b", eval_dict([0.1, 0.2], budgets=[3, 4]))
    return tmp_path


@pytest.mark.parametrize("argv, message", [
    (["missing"], "missing: not a directory"),
    (["empty"], "empty: neither a training run dir"),
    (["nometrics"], "nometrics: a run dir without metrics.jsonl"),
    (["torn"], "metrics.jsonl:6: not valid JSON"),
    (["mismatch"], "'budgets' has 2 values but 'pass_at_budget' has 1"),
    (["disjoint_a", "disjoint_b", "--labels=x,x"], "runs labelled 'x' share no token budget"),
    (["empty", "--labels=a,b"], "--labels has 2 label(s) for 1 run dir(s)"),
    (["empty", "empty"], "is given twice"),
    (["empty", "--targets=1.5"], "every target must lie in (0, 1]"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, message):
    root = _bad_dirs(tmp_path)
    args = [a if a.startswith("--") else root / a for a in argv]
    code, err = _run([*args, f"--out={root / 'out'}"], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1, err
    assert not (root / "out" / "compare.md").exists()


def test_run_dirs_and_out_in_a_bucket_give_the_local_tables(study, tmp_path, capsys, monkeypatch):
    """The study keeps its runs in a bucket (``--out=gs://...``): compare reads run dirs there and writes its output
    there, each file one whole object (the fake GCS of ``tests/fake_gcs``), with the tables of a local compare."""
    from mrt_jax import run_files
    from tests import fake_gcs

    local_out = tmp_path / "local_out"
    assert _run([*study, f"--out={local_out}", "--targets=0.3"], capsys) == (0, "")
    cwd = tmp_path / "cwd"  # a write that bypassed the run-dir layer would make a local "gs:" folder here
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with fake_gcs.serving() as gcs:
        root = f"gs://{fake_gcs.BUCKET}/{tmp_path.name}"
        remote = [f"{root}/{os.path.basename(d)}" for d in study]
        for local, dest in zip(study, remote):
            run_files.upload_tree(local, dest)
        assert _run([*remote, f"--out={root}/out/", "--targets=0.3"], capsys) == (0, "")

        def stored(name: str) -> bytes:
            return gcs.read(fake_gcs.BUCKET, f"{tmp_path.name}/out/{name}")

        assert stored("compare.md").decode() == (local_out / "compare.md").read_text()
        result, expected = json.loads(stored("compare.json")), json.loads((local_out / "compare.json").read_text())
        assert [r.pop("path") for r in result["runs"]] == [dict(zip(study, remote))[r.pop("path")]
                                                           for r in expected["runs"]]  # where each run was read
        assert result == expected
        for png in ("accuracy_vs_budget.png", "regret_vs_budget.png", "training_curves.png"):
            assert stored(png) == (local_out / png).read_bytes()
        assert_self_contained(stored("compare.html").decode())
        # a run dir given twice, once with a trailing slash, is still refused
        code, err = _run([remote[0], remote[0] + "/", f"--out={root}/out2"], capsys)
        assert code == 2 and "is given twice" in err
    assert list(cwd.iterdir()) == []
