"""Curves out of eval dicts and metrics rows, and their mean/min/max over runs that share a label (seeds).

A ``Curve`` is x/y lists plus an optional band (``lo``/``hi``) and optional ``keys`` to align runs on: maj@k
curves are drawn against total tokens, which differ from run to run, so seeds are matched on k instead.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

# curve names (eval)
PASS = "pass_at_budget"
EXTRAPOLATION = "extrapolation"
REGRET = "regret"  # constant comparator: given, or computed from pass_at_budget
REGRET_MAJ = "regret_maj_or_continue"
MAJ = "maj_at_k"
EPISODE = "pass_at_episode"
TIME_PREFIX = "time/"
# training metrics drawn when present, in this order (then every time/* key)
TRAINING_KEYS = ("reward", "accuracy", "mean_length", "progress_mean", "kl", "entropy", "loss", "grad_norm",
                 "truncated_frac", "eval_accuracy")


@dataclasses.dataclass(frozen=True)
class Curve:
    x: list[float]
    y: list[float]
    lo: list[float] | None = None
    hi: list[float] | None = None
    keys: list[float] | None = None  # what runs are aligned on (default: x)

    @property
    def align(self) -> list[float]:
        return self.keys if self.keys is not None else self.x


def regret_by_budget(budgets: Sequence[float], pass_at_budget: Sequence[float]) -> list[float]:
    """Normalised regret against the constant comparator 1 at each grid budget C0 (MRT.md): the mean curve gives
    the mean regret exactly, because the regret is linear in the curve."""
    from mrt_jax.rl.regret import normalized_regret

    return [normalized_regret(budgets, pass_at_budget, c0) for c0 in budgets]


def _measured(x: Sequence, y: Sequence, keys: Sequence | None = None) -> Curve | None:
    """The points whose y was measured (eval files write ``null`` where there was no data); None if none."""
    keep = [i for i, v in enumerate(y) if _is_number(v) and math.isfinite(v)]
    if not keep:
        return None
    return Curve([x[i] for i in keep], [y[i] for i in keep], keys=None if keys is None else [keys[i] for i in keep])


def eval_curves(ev: dict) -> dict[str, Curve]:
    """Every curve an eval dict holds (checked by ``run_sources.check_eval``); absent optional keys are skipped."""
    found: dict[str, Curve | None] = {}
    if "budgets" in ev:
        found[PASS] = _measured(ev["budgets"], ev["pass_at_budget"])
    ex = ev.get("extrapolation") or {}
    if "pass_at_budget" in ex:
        found[EXTRAPOLATION] = _measured(ex["budgets"], ex["pass_at_budget"])
    rb = ev.get("regret_at_budget") or {}
    if "constant" in rb:
        found[REGRET] = _measured(rb["budgets"], rb["constant"])
    elif "budgets" in ev:
        found[REGRET] = Curve(list(ev["budgets"]), regret_by_budget(ev["budgets"], ev["pass_at_budget"]))
    if "maj_or_continue" in rb:
        found[REGRET_MAJ] = _measured(rb["budgets"], rb["maj_or_continue"])
    maj = ev.get("maj_at_k") or {}
    if "total_tokens" in maj and "accuracy" in maj and all(_is_number(t) for t in maj["total_tokens"]):
        found[MAJ] = _measured(maj["total_tokens"], maj["accuracy"], keys=maj["k"])
    if "pass_at_episode" in ev:
        found[EPISODE] = _measured(ev["episodes"], ev["pass_at_episode"])
    return {name: c for name, c in found.items() if c is not None}


def training_keys(rows: Sequence[dict]) -> list[str]:
    """The training metrics ``rows`` hold a number for, in drawing order."""
    present = {k for r in rows for k, v in r.items() if _is_number(v)}
    times = sorted(k for k in present if k.startswith(TIME_PREFIX))
    return [k for k in TRAINING_KEYS if k in present] + times


def training_curves(rows: Sequence[dict]) -> dict[str, Curve]:
    """Metric key -> (step, value) over the rows that hold a finite number for it."""
    out = {}
    for key in training_keys(rows):
        pts = [(r["step"], r[key]) for r in rows if _is_number(r.get(key)) and math.isfinite(r[key])]
        if pts:
            out[key] = Curve([p[0] for p in pts], [p[1] for p in pts])
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def aggregate(curves: Sequence[Curve]) -> tuple[Curve, int]:
    """Mean curve with a min/max band over ``curves``, on the alignment keys all of them share.

    Returns ``(curve, dropped)``: ``dropped`` counts the points of the members left out because not every member
    has that key (the caller reports it). One curve comes back unchanged, without a band.
    """
    if not curves:
        raise ValueError("aggregate: no curves")
    if len(curves) == 1:
        return curves[0], 0
    maps = [dict(zip(c.align, zip(c.x, c.y))) for c in curves]
    common = sorted(set(maps[0]).intersection(*maps[1:]))
    dropped = sum(len(m) - len(common) for m in maps)
    xs = [sum(m[k][0] for m in maps) / len(maps) for k in common]
    ys_per_key = [[m[k][1] for m in maps] for k in common]
    mean = [sum(v) / len(v) for v in ys_per_key]
    keys = common if curves[0].keys is not None else None
    return Curve(xs, mean, lo=[min(v) for v in ys_per_key], hi=[max(v) for v in ys_per_key], keys=keys), dropped
