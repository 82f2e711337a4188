"""Batch sizes that fit a TPU slice: every host (one process each) samples whole prompt groups, and the learner
splits the step's rows over every chip. So ``prompts_per_step`` must be a multiple of the slice's hosts and
``prompts_per_step x group_size`` a multiple of its chips. Pure; the job's config applies it at parse time.
"""

from __future__ import annotations

import math


def prompts_multiple(hosts: int, chips: int, group_size: int) -> int:
    """The smallest step (in prompts) that fits: a multiple of ``hosts`` whose rows (x group_size) fill the chips."""
    return math.lcm(hosts, chips // math.gcd(chips, group_size))


def fitting_prompts(prompts: int, hosts: int, chips: int, group_size: int) -> int:
    """``prompts`` rounded up to the nearest count that fits the slice."""
    m = prompts_multiple(hosts, chips, group_size)
    return -(-prompts // m) * m


def misfit(prompts: int, group_size: int, slice_name: str, hosts: int, chips: int) -> str | None:
    """Why this batch does not fit the slice, naming the flag to set and its value; None when it fits."""
    rows = prompts * group_size
    if prompts % hosts or rows % chips:
        want = fitting_prompts(prompts, hosts, chips, group_size)
        return (f"--prompts_per_step={prompts} does not fit --tpu={slice_name} ({hosts} hosts, {chips} chips): it "
                f"must be a multiple of {hosts} (each host samples whole groups) and prompts_per_step x group_size "
                f"(now {rows}) a multiple of {chips} (the learner's rows over every chip); set "
                f"--prompts_per_step={want} (or leave it unset: the slice's default rounds it up)")
    return None
