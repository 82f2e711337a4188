"""The run report: ``report.md`` in the run dir (before/after evaluation, budgeted accuracy, training summary)."""

from __future__ import annotations

import json
import os


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_report(run_dir: str, result: dict) -> str:
    cfg, before, after = result["config"], result["before"], result["after"]
    lines = [f"# Run report: {cfg['algo']} on {cfg['task']} (model {cfg['model']})", "",
             f"Steps: {result['steps_done']} of {cfg['steps']}; wall time {result['wall_seconds']} s; "
             f"seed {cfg['seed']}.", "", "## Evaluation (held-out problems)", "",
             "| metric | before | after |", "|---|---|---|"]
    for key in ("accuracy", "regret", "mean_length", "tokens_to_half_max"):
        if key in before or key in after:
            lines.append(f"| {key} | {_fmt(before.get(key, '-'))} | {_fmt(after.get(key, '-'))} |")
    if before.get("budgets"):
        lines += ["", "## pass@1 against token budget (forced termination)", "",
                  "| budget | " + " | ".join(str(b) for b in before["budgets"]) + " |",
                  "|---|" + "---|" * len(before["budgets"]),
                  "| before | " + " | ".join(_fmt(v) for v in before["pass_at_budget"]) + " |"]
        if after.get("pass_at_budget"):
            lines.append("| after | " + " | ".join(_fmt(v) for v in after["pass_at_budget"]) + " |")
    lines += ["", "## Training summary", "", "```", json.dumps(result.get("summary", {}), indent=1, default=str),
              "```", "", "Files: `metrics.jsonl`, `tb/` (TensorBoard), `checkpoints/` (Orbax), `config.json`.", ""]
    path = os.path.join(run_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(run_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    return path
