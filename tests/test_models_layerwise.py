"""The per-layer (fused) cached forward used by the sampler equals the stacked decoder's cached forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mrt_jax.models import KVCache, create_model, get_preset
from mrt_jax.models.layerwise import forward_cached, layer_cache_zeros, layerwise_logits, split_layers
from mrt_jax.sampling.fast_weights import fast_weights
from mrt_jax.sharding import make_mesh

QWEN = get_preset("tiny").replace(architecture="qwen2", attention_bias=True, tie_word_embeddings=False)


def _perturbed_model(cfg, seed=1):
    """Random weights with nonzero biases and norms that are not all ones, so every term of the forward counts."""
    model = create_model(cfg, seed=seed)
    state = nnx.to_pure_dict(nnx.state(model))
    keys = iter(jax.random.split(jax.random.key(seed + 100), len(state)))
    nnx.update(model, {n: x + 0.1 * jax.random.normal(next(keys), x.shape) for n, x in state.items()})
    return model


@pytest.mark.parametrize("cfg", [get_preset("tiny"), QWEN], ids=["llama-tied", "qwen2-bias-untied"])
def test_prefill_then_decode_equals_stacked_decoder(cfg):
    model = _perturbed_model(cfg)
    w = split_layers(cfg, nnx.to_pure_dict(nnx.state(model)))
    B, S = 2, 12
    toks = jnp.array([[3, 4, 5, 6], [0, 8, 9, 10]])
    pos = jnp.array([[0, 1, 2, 3], [0, 0, 1, 2]])
    valid = jnp.ones((B, S), bool).at[1, 0].set(False)  # row 1 is left-padded
    ref_h, ref_cache = model(toks, pos, cache=KVCache.zeros(cfg, B, S), cache_index=0, valid_bs=valid,
                             return_hidden=True)
    h, cache = forward_cached(cfg, w, toks, pos, layer_cache_zeros(cfg, B, S), 0, valid)
    np.testing.assert_allclose(h, ref_h, atol=1e-5)
    np.testing.assert_allclose(layerwise_logits(cfg, w, h), model.logits(ref_h), atol=1e-5)
    for i, (k, v) in enumerate(cache):  # the same keys/values, in the [B, K, S, E] layout
        np.testing.assert_allclose(k, ref_cache.k[i].transpose(0, 2, 1, 3), atol=1e-5)
        np.testing.assert_allclose(v, ref_cache.v[i].transpose(0, 2, 1, 3), atol=1e-5)
    for step in range(3):
        t, p = jnp.array([[11 + step], [20 + step]]), jnp.array([[4 + step], [3 + step]])
        ref_logits, ref_cache = model(t, p, cache=ref_cache, cache_index=4 + step, valid_bs=valid)
        h, cache = forward_cached(cfg, w, t, p, cache, 4 + step, valid)
        np.testing.assert_allclose(layerwise_logits(cfg, w, h), ref_logits, atol=1e-5)


def test_fast_weights_on_a_mesh_are_sharded_and_equal():
    cfg = QWEN
    model = _perturbed_model(cfg, seed=2)
    plain = fast_weights(cfg, nnx.state(model))
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    with jax.set_mesh(mesh):
        sharded_model = create_model(cfg, mesh=mesh)
        nnx.update(sharded_model, jax.device_put(nnx.to_pure_dict(nnx.state(model)),
                                                 nnx.to_pure_dict(jax.tree.map(lambda x: x.sharding,
                                                                               nnx.state(sharded_model)))))
        sharded = fast_weights(cfg, nnx.state(sharded_model), mesh)
    wqkv = sharded.layers[0]["wqkv"]
    assert wqkv.sharding.mesh is mesh and wqkv.sharding.spec[0] == "fsdp" and wqkv.sharding.spec[1] == "tensor"
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(sharded)):
        np.testing.assert_array_equal(a, b)
