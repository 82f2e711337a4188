"""Which charts a report draws, from which curves, in which style; writes the PNGs with ``experiments.plots``.

An ``Entry`` is one line's worth of data: a label and its curves (one run's eval, or a group's mean with a band).
Charts whose curves no entry has are skipped (e.g. maj@k before the evaluator writes it).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from experiments.reporting import curves as C
from experiments.reporting.plots import Panel, Series, line_chart, panel_grid


@dataclasses.dataclass(frozen=True)
class Line:
    curve: str
    linestyle: str = "-"
    suffix: str = ""


@dataclasses.dataclass(frozen=True)
class Chart:
    file: str
    title: str
    xlabel: str
    ylabel: str
    lines: tuple[Line, ...]


EVAL_CHARTS = (
    Chart("accuracy_vs_budget.png", "pass@1 against token budget", "token budget",
          "pass@1", (Line(C.PASS), Line(C.EXTRAPOLATION, "--", " (extrapolated)"))),
    Chart("regret_vs_budget.png", "normalised regret against token budget", "token budget", "regret",
          (Line(C.REGRET, "-", ""), Line(C.REGRET_MAJ, ":", " vs maj/continue"))),
    Chart("maj_at_k.png", "maj@k against total tokens", "total tokens (k samples)", "maj@k accuracy",
          (Line(C.MAJ),)),
    Chart("pass_at_episode.png", "pass@1 against episodes", "episodes", "pass@1", (Line(C.EPISODE),)),
)
TRAINING_FILE = "training_curves.png"
PANEL_TITLES = {"reward": "reward", "accuracy": "train accuracy", "mean_length": "mean length (tokens)",
                "progress_mean": "progress (MRT)", "kl": "KL to reference", "entropy": "entropy", "loss": "loss",
                "grad_norm": "grad norm", "truncated_frac": "truncated fraction", "eval_accuracy": "eval accuracy"}


@dataclasses.dataclass(frozen=True)
class Entry:
    label: str
    curves: dict[str, C.Curve]
    faded: bool = False


def _series(entry: Entry, line: Line) -> Series | None:
    c = entry.curves.get(line.curve)
    if c is None:
        return None
    return Series(entry.label + line.suffix, c.x, c.y, lo=c.lo, hi=c.hi, linestyle=line.linestyle,
                  faded=entry.faded, group=entry.label)


def write_eval_charts(out_dir: str, entries: Sequence[Entry], colour_order: Sequence[str] | None = None
                      ) -> list[tuple[str, str]]:
    """Draw every chart some entry has data for; returns ``(file name, title)`` of each PNG written.
    ``colour_order``: labels in palette order (default: the entries'), so a label keeps its colour everywhere."""
    colour_order = colour_order or [e.label for e in entries]
    written = []
    for chart in EVAL_CHARTS:
        series = [s for line in chart.lines for e in entries if (s := _series(e, line)) is not None]
        if series and line_chart(os.path.join(out_dir, chart.file), series, title=chart.title,
                                 xlabel=chart.xlabel, ylabel=chart.ylabel, colour_order=colour_order):
            written.append((chart.file, chart.title))
    return written


def panel_title(key: str) -> str:
    if key.startswith(C.TIME_PREFIX):
        return f"seconds per step: {key[len(C.TIME_PREFIX):]}"
    return PANEL_TITLES.get(key, key)


def write_training_chart(out_dir: str, entries: Sequence[Entry], title: str,
                         colour_order: Sequence[str] | None = None) -> tuple[str, str] | None:
    """One panel per training metric any entry has (raw points and a moving average); ``None`` if none."""
    keys = list(dict.fromkeys(k for e in entries for k in e.curves))
    panels = [Panel(panel_title(k), [Series(e.label, e.curves[k].x, e.curves[k].y, lo=e.curves[k].lo,
                                            hi=e.curves[k].hi, smooth=True, group=e.label)
                                     for e in entries if k in e.curves]) for k in keys]
    if not panels or not panel_grid(os.path.join(out_dir, TRAINING_FILE), panels, title=title,
                                    colour_order=colour_order):
        return None
    return TRAINING_FILE, title
