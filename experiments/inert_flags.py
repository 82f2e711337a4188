"""Flags that do nothing under some settings, and why. ``experiments.config.parse_args`` refuses such a flag when
it is given with a value other than its default (a flag that is accepted and ignored would let an ablation run
something else than it says); ``tests/test_flags_reach_the_code.py`` checks every other flag changes the job."""

from __future__ import annotations

from collections.abc import Callable

from experiments.job_setup import reward_kind

_MRT_FAMILY = ("mrt", "mrt_star")


def _no_meta(c) -> bool:
    return c.algo not in _MRT_FAMILY


def _star_ignores_rewards(c) -> bool:
    return c.algo == "mrt_star" and not c.dynamic_sampling


def _no_sft(c) -> bool:
    return c.model != "demo" or c.sft_steps == 0


# name -> (inert under this config?, when it is inert)
INERT: dict[str, tuple[Callable, str]] = {
    "mrt_form": (lambda c: c.algo != "mrt", "it selects the form of --algo=mrt"),
    "alpha": (lambda c: c.algo != "mrt", "it weights the progress bonus of --algo=mrt"),
    "meta_samples": (lambda c: _no_meta(c) or c.mrt_form == "mixed" and c.algo == "mrt",
                     "only the J estimates of --algo=mrt (dense, termination_baseline) and mrt_star use it"),
    "meta_temperature": (_no_meta, "only --algo=mrt / mrt_star fork the meta-prover during training"),
    "episode_rule": (_no_meta, "only --algo=mrt / mrt_star split traces into episodes"),
    "max_episodes": (_no_meta, "only --algo=mrt / mrt_star split traces into episodes"),
    "episode_grid": (lambda c: _no_meta(c) or c.episode_rule != "grid", "it is the grid of --episode_rule=grid "
                                                                        "with --algo=mrt / mrt_star"),
    "dual_clip": (lambda c: c.algo == "mrt_star", "MRT-STaR's advantages are never negative (dual clip caps the "
                                                  "loss of negative ones)"),
    "length_penalty": (_star_ignores_rewards, "MRT-STaR's advantage does not read the shaped reward (only "
                                              "--dynamic_sampling's choice of groups would)"),
    "overlong_buffer": (_star_ignores_rewards, "MRT-STaR's advantage does not read the shaped reward (only "
                                               "--dynamic_sampling's choice of groups would)"),
    "sampler_tensor": (lambda c: c.sync == "disaggregated", "the disaggregated sampler lays its weights out over "
                                                            "its own processes' mesh"),
    "top_p": (lambda c: c.temperature == 0, "rollouts are greedy with --temperature=0"),
    "overlong_factor": (lambda c: c.overlong_buffer == 0, "it scales the penalty of --overlong_buffer > 0"),
    "dynamic_rounds": (lambda c: not c.dynamic_sampling, "it bounds the refills of --dynamic_sampling"),
    "kl_estimator": (lambda c: c.kl_coef == 0, "there is no KL term with --kl_coef=0"),
    "sft_steps": (lambda c: c.model != "demo", "only --model=demo is warm-started"),
    "sft_learning_rate": (_no_sft, "only the warm start of --model=demo with --sft_steps > 0 uses it"),
    "sft_batch_size": (_no_sft, "only the warm start of --model=demo with --sft_steps > 0 uses it"),
    "sft_traces": (_no_sft, "only the warm start of --model=demo with --sft_steps > 0 uses it"),
    "sft_seed": (_no_sft, "only the warm start of --model=demo with --sft_steps > 0 uses it"),
    "task": (lambda c: bool(c.dataset), "the problems come from --dataset (from-scratch models keep the default "
                                          "task's tokenizer)"),
    "difficulty": (lambda c: bool(c.dataset), "the problems come from --dataset"),
    "eval_dataset": (lambda c: not c.dataset, "it replaces the held-out part of --dataset"),
    "dataset_format": (lambda c: not c.dataset, "it is the layout of a --dataset file"),
    "on_bad_row": (lambda c: not c.dataset, "procedural tasks have no bad rows"),
    "reward_timeout": (lambda c: reward_kind(c) != "math", "only math-verify rewards (--dataset or --reward=math) "
                                                          "run in the time-limited pool"),
    "reward_workers": (lambda c: reward_kind(c) != "math", "only math-verify rewards (--dataset or --reward=math) "
                                                          "run in the time-limited pool"),
    "role": (lambda c: c.sync != "disaggregated", "it belongs to --sync=disaggregated"),
    "max_staleness": (lambda c: c.sync != "disaggregated", "it belongs to --sync=disaggregated"),
    "sampler_id": (lambda c: c.sync != "disaggregated", "it belongs to --sync=disaggregated"),
    "num_samplers": (lambda c: c.sync != "disaggregated", "it belongs to --sync=disaggregated"),
}


def inert_given(cfg, given: dict, defaults: dict) -> list[tuple[str, str]]:
    """(flag, why) for every flag in ``given`` that is inert under ``cfg`` and differs from its default."""
    return [(name, why) for name, (inert, why) in INERT.items()
            if name in given and given[name] != defaults[name] and inert(cfg)]
