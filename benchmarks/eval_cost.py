"""What the full evaluation costs over the budgeted one, at the training job's periodic-eval settings.

Same sampler, same held-out problems: ``evaluate_budgeted`` (six budgets) against ``evaluate_suite`` with the same
budgets plus pass@1 after each episode (the job's episode rule, up to ``max_episodes``). Each is run twice; the
second run (programs compiled) is the steady cost a periodic evaluation pays. Prints a table, then one JSON line.
Run: ``python -m benchmarks.eval_cost`` (``--model=tiny`` for a random model; default ``demo``, the job's
warm-started model, cached after the first training run).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="demo")
    p.add_argument("--problems", type=int, default=64)
    args = p.parse_args(argv)

    from experiments.config import ExperimentConfig
    from experiments.setup_model import answer_budget, build
    from mrt_jax.data import get_task
    from mrt_jax.evaluation import EvalSettings, budget_grid, evaluate_budgeted, evaluate_suite, required_cache_len
    from mrt_jax.sampling import EpisodeRules, Sampler

    cfg = ExperimentConfig(model=args.model)
    model, tok, fmt, _ = build(cfg, None)
    task = get_task(cfg.task)
    probs = task.problems(args.problems, seed=10_000 + cfg.seed, difficulty=cfg.difficulty)
    prompts = [tok.encode(fmt.build_prompt(q.question)) for q in probs]
    answers = [q.answer for q in probs]
    suffix = fmt.forced_termination_suffix
    budgets = tuple(budget_grid(cfg.max_new_tokens, 6))
    answer_tokens = answer_budget(cfg, fmt)
    settings = EvalSettings(max_new_tokens=cfg.max_new_tokens, budgets=budgets, answer_tokens=answer_tokens,
                            answer_stop=fmt.answer_stop,
                            episode_rules=EpisodeRules.r1(markers=tuple(fmt.continuation_cues), min_gap=1),
                            max_episodes=cfg.max_episodes, seed=cfg.seed + 7)
    sampler = Sampler(model, tok, max_cache_len=required_cache_len(max(map(len, prompts)),
                                                                    len(tok.encode(suffix)), settings))
    runs = {
        "budgeted": lambda: evaluate_budgeted(sampler, prompts, answers, task.verify, forced_suffix=suffix,
                                              max_new_tokens=cfg.max_new_tokens, budgets=budgets,
                                              answer_tokens=answer_tokens, answer_stop=fmt.answer_stop,
                                              seed=cfg.seed + 7).to_dict(),
        "suite": lambda: evaluate_suite(sampler, prompts, answers, task.verify, forced_suffix=suffix,
                                        settings=settings).to_dict(),
    }
    res = {"model": args.model, "problems": args.problems, "max_new_tokens": cfg.max_new_tokens}
    print(f"{'evaluator':10s}{'first s':>10s}{'steady s':>10s}{'accuracy':>10s}{'regret':>10s}")
    for name, fn in runs.items():
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = fn()
        steady = time.perf_counter() - t0
        print(f"{name:10s}{first:10.2f}{steady:10.2f}{out['accuracy']:10.3f}{out['regret']:10.3f}")
        res[name] = {"first_s": round(first, 2), "steady_s": round(steady, 2), "accuracy": out["accuracy"],
                     "regret": out["regret"], "pass_at_episode": out.get("pass_at_episode"),
                     "forced_answer_tokens": out.get("cost", {}).get("forced_answer_tokens")}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
