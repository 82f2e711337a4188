"""Train-step throughput on CPU: tokens/s of the jitted policy-gradient step on a small random model.

    python -m benchmarks.train_step_cpu            # ~2 minutes on 2 cores
    python -m benchmarks.train_step_cpu --quick    # seconds

Prints a table, then one JSON line with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import time

if __name__ == "__main__":  # only when run as the CPU benchmark; importing its helpers keeps the platform
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from mrt_jax.learner import LearnerConfig, create_train_state, make_train_step, token_logprobs  # noqa: E402
from mrt_jax.models import ModelConfig, get_preset  # noqa: E402


def random_batch(state, model_cfg: ModelConfig, rows: int, seq: int, prompt: int, seed: int = 0) -> dict:
    """Random prompt + completion tokens, old logprobs from the current policy, random per-row advantages."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    tokens = jax.random.randint(k1, (rows, seq), 0, model_cfg.vocab_size)
    loss_mask = jnp.broadcast_to((jnp.arange(seq) >= prompt)[None], (rows, seq)).astype(jnp.float32)
    logp = jax.jit(lambda s, t: token_logprobs(s, t))
    chunk = 2  # bounds the [rows, seq, vocab] logits held at once
    old = jnp.concatenate([logp(state, tokens[i:i + chunk]) for i in range(0, rows, chunk)])
    adv = jax.random.normal(k2, (rows, 1)) * loss_mask
    return dict(tokens=tokens, loss_mask=loss_mask, old_logp=old, advantages=adv)


def time_steps(step, state, batch, reps: int) -> tuple[float, float, object]:
    """(compile + first step seconds, mean seconds per later step, final state)."""
    t0 = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(reps):
        state, m = step(state, batch)
    jax.block_until_ready((state.params, m))
    return first, (time.perf_counter() - t0) / reps, state


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny model and batch, 2 timed steps")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    if args.quick:
        mc, rows, seq, reps = get_preset("tiny"), 4, 64, 2
    else:
        mc = ModelConfig(vocab_size=4096, hidden_size=256, intermediate_size=704, num_layers=4, num_heads=4,
                         num_kv_heads=2, tie_word_embeddings=True)
        rows, seq, reps = args.rows, args.seq, args.reps
    results = []
    for remat in (False, True):
        cfg = mc.replace(remat=remat)
        lc = LearnerConfig(lr=1e-5, micro_batches=2 if rows % 2 == 0 else 1)
        state = create_train_state(cfg, lc)
        batch = random_batch(state, cfg, rows, seq, prompt=seq // 4)
        first, per_step, _ = time_steps(make_train_step(lc, cfg), state, batch, reps)
        results.append(dict(remat=remat, params=cfg.num_params, rows=rows, seq=seq, compile_s=round(first, 2),
                            step_s=round(per_step, 4), tokens_per_s=round(rows * seq / per_step, 1)))
    print(f"{'remat':>6} {'params':>10} {'rows x seq':>11} {'compile s':>10} {'step s':>8} {'tokens/s':>10}")
    for r in results:
        print(f"{r['remat']!s:>6} {r['params']:>10} {r['rows']:>5} x {r['seq']:<4} {r['compile_s']:>10} "
              f"{r['step_s']:>8} {r['tokens_per_s']:>10}")
    out = {"benchmark": "train_step_cpu", "devices": len(jax.devices()), "jax": jax.__version__, "results": results}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
