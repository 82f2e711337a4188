"""Every flag of the training job does what it says (issue 14): it is read by the job's code, it changes what the
job builds from the config where that is a value (the learner and rollout settings), or, where it does nothing
for the chosen algorithm or mode, it is refused when given a non-default value (experiments.inert_flags)."""

import dataclasses
import pathlib
import re

import pytest

from experiments.config import ExperimentConfig, parse_args, without_inert
from experiments.inert_flags import INERT
from experiments.job_parts import rollout_settings
from experiments.job_setup import learner_config
from mrt_jax.data import PLAIN

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIELDS = [f.name for f in dataclasses.fields(ExperimentConfig)]

# Flags whose value becomes part of the learner's or the rollout's settings: changing one must change them.
# (flag value, extra flags that make the flag active)
DERIVED = {
    "learning_rate": ("0.001", []), "warmup_frac": ("0.5", []), "weight_decay": ("0.1", []),
    "max_grad_norm": ("2.0", []), "clip_low": ("0.1", []), "clip_high": ("0.3", []), "dual_clip": ("3.0", []),
    "kl_coef": ("0.1", []), "kl_estimator": ("k1", ["--kl_coef=0.1"]), "entropy_coef": ("0.01", []),
    "loss_aggregation": ("seq_sum_norm", []), "micro_batches": ("2", []), "inner_epochs": ("2", []),
    "steps": ("40", []), "seed": ("3", []), "algo": ("grpo", []), "mrt_form": ("mixed", []),
    "group_size": ("8", []), "max_new_tokens": ("64", []), "temperature": ("0.7", []), "top_p": ("0.9", []),
    "truncation": ("mask", []), "alpha": ("0.5", []), "meta_samples": ("2", []), "meta_max_tokens": ("8", []),
    "meta_temperature": ("1.0", []), "max_episodes": ("2", []), "length_penalty": ("0.1", []),
    "overlong_buffer": ("8", []), "overlong_factor": ("0.5", ["--overlong_buffer=8"]),
    "dynamic_sampling": ("true", []), "dynamic_rounds": ("2", ["--dynamic_sampling"]),
}


def derived(flags):
    cfg = parse_args(flags)
    return learner_config(cfg), rollout_settings(cfg, 32, PLAIN)


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_a_settings_flag_changes_what_the_step_computes(name):
    value, extra = DERIVED[name]
    assert derived(extra) != derived([*extra, f"--{name}={value}"]), f"--{name} changed neither setting"


# The job's run path: where a config becomes what a run does (not the shape estimates of --compile_only, not the
# model's own ``cfg`` in mrt_jax, where a same-named field would hide a flag nobody reads).
JOB_FILES = ("colocated", "job_parts", "job_setup", "setup_model", "slice_batch", "disaggregated", "disagg_learner",
             "disagg_sampler", "mrt_math")


def _sources() -> str:
    return "\n".join((ROOT / "experiments" / f"{name}.py").read_text() for name in JOB_FILES)


@pytest.mark.parametrize("name", [f for f in FIELDS if f != "preset"])
def test_every_flag_is_read_by_the_job(name):
    """``cfg.<flag>`` appears in the code that runs the job: a flag that is only validated would fail here (as
    --mrt_form did before issue 14)."""
    assert re.search(rf"\bcfg\.{name}\b", _sources()), f"--{name} is accepted but never read"


def test_preset_fills_in_the_defaults_that_flags_then_override():
    tiny = parse_args(["--preset=tiny"])
    assert (tiny.model, tiny.steps) == ("tiny", 3) and parse_args([]).model == "demo"
    assert parse_args(["--preset=tiny", "--steps=5"]).steps == 5


def _inert_case(name):
    """Flags under which ``name`` does nothing, and a non-default value for it."""
    cases = {
        "mrt_form": (["--algo=grpo"], "mixed"), "alpha": (["--algo=mrt_star"], "0.5"),
        "meta_samples": (["--algo=rloo"], "2"), "meta_temperature": (["--algo=grpo"], "1.0"),
        "episode_rule": (["--algo=grpo"], "grid"), "max_episodes": (["--algo=dr_grpo"], "2"),
        "episode_grid": (["--episode_rule=markers"], "8"), "overlong_factor": ([], "0.5"),
        "dynamic_rounds": ([], "2"), "kl_estimator": ([], "k1"), "sft_steps": (["--model=tiny"], "10"),
        "sft_learning_rate": (["--sft_steps=0"], "0.1"), "sft_batch_size": (["--model=tiny"], "4"),
        "sft_traces": (["--sft_steps=0"], "10"), "sft_seed": (["--model=tiny"], "2"), "role": ([], "learner"),
        "max_staleness": ([], "0"), "sampler_id": (["--num_samplers=2"], "1"), "num_samplers": ([], "2"),
        "dual_clip": (["--algo=mrt_star"], "3.0"), "length_penalty": (["--algo=mrt_star"], "0.1"),
        "overlong_buffer": (["--algo=mrt_star"], "8"), "top_p": (["--temperature=0"], "0.9"),
        "task": (["--dataset=easy-math"], "linear"), "difficulty": (["--dataset=easy-math"], "2"),
        "eval_dataset": ([], "x.jsonl"), "dataset_format": ([], "gsm8k"), "on_bad_row": ([], "skip"),
        "reward_timeout": ([], "1.0"), "reward_workers": (["--reward=task"], "4"),
        "sampler_tensor": (["--sync=disaggregated"], "2"),
    }
    return cases[name]


