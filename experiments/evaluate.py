"""Evaluate a model or a training run: ``python -m experiments.evaluate``.

    python -m experiments.evaluate --run_dir=runs/mrt_math --out=runs/mrt_math/eval   # newest checkpoint of a run
    python -m experiments.evaluate --model=tiny --dataset=math500_test.jsonl --problems=50 --n=4 --k=4 \\
        --budgets=auto --max_tokens=256 --extrapolate=384,512 --out=/tmp/eval

Writes ``OUT/eval.json`` (schema: ``mrt_jax.evaluation.suite``), ``OUT/traces.jsonl`` (one J-curve record per trace,
readable by ``experiments.analyze_traces``) and a report (``experiments.report.write_eval_report`` when present,
else a minimal ``OUT/report.md``). ``--run_dir`` reads model, task, format and lengths from the run's config.json
and restores the newest complete Orbax checkpoint read-only. ``--dataset``: a procedural task (``arithmetic:2``,
``countdown:1``; the training job's held-out stream; a run trained on a ``--dataset``: its held-out rows) or a
benchmark file (``--dataset_format``, default math500:
``problem``/``answer`` fields, .jsonl/.json/.parquet).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time

from experiments.config import OneLineErrorParser, int_list_flag
from experiments.eval_flags import inert_eval_flags
from experiments.eval_inputs import (
    UserError,
    check_prompt_lengths,
    check_run_dir,
    load_problems,
    run_config,
    run_problems,
)
from experiments.eval_report import write_report_for
from mrt_jax import run_files
from mrt_jax.evaluation.chunks import DEFAULT_ROWS_PER_CALL

log = logging.getLogger("evaluate")



def _positive(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"--{name} must be a positive integer, got {text!r}")
        return value
    return parse


def _rows_per_call(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--rows_per_call must be a positive integer (rows sampled per call) or "
                                         f"'all', got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="python -m experiments.evaluate", description=__doc__.split("\n")[0],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run_dir", help="a training run: its newest checkpoint, model, task and format")
    src.add_argument("--model", help="a preset (tiny, demo, smollm2-135m, ...) or a HF folder / .gguf path")
    p.add_argument("--dataset", help="task[:difficulty] or a data file (default: the run's task, else arithmetic:1)")
    p.add_argument("--dataset_format", default="math500", help="reader for a data file (mrt_jax.data.SPECS)")
    p.add_argument("--task", default="arithmetic", help="tokenizer task of from-scratch presets for a data file")
    p.add_argument("--format", default="auto", choices=("auto", "plain", "r1", "chat", "chat_think", "chat_box"),
                   help="prompt format (auto: the run's / model's own)")
    p.add_argument("--problems", type=_positive("problems"), default=64)
    p.add_argument("--n", type=_positive("n"), default=1, help="traces per problem")
    p.add_argument("--k", type=_positive("k"), default=1, help="forced answers per point (budget / episode)")
    p.add_argument("--temperature", type=float, help="of the traces (default: 0 for n=1, else 0.6)")
    p.add_argument("--k_temperature", type=float, help="of the forced answers (default: 0 for k=1, else 0.6)")
    p.add_argument("--budgets", default="auto", help="comma list of token budgets, or 'auto' (6 evenly spaced)")
    p.add_argument("--max_tokens", type=_positive("max_tokens"), help="trace budget (default: the run's, else 96)")
    p.add_argument("--extrapolate", type=int_list_flag("extrapolate"), default=[],
                   help="budgets beyond --max_tokens reached by budget forcing ('Wait' extensions)")
    p.add_argument("--max_extensions", type=int, default=4, help="budget-forcing extensions per trace")
    p.add_argument("--answer_tokens", type=_positive("answer_tokens"), help="forced-answer length (default: run's"
                   " meta_max_tokens, else the prompt format's budget)")
    p.add_argument("--episodes", type=int, default=4, help="max episodes for pass@1 by episode (0: off)")
    p.add_argument("--episode_rule", choices=("markers", "grid"), help="default: the run's, else markers")
    p.add_argument("--episode_grid", type=_positive("episode_grid"), help="tokens per episode for the grid rule")
    p.add_argument("--rows_per_call", type=_rows_per_call, default=DEFAULT_ROWS_PER_CALL,
                   help="problems x n traces sampled (caches kept for the forced answers) per call, in whole "
                        "problems: bounds memory, changes no number ('all': every row at once)")
    p.add_argument("--out", help="output dir (default with --run_dir: RUN/eval_step<N>)")
    p.add_argument("--title", help="report title")
    p.add_argument("--seed", type=int, default=0, help="sampling seed; with --model also the task problem stream")
    p.add_argument("--platform", default="cpu", help="JAX platform (cpu, gpu, tpu) or 'auto' to let JAX choose")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = _parser()
    args = p.parse_args(argv)
    if args.budgets != "auto":
        try:
            args.budgets = int_list_flag("budgets")(args.budgets)
        except argparse.ArgumentTypeError as e:
            p.error(str(e))
    if args.out is None and args.run_dir is None:
        p.error("--out is required with --model")
    for name in ("temperature", "k_temperature"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            p.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.episodes < 0 or args.max_extensions < 0:
        p.error("--episodes and --max_extensions must be >= 0")
    return args


def _check_budgets(args, max_tokens: int) -> int:
    """Budgets within the trace length, extrapolation budgets beyond it (checked before any model is built)."""
    if args.budgets != "auto" and args.budgets[-1] > max_tokens:
        raise UserError(f"--budgets={','.join(map(str, args.budgets))}: budgets must be <= --max_tokens={max_tokens}"
                        " (use --extrapolate for larger ones)")
    if args.extrapolate and args.extrapolate[0] <= max_tokens:
        raise UserError(f"--extrapolate={','.join(map(str, args.extrapolate))}: budgets must exceed --max_tokens="
                        f"{max_tokens}")
    return max_tokens


def _settings(args, run_cfg, fmt, max_tokens: int):
    from mrt_jax.evaluation import EvalSettings, budget_grid
    from mrt_jax.sampling import EpisodeRules

    budgets = budget_grid(max_tokens, 6) if args.budgets == "auto" else args.budgets
    rule = args.episode_rule or (run_cfg.episode_rule if run_cfg else "markers")
    grid = args.episode_grid or (run_cfg.episode_grid if run_cfg else 32)
    rules = None
    if args.episodes > 0:
        rules = EpisodeRules.grid_of(grid) if rule == "grid" else EpisodeRules.r1(
            markers=tuple(fmt.continuation_cues), separator=fmt.episode_separator, min_gap=1)
    return EvalSettings(
        max_new_tokens=max_tokens, budgets=tuple(budgets), n=args.n, k=args.k,
        temperature=args.temperature if args.temperature is not None else (0.0 if args.n == 1 else 0.6),
        k_temperature=args.k_temperature if args.k_temperature is not None else (0.0 if args.k == 1 else 0.6),
        # The run's meta-prover budget (0 there: its format's), else the format's; the format says where it ends.
        answer_tokens=args.answer_tokens or (run_cfg.meta_max_tokens if run_cfg else 0) or fmt.answer_tokens,
        answer_stop=fmt.answer_stop,
        episode_rules=rules, max_episodes=args.episodes, extrapolate=tuple(args.extrapolate),
        extend_texts=tuple(fmt.episode_separator + c for c in fmt.continuation_cues),
        max_extensions=args.max_extensions, seed=args.seed, rows_per_call=args.rows_per_call)


def _build_model(args, run_cfg, ckpt, problems):
    from experiments.config import ExperimentConfig
    from experiments.eval_inputs import restore_params
    from experiments.setup_model import build

    if run_cfg is not None:  # the run's weights replace the initial ones: skip the demo's warm-start SFT
        cfg = dataclasses.replace(run_cfg, sft_steps=0)
    else:
        # From-scratch presets take their tokenizer (and the demo its warm start) from the task being evaluated.
        cfg = ExperimentConfig(model=args.model, task=problems.task, difficulty=problems.difficulty, seed=args.seed)
    try:
        model, tokenizer, fmt, info = build(cfg, None)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    if run_cfg is not None:
        model = restore_params(model, cfg, *ckpt)
        info = {**info, "checkpoint_step": ckpt[1]}
    if args.format != "auto":
        from mrt_jax.data import get_format

        try:
            fmt = get_format(args.format, tokenizer)
        except (TypeError, ValueError) as e:
            raise UserError(f"--format={args.format}: {e}") from None
    return model, tokenizer, fmt, info


def run(args) -> dict:
    t0 = time.time()
    run_cfg, ckpt = None, None
    if args.run_dir:
        stored, ckpt_dir, step = check_run_dir(args.run_dir)
        run_cfg = run_config(stored, run_files.join(args.run_dir, "config.json"))
        ckpt = (ckpt_dir, step)
    run_data = run_cfg is not None and bool(run_cfg.dataset) and not args.dataset  # the run's own held-out rows
    dataset = args.dataset or (run_cfg.dataset if run_data else
                               f"{run_cfg.task}:{run_cfg.difficulty}" if run_cfg else "arithmetic:1")
    inert = inert_eval_flags(args, vars(_parser().parse_args(["--model=x"])), dataset, run_data=run_data)
    if inert:
        raise UserError("; ".join(f"--{name} does nothing here: {why}" for name, why in inert))
    if run_data:
        problems = run_problems(run_cfg, args.problems)
    else:
        problems = load_problems(dataset, args.problems, seed=run_cfg.seed if run_cfg else args.seed,
                                 dataset_format=args.dataset_format, task=run_cfg.task if run_cfg else args.task)
    out_dir = args.out or run_files.join(args.run_dir, f"eval_step{ckpt[1]}")
    max_tokens = _check_budgets(args, args.max_tokens or (run_cfg.max_new_tokens if run_cfg else 96))

    from mrt_jax.evaluation import evaluate_suite, write_json
    from mrt_jax.evaluation.suite import required_cache_len
    from mrt_jax.evaluation.traces import write_traces
    from mrt_jax.sampling import Sampler

    model, tokenizer, fmt, info = _build_model(args, run_cfg, ckpt, problems)
    settings = _settings(args, run_cfg, fmt, max_tokens)
    suffix = fmt.forced_termination_suffix
    prompts = [list(tokenizer.encode(fmt.build_prompt(q))) for q in problems.questions]
    suffix_tokens = len(tokenizer.encode(suffix))
    longest_trace = max((settings.max_new_tokens, *settings.extrapolate))
    check_prompt_lengths(problems.ids, [len(p) for p in prompts],
                         longest_trace + suffix_tokens + settings.answer_tokens, model.cfg.max_position_embeddings)
    cache_len = required_cache_len(max(len(p) for p in prompts), suffix_tokens, settings)
    sampler = Sampler(model, tokenizer, max_cache_len=cache_len)
    log.info("evaluating %d problems x %d traces from %s (budgets %s)", len(prompts), settings.n, problems.source,
             list(settings.budgets))
    result = evaluate_suite(sampler, prompts, problems.answers, problems.verify, forced_suffix=suffix,
                            settings=settings, problem_ids=problems.ids)
    out = result.to_dict()
    out["source"] = {"dataset": problems.source, "model": run_cfg.model if run_cfg else args.model,
                     "run_dir": args.run_dir, "format": fmt.name, **info}
    run_files.makedirs(out_dir)
    write_json(run_files.join(out_dir, "eval.json"), out)
    write_traces(run_files.join(out_dir, "traces.jsonl"), result.traces)
    title = args.title or f"Evaluation of {out['source']['model']} on {problems.source}"
    report = write_report_for(out_dir, out, title)
    print(f"accuracy {out['accuracy']:.3f}  regret {out['regret']:.3f}  pass@1 by budget "
          f"{[round(v, 3) for v in out['pass_at_budget']]}  ({time.time() - t0:.1f} s)")
    print(f"wrote {run_files.join(out_dir, 'eval.json')} and {report}")
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("absl").setLevel(logging.WARNING)
    args = parse_args(argv)
    if args.platform != "auto":  # before jax is imported: a CPU run probes no accelerator
        os.environ.setdefault("JAX_PLATFORMS", args.platform)
    try:
        run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
