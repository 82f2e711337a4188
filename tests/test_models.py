"""The decoder: cache path equals the full forward, sharded equals unsharded, remat, config validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mrt_jax.models import KVCache, ModelConfig, create_model, get_preset, param_shapes
from mrt_jax.sharding import logical_to_spec, make_mesh

CFG = get_preset("tiny").replace(attention_bias=True, tie_word_embeddings=False, num_heads=4, num_kv_heads=2)


def _tokens(b=4, t=10, seed=1):
    return jax.random.randint(jax.random.key(seed), (b, t), 0, CFG.vocab_size)


def test_param_count_matches_config():
    model = create_model(CFG)
    n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert n == CFG.num_params
    assert set(param_shapes(CFG)) >= {"bq", "lm_head"}


def test_incremental_cache_decode_equals_full_forward():
    model = create_model(CFG)
    toks = _tokens()
    full = model(toks)
    pos = jnp.broadcast_to(jnp.arange(10), (4, 10))
    cache = KVCache.zeros(CFG, 4, 16)
    valid = jnp.zeros((4, 16), bool).at[:, :6].set(True)
    logits, cache = model(toks[:, :6], pos[:, :6], cache=cache, cache_index=0, valid_bs=valid)
    outs = [logits]
    for i in range(6, 10):
        valid = valid.at[:, i].set(True)
        logits, cache = model(toks[:, i:i + 1], pos[:, i:i + 1], cache=cache, cache_index=i, valid_bs=valid)
        outs.append(logits)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, atol=1e-5)


def test_left_padding_with_mask_equals_unpadded():
    model = create_model(CFG)
    toks = _tokens(1, 7)
    ref = model(toks)
    padded = jnp.concatenate([jnp.zeros((1, 3), toks.dtype), toks], 1)
    mask = jnp.arange(10)[None] >= 3
    pos = jnp.maximum(jnp.arange(10)[None] - 3, 0)
    out = model(padded, pos, mask_bt=mask)
    np.testing.assert_allclose(out[:, 3:], ref, atol=1e-5)


def test_sharded_8_devices_equals_single_device():
    model = create_model(CFG, seed=3)
    toks = _tokens(8, 12)
    ref = model(toks)
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    with jax.set_mesh(mesh):
        sharded = create_model(CFG, mesh=mesh, seed=3)
        assert sharded.wq[...].sharding.spec == logical_to_spec(("layers", "embed", "q_heads", "head_dim"),
                                                                 sharded.wq[...].shape, mesh)
        assert len(sharded.wq[...].sharding.device_set) == 8
        graphdef, state = nnx.split(sharded)
        out = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t))(state, toks)
    np.testing.assert_allclose(out, ref, atol=2e-5)


def test_remat_gives_same_gradients():
    toks = _tokens(2, 8)

    def grads(cfg):
        model = create_model(cfg, seed=5)
        graphdef, state = nnx.split(model)

        def loss(s):
            return jnp.mean(nnx.merge(graphdef, s)(toks) ** 2)

        return jax.grad(loss)(state)

    g1, g2 = grads(CFG), grads(CFG.replace(remat=True))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_bf16_compute_is_close_to_fp32():
    model = create_model(CFG)
    toks = _tokens(2, 8)
    ref = model(toks)
    model.cfg = CFG.replace(dtype="bfloat16")
    out = model(toks)
    assert out.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(out - ref))) < 0.05


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(architecture="mistral"), "architecture 'mistral' is not supported"),
        (dict(num_heads=4, num_kv_heads=3), "multiple of num_kv_heads"),
        (dict(rope_scaling={"rope_type": "yarn", "factor": 2.0}), "rope_scaling type 'yarn'"),
        (dict(dtype="int8"), "dtype 'int8' is not supported"),
        (dict(hidden_size=0), "hidden_size must be a positive int"),
    ],
)
def test_config_errors_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        CFG.replace(**kw)


def test_mesh_that_does_not_divide_devices_is_refused():
    with pytest.raises(ValueError, match="choose axis sizes whose product is 8"):
        make_mesh(data=3, fsdp=1, tensor=1)


def test_unknown_preset_lists_allowed():
    with pytest.raises(ValueError, match="allowed: .*smollm2-135m"):
        get_preset("gpt-5")
    assert isinstance(get_preset("r1-distill-qwen-1.5b"), ModelConfig)
