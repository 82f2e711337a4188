"""What bounds batch-8 fp32 decoding on this CPU: memory read bandwidth vs XLA's small-batch matmul speed.

Prints a table, then one JSON line: the time to read SmolLM2-135M's fp32 weights once (the floor for one decode
step at any batch size), and the effective weight bandwidth of one [8, 576] x [576, 1536] matmul.
Run: ``python -m benchmarks.cpu_roofline``.

Found with it and the decode HLO (``jax.jit(...).lower(...).compile().as_text()``): slicing a layer out of the
stacked weights (scan or unrolled) copied every weight matrix before its matmul, and the cache [L, B, S, K, E] was
sliced and transposed per layer; the sampler now decodes from per-layer weights (``mrt_jax.models.layerwise``).
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402


def _median_ms(f, *args, n: int = 20) -> float:
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)[len(times) // 2]


def main() -> dict:
    weights = jnp.ones((135_000_000,), jnp.float32)  # SmolLM2-135M in fp32: 540 MB
    read_ms = _median_ms(jax.jit(jnp.sum), weights)
    x, w = jnp.ones((8, 576)), jnp.ones((576, 1536))
    mm_ms = _median_ms(jax.jit(jnp.matmul), x, w, n=200)
    res = {
        "weights_read_ms": round(read_ms, 2),
        "read_bandwidth_gb_s": round(0.54 / read_ms * 1000, 1),
        "decode_floor_tok_s_batch8": round(8 / read_ms * 1000, 1),
        "matmul_b8_ms": round(mm_ms, 3),
        "matmul_b8_weight_gb_s": round(576 * 1536 * 4 / mm_ms / 1e6, 1),
    }
    print(f"{'quantity':34s}value")
    for k, v in res.items():
        print(f"{k:34s}{v}")
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
