"""Copy the small files of a study's finished runs (config, metrics, evaluations, result, report; no checkpoints,
charts or TensorBoard) from one study dir to another, so a study that spans sessions can resume on a fresh
machine: ``experiments.study`` keeps a run whose result.json says it trained all its steps.

    python scripts/keep_study_runs.py runs/study_smollm2_lr1e-6 docs/study/smollm2/runs_lr1e-6  # publish what finished
    python scripts/keep_study_runs.py docs/study/smollm2/runs_lr1e-6 runs/study_smollm2_lr1e-6  # resume from it later
"""

from __future__ import annotations

import json
import os
import shutil
import sys

KEEP = ("config.json", "metrics.jsonl", "result.json", "summary.json", "report.md")


def finished(run_dir: str) -> bool:
    try:
        with open(os.path.join(run_dir, "result.json")) as f:
            done = json.load(f).get("steps_done", 0)
        with open(os.path.join(run_dir, "config.json")) as f:
            return done >= json.load(f)["steps"]
    except (OSError, ValueError, KeyError):
        return False


def main(src: str, dst: str) -> list[str]:
    kept = []
    for name in sorted(os.listdir(src)):
        run = os.path.join(src, name)
        if not os.path.isdir(run) or not finished(run):
            continue
        os.makedirs(os.path.join(dst, name), exist_ok=True)
        for f in sorted(os.listdir(run)):
            if f in KEEP or (f.startswith("eval") and f.endswith(".json")):
                shutil.copy2(os.path.join(run, f), os.path.join(dst, name, f))
        kept.append(name)
    print(f"kept {len(kept)} finished run(s) in {dst}: {', '.join(kept) or '-'}")
    return kept


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python scripts/keep_study_runs.py SRC_STUDY_DIR DST_DIR")
    main(sys.argv[1], sys.argv[2])
