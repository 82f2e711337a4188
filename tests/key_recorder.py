"""Runs the training job and records the key of every randomly sampled row: ``python -m tests.key_recorder OUT
[job flags]`` writes ``{"code", "draws": [[key data...], ...]}`` to OUT (used by tests/test_random_streams.py).

A row's key is ``fold_in(base, row_id)`` (mrt_jax.sampling.sampler); greedy draws and prefill-only rows draw
nothing, and row ids >= 2**30 are the sampler's own padding, so they are left out."""

import json
import sys


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    import jax

    from mrt_jax.random_streams import as_key
    from mrt_jax.sampling import sampler as sampler_mod

    draws = []
    original = sampler_mod.Sampler._run

    def recording_run(self, kept, feeds, prefixes, src_cache, src_rows, budgets, row_ids, temperature, top_k, top_p,
                      seed, *rest, **kw):
        if temperature > 0:
            base = as_key(seed)
            for r, b in zip(row_ids, budgets):
                if b > 0 and r < 2**30:
                    draws.append([int(x) for x in jax.random.key_data(jax.random.fold_in(base, r))])
        return original(self, kept, feeds, prefixes, src_cache, src_rows, budgets, row_ids, temperature, top_k, top_p,
                        seed, *rest, **kw)

    sampler_mod.Sampler._run = recording_run
    from experiments.mrt_math import main as job

    code = job(argv)
    with open(out, "w") as f:
        json.dump({"code": code, "draws": draws}, f)
    return code


if __name__ == "__main__":
    sys.exit(main())
