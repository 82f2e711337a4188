"""Reports of one training run (``write_report``) or one evaluation (``write_eval_report``).

Each writes, into its directory, ``report.md`` (PNGs embedded by relative path), ``report.html`` (self-contained:
PNGs inlined, no external reference) and the PNGs: pass@1 against token budget (before/after, extrapolation
dashed), regret against budget, maj@k and pass@1 against episodes when the eval has them, training curves from
``metrics.jsonl``. A chart that fails to draw is logged and noted in the report, never fatal: the job's results
are already on disk by then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from experiments.reporting import curves as C
from experiments.reporting.document import Block, Heading, Image, Paragraph, Table, write_document
from experiments.reporting.figures import Entry, write_eval_charts, write_training_chart
from experiments.reporting.run_sources import SourceError, check_eval, read_metrics
from experiments.reporting.stats import fmt
from mrt_jax import run_files

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("accuracy", "regret", "mean_length", "tokens_to_half_max")
KNOWN_EVAL_KEYS = {"budgets", "pass_at_budget", "pass_at_episode", "episodes", "episode_tokens", "maj_at_k",
                   "regret_at_budget", "extrapolation", "tokens_to_accuracy", *SUMMARY_KEYS}


def _usable(ev) -> bool:
    return isinstance(ev, dict) and bool(ev)  # a resumed run may hold {} for a before-eval it never read


def _never(value) -> str:
    """Tokens to a target: eval files write ``null`` when the curve never reaches it."""
    return "never" if value is None else fmt(value, 1)


def eval_tables(named: Sequence[tuple[str, dict]]) -> list[Block]:
    """Tables for evals side by side: summary metrics, pass@1 at each budget, and the optional curves."""
    labels = [label for label, _ in named]
    blocks: list[Block] = [Table(["metric", *labels], [[key, *(fmt(ev.get(key)) for _, ev in named)]
                                                       for key in SUMMARY_KEYS if any(key in ev for _, ev in named)])]
    with_budgets = [(label, ev) for label, ev in named if "budgets" in ev]
    if with_budgets:
        budgets = sorted({b for _, ev in with_budgets for b in ev["budgets"]})
        rows = [[label, *(fmt(dict(zip(ev["budgets"], ev["pass_at_budget"])).get(b)) for b in budgets)]
                for label, ev in with_budgets]
        blocks += [Heading("pass@1 against token budget (forced termination)", 3),
                   Table(["budget", *(fmt(b) for b in budgets)], rows)]
    for label, ev in named:
        suffix = f" ({label})" if len(named) > 1 else ""
        rb = ev.get("regret_at_budget") or {}
        if "budgets" in rb:
            comparators = [(name, rb[key]) for key, name in (("constant", "constant comparator"),
                                                             ("maj_or_continue", "maj or continue")) if key in rb]
            blocks += [Heading("normalised regret against token budget" + suffix, 3),
                       Table(["budget", *(fmt(b) for b in rb["budgets"])],
                             [[name, *(fmt(v) for v in values)] for name, values in comparators])]
        ex = ev.get("extrapolation") or {}
        if "pass_at_budget" in ex:
            blocks += [Heading("pass@1 beyond the trace budget (budget forcing)" + suffix, 3),
                       Table(["budget", *(fmt(b) for b in ex["budgets"])],
                             [["pass@1", *(fmt(v) for v in ex["pass_at_budget"])]])]
        if "maj_at_k" in ev and "total_tokens" in ev["maj_at_k"] and "accuracy" in ev["maj_at_k"]:
            m = ev["maj_at_k"]
            blocks += [Heading("maj@k" + suffix, 3),
                       Table(["k", "total tokens", "accuracy"], [[fmt(k), fmt(t, 1), fmt(a)] for k, t, a in
                                                                 zip(m["k"], m["total_tokens"], m["accuracy"])])]
        if "pass_at_episode" in ev:
            rows = [["pass@1", *(fmt(p) for p in ev["pass_at_episode"])]]
            if isinstance(ev.get("episode_tokens"), list):
                rows.append(["mean tokens", *(fmt(t, 1) for t in ev["episode_tokens"])])
            blocks += [Heading("pass@1 against episodes" + suffix, 3),
                       Table(["episodes", *(fmt(e) for e in ev["episodes"])], rows)]
        if isinstance(ev.get("tokens_to_accuracy"), dict):
            blocks += [Heading("tokens to reach a target pass@1" + suffix, 3),
                       Table(["target", "tokens"], [[str(t), _never(v)] for t, v in ev["tokens_to_accuracy"].items()])]
    return blocks


def _chart_blocks(out_dir: str, named: Sequence[tuple[str, dict]], training: Entry | None) -> list[Block]:
    """Draw the charts of checked evals (and training curves); a failure becomes a note in the report."""
    try:
        charts = write_eval_charts(out_dir, [Entry(label, C.eval_curves(ev)) for label, ev in named])
        if training is not None and training.curves:
            chart = write_training_chart(out_dir, [training], "training curves (dots: each step; line: moving average)")
            charts += [chart] if chart else []
    except Exception as e:  # noqa: BLE001 - a chart must not lose a finished run's report; noted below
        log.warning("report: charts failed in %s: %s: %s", out_dir, type(e).__name__, e)
        return [Paragraph(f"Charts could not be drawn: {type(e).__name__}: {e}")]
    return [Image(file, alt) for file, alt in charts]


def _plain(value) -> str:
    """Config and summary values as written: floats to 6 significant digits (a learning rate stays readable)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _key_value_table(values: dict) -> Table:
    return Table(["key", "value"], [[str(k), _plain(v)] for k, v in values.items()])


