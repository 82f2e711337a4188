"""The numbers of a comparison: runs grouped by label (seeds of one algo), per-run rows and per-group statistics.

Runs with the same label form a group; its curves are the mean over members with a min/max band, on the x values
all members share (``curves.aggregate``). The base model is the first run's before-eval, as its own group "base",
unless a run is already labelled "base". Tokens to reach a target pass@1 use the piecewise-linear pass@1 curve
from (0, 0) (``mrt_jax.rl.regret.tokens_to_accuracy``); a run that never reaches it counts as "never".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from experiments.reporting import curves as C
from experiments.reporting.run_sources import RunSource
from experiments.reporting.stats import Stat, is_finite_number, paired_t, summarize

BASE_LABEL = "base"


class CompareError(ValueError):
    """Runs that cannot be compared (message: one line)."""


@dataclasses.dataclass(frozen=True)
class Member:
    label: str
    name: str  # run dir base name (the base: "<first run> (before)")
    source: RunSource
    eval: dict  # the after-eval (the base: the before-eval)
    is_base: bool = False

    @property
    def metrics(self) -> list[dict]:
        return [] if self.is_base else self.source.metrics


@dataclasses.dataclass
class Group:
    label: str
    members: list[Member]


def make_groups(sources: Sequence[RunSource], labels: Sequence[str]) -> list[Group]:
    """Group in first-seen label order; the base group (if any) comes first."""
    groups: dict[str, Group] = {}
    first = sources[0]
    if first.before and BASE_LABEL not in labels:
        groups[BASE_LABEL] = Group(BASE_LABEL, [Member(BASE_LABEL, f"{first.name} (before)", first, first.before,
                                                       is_base=True)])
    for src, label in zip(sources, labels):
        groups.setdefault(label, Group(label, [])).members.append(Member(label, src.name, src, src.after))
    return list(groups.values())


def final_pass(ev: dict) -> float | None:
    """pass@1 at the largest budget (None for an eval without a budget curve, e.g. an episode-only analysis)."""
    return float(ev["pass_at_budget"][-1]) if "pass_at_budget" in ev else None


def tokens_to_target(ev: dict, target: float) -> float | None:
    """Tokens to reach ``target`` on the pass@1 curve (inf: never); None without a budget curve."""
    from mrt_jax.rl.regret import tokens_to_accuracy

    if "pass_at_budget" not in ev:
        return None
    return tokens_to_accuracy(ev["budgets"], ev["pass_at_budget"], target)


def default_targets(groups: Sequence[Group]) -> list[float]:
    """Half the lowest non-zero group-mean final pass@1, so every group has a chance to reach it; none if all 0."""
    finals = [[final_pass(m.eval) for m in g.members] for g in groups]
    means = [sum(f) / len(f) for f in finals if None not in f]
    nonzero = [m for m in means if m > 0]
    return [round(0.5 * min(nonzero), 4)] if nonzero else []


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# Training metrics averaged over a run's steps: how much signal the rollouts carried (see docs/study/countdown).
TRAINING_MEANS = ("reward", "zero_variance_groups", "truncated_frac", "progress_mean")


def _step_mean(metrics: Sequence[dict], key: str) -> float | None:
    values = [float(r[key]) for r in metrics if _number(r.get(key)) is not None and math.isfinite(r[key])]
    return sum(values) / len(values) if values else None


def run_row(m: Member, targets: Sequence[float]) -> dict:
    """One run's numbers (the base has no wall time, steps or training metrics)."""
    ev = m.eval
    return {
        "label": m.label, "name": m.name, "kind": "base" if m.is_base else m.source.kind,
        "path": m.source.path, "seed": m.source.config.get("seed"),
        "accuracy": _number(ev.get("accuracy")), "final_pass": final_pass(ev), "regret": _number(ev.get("regret")),
        "mean_length": _number(ev.get("mean_length")),
        "tokens_to_target": {str(t): tokens_to_target(ev, t) for t in targets},
        "pass_at_budget": dict(zip(ev.get("budgets", []), ev.get("pass_at_budget", []))),
        "wall_seconds": None if m.is_base else m.source.wall_seconds,
        "steps": None if m.is_base else m.source.steps_done,
        "training": {k: _step_mean(m.metrics, k) for k in TRAINING_MEANS},
    }


