"""Supervised warm start: packing, masked NLL, and that training lowers the loss on a learnable pattern."""

import numpy as np
import pytest

from mrt_jax.models import create_model, get_preset
from mrt_jax.sft import SFTExample, masked_nll, pack_examples, train_sft


def test_pack_masks_completion_only_and_refuses_overlong():
    tokens, mask = pack_examples([SFTExample([5, 6], [7, 8, 9])], seq_len=8, pad_id=0)
    assert tokens.tolist() == [[5, 6, 7, 8, 9, 0, 0, 0]]
    assert mask.tolist() == [[0, 0, 1, 1, 1, 0, 0, 0]]
    with pytest.raises(ValueError, match="has 5 tokens; seq_len is 4"):
        pack_examples([SFTExample([5, 6], [7, 8, 9])], seq_len=4, pad_id=0)


def test_masked_nll_counts_only_masked_targets():
    import jax.numpy as jnp

    logits = jnp.zeros((1, 3, 4)).at[0, 0, 2].set(10.0)  # position 0 predicts token 2 confidently
    tokens = jnp.asarray([[1, 2, 3]])
    only_first = masked_nll(logits, tokens, jnp.asarray([[0.0, 1.0, 0.0]]))
    assert float(only_first) < 1e-3
    both = masked_nll(logits, tokens, jnp.asarray([[0.0, 1.0, 1.0]]))
    np.testing.assert_allclose(float(both), (float(only_first) + np.log(4)) / 2, rtol=1e-4)


def test_sft_learns_a_copy_pattern():
    cfg = get_preset("tiny").replace(vocab_size=32, num_layers=1)
    model = create_model(cfg, seed=0)
    rng = np.random.default_rng(0)
    examples = [SFTExample([1] + list(x), list(x)) for x in rng.integers(2, 32, (64, 3))]
    tokens, mask = pack_examples(examples, seq_len=8, pad_id=0)
    _, losses = train_sft(model, tokens, mask, steps=60, batch_size=16, learning_rate=1e-2, log_every=0)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
