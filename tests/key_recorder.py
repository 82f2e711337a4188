"""Runs the training job and records the key of every randomly sampled row: ``python -m tests.key_recorder OUT
[job flags]`` writes ``{"code", "draws": [[key data...], ...]}`` to OUT (used by tests/test_random_streams.py).

The keys are the ones the sampler computes (``mrt_jax.sampling.sampler.row_keys``, wrapped): greedy draws and
prefill-only rows draw nothing, and row ids >= 2**30 are the sampler's own padding, so they are left out."""

import json
import sys


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    import numpy as np

    from mrt_jax.sampling import sampler as sampler_mod

    draws = []
    original_run, original_keys = sampler_mod.Sampler._run, sampler_mod.row_keys
    call = {}  # the running _run call's temperature and budgets (row_keys does not see them)

    def recording_run(self, kept, feeds, prefixes, src_cache, src_rows, budgets, row_ids, temperature, *rest, **kw):
        call.update(temperature=temperature, budgets=list(budgets))
        return original_run(self, kept, feeds, prefixes, src_cache, src_rows, budgets, row_ids, temperature, *rest,
                            **kw)

    def recording_keys(seed, ids):
        keys = original_keys(seed, ids)  # the very keys the sampler uses
        if call.get("temperature", 0) > 0:
            data = np.asarray(keys)
            for i, (b, r) in enumerate(zip(call["budgets"], ids)):  # padding rows come after the budgets
                if b > 0 and int(r) < 2**30:
                    draws.append([int(x) for x in data[i]])
        return keys

    sampler_mod.Sampler._run = recording_run
    sampler_mod.row_keys = recording_keys
    from experiments.mrt_math import main as job

    code = job(argv)
    with open(out, "w") as f:
        json.dump({"code": code, "draws": draws}, f)
    return code


if __name__ == "__main__":
    sys.exit(main())
