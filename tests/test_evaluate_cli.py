"""``python -m experiments.evaluate`` end to end on the tiny random model and a MATH-500-layout file; the library
entry point against the budgeted evaluator it extends; restoring a run's checkpoint read-only; bad input."""

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from experiments import evaluate as cli
from tests.trees import assert_tree_close

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MATH500 = [  # the published MATH-500 layout: problem, solution, answer, subject, level, unique_id
    {"problem": "What is $1+1$?", "solution": "It is $\\boxed{2}$.", "answer": "2", "subject": "Prealgebra",
     "level": 1, "unique_id": "test/prealgebra/1.json"},
    {"problem": "Compute $\\frac{1}{2}+\\frac{1}{4}$.", "solution": "$\\boxed{\\frac{3}{4}}$",
     "answer": "\\frac{3}{4}", "subject": "Algebra", "level": 2, "unique_id": "test/algebra/2.json"},
    {"problem": "Solve $x^2=9$ for $x>0$.", "solution": "So $x=\\boxed{3}$.", "answer": "3", "subject": "Algebra",
     "level": 1, "unique_id": "test/algebra/3.json"},
]
EVAL_KEYS = ("budgets", "pass_at_budget", "accuracy", "regret", "mean_length", "tokens_to_half_max",
             "regret_at_budget", "maj_at_k", "tokens_to_accuracy", "episodes", "pass_at_episode", "episode_tokens",
             "extrapolation", "num_problems", "num_traces", "cost", "settings", "source")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One sentencepiece cache for the module (the tiny model's tokenizer is trained once, about 8 s)."""
    path = tmp_path_factory.mktemp("mrt_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MRT_JAX_CACHE", str(path))
        yield path


def _math500(path, rows=MATH500):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _one_line_error(capsys, argv, message):
    code = None
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err


# ----------------------------------------------------------------------------------------------- end to end
def test_end_to_end_tiny_model_on_math500_layout(tmp_path, cache_dir):
    data, out = _math500(tmp_path / "math500.jsonl"), tmp_path / "out"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", MRT_JAX_CACHE=str(cache_dir))
    cmd = [sys.executable, "-m", "experiments.evaluate", "--model=tiny", f"--dataset={data}", "--problems=3",
           "--n=2", "--k=2", "--max_tokens=16", "--budgets=6,12,16", "--extrapolate=24", "--answer_tokens=4",
           "--episodes=2", "--episode_rule=grid", "--episode_grid=6", f"--out={out}", "--seed=1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "eval.json").read_text())
    for key in EVAL_KEYS:
        assert key in res, key
    assert res["budgets"] == [6, 12, 16] and len(res["pass_at_budget"]) == 3
    assert res["regret_at_budget"]["budgets"] == [6, 12, 16]
    assert len(res["regret_at_budget"]["constant"]) == len(res["regret_at_budget"]["maj_or_continue"]) == 3
    assert res["regret"] == pytest.approx(res["regret_at_budget"]["constant"][-1])
    assert res["maj_at_k"]["k"] == [1, 2] and len(res["maj_at_k"]["total_tokens"]) == 2
    assert res["maj_at_k"]["total_tokens"][1] == pytest.approx(2 * res["maj_at_k"]["total_tokens"][0])
    assert res["maj_at_k"]["accuracy"][0] == pytest.approx(res["accuracy"])  # maj@1 is pass@1 of final answers
    assert res["episodes"] == [0, 1, 2] and len(res["pass_at_episode"]) == 3
    # Grid episodes of 6 tokens end where budgets 6 and 12 do: one shared fork per point, the same answers.
    assert res["pass_at_episode"][1:] == pytest.approx(res["pass_at_budget"][:2])
    assert res["episode_tokens"][0] == 0 and 0 < res["episode_tokens"][1] <= 6 < res["episode_tokens"][2] <= 12
    assert res["extrapolation"]["budgets"] == [24] and len(res["extrapolation"]["pass_at_budget"]) == 1
    assert set(res["tokens_to_accuracy"]) == {"0.1", "0.25", "0.5", "0.75"}
    assert res["num_problems"] == 3 and res["num_traces"] == 6
    assert res["settings"]["n"] == 2 and res["settings"]["temperature"] == 0.6 and res["source"]["format"] == "plain"
    assert res["cost"]["trace_tokens"] == pytest.approx(6 * res["mean_length"])
    assert res["cost"]["forced_answer_tokens"] > 0 and res["cost"]["extrapolation_tokens"] > 0
    assert (out / "report.md").exists()
    # The per-trace records re-analysed offline give the same curves (one summary for both paths).
    from experiments.analyze_traces import analyze

    offline, _ = analyze(str(out / "traces.jsonl"))
    assert len((out / "traces.jsonl").read_text().splitlines()) == 6
    for key in ("budgets", "pass_at_budget", "regret", "regret_at_budget", "maj_at_k", "accuracy", "mean_length",
                "episodes", "pass_at_episode", "tokens_to_accuracy"):
        assert_tree_close(offline[key], res[key], path=key)


# ---------------------------------------------------------------------------------------- library entry point
@pytest.fixture(scope="module")
def tiny(cache_dir):
    from experiments.config import ExperimentConfig
    from experiments.setup_model import build

    cfg = ExperimentConfig(model="tiny", sft_steps=0, seed=3)
    model, tokenizer, fmt, _ = build(cfg, None)
    return cfg, model, tokenizer, fmt


def _hash_verify(text: str, gold: str) -> float:
    """A deterministic stand-in verifier that is right about a third of the time (a random model never is)."""
    return float(zlib.crc32(text.encode()) % 3 == 0)


def test_suite_reproduces_the_budgeted_evaluator(tiny):
    from mrt_jax.data import get_task
    from mrt_jax.evaluation import EvalSettings, evaluate_budgeted, evaluate_suite
    from mrt_jax.evaluation.summary import summarize
    from mrt_jax.evaluation.traces import parse_trace_lines
    from mrt_jax.sampling import Sampler

    _, model, tok, fmt = tiny
    problems = get_task("arithmetic").problems(4, seed=5)
    prompts = [tok.encode(fmt.build_prompt(p.question)) for p in problems]
    answers = [p.answer for p in problems]
    sampler = Sampler(model, tok, max_cache_len=128)
    suffix = fmt.forced_termination_suffix
    legacy = evaluate_budgeted(sampler, prompts, answers, _hash_verify, forced_suffix=suffix, max_new_tokens=12,
                               budgets=[3, 6, 12], answer_tokens=3)
    settings = EvalSettings(max_new_tokens=12, budgets=(3, 6, 12), answer_tokens=3)
    res = evaluate_suite(sampler, prompts, answers, _hash_verify, forced_suffix=suffix, settings=settings)
    summary = res.to_dict()
    assert 0 < sum(legacy.pass_at_budget) and legacy.regret < 1  # the stand-in verifier says something
    for key, value in legacy.to_dict().items():
        assert_tree_close(summary[key], value, path=key)
    # Greedy, one forced answer: the vote is the answer, continuing is the end of the curve.
    assert summary["regret_at_budget"]["constant"][-1] == pytest.approx(legacy.regret)
    again = summarize(parse_trace_lines([json.dumps(t.to_json()) for t in res.traces]), budgets=[3, 6, 12])
    for key in ("pass_at_budget", "regret_at_budget", "accuracy", "maj_at_k"):
        assert_tree_close(again[key], summary[key], path=key)


def test_rows_per_call_changes_no_number(tiny, monkeypatch):
    """Evaluating in chunks of whole problems (memory bounded by --rows_per_call) gives the numbers of one call over
    every row: random traces, k random forced answers per point, episodes and budget forcing draw from the streams
    the single call would use. 5 problems x 2 traces in chunks of 1 problem (2 rows, more than the bound of 1: a
    problem is never split)."""
    from mrt_jax.data import get_task
    from mrt_jax.evaluation import EvalSettings, evaluate_suite, extrapolation
    from mrt_jax.sampling import EpisodeRules, Sampler

    _, model, tok, fmt = tiny
    problems = get_task("arithmetic").problems(5, seed=5)
    prompts = [tok.encode(fmt.build_prompt(p.question)) for p in problems]
    answers = [p.answer for p in problems]
    sampler = Sampler(model, tok, max_cache_len=256)
    extended = []  # per budget_force call (one per chunk): the extensions of each row
    real = extrapolation.budget_force

    def budget_force(*args, **kw):
        forced = real(*args, **kw)
        extended.append(forced.extensions)
        return forced

    monkeypatch.setattr(extrapolation, "budget_force", budget_force)

    def run(rows_per_call):
        extended.clear()
        settings = EvalSettings(max_new_tokens=12, budgets=(3, 6, 12), n=2, temperature=0.9, k=2, k_temperature=0.9,
                                answer_tokens=3, episode_rules=EpisodeRules.grid_of(5), max_episodes=2,
                                extrapolate=(96,), max_extensions=2, rows_per_call=rows_per_call)
        res = evaluate_suite(sampler, prompts, answers, _hash_verify, forced_suffix=fmt.forced_termination_suffix,
                             settings=settings)
        summary = res.to_dict()
        assert summary["settings"].pop("rows_per_call") == rows_per_call and summary["cost"].pop("seconds") >= 0
        return summary, [t.to_json() for t in res.traces], list(extended)

    whole, whole_traces, _ = run(None)
    assert 0 < whole["pass_at_budget"][0] < 1 and whole["maj_at_k"]["k"] == [1, 2]  # the verifier says something
    assert whole["cost"]["forced_answer_tokens"] > 0 and len(whole_traces) == 10
    # One chunked run (the budgeted test below covers chunks of several problems): rows_per_call=1 gives five chunks,
    # each one problem of 2 rows (more than the bound: a problem is never split).
    for rows_per_call, sizes in ((1, [2] * 5),):
        summary, traces, extended_by_chunk = run(rows_per_call)
        assert [len(e) for e in extended_by_chunk] == sizes
        # Budget forcing extended rows in more than one chunk (each row's extensions draw from its global row id).
        assert sum(any(e) for e in extended_by_chunk) >= 2, extended_by_chunk
        assert_tree_close(summary, whole, rel=0, abs_tol=0, path=f"rows_per_call={rows_per_call}")
        assert_tree_close(traces, whole_traces, rel=0, abs_tol=0, path=f"rows_per_call={rows_per_call} traces")


def test_budgeted_rows_per_call_changes_no_number(tiny):
    """The training job's periodic evaluation (``evaluate_budgeted``, 64 rows per call by default) in chunks of whole
    problems gives the numbers of one call: random traces and k random forced answers per budget."""
    from mrt_jax.data import get_task
    from mrt_jax.evaluation import evaluate_budgeted
    from mrt_jax.sampling import Sampler

    _, model, tok, fmt = tiny
    problems = get_task("arithmetic").problems(5, seed=7)
    prompts = [tok.encode(fmt.build_prompt(p.question)) for p in problems]
    sampler = Sampler(model, tok, max_cache_len=128)

    def run(rows_per_call):
        return evaluate_budgeted(sampler, prompts, [p.answer for p in problems], _hash_verify,
                                 forced_suffix=fmt.forced_termination_suffix, max_new_tokens=12, budgets=[4, 8, 12],
                                 n=2, temperature=0.9, k=2, k_temperature=0.9, answer_tokens=3, seed=4,
                                 rows_per_call=rows_per_call).to_dict()

    whole = run(None)
    assert 0 < whole["pass_at_budget"][0] < 1
    for rows_per_call in (4, 1):
        assert_tree_close(run(rows_per_call), whole, rel=0, abs_tol=0, path=f"rows_per_call={rows_per_call}")


def test_restore_newest_checkpoint_read_only(tmp_path, tiny):
    import dataclasses

    import jax
    from flax import nnx

    from experiments.eval_inputs import check_run_dir, restore_params, run_config
    from experiments.job_setup import learner_config
    from experiments.setup_model import build
    from mrt_jax.checkpointing import Checkpointer
    from mrt_jax.learner import create_train_state

    cfg = dataclasses.replace(tiny[0], run_dir=str(tmp_path))
    model = build(cfg, None)[0]
    trained = jax.tree.map(lambda x: x * 0.5 + 0.25, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    state = create_train_state(model.cfg, learner_config(cfg), None, params=trained)
    ckpt = Checkpointer(tmp_path / "checkpoints", save_every=1, async_save=False)
    ckpt.maybe_save(3, state, {"step": 3}, force=True)
    ckpt.close()
    os.makedirs(tmp_path / "checkpoints" / "7")  # a save that never finished: skipped, and left alone
    (tmp_path / "config.json").write_text(json.dumps({**cfg.to_dict(), "field_from_the_future": 1}))
    listing = sorted((d, tuple(sorted(f))) for d, _, f in os.walk(tmp_path))

    stored, ckpt_dir, step = check_run_dir(str(tmp_path))
    assert step == 3
    restored = restore_params(build(cfg, None)[0], run_config(stored, "config.json"), ckpt_dir, step)
    got = nnx.to_pure_dict(nnx.state(restored, nnx.Param))
    for name, value in trained.items():
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(value), err_msg=name)
    assert sorted((d, tuple(sorted(f))) for d, _, f in os.walk(tmp_path)) == listing


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_input_in_a_real_process(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    proc = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"--run_dir={tmp_path / 'nope'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: --run_dir='{tmp_path / 'nope'}': no such directory"


def test_bad_flags_and_data(tmp_path, capsys):
    good = str(_math500(tmp_path / "good.jsonl"))
    bad_line = str(_math500(tmp_path / "bad.jsonl", [MATH500[0], '{"problem": "x", "answer": '] + MATH500[1:]))
    no_answer = str(_math500(tmp_path / "noanswer.jsonl", [MATH500[0], {"problem": "What?", "solution": "no"}]))
    prose_gold = str(_math500(tmp_path / "prose.jsonl", [{"problem": "Why?", "answer": "see the proof"}]))
    run = tmp_path / "run"
    os.makedirs(run / "checkpoints" / "5")  # a step dir without Orbax's commit metadata
    (run / "config.json").write_text(json.dumps({"model": "tiny"}))
    out = f"--out={tmp_path / 'out'}"
    cases = [
        ([f"--run_dir={run}"], "has no complete checkpoint under checkpoints/ (step dirs [5] are incomplete)"),
        ([f"--run_dir={tmp_path}"], "is not a training run: no config.json"),
        (["--model=tiny", f"--dataset={tmp_path / 'missing.jsonl'}", out], "missing.jsonl': no such file"),
        (["--model=tiny", f"--dataset={bad_line}", out], "bad.jsonl:2: malformed JSON"),
        (["--model=tiny", f"--dataset={no_answer}", out], "noanswer.jsonl:2: no answer"),
        (["--model=tiny", f"--dataset={prose_gold}", out], "is not an expression math-verify can check"),
        (["--model=tiny", f"--dataset={tmp_path / 'x.csv'}", out], "no such file"),
        (["--model=tiny", "--dataset=nosuchtask:2", out], "--dataset='nosuchtask:2': unknown task"),
        (["--model=tiny", "--dataset=arithmetic:9", out], "difficulty=9; allowed 0..6"),
        (["--model=tiny", f"--dataset={good}", "--budgets=0,4", out], "--budgets must be a comma list of positive"),
        (["--model=tiny", f"--dataset={good}", "--budgets=4,x", out], "--budgets must be a comma list of positive"),
        (["--model=tiny", f"--dataset={good}", "--budgets=8,64", "--max_tokens=16", out],
         "budgets must be <= --max_tokens=16"),
        (["--model=tiny", f"--dataset={good}", "--extrapolate=8", "--max_tokens=16", out],
         "--extrapolate=8: budgets must exceed --max_tokens=16"),
        (["--model=tiny", f"--dataset={good}", "--n=0", out], "--n must be a positive integer"),
        (["--model=tiny", f"--dataset={good}", "--rows_per_call=0", out],
         "--rows_per_call must be a positive integer (rows sampled per call) or 'all', got '0'"),
        (["--model=tiny", f"--dataset={good}", "--rows_per_call=-8", out],
         "--rows_per_call must be a positive integer (rows sampled per call) or 'all', got '-8'"),
        (["--model=tiny", f"--dataset={good}"], "--out is required with --model"),
        (["--model=tiny", f"--run_dir={run}", out], "not allowed with argument"),
        ([out], "one of the arguments --run_dir --model is required"),
    ]
    for argv, message in cases:
        _one_line_error(capsys, argv, message)


def test_prompt_longer_than_the_context(tmp_path, capsys, tiny):
    long = _math500(tmp_path / "long.jsonl", [MATH500[0], {"problem": "Add " + "one and " * 1500 + "one.",
                                                            "answer": "1501", "unique_id": "test/long/9.json"}])
    _one_line_error(capsys, ["--model=tiny", f"--dataset={long}", "--max_tokens=16", f"--out={tmp_path / 'o'}"],
                    "problem 'test/long/9.json': prompt of")


def test_inert_flags_are_refused(tmp_path, capsys):
    """A flag the evaluation would not read is a one-line error naming it, before any model is built; the same flag
    where it is read passes that check (it fails later, on purpose, at a missing file)."""
    good, out = str(_math500(tmp_path / "good.jsonl")), f"--out={tmp_path / 'out'}"
    cases = [
        (["--dataset=arithmetic:1", "--dataset_format=gsm8k"], "--dataset_format does nothing here"),
        (["--dataset=arithmetic:1", "--task=countdown"], "--task does nothing here"),
        (["--episodes=0", "--episode_rule=grid"], "--episode_rule does nothing here"),
        (["--episode_grid=8"], "--episode_grid does nothing here"),
        (["--max_extensions=2"], "--max_extensions does nothing here"),
        ([f"--dataset={good}", "--seed=3"], "--seed does nothing here"),
        (["--dataset=easy-math", "--dataset_format=gsm8k"], "--dataset_format does nothing here"),  # bundled
    ]
    for flags, message in cases:
        _one_line_error(capsys, ["--model=tiny", *flags, out], message)
    missing = str(tmp_path / "missing.jsonl")
    for flags in (["--dataset_format=gsm8k"], ["--task=countdown"], ["--seed=3", "--n=2"],
                  ["--episode_rule=grid", "--episode_grid=8"], ["--extrapolate=200", "--max_extensions=2"]):
        _one_line_error(capsys, ["--model=tiny", f"--dataset={missing}", *flags, out], "missing.jsonl': no such file")


def test_a_bundled_dataset_is_read_as_training_reads_it():
    """``--dataset=easy-math`` (what --preset=smollm2-math trains on) names the same rows here as in training."""
    from experiments.eval_inputs import load_problems
    from mrt_jax.data.training_data import BUNDLED

    problems = load_problems("easy-math", 5, seed=0, dataset_format="math500", task="arithmetic")
    path, _ = BUNDLED["easy-math"]
    rows = [json.loads(line) for line in open(path)][:5]
    assert problems.questions == [r["problem"] for r in rows]
    assert list(problems.answers) == [r["answer"] for r in rows]
