"""Mean and spread of one number over several runs (seeds), and how numbers are written in report tables."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Stat:
    """Over the finite values: mean, sample standard deviation (ddof 1; 0 for one value), min, max.
    ``n``: runs in all; ``n_finite``: runs with a finite value; ``n_never``: runs at +inf (a target accuracy never
    reached). The rest had no value (e.g. the base model has no wall time)."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    n: int
    n_finite: int
    n_never: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def is_finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summarize(values: Sequence) -> Stat:
    """``values`` may hold ``None`` or ``inf`` (a run that never reached a target): they count in ``n`` only."""
    finite = [float(v) for v in values if is_finite_number(v)]
    never = sum(1 for v in values if isinstance(v, float) and v == math.inf)
    if not finite:
        return Stat(None, None, None, None, len(values), 0, never)
    mean = sum(finite) / len(finite)
    var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1) if len(finite) > 1 else 0.0
    return Stat(mean, math.sqrt(var), min(finite), max(finite), len(values), len(finite), never)


def fmt(value, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` places, ints as they are, inf as "never", missing as "-"."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "never" if value > 0 else "-inf"
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}f}"
    return str(value)


def fmt_stat(stat: Stat, digits: int = 3) -> str:
    """``mean ± std (min–max)``; just the value for one run; notes the runs without a finite value."""
    if stat.n_finite == 0:
        return "never" if stat.n_never else "-"
    if stat.n_finite == 1:
        text = fmt(stat.mean, digits)
    else:
        text = (f"{fmt(stat.mean, digits)} ± {fmt(stat.std, digits)} "
                f"({fmt(stat.min, digits)}–{fmt(stat.max, digits)})")
    if stat.n_never:
        text += f" [{stat.n_finite}/{stat.n} runs reach it]"
    elif stat.n_finite < stat.n:
        text += f" [{stat.n_finite}/{stat.n} runs]"
    return text


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom. With x = sqrt(df) tan(theta) the density
    becomes a constant times cos(theta)^(df - 1) on [0, pi/2), which Simpson's rule integrates to ~1e-12 for
    any t (no scipy in the reports' dependencies)."""
    theta_max = math.atan(abs(t) / math.sqrt(df))
    scale = 2 * math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(math.pi)
    n = 2000  # even
    h = theta_max / n
    f = lambda theta: math.cos(theta) ** (df - 1)  # noqa: E731
    simpson = f(0.0) + f(theta_max) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, n))
    return min(1.0, max(0.0, 1.0 - scale * simpson * h / 3))


def paired_t(differences: Sequence[float]) -> tuple[float | None, float | None]:
    """(t, two-sided p) of a paired t-test on per-seed differences; (None, None) if fewer than two or all equal."""
    n = len(differences)
    if n < 2:
        return None, None
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    if sd == 0:
        return None, None
    t = mean / (sd / math.sqrt(n))
    return t, t_two_sided_p(t, n - 1)
