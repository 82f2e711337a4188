"""Compare runs on the same axes: ``python -m experiments.compare RUN_DIR [RUN_DIR ...] --out=DIR [--labels=a,b]``.

Each RUN_DIR is a training run dir, an eval dir (``eval.json``) or an offline-analysis dir (``analysis.json``).
Runs sharing a label (default: the run's algo, else the dir name) are seeds of one group: drawn as the mean with a
min/max band, tabulated as mean ± std (min–max) with the number of runs. The base model (the first run's
before-eval) is its own group. Groups sharing seeds are also compared seed by seed (mean difference, paired
t-test). Writes DIR/compare.md, DIR/compare.html (self-contained), DIR/compare.json, PNGs.
RUN_DIRs and DIR may be bucket paths (``gs://...``, through ``mrt_jax.run_files``): the charts and documents are
drawn in a local staging dir and uploaded, each file as one whole object.
Bad input (not a run/eval dir, no metrics, garbled or mismatched budgets): one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence

from experiments.config import OneLineErrorParser
from experiments.reporting import comparison as K
from experiments.reporting.document import Block, Heading, Image, Paragraph, Table, write_document
from experiments.reporting.figures import Entry, write_eval_charts, write_training_chart
from experiments.reporting.run_sources import SourceError, load_source
from experiments.reporting.stats import fmt, fmt_stat
from mrt_jax import run_files

PROG = "python -m experiments.compare"



def _targets(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--targets={text!r}: expected comma-separated numbers in (0, 1]") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"--targets={text!r}: every target must lie in (0, 1]")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run, eval or analysis dirs")
    p.add_argument("--out", required=True, help="output dir (created)")
    p.add_argument("--labels", help="comma-separated, one per RUN_DIR; equal labels are aggregated (seeds)")
    p.add_argument("--targets", type=_targets, help="pass@1 targets for 'tokens to reach' (default: half the "
                   "lowest non-zero final pass@1 among the groups)")
    p.add_argument("--title", default="Run comparison")
    args = p.parse_args(argv)
    if args.labels is not None:
        labels = [s.strip() for s in args.labels.split(",")]
        if len(labels) != len(args.runs) or not all(labels):
            p.error(f"--labels has {len(labels)} label(s) for {len(args.runs)} run dir(s); give one non-empty "
                    "label per RUN_DIR")
        args.labels = labels
    seen = set()
    for r in args.runs:  # a bucket path has no symlinks to resolve: only a trailing slash to ignore
        key = r.rstrip("/") if run_files.is_remote(r) else os.path.realpath(r)
        if key in seen:
            p.error(f"{r} is given twice; each run dir once (it would count twice in the means)")
        seen.add(key)
    return args


def _budget_columns(rows: Sequence[dict]) -> list[float]:
    return sorted({b for r in rows for b in r["pass_at_budget"]})


def _tables(groups: Sequence[K.Group], stats: dict, rows: Sequence[dict], targets: Sequence[float]) -> list[Block]:
    t_cols = [f"tokens to pass@1 ≥ {t:g}" for t in targets]
    main = Table(["label", "runs", "accuracy (after)", "final pass@1", "regret", *t_cols, "mean length",
                  "wall time (s)", "steps"],
                 [[g.label, str(stats[g.label]["n"]),
                   *(fmt_stat(stats[g.label][k]) for k in ("accuracy", "final_pass", "regret")),
                   *(fmt_stat(stats[g.label]["tokens_to_target"][str(t)], 1) for t in targets),
                   fmt_stat(stats[g.label]["mean_length"], 1), fmt_stat(stats[g.label]["wall_seconds"], 1),
                   fmt_stat(stats[g.label]["steps"], 0)] for g in groups])
    budgets = _budget_columns(rows)
    by_budget = Table(["label", *(f"{b:g}" for b in budgets)],
                      [[g.label, *(fmt_stat(stats[g.label]["pass_at_budget"][b]) for b in budgets)] for g in groups])
    per_run = Table(["label", "run", "seed", "accuracy", "final pass@1", "regret", *t_cols, "mean length",
                     "wall time (s)", "steps"],
                    [[r["label"], r["name"], fmt(r["seed"]), fmt(r["accuracy"]), fmt(r["final_pass"]),
                      fmt(r["regret"]), *(fmt(r["tokens_to_target"][str(t)], 1) for t in targets),
                      fmt(r["mean_length"], 1), fmt(r["wall_seconds"], 1), fmt(r["steps"])] for r in rows])
    training = Table(["label", *K.TRAINING_MEANS],
                     [[g.label, *(fmt_stat(stats[g.label]["training"][k]) for k in K.TRAINING_MEANS)] for g in groups
                      if any(stats[g.label]["training"][k].n_finite for k in K.TRAINING_MEANS)])
    return [Heading("Per group"),
            Paragraph("Cells: mean ± sample std (min–max) over the runs of a group; one value when a group has one "
                      "run. 'accuracy (after)': final answers of full traces; 'final pass@1': pass@1 at the largest "
                      "token budget (forced termination); regret: normalised, at the largest budget (lower is "
                      "better); 'never': the curve does not reach the target."), main,
            Heading("pass@1 at each token budget"), by_budget,
            Heading("Training, mean over steps"),
            Paragraph("Per run: the mean over its steps of metrics.jsonl; cells: mean ± std over the runs. "
                      "zero_variance_groups: share of prompts whose samples all got the same reward (no policy "
                      "gradient); truncated_frac: share of rollouts cut at the token budget."), training,
            Heading("Per run"), per_run]


def _paired_blocks(paired: Sequence[dict]) -> list[Block]:
    if not paired:
        return []
    per_seed = lambda values: " ".join(fmt(v) for v in values)  # noqa: E731
    table = Table(["A", "B", "seeds", "A per seed", "B per seed", "mean A − B", "t", "p (two-sided)"],
                  [[r["a"], r["b"], " ".join(map(str, r["seeds"])), per_seed(r["a_values"]), per_seed(r["b_values"]),
                    fmt(r["mean_difference"]), fmt(r["t"], 2), fmt(r["p"], 2)] for r in paired])
    return [Heading("Paired by seed"),
            Paragraph("Final pass@1, A minus B on the seeds both groups have; t and p: paired t-test over those "
                      "seeds (d.f. = seeds - 1; '-' when the differences are all equal)."), table]


def compare(paths: Sequence[str], out_dir: str, labels: Sequence[str] | None = None,
            targets: Sequence[float] | None = None, title: str = "Run comparison") -> dict:
    """Load, group, tabulate and draw; returns what ``compare.json`` holds. Raises ``SourceError`` or
    ``CompareError`` (both ``ValueError``, one-line messages) for bad input."""
    sources = [load_source(p) for p in paths]
    labels = list(labels) if labels is not None else [s.default_label for s in sources]
    groups = K.make_groups(sources, labels)
    targets = list(targets) if targets is not None else K.default_targets(groups)
    rows = [K.run_row(m, targets) for g in groups for m in g.members]
    budgets = _budget_columns(rows)
    stats = {g.label: K.group_stats([r for r in rows if r["label"] == g.label], targets, budgets) for g in groups}
    notes: list[str] = []
    merged = {g.label: K.group_curves(g, notes) for g in groups}
    grids = {tuple(m.eval["budgets"]) for g in groups for m in g.members if "budgets" in m.eval}
    if len(grids) > 1:
        notes.append(f"runs use {len(grids)} different budget grids; each is drawn on its own x values")
    paired = K.paired_by_seed(groups)
    order = [g.label for g in groups]
    # matplotlib and the HTML writer (which inlines the PNGs) need a local dir: out_dir itself when local, else a
    # staging dir whose files are uploaded to out_dir (each as one object) when the block ends
    with run_files.Staging(out_dir) as local:
        charts = write_eval_charts(local, [Entry(label, ev) for label, (ev, _) in merged.items()], order)
        training = write_training_chart(local, [Entry(label, tr) for label, (_, tr) in merged.items() if tr],
                                        "training curves (mean over runs, band: min-max; line: moving average)",
                                        order)
        charts += [training] if training else []
        blocks: list[Block] = [Heading(title, 1),
                               Paragraph("Groups: " + "; ".join(f"{g.label} (n={len(g.members)})" for g in groups)
                                         + "."),
                               *_tables(groups, stats, rows, targets), *_paired_blocks(paired),
                               Heading("Charts"), *(Image(f, alt) for f, alt in charts)]
        if notes:
            blocks += [Heading("Notes"), *(Paragraph(n) for n in notes)]
        write_document(local, "compare", blocks, title)
    result = {"title": title, "targets": targets, "groups": [{"label": g.label, "members": [m.name for m in g.members],
                                                              **stats[g.label]} for g in groups],
              "runs": rows, "paired": paired, "notes": notes, "charts": [f for f, _ in charts],
              "curves": {label: {"eval": {k: dataclasses.asdict(c) for k, c in ev.items()},
                                 "training": {k: dataclasses.asdict(c) for k, c in tr.items()}}
                         for label, (ev, tr) in merged.items()}}
    result = K.to_jsonable(result)
    run_files.write_text(run_files.join(out_dir, "compare.json"), json.dumps(result, indent=1, allow_nan=False))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if run_files.exists(args.out) and not run_files.isdir(args.out):
            raise K.CompareError(f"--out={args.out}: exists and is not a directory")
        result = compare(args.runs, args.out, args.labels, args.targets, args.title)
    except (SourceError, K.CompareError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(f"compared {len(result['runs'])} run(s) in {len(result['groups'])} group(s): "
          f"{run_files.join(args.out, 'compare.md')}, compare.html, compare.json, {len(result['charts'])} chart(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
