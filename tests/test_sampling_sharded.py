"""The same call on 8 fake devices (data x tensor mesh) gives the unsharded output; batch padding never leaks."""

import jax
import numpy as np

from mrt_jax.sampling import Branch, Sampler
from mrt_jax.sharding import make_mesh
from tests.test_sampling_generate import CFG, PROMPTS, lively_model


def test_sharded_equals_unsharded():
    assert len(jax.devices()) == 8
    plain = Sampler(lively_model(), eos_ids=[], max_cache_len=64)
    mesh = make_mesh(4, 1, 2)
    with jax.set_mesh(mesh):
        model = lively_model(CFG, mesh=mesh)
    sharded = Sampler(model, eos_ids=[], max_cache_len=64)
    assert sharded.mesh is mesh and sharded._shards == 4
    for kw in (dict(temperature=0), dict(temperature=1.0, top_p=0.9, seed=3)):
        a = plain.generate(PROMPTS, max_new_tokens=8, keep_cache=True, **kw)  # 3 rows on a data axis of 4
        b = sharded.generate(PROMPTS, max_new_tokens=8, keep_cache=True, **kw)
        assert len(b) == 3 and a.tokens == b.tokens and list(b.lengths) == [8, 8, 8]
        for x, y in zip(a.logprobs, b.logprobs):
            np.testing.assert_allclose(x, y, atol=1e-5)
        fa = plain.fork(a, [Branch(1, 4, [9, 9], n=3)], max_new_tokens=5, **kw)
        fb = sharded.fork(b, [Branch(1, 4, [9, 9], n=3)], max_new_tokens=5, **kw)
        assert fa.tokens == fb.tokens and len(fb) == 3
