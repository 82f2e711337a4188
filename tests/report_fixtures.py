"""Hand-built run dirs and eval dirs with known numbers, for the report and comparison tests (no training)."""

from __future__ import annotations

import json
import os

BUDGETS = [8, 16, 32, 64]


def eval_dict(curve, *, budgets=None, accuracy=None, regret=0.5, mean_length=40.0, **extra) -> dict:
    budgets = list(BUDGETS if budgets is None else budgets)
    return {"budgets": budgets, "pass_at_budget": list(curve), "accuracy": curve[-1] if accuracy is None else accuracy,
            "regret": regret, "mean_length": mean_length, "tokens_to_half_max": float("inf"), **extra}


def write_json(path, value) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f)


def make_run(path, *, algo="mrt", seed=0, before=None, after=None, steps=5, metrics=None, wall=12.5,
             with_result=True) -> str:
    """A finished training run dir: config.json, metrics.jsonl, eval_before/eval_step<steps>.json, result.json."""
    os.makedirs(path, exist_ok=True)
    before = before or eval_dict([0.1, 0.2, 0.3, 0.4])
    after = after or eval_dict([0.2, 0.4, 0.5, 0.6])
    config = {"algo": algo, "task": "arithmetic", "model": "tiny", "seed": seed, "steps": steps}
    write_json(os.path.join(path, "config.json"), config)
    rows = metrics if metrics is not None else [
        {"step": s, "wall": 2.0 * s, "reward": 0.1 * s, "accuracy": 0.05 * s, "mean_length": 30.0 + s,
         "entropy": 1.0 - 0.1 * s, "loss": None if s == 2 else 0.01 * s, "time/sample": 1.0, "time/learn": 0.5}
        for s in range(1, steps + 1)]
    with open(os.path.join(path, "metrics.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    write_json(os.path.join(path, "eval_before.json"), before)
    write_json(os.path.join(path, f"eval_step{steps}.json"), after)
    if with_result:
        write_json(os.path.join(path, "result.json"), {"config": config, "info": {}, "before": before, "after": after,
                                                       "summary": {"steps_logged": steps}, "steps_done": steps,
                                                       "wall_seconds": wall})
    return str(path)


def make_eval_dir(path, ev, name="eval.json") -> str:
    os.makedirs(path, exist_ok=True)
    write_json(os.path.join(path, name), ev)
    return str(path)
