"""Per-run tables of a study dir, as docs/study/smollm2/README.md shows them: held-out results of each run's last
evaluation, and its training metrics averaged over its steps (STUDY.md has the per-group means and paired tests).

    python scripts/study_tables.py docs/study/smollm2/runs_lr1e-6 base-s0 grpo-s0 grpo-s1 grpo-s2 mrt-s0 mrt-s1 mrt-s2

A run's "steps with a nonzero gradient" counts the steps whose advantages were not all equal (adv_std > 0).
"""

from __future__ import annotations

import json
import os
import sys


def last_eval(run_dir: str) -> dict:
    names = [f for f in os.listdir(run_dir) if f.startswith("eval_step") and f.endswith(".json")]
    with open(os.path.join(run_dir, max(names, key=lambda f: int(f[len("eval_step"):-len(".json")])))) as f:
        return json.load(f)


def metric_rows(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def table(header: str, names: list[str], rows: list[tuple[str, list[str]]]) -> str:
    lines = [f"| {header} | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines)


def held_out(study: str, names: list[str]) -> str:
    ev = {n: last_eval(os.path.join(study, n)) for n in names}
    budgets = ev[names[0]]["budgets"][:-1]
    curve = lambda e: " ".join(f"{x:.3f}".lstrip("0") for x in e["pass_at_budget"][:-1])  # noqa: E731
    return table("held-out (last 64 of easy-math, greedy, 128 tokens)", names, [
        ("accuracy of own traces", [f"{ev[n]['accuracy']:.3f}" for n in names]),
        ("normalised regret", [f"{ev[n]['regret']:.3f}" for n in names]),
        ("pass@1 forced at " + " / ".join(map(str, budgets)) + " tokens", [curve(ev[n]) for n in names]),
        ("mean trace length", [f"{ev[n]['mean_length']:.1f}" for n in names])])


def training(study: str, names: list[str]) -> str:
    runs = {n: metric_rows(os.path.join(study, n)) for n in names}
    mean = lambda n, k: sum(r.get(k, 0) for r in runs[n]) / len(runs[n])  # noqa: E731
    tokens = lambda n: sum(r.get("sampled_tokens", 0) + r.get("meta_tokens", 0) for r in runs[n]) / 1000  # noqa: E731
    return table("training, mean over 20 steps", names, [
        ("sampled reward", [f"{mean(n, 'reward'):.3f}" for n in names]),
        ("groups with no reward variance", [f"{mean(n, 'zero_variance_groups'):.2f}" for n in names]),
        ("steps with a nonzero gradient",
         [f"{sum(r.get('adv_std', 0) > 0 for r in runs[n])} of {len(runs[n])}" for n in names]),
        ("rollout length / truncated", [f"{mean(n, 'mean_length'):.1f} / {mean(n, 'truncated_frac'):.2f}"
                                        for n in names]),
        ("progress per episode (MRT)", [f"{mean(n, 'progress_mean'):.3f}" if n.startswith("mrt") else "-"
                                        for n in names]),
        ("tokens sampled (rollouts + forced answers)", [f"{tokens(n):.1f}k" for n in names]),
        ("seconds per step: sampling / learning (alone on 2 cores)",
         [f"{mean(n, 'time/sample'):.1f} / {mean(n, 'time/learn'):.1f}" for n in names])])


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    study, names = argv[0], argv[1:]
    print(held_out(study, names))
    print()
    print(training(study, [n for n in names if not n.startswith("base")]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
