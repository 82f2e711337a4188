"""Offline regret analysis of recorded traces, no model: ``python -m experiments.analyze_traces FILE --out=DIR``.

Input: JSONL with per-trace J-curves and/or raw forced-answer records; the accepted schemas are documented in
``mrt_jax.evaluation.traces`` (in short: ``{"problem_id", "tokens": [...], "accuracy": [...]}`` per trace, or
``{"problem_id", "trace_id", "budget" | "episode", "correct"}`` per forced answer; optional ``answer`` /
``maj_accuracy`` fields enable the majority-vote comparator, ``final_answer``/``final_correct``/``length`` maj@k).
``experiments.evaluate`` writes such a file (traces.jsonl), so an evaluation can be re-analysed offline.

Output: ``DIR/analysis.json`` with the keys of eval.json that mean the same here (budgets, pass_at_budget, regret,
regret_at_budget, tokens_to_accuracy, tokens_to_half_max, accuracy, mean_length, and episodes/pass_at_episode,
maj_at_k when the records allow them; ``mrt_jax.evaluation.summary``), ``DIR/j_curves.jsonl`` (each problem's mean
J-curve) and a report. ``--budgets`` evaluates the curves on a given grid instead of every recorded token point;
``--targets`` sets the token-efficiency targets. A malformed line stops the analysis with one line naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from experiments.config import OneLineErrorParser
from experiments.eval_report import write_report_for


def _numbers(name: str, cast):
    def parse(text: str):
        try:
            values = sorted({cast(v) for v in text.split(",") if v.strip()})
        except ValueError:
            values = []
        if not values or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"--{name} must be a comma list of positive numbers, got {text!r}")
        return values
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineErrorParser(prog="python -m experiments.analyze_traces", description=__doc__.split("\n")[0])
    p.add_argument("traces", help="JSONL file of J-curves and/or forced-answer records")
    p.add_argument("--out", required=True, help="output dir")
    p.add_argument("--budgets", type=_numbers("budgets", int), help="token grid (default: every recorded point)")
    p.add_argument("--targets", type=_numbers("targets", float), default=[0.1, 0.25, 0.5, 0.75],
                   help="accuracies for token efficiency")
    p.add_argument("--title", help="report title")
    args = p.parse_args(argv)
    if any(t > 1 for t in args.targets):
        p.error(f"--targets must lie in (0, 1], got {args.targets}")
    return args


def analyze(path: str, *, budgets=None, targets=(0.1, 0.25, 0.5, 0.75)) -> tuple[dict, list[dict]]:
    """(analysis dict, per-problem J-curves) of a traces file; TraceFormatError / ValueError for bad input."""
    from mrt_jax.evaluation.summary import problem_j_curves, summarize
    from mrt_jax.evaluation.traces import read_traces

    records = read_traces(path)
    result = summarize(records, budgets=budgets, targets=targets)
    result["source"] = {"traces": os.path.abspath(path)}
    return result, problem_j_curves(records, budgets)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mrt_jax.evaluation.jsonio import write_json

    if not os.path.isfile(args.traces):
        print(f"error: {args.traces!r}: no such file", file=sys.stderr)
        return 2
    try:
        result, curves = analyze(args.traces, budgets=args.budgets, targets=args.targets)
    except (ValueError, UnicodeDecodeError) as e:  # TraceFormatError is a ValueError; its message names the line
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "analysis.json"), result)
    with open(os.path.join(args.out, "j_curves.jsonl"), "w", encoding="utf-8") as f:
        for c in curves:
            f.write(json.dumps(c) + "\n")
    report = write_report_for(args.out, result, args.title or f"Offline analysis of {os.path.basename(args.traces)}")
    regret = result.get("regret")
    print(f"{result['num_problems']} problems, {result['num_traces']} traces; regret at the largest budget "
          f"{regret if regret is None else round(regret, 4)}; wrote {os.path.join(args.out, 'analysis.json')} and "
          f"{report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