def write_report(run_dir: str, result: dict) -> str:
    """The training job's report; ``result``: config, info, before, after, summary, steps_done, wall_seconds.
    Also writes ``result.json``. Returns the path of ``report.md``. ``run_dir`` may be a bucket path: the
    charts and documents are drawn in a local staging dir and uploaded (``run_files.Staging``)."""
    run_files.write_text(run_files.run_path(run_dir, "result.json"), json.dumps(result, indent=1, default=str))
    cfg = result.get("config", {})
    trained_on = cfg.get("dataset") or cfg.get("task", "?")  # a --dataset run trains on the file, not the task
    title = f"Run report: {cfg.get('algo', '?')} on {trained_on} (model {cfg.get('model', '?')})"
    named = [(label, result[label]) for label in ("before", "after") if _usable(result.get(label))]
    notes: list[Block] = []
    valid = []
    for label, ev in named:
        try:
            valid.append((label, check_eval(ev, f"{run_dir} ({label}-eval)")))
        except SourceError as e:
            notes.append(Paragraph(f"Not shown: {e}"))
    metrics_path = run_files.join(run_dir, "metrics.jsonl")
    training = None
    if run_files.exists(metrics_path):
        try:
            training = Entry(run_files.basename(run_dir), C.training_curves(read_metrics(metrics_path)))
        except SourceError as e:
            notes.append(Paragraph(f"Training curves not drawn: {e}"))
    blocks: list[Block] = [
        Heading(title, 1),
        Paragraph(f"Run dir {run_files.basename(run_dir)}. Steps: {result.get('steps_done')} of "
                  f"{cfg.get('steps')}; wall time {result.get('wall_seconds')} s; seed {cfg.get('seed')}."),
        Heading("Evaluation (held-out problems)"), *notes]
    if valid:
        blocks += eval_tables(valid)
    with run_files.Staging(run_dir) as local:
        blocks += _chart_blocks(local, valid, training)
        blocks += [Heading("Training summary"), _key_value_table(result.get("summary", {})),
                   Heading("Config"), _key_value_table(cfg),
                   Paragraph("Files: metrics.jsonl, tb/ (TensorBoard), checkpoints/ (Orbax), config.json, "
                             "result.json.")]
        write_document(local, "report", blocks, title)
    return run_files.join(run_dir, "report.md")


def write_eval_report(out_dir: str, eval_result: dict, title: str) -> str:
    """Report of one evaluation (``experiments.evaluate`` or an offline analysis); returns ``report.md``'s path.
    Raises ``SourceError`` (a ``ValueError``) when ``eval_result`` lacks or garbles its curves."""
    check_eval(eval_result, f"{out_dir} (eval)")
    label = "eval"
    blocks: list[Block] = [Heading(title, 1), *eval_tables([(label, eval_result)])]
    with run_files.Staging(out_dir) as local:  # a bucket out_dir: drawn locally, uploaded
        blocks += _chart_blocks(local, [(label, eval_result)], None)
        other = {k: v for k, v in eval_result.items() if k not in KNOWN_EVAL_KEYS}
        if other:
            blocks += [Heading("Other fields"), _key_value_table(other)]
        write_document(local, "report", blocks, title)
    return run_files.join(out_dir, "report.md")
