"""Learner: logprobs, accumulation == full batch, sharded == single device, non-finite guard, KL/epochs, config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrt_jax.learner import (
    LearnerConfig,
    create_train_state,
    make_train_step,
    reference_logprobs,
    token_logprobs,
)
from mrt_jax.models import KVCache, get_preset
from mrt_jax.sharding import make_mesh

MC = get_preset("tiny")
N, T = 8, 12
# adam_eps=1 makes the first AdamW update about lr * grad (not lr * sign(grad), which would amplify rounding
# noise on near-zero gradient entries), so parameter comparisons below check the gradients themselves.
LC = LearnerConfig(lr=1e-2, warmup_steps=0, total_steps=10, weight_decay=0.01, max_grad_norm=1.0, adam_eps=1.0)


def make_batch(state, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    tokens = jax.random.randint(k1, (N, T), 0, MC.vocab_size)
    attn = jnp.ones((N, T), bool).at[1, 9:].set(False).at[5, 7:].set(False)  # right padding
    loss_mask = attn & (jnp.arange(T) >= 4)[None]  # 4 prompt tokens
    old = token_logprobs(state, tokens, attn)
    adv = jax.random.normal(k2, (N,))[:, None] * loss_mask
    return dict(tokens=tokens, loss_mask=loss_mask.astype(jnp.float32), old_logp=old + 0.3 * loss_mask,
                advantages=adv, attn_mask=attn)


@pytest.fixture(scope="module")
def full_step():
    """One 1-device update with the whole batch as a single micro-batch (compiled once for the module)."""
    step = make_train_step(LC, MC)
    state = create_train_state(MC, LC, seed=0)
    batch = make_batch(state)
    new, metrics = step(create_train_state(MC, LC, seed=0), batch)
    return step, batch, new, metrics


def assert_params_close(a, b, atol=1e-6):
    for k in a.params:
        np.testing.assert_allclose(np.asarray(a.params[k]), np.asarray(b.params[k]), atol=atol, err_msg=k)


def test_token_logprobs_equal_log_softmax_of_logits():
    state = create_train_state(MC, LC, seed=1)
    tokens = jax.random.randint(jax.random.key(3), (2, 7), 0, MC.vocab_size)
    lp = token_logprobs(state, tokens)
    from flax import nnx
    logits = nnx.merge(state.graphdef, state.params)(tokens)
    want = jnp.take_along_axis(jax.nn.log_softmax(logits[:, :-1]), tokens[:, 1:, None], -1)[..., 0]
    np.testing.assert_allclose(lp[:, 1:], want, atol=1e-5)
    assert np.all(lp[:, 0] == 0)


def test_token_logprobs_match_incremental_kv_cache_decoding():
    """What a sampler sees (one token at a time through the KV cache) equals the learner's one-pass logprobs."""
    from flax import nnx
    state = create_train_state(MC, LC, seed=2)
    model = nnx.merge(state.graphdef, state.params)
    tokens = jax.random.randint(jax.random.key(4), (2, 6), 0, MC.vocab_size)
    graphdef, params = nnx.split(model)

    @jax.jit  # one compile for all decode steps (the slot index is traced)
    def decode(params, tok_b1, i, cache, valid):
        return nnx.merge(graphdef, params)(tok_b1, jnp.full((2, 1), i), cache=cache, cache_index=i, valid_bs=valid)

    cache = KVCache.zeros(MC, 2, 6)
    valid = jnp.zeros((2, 6), bool)
    got = []
    for i in range(5):
        valid = valid.at[:, i].set(True)
        logits, cache = decode(params, tokens[:, i:i + 1], jnp.int32(i), cache, valid)
        got.append(jax.nn.log_softmax(logits[:, 0])[jnp.arange(2), tokens[:, i + 1]])
    np.testing.assert_allclose(np.stack(got, 1), token_logprobs(model, tokens)[:, 1:], atol=1e-5)


def test_update_changes_params_and_reports_metrics(full_step):
    _, batch, new, m = full_step
    old = create_train_state(MC, LC, seed=0)
    assert int(new.step) == 1 and int(new.skipped) == 0
    assert not np.allclose(new.params["wq"], old.params["wq"])
    for key in ("loss", "pg_loss", "entropy", "clip_frac", "grad_norm", "lr", "adv_mean", "agg/token_mean"):
        assert key in m and np.isfinite(m[key]), key
    assert float(m["grad_norm"]) > 0
    assert float(m["clip_frac"]) > 0  # old_logp was shifted by 0.3: some tokens are outside the clip range


def test_four_micro_batches_equal_full_batch(full_step):
    _, batch, full, m_full = full_step
    step4 = make_train_step(LC.replace(micro_batches=4), MC)
    acc, m4 = step4(create_train_state(MC, LC, seed=0), batch)
    assert_params_close(acc, full)
    np.testing.assert_allclose(m4["loss"], m_full["loss"], rtol=1e-5)
    np.testing.assert_allclose(m4["grad_norm"], m_full["grad_norm"], rtol=1e-5)


def test_sharded_step_equals_single_device(full_step):
    _, batch, full, m_full = full_step
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    state = create_train_state(MC, LC, mesh, seed=0)
    assert state.params["wq"].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
    new, m = make_train_step(LC, MC, mesh)(state, batch)
    assert new.params["wq"].sharding.spec == state.params["wq"].sharding.spec  # the step keeps the layout
    assert_params_close(new, full)
    np.testing.assert_allclose(m["loss"], m_full["loss"], rtol=1e-5)


