"""The programs ``--compile_only`` compiles for the sampler are the ones the Sampler runs: the engine's own jitted
functions, and for the same call size the same lowered program as a real ``generate`` / ``fork``."""

import hashlib

import jax
import pytest

from mrt_jax.sampling import Branch, Sampler
from mrt_jax.sampling.programs import call_shape, sampler_programs, sampler_shards
from mrt_jax.sharding import make_mesh
from tests.test_sampling_generate import CFG, PROMPTS, lively_model


def _spy(sampler: Sampler, name: str) -> list:
    """Record the abstract arguments of every call of the sampler's jitted ``name`` (before donation)."""
    calls, fn = [], getattr(sampler, name)

    def abstract(x):
        if not isinstance(x, jax.Array):
            return x
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding if x.committed else None)

    def wrapper(*args, **kw):
        calls.append((jax.tree.map(abstract, args), kw))
        return fn(*args, **kw)

    setattr(sampler, name, wrapper)
    return calls


def _fingerprint(fn, args, kwargs, mesh) -> str:
    if mesh is None:
        return hashlib.sha256(fn.lower(*args, **kwargs).as_text().encode()).hexdigest()
    with jax.set_mesh(mesh):
        return hashlib.sha256(fn.lower(*args, **kwargs).as_text().encode()).hexdigest()


@pytest.mark.parametrize("data", [None, 8])
def test_compiled_programs_are_the_samplers(data):
    mesh = None if data is None else make_mesh(data, 1, 1)  # the job's sampler mesh: this process's chips as data
    if mesh is None:
        model = lively_model()
    else:
        with jax.set_mesh(mesh):
            model = lively_model(CFG, mesh=mesh)
    sampler = Sampler(model, eos_ids=[3], max_cache_len=96, window=16)
    engine = (sampler._prefill, sampler._decode)
    prefills, decodes = _spy(sampler, "_prefill"), _spy(sampler, "_decode")
    out = sampler.generate(PROMPTS, max_new_tokens=20, temperature=1.0, keep_cache=True)
    shape = call_shape(len(PROMPTS), sampler_shards(mesh), max(map(len, PROMPTS)), 20, 96, window=16)
    progs = sampler_programs(CFG, mesh, shape, pad_id=sampler.pad_id)
    assert [p.name for p in progs] == ["prefill", "decode"]
    assert progs[0].fn is engine[0] and progs[1].fn is engine[1]  # the very jitted functions the Sampler calls
    real = {"prefill": prefills[0], "decode": decodes[-1]}  # the last decode chunk carries the most slots
    for p in progs:
        args, kw = real[p.name]
        assert _fingerprint(p.fn, p.args, p.kwargs, mesh) == _fingerprint(p.fn, args, kw, mesh), p.name
    # A meta-prover fork: rows of branches after a kept prefix.
    prefills.clear(), decodes.clear()
    sampler.fork(out, [Branch(0, 6, [9, 9], n=3), Branch(2, 11, [9, 9], n=2)], max_new_tokens=5, temperature=0.6,
                 stop=None)
    # The block starts after the last kept slot: that of the token before each branch point's last token.
    start = max(int(out.cache.seq_slots[r][len(PROMPTS[r]) + pos - 2]) + 1 for r, pos in ((0, 6), (2, 11)))
    shape = call_shape(5, sampler_shards(mesh), 3, 5, 96, kept=start, window=16)
    (decode,) = sampler_programs(CFG, mesh, shape, pad_id=sampler.pad_id, prefill=False)
    args, kw = decodes[-1]
    assert _fingerprint(decode.fn, decode.args, decode.kwargs, mesh) == _fingerprint(decode.fn, args, kw, mesh)
