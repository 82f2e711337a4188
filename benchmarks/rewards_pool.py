"""Throughput of MathScorer vs num_workers, and the cost of hanging items (run from the repo root)."""
import os
import random
import time

from mrt_jax.rewards import MathScorer


def batch(num_prompts, group, seed=0):
    rng = random.Random(seed)
    golds, comps = [], []
    for _ in range(num_prompts):
        a, b = rng.randint(1, 999), rng.randint(2, 999)
        gold = f"\\frac{{{a}}}{{{b}}}"
        for _ in range(group):
            k = rng.random()
            if k < 0.3:
                ans = f"{a}/{b}"
            elif k < 0.45:
                ans = f"\\dfrac{{{a}}}{{{b}}}"
            elif k < 0.6:
                ans = f"{a / b:.6f}"
            elif k < 0.9:
                ans = f"\\frac{{{a + rng.randint(1, 50)}}}{{{b}}}"
            else:
                ans = None
            text = "Let me think. " * 200 + (f"So the answer is \\boxed{{{ans}}}." if ans else "I am not sure.")
            comps.append(text)
            golds.append(gold)
    return comps, golds

comps, golds = batch(int(os.environ.get("PROMPTS", 256)), 8)
ref = None
for workers in [int(w) for w in os.environ.get("WORKERS", "0,1,2,4,8,16").split(",")]:
    with MathScorer(num_workers=workers, timeout_s=5.0) as s:
        s.score(["\\boxed{1}"] * 1, ["1"])  # start one worker
        if workers:
            s.score([f"\\boxed{{{i}}}" for i in range(workers)], [str(i) for i in range(workers)])  # start all
        n0 = s.stats["items_checked"]
        t = time.perf_counter()
        r = s.score(comps, golds)
        dt = time.perf_counter() - t
        uniq = s.stats["items_checked"] - n0
        ref = r.status_b if ref is None else ref
        same = bool((r.status_b == ref).all())
        print(f"workers={workers:2d}: {len(comps)} completions, {uniq} unique pairs, {dt:6.2f} s, "
              f"{uniq / dt:7.0f} pairs/s, statuses same as first run: {same}, counts={r.counts}", flush=True)

hangs = int(os.environ.get("HANGS", 16))
hw = int(os.environ.get("HANG_WORKERS", 8))
hc = ["\\boxed{9^{9^{9^{9}}}}"] * hangs + comps
hg = [f"{i}" for i in range(hangs)] + golds  # distinct golds so the hang pairs are not de-duplicated
with MathScorer(num_workers=hw, timeout_s=2.0) as s:
    s.score([f"\\boxed{{{i}}}" for i in range(hw)], [str(i) for i in range(hw)])
    t = time.perf_counter()
    r = s.score(hc, hg)
    dt = time.perf_counter() - t
    print(f"with {hangs} hanging items, {hw} workers, timeout 2 s: {dt:.2f} s, timeouts={r.counts['timeout']}, "
          f"rest unchanged: {bool((r.status_b[hangs:] == ref).all())}, workers_killed={s.stats['workers_killed']}",
          flush=True)