@pytest.mark.parametrize("name", sorted(INERT))
def test_an_inert_flag_is_refused_with_the_reason(name, capsys):
    extra, value = _inert_case(name)
    with pytest.raises(SystemExit) as e:
        parse_args([*extra, f"--{name}={value}"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"--{name}=" in err and "has no effect here" in err, err
    parse_args([*extra, f"--{name}={value}"], refuse_inert=False)  # a valid value otherwise


@pytest.mark.parametrize("flags", [["--algo=mrt", "--alpha=0.5", "--mrt_form=mixed"],
                                   ["--sync=disaggregated", "--role=learner", "--max_staleness=0"],
                                   ["--algo=mrt_star", "--dynamic_sampling", "--length_penalty=0.1"],
                                   ["--episode_rule=grid", "--episode_grid=8", "--overlong_buffer=8",
                                    "--overlong_factor=0.5", "--kl_coef=0.1", "--kl_estimator=k1"]])
def test_the_same_flags_are_accepted_where_they_act(flags):
    parse_args(flags)


def test_the_study_leaves_out_what_an_algorithm_does_not_read():
    flags = ["--alpha=0.5", "--meta_samples=2", "--max_new_tokens=64", "--seed=1"]
    assert without_inert(flags, "--algo=grpo") == ["--max_new_tokens=64", "--seed=1"]
    assert without_inert(flags, "--algo=mrt") == flags
    assert without_inert(flags, "--algo=mrt_star") == ["--meta_samples=2", "--max_new_tokens=64", "--seed=1"]


def _study_plan(capsys, tmp_path, *flags):
    from experiments import study

    assert study.main([f"--out={tmp_path}", "--dry_run", "--seeds=0", *flags]) == 0
    return [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("$ ")]


STUDY_FLAGS = {"--out": "--out=elsewhere", "--seeds": "--seeds=5", "--algos": "--algos=rloo,mrt",
               "--base": "--no-base", "--ood": "--ood=arithmetic:3", "--ood_problems": "--ood_problems=8"}


@pytest.mark.parametrize("flag", sorted(STUDY_FLAGS))
def test_every_study_flag_changes_its_plan(flag, capsys, tmp_path):
    """The study's own flags (``--dry_run`` prints this plan; ``--equal_compute`` acts on the trained runs' token
    counts, which a dry run does not have)."""
    value = STUDY_FLAGS[flag].replace("elsewhere", str(tmp_path / "elsewhere"))
    assert _study_plan(capsys, tmp_path, value) != _study_plan(capsys, tmp_path)


def test_the_study_passes_each_algorithm_only_the_flags_it_reads(capsys, tmp_path):
    plan = [ln for ln in _study_plan(capsys, tmp_path, "--alpha=0.5", "--no-base") if "experiments.mrt_math" in ln]
    assert [("--alpha=0.5" in ln, "--algo=grpo" in ln) for ln in plan] == [(False, True), (True, False)]


EVAL_FLAGS = {"--n": ("--n=4", []), "--k": ("--k=4", []), "--temperature": ("--temperature=0.9", []),
              "--k_temperature": ("--k_temperature=0.9", []), "--budgets": ("--budgets=16,32", []),
              "--extrapolate": ("--extrapolate=200", []), "--answer_tokens": ("--answer_tokens=8", []),
              "--max_extensions": ("--max_extensions=2", ["--extrapolate=200"]), "--episodes": ("--episodes=2", []),
              "--episode_rule": ("--episode_rule=grid", []), "--seed": ("--seed=3", []),
              "--episode_grid": ("--episode_grid=8", ["--episode_rule=grid"]),
              "--rows_per_call": ("--rows_per_call=8", [])}


@pytest.mark.parametrize("flag", sorted(EVAL_FLAGS))
def test_every_sampling_flag_of_evaluate_changes_its_settings(flag):
    """experiments.evaluate's flags that decide what is sampled and scored reach its EvalSettings (the others
    choose the model, data and output; tests/test_evaluate_cli.py runs them)."""
    from experiments import evaluate
    from mrt_jax.data import PLAIN

    def settings(*flags):
        return evaluate._settings(evaluate.parse_args(["--model=tiny", "--out=unused", *flags]), None, PLAIN, 96)

    value, extra = EVAL_FLAGS[flag]
    assert settings(*extra, value) != settings(*extra)


def test_evaluate_rows_per_call_reaches_its_settings():
    """--rows_per_call (chunks of rows: memory, no number) defaults to EvalSettings' bound; 'all' is one call."""
    from experiments import evaluate
    from mrt_jax.data import PLAIN
    from mrt_jax.evaluation import EvalSettings

    def rows_per_call(*flags):
        return evaluate._settings(evaluate.parse_args(["--model=tiny", "--out=unused", *flags]), None, PLAIN,
                                  96).rows_per_call

    assert rows_per_call() == EvalSettings(max_new_tokens=8).rows_per_call == 64
    assert rows_per_call("--rows_per_call=8") == 8 and rows_per_call("--rows_per_call=all") is None
