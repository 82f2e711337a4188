"""Line charts as PNG files: one chart (``line_chart``) or a grid of small panels (``panel_grid``).

Rendering only: callers turn eval dicts and metrics into ``Series``. Matplotlib is imported inside the functions
(it costs about a second) and used through ``Figure`` objects with the Agg canvas, never ``pyplot``: no display,
no global figure state. Output is deterministic: fixed size and dpi, and no ``Software`` tag in the PNG metadata
(Agg writes no timestamp), so the same data gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

DPI = 100
CHART_SIZE = (6.4, 4.0)  # inches: 640 x 400 pixels at DPI
PANEL_SIZE = (4.0, 2.8)
PANEL_COLUMNS = 3
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
RAW_POINT_ALPHA = 0.35
BAND_ALPHA = 0.2


@dataclasses.dataclass(frozen=True)
class Series:
    """One line. ``group`` picks the colour (series of one group share it; default: the label).

    ``lo``/``hi``: a shaded band (e.g. min/max over seeds). ``smooth``: draw the raw points faintly and a moving
    average as the line (training curves). ``linestyle``: a matplotlib style, "-" solid, "--" dashed, ":" dotted.
    """

    label: str
    x: Sequence[float]
    y: Sequence[float]
    lo: Sequence[float] | None = None
    hi: Sequence[float] | None = None
    linestyle: str = "-"
    marker: str = "o"
    faded: bool = False
    smooth: bool = False
    group: str | None = None


@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    series: Sequence[Series]
    ylabel: str = ""


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start), so the line never looks ahead."""
    if window < 1:
        raise ValueError(f"moving_average: window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def smoothing_window(n_points: int) -> int:
    """About a tenth of the points, at least 1 and at most 50."""
    return max(1, min(50, n_points // 10))


def _finite_points(s: Series) -> Series:
    """Drop points whose x or y is missing or non-finite (metrics.jsonl writes NaN as null)."""
    if len(s.x) != len(s.y):
        raise ValueError(f"series {s.label!r}: {len(s.x)} x values but {len(s.y)} y values")
    keep = [i for i, (a, b) in enumerate(zip(s.x, s.y)) if _is_finite(a) and _is_finite(b)]
    pick = lambda seq: None if seq is None else [seq[i] for i in keep]  # noqa: E731
    return dataclasses.replace(s, x=pick(list(s.x)), y=pick(list(s.y)), lo=pick(s.lo), hi=pick(s.hi))


def plain_text(text: str) -> str:
    """Text matplotlib shows as written: ``$`` would start mathtext (and can fail to parse), and a legend hides
    labels that start with ``_``."""
    text = str(text).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def _is_finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _colours(series: Sequence[Series], order: Sequence[str] | None) -> dict[str, str]:
    """Group -> colour by position in ``order`` (so one group keeps its colour across charts), then first seen."""
    keys = list(dict.fromkeys([*(order or ()), *(s.group or s.label for s in series)]))
    return {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}


def _draw(ax, series: Sequence[Series], colours: dict[str, str]) -> None:
    for s in series:
        colour = colours[s.group or s.label]
        alpha = 0.45 if s.faded else 1.0
        if s.lo is not None and s.hi is not None:
            ax.fill_between(s.x, s.lo, s.hi, color=colour, alpha=BAND_ALPHA * alpha, linewidth=0)
        if s.smooth:
            ax.plot(s.x, s.y, linestyle="none", marker=".", markersize=3, color=colour, alpha=RAW_POINT_ALPHA)
            ys = moving_average(list(s.y), smoothing_window(len(s.y)))
            ax.plot(s.x, ys, linestyle=s.linestyle, color=colour, alpha=alpha, label=plain_text(s.label),
                    linewidth=1.6)
        else:
            ax.plot(s.x, s.y, linestyle=s.linestyle, marker=s.marker, markersize=4, color=colour, alpha=alpha,
                    label=plain_text(s.label), linewidth=1.6)


def _save(fig, path: str) -> str:
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    return path


def line_chart(path: str, series: Sequence[Series], *, title: str, xlabel: str, ylabel: str,
               ylim: tuple[float, float] | None = None, colour_order: Sequence[str] | None = None) -> str | None:
    """One chart with every series on the same axes; ``None`` (and no file) when no series has a finite point.
    ``colour_order``: groups in palette order, for colours that match across charts."""
    from matplotlib.figure import Figure

    drawn = [s for s in (_finite_points(s) for s in series) if s.x]
    if not drawn:
        return None
    fig = Figure(figsize=CHART_SIZE, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    _draw(ax, drawn, _colours(drawn, colour_order))
    ax.set_title(plain_text(title))
    ax.set_xlabel(plain_text(xlabel))
    ax.set_ylabel(plain_text(ylabel))
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def panel_grid(path: str, panels: Sequence[Panel], *, title: str, xlabel: str = "step",
               colour_order: Sequence[str] | None = None) -> str | None:
    """Small charts in rows of ``PANEL_COLUMNS`` with one shared legend; ``None`` when no panel has data."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    kept = []
    for p in panels:
        drawn = [s for s in (_finite_points(s) for s in p.series) if s.x]
        if drawn:
            kept.append(dataclasses.replace(p, series=drawn))
    if not kept:
        return None
    colours = _colours([s for p in kept for s in p.series], colour_order)
    cols = min(PANEL_COLUMNS, len(kept))
    rows = math.ceil(len(kept) / cols)
    fig = Figure(figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows + 0.6), dpi=DPI)
    for i, p in enumerate(kept):
        ax = fig.add_subplot(rows, cols, i + 1)
        _draw(ax, p.series, colours)
        ax.set_title(plain_text(p.title), fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(p.ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.grid(True, alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    for ax in fig.axes[1:]:  # a label missing from the first panel still gets a legend entry
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    # fixed margins in inches, not tight_layout: that would draw the whole grid one more time
    height = fig.get_figheight()
    fig.suptitle(plain_text(title), y=1 - 0.15 / height)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8)
    fig.subplots_adjust(left=0.6 / fig.get_figwidth(), right=0.98, top=1 - 0.75 / height, bottom=1.0 / height,
                        wspace=0.35, hspace=0.6)
    return _save(fig, path)
