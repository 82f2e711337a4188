"""Seconds per RL step on CPU: the job's own step (rollout ``collect`` + learner update + weight sync), MRT vs GRPO.

    python -m benchmarks.rl_step_cpu                  # smollm2 preset, 1 warm-up + 3 timed steps per algorithm
    python -m benchmarks.rl_step_cpu --quick          # tiny preset, seconds (a smoke check)
    python -m benchmarks.rl_step_cpu --algos=mrt --steps=2 -- --max_new_tokens=64   # job flags after --

Builds the job exactly as ``experiments.colocated`` does (``build_job``, ``make_learner``, ``Sampler``, the data
iterator) and times the library's step: ``mrt_jax.trainer.collect`` (split into the rollout's ``generate``, the
meta-prover's ``fork`` and the rest: rewards, boundaries, advantages, learner rows), the learner's train step and
the weight sync. Per algorithm: the median over the timed steps after one warm-up step, and the XLA compilations
of every step (a warm step should compile nothing). The random streams follow the job's (same seed, same steps),
so MRT and GRPO see the same prompts. Prints a table, then one JSON line.

Runs against any checkout on ``PYTHONPATH`` that has these pieces (e.g. ``git worktree add /tmp/base main`` for the
code before a change: copy this file there and run it from that root).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

if __name__ == "__main__":  # a CPU benchmark; importing its helpers keeps the platform
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

SPLIT = ("generate", "fork")


class Compiles:
    """Counts XLA backend compilations (jax.monitoring's compile event) and their seconds."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        import jax

        self.count, self.seconds = 0, 0.0
        jax.monitoring.register_event_duration_secs_listener(self._on)

    def _on(self, event: str, duration: float, **_) -> None:
        if event == self.EVENT:
            self.count += 1
            self.seconds += duration


def _timed(fn, totals: dict, name: str):
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            totals[name] += time.perf_counter() - t0
    return wrapper


def run_algo(algo: str, steps: int, job_flags: list[str], compiles: Compiles) -> dict:
    """``steps`` job steps of ``algo``; per step: seconds of each part and compilations."""
    import jax
    from flax import nnx

    from experiments.config import parse_args
    from experiments.job_parts import build_job, make_learner
    from experiments.job_setup import make_mesh_for
    from mrt_jax.sampling import Sampler
    from mrt_jax.trainer import collect, copy_into_sampler

    run_dir = tempfile.mkdtemp(prefix=f"rl_step_{algo}_")
    cfg = parse_args([*job_flags, f"--algo={algo}", f"--run_dir={run_dir}"])
    mesh = make_mesh_for(cfg)
    parts = build_job(cfg, mesh)
    state, learn, _ = make_learner(cfg, parts.model.cfg, mesh, nnx.to_pure_dict(nnx.state(parts.model, nnx.Param)))
    sampler = Sampler(parts.model, parts.tokenizer, max_cache_len=parts.cache_len)
    totals = dict.fromkeys(SPLIT, 0.0)
    for name in SPLIT:  # instance attributes: the rollout's own calls go through them
        setattr(sampler, name, _timed(getattr(sampler, name), totals, name))
    data = parts.prompt_stream(cfg.prompts_per_step, cfg.seed)  # the job's own stream (experiments.colocated)
    copy_into_sampler(sampler, state.params)
    rows = []
    for step in range(1, steps + 1):
        for k in totals:
            totals[k] = 0.0
        c0, cs0 = compiles.count, compiles.seconds
        t0 = time.perf_counter()
        prompts, golds = parts.prompts_of(data.next_batch())
        ro = collect(sampler, parts.rollout_task, prompts, golds, parts.settings, seed=cfg.seed, step=step,
                     more=lambda: parts.prompts_of(data.next_batch()))
        t1 = time.perf_counter()
        state, m = learn(state, ro.batch)
        jax.block_until_ready(m)
        t2 = time.perf_counter()
        copy_into_sampler(sampler, state.params)
        jax.block_until_ready(sampler._weights)
        t3 = time.perf_counter()
        row = dict(step=step, sample_s=t1 - t0, learn_s=t2 - t1, sync_s=t3 - t2, step_s=t3 - t0,
                   **{f"{k}_s": v for k, v in totals.items()},
                   rest_s=t1 - t0 - sum(totals.values()), compiles=compiles.count - c0,
                   compile_s=compiles.seconds - cs0, learner_width=int(ro.batch["tokens"].shape[1]),
                   sampled_tokens=ro.metrics.get("sampled_tokens"), meta_tokens=ro.metrics.get("meta_tokens"))
        rows.append(row)
        print(f"  {algo} step {step}: " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in row.items() if k != "step"), flush=True)
    timed = rows[1:] or rows
    med = {k: round(statistics.median(r[k] for r in timed), 2) for k in rows[0]
           if k.endswith("_s") and k != "compile_s"}
    return dict(**med, first_step_s=round(rows[0]["step_s"], 2), compiles_per_step=[r["compiles"] for r in rows],
                learner_width=[r["learner_width"] for r in rows], timed_steps=len(timed))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the tiny preset (a smoke check of the script)")
    ap.add_argument("--algos", default="mrt,grpo", help="comma list of --algo values, timed one after another")
    ap.add_argument("--steps", type=int, default=4, help="steps per algorithm, the first one a warm-up")
    ap.add_argument("--label", default="", help="a tag copied into the JSON line (e.g. before / after)")
    ap.add_argument("job_flags", nargs="*", help="extra flags of experiments.mrt_math (after --)")
    args = ap.parse_args(argv)
    import jax

    compiles = Compiles()
    preset = "tiny" if args.quick else "smollm2"
    flags = [f"--preset={preset}", *args.job_flags]
    results = {}
    for algo in args.algos.split(","):
        results[algo] = run_algo(algo, args.steps, flags, compiles)
    keys = ("step_s", "sample_s", "generate_s", "fork_s", "rest_s", "learn_s", "sync_s", "first_step_s")
    print(f"{'algo':<6}" + "".join(f"{k:>14}" for k in keys) + "  compiles/step")
    for algo, r in results.items():
        print(f"{algo:<6}" + "".join(f"{r[k]:>14.2f}" for k in keys) + f"  {r['compiles_per_step']}")
    out = {"benchmark": "rl_step_cpu", "label": args.label, "preset": preset, "flags": flags,
           "devices": len(jax.devices()), "cpus": os.cpu_count(), "jax": jax.__version__, "results": results}
    if "mrt" in results and "grpo" in results:
        out["mrt_over_grpo"] = round(results["mrt"]["step_s"] / results["grpo"]["step_s"], 3)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