def test_non_finite_update_is_skipped_and_counted(full_step):
    step, batch, _, _ = full_step
    state = create_train_state(MC, LC, seed=0)
    before = {k: np.asarray(v) for k, v in state.params.items()}
    bad = dict(batch, advantages=batch["advantages"].at[0, 5].set(jnp.nan))
    new, m = step(state, bad)
    assert int(new.skipped) == 1 and float(m["update_finite"]) == 0.0
    for k in before:
        np.testing.assert_array_equal(np.asarray(new.params[k]), before[k])


def test_zero_advantage_ratio_one_gives_zero_gradient(full_step):
    step, batch, _, _ = full_step
    state = create_train_state(MC, LC, seed=0)
    # make_batch shifted old_logp by 0.3 on loss tokens: undo it for ratio 1
    zero = dict(batch, advantages=jnp.zeros((N, T)), old_logp=batch["old_logp"] - 0.3 * batch["loss_mask"])
    _, m = step(state, zero)
    assert float(m["grad_norm"]) == 0.0


def test_kl_and_inner_epochs():
    lc = LC.replace(kl_coef=0.1, kl_estimator="k3", inner_epochs=2, entropy_coef=0.01)
    state = create_train_state(MC, lc, seed=0)
    batch = make_batch(state)
    with pytest.raises(ValueError, match="ref_logp"):
        make_train_step(lc, MC)(state, batch)
    batch = reference_logprobs(lc, state.graphdef, state.params, batch)
    new, m = make_train_step(lc, MC)(state, batch)
    assert int(new.step) == 2
    assert float(m["kl"]) >= 0 and np.isfinite(m["kl"])
    assert float(m["loss"]) != float(m["first_epoch_loss"])  # the second epoch saw the updated policy


def test_kl_coef_zero_never_runs_the_reference():
    batch = {"tokens": jnp.zeros((2, 3), jnp.int32)}
    assert reference_logprobs(LC, None, None, batch) is batch


def test_config_and_batch_validation():
    with pytest.raises(ValueError, match="LearnerConfig.aggregation='mean'"):
        LearnerConfig(aggregation="mean")
    with pytest.raises(ValueError, match="norm_len"):
        LearnerConfig(aggregation="seq_sum_norm")
    with pytest.raises(ValueError, match="dual_clip"):
        LearnerConfig(dual_clip=0.5)
    with pytest.raises(ValueError, match="warmup_steps"):
        LearnerConfig(warmup_steps=20, total_steps=10)
    step = make_train_step(LC.replace(micro_batches=3), MC)
    state = create_train_state(MC, LC)
    good = {k: jnp.zeros((N, T)) for k in ("loss_mask", "old_logp", "advantages")}
    good["tokens"] = jnp.zeros((N, T), jnp.int32)
    with pytest.raises(ValueError, match="micro_batches=3"):
        step(state, good)
    with pytest.raises(ValueError, match="missing keys"):
        step(state, {"tokens": good["tokens"]})
    with pytest.raises(ValueError, match=r"batch\['advantages'\]"):
        step(state, dict(good, advantages=jnp.zeros((N, T + 1))))


def _ragged_batch(state, loss_window):
    """Rows with prompts of 2..6 tokens, completions up to ``loss_window`` tokens (one ending at the last column),
    a row without loss tokens and one with a masked token inside its completion: the job's right-padded layout."""
    k1, k2 = jax.random.split(jax.random.key(3))
    tokens = jax.random.randint(k1, (N, T), 0, MC.vocab_size)
    prompt = np.array([2, 3, 4, 5, 6, 2, 3, 4])
    comp = np.array([loss_window, 4, 0, T - 5, 2, 1, loss_window, 3])
    cols = np.arange(T)[None]
    attn = cols < (prompt + comp)[:, None]
    loss = (cols >= prompt[:, None]) & attn
    loss[6, prompt[6] + 2] = False
    old = token_logprobs(state, tokens, jnp.asarray(attn))
    adv = jax.random.normal(k2, (N,))[:, None] * loss
    return dict(tokens=np.asarray(tokens), loss_mask=loss.astype(np.float32),
                old_logp=np.asarray(old + 0.3 * loss, np.float32), advantages=np.asarray(adv, np.float32),
                attn_mask=attn)


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean"])
def test_loss_window_equals_the_full_head(aggregation):
    """The LM head on each row's completion window only: same loss, metrics and update as every column."""
    W = T - 5  # row 3's completion runs to the last column: its window is clamped there
    lc = LC.replace(kl_coef=0.1, entropy_coef=0.01, aggregation=aggregation, micro_batches=2)
    state = create_train_state(MC, lc, seed=0)
    batch = reference_logprobs(lc, state.graphdef, state.params, _ragged_batch(state, W))
    full, m_full = make_train_step(lc, MC)(create_train_state(MC, lc, seed=0), batch)
    win, m_win = make_train_step(lc.replace(loss_window=W), MC)(create_train_state(MC, lc, seed=0), batch)
    for k in ("loss", "pg_loss", "kl", "entropy", "clip_frac", "ratio_mean", "grad_norm"):
        np.testing.assert_allclose(float(m_win[k]), float(m_full[k]), rtol=1e-5, atol=1e-7, err_msg=k)
    assert float(m_full["grad_norm"]) > 0
    assert_params_close(win, full)


def test_loss_window_refuses_a_row_that_spans_more():
    lc = LC.replace(loss_window=3)
    state = create_train_state(MC, lc)
    batch = _ragged_batch(state, 3)
    batch["loss_mask"][1, 2:9] = 1.0  # row 1: loss tokens over columns 2..8
    with pytest.raises(ValueError, match=r"row 1: loss tokens span 7 columns \(2\.\.8\).*loss_window=3"):
        make_train_step(lc, MC)(state, batch)
    with pytest.raises(ValueError, match="loss_window"):
        LearnerConfig(loss_window=0)
