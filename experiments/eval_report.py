"""The report of an eval.json / analysis.json: ``experiments.report.write_eval_report`` (tables, charts, HTML) when
it is there and accepts the result, else a minimal ``report.md`` with the tables only (standard library)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def write_report_for(out_dir: str, result: dict, title: str) -> str:
    """Path of the report written for ``result`` into ``out_dir``."""
    try:
        from experiments.report import write_eval_report
    except (ImportError, AttributeError):
        return write_minimal_report(out_dir, result, title)
    try:
        return write_eval_report(out_dir, result, title)
    except ValueError as e:  # e.g. an episode-only analysis has no token curve to draw
        log.warning("full report not written (%s); writing the tables only", e)
        return write_minimal_report(out_dir, result, title)


def _cell(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _table(header: str, xs, rows: dict[str, list]) -> list[str]:
    lines = [f"| {header} | " + " | ".join(_cell(x) for x in xs) + " |", "|---|" + "---|" * len(xs)]
    for name, values in rows.items():
        if values is not None:
            lines.append(f"| {name} | " + " | ".join(_cell(v) for v in values) + " |")
    return lines + [""]


def report_lines(result: dict, title: str) -> list[str]:
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    for key in ("num_problems", "num_traces", "accuracy", "regret", "mean_length", "tokens_to_half_max"):
        if key in result:
            lines.append(f"| {key} | {_cell(result[key])} |")
    lines.append("")
    if result.get("budgets"):
        reg = result.get("regret_at_budget") or {}
        lines += ["## pass@1 and normalised regret against token budget", ""]
        lines += _table("budget", result["budgets"], {"pass@1": result["pass_at_budget"],
                                                      "regret (constant)": reg.get("constant"),
                                                      "regret (maj or continue)": reg.get("maj_or_continue")})
    if result.get("episodes"):
        lines += ["## pass@1 after each episode", ""]
        lines += _table("episode", result["episodes"], {"pass@1": result["pass_at_episode"],
                                                        "mean tokens": result.get("episode_tokens") or None})
    maj = result.get("maj_at_k")
    if maj:
        lines += ["## maj@k against total tokens", ""]
        lines += _table("k", maj["k"], {"total tokens": maj["total_tokens"], "accuracy": maj["accuracy"]})
    extra = result.get("extrapolation") or {}
    if extra.get("budgets"):
        lines += ["## Beyond the trace budget (budget forcing)", ""]
        lines += _table("budget", extra["budgets"], {"pass@1": extra["pass_at_budget"]})
    if result.get("tokens_to_accuracy"):
        targets = result["tokens_to_accuracy"]
        lines += ["## Token efficiency (tokens to reach pass@1)", ""]
        lines += _table("target", list(targets), {"tokens": list(targets.values())})
    return lines


def write_minimal_report(out_dir: str, result: dict, title: str) -> str:
    from mrt_jax import run_files  # a bucket out_dir too

    path = run_files.join(out_dir, "report.md")
    run_files.write_text(path, "\n".join(report_lines(result, title)))
    return path