def group_stats(rows: Sequence[dict], targets: Sequence[float], budgets: Sequence[float]) -> dict[str, object]:
    """Stat per number over a group's run rows; pass@1 per budget over the members that have that budget."""
    pick = lambda key: summarize([r[key] for r in rows])  # noqa: E731
    return {
        "n": len(rows),
        "accuracy": pick("accuracy"), "final_pass": pick("final_pass"), "regret": pick("regret"),
        "mean_length": pick("mean_length"), "wall_seconds": pick("wall_seconds"), "steps": pick("steps"),
        "tokens_to_target": {str(t): summarize([r["tokens_to_target"][str(t)] for r in rows]) for t in targets},
        "pass_at_budget": {b: summarize([r["pass_at_budget"][b] for r in rows if b in r["pass_at_budget"]])
                           for b in budgets},
        "training": {k: summarize([r["training"][k] for r in rows]) for k in TRAINING_MEANS},
    }


def _by_seed(members: Sequence[Member], ev_of) -> dict[int, float]:
    """seed -> final pass@1 of ``ev_of(member)`` (the first member per seed; members without a seed are left out)."""
    out: dict[int, float] = {}
    for m in members:
        seed, ev = m.source.config.get("seed"), ev_of(m)
        value = final_pass(ev) if ev else None
        if isinstance(seed, int) and not isinstance(seed, bool) and is_finite_number(value):
            out.setdefault(seed, value)
    return out


def paired_by_seed(groups: Sequence[Group]) -> list[dict]:
    """Final pass@1 differences between groups on the seeds they share (later group minus earlier one), with a
    paired t-test: runs of one seed share their warm start and evaluation problems, so pairing removes that
    spread. The automatic base group stands for every seed's before-eval here (the base table shows only the
    first run's). Pairs sharing fewer than two seeds are left out."""
    series = []
    for g in groups:
        if g.members and g.members[0].is_base:
            runs = [m for other in groups for m in other.members if not m.is_base]
            series.append((f"{g.label} (each seed's before-eval)", _by_seed(runs, lambda m: m.source.before)))
        else:
            series.append((g.label, _by_seed(g.members, lambda m: m.eval)))
    rows = []
    for i, (label_b, b) in enumerate(series):
        for label_a, a in series[i + 1:]:
            seeds = sorted(set(a) & set(b))
            if len(seeds) < 2:
                continue
            diffs = [a[s] - b[s] for s in seeds]
            t, p = paired_t(diffs)
            rows.append({"a": label_a, "b": label_b, "seeds": seeds, "a_values": [a[s] for s in seeds],
                         "b_values": [b[s] for s in seeds], "mean_difference": sum(diffs) / len(diffs), "t": t,
                         "p": p})
    return rows


def group_curves(group: Group, notes: list[str]) -> tuple[dict[str, C.Curve], dict[str, C.Curve]]:
    """(eval curves, training curves) of a group: mean and band over members. A curve some members lack is left
    out, and so are x values not all members share; both are added to ``notes``."""
    evals = [C.eval_curves(m.eval) for m in group.members]
    trains = [C.training_curves(m.metrics) for m in group.members if m.metrics]
    return (_merge(group.label, evals, notes, "eval"),
            _merge(group.label, trains, notes, "training") if trains else {})


def _merge(label: str, per_member: list[dict[str, C.Curve]], notes: list[str], what: str) -> dict[str, C.Curve]:
    out = {}
    names = list(dict.fromkeys(k for d in per_member for k in d))
    for name in names:
        have = [d[name] for d in per_member if name in d]
        if len(have) < len(per_member):
            notes.append(f"{label}: {what} curve '{name}' is in {len(have)} of {len(per_member)} runs; not drawn")
            continue
        curve, dropped = C.aggregate(have)
        if not curve.x:
            if name == C.PASS:
                raise CompareError(f"runs labelled {label!r} share no token budget; their budget grids differ "
                                   "completely, so give them different --labels")
            notes.append(f"{label}: {what} curve '{name}' has no x value common to all runs; not drawn")
            continue
        if dropped:
            notes.append(f"{label}: {what} curve '{name}': {dropped} point(s) left out, not common to all runs")
        out[name] = curve
    return out


def to_jsonable(value):
    """Stats to dicts, non-finite floats to None (strict JSON has no inf/NaN), dict keys to strings."""
    if isinstance(value, Stat):
        return to_jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
