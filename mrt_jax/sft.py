"""Supervised warm start: masked next-token NLL on (prompt, completion) pairs, for small from-scratch models.

The demo's RL stage starts from a model that already knows the episode format; this is how it gets there.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mrt_jax.learner.logprobs import logprobs_from_logits
from mrt_jax.models import Decoder
from mrt_jax.rl.losses import sft_nll_loss

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SFTExample:
    prompt_ids: Sequence[int]
    completion_ids: Sequence[int]


def pack_examples(examples: Sequence[SFTExample], seq_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded tokens [N, T] and a loss mask [N, T] that is 1 on completion tokens only.

    An example longer than ``seq_len`` raises (silently cutting a trace would teach the model to stop mid-answer).
    """
    n = len(examples)
    tokens = np.full((n, seq_len), pad_id, np.int32)
    mask = np.zeros((n, seq_len), np.float32)
    for i, ex in enumerate(examples):
        ids = list(ex.prompt_ids) + list(ex.completion_ids)
        if len(ids) > seq_len:
            raise ValueError(f"SFT example {i} has {len(ids)} tokens; seq_len is {seq_len}: raise seq_len")
        tokens[i, : len(ids)] = ids
        mask[i, len(ex.prompt_ids): len(ids)] = 1.0
    return tokens, mask


def masked_nll(logits_btv: jax.Array, tokens_bt: jax.Array, mask_bt: jax.Array) -> jax.Array:
    """mean over masked target tokens of -log p(tokens[t] | tokens[<t]): the learner's STaR loss
    (``rl.sft_nll_loss``) with token-mean weights over the learner's aligned log-probs."""
    logp_bt = logprobs_from_logits(logits_btv, tokens_bt)  # position 0 has no prediction: its weight is 0
    m = mask_bt.astype(jnp.float32).at[:, 0].set(0.0)
    return sft_nll_loss(logp_bt, m / jnp.maximum(m.sum(), 1.0))


def train_sft(model: Decoder, tokens_nt: np.ndarray, mask_nt: np.ndarray, *, steps: int, batch_size: int,
              learning_rate: float, seed: int = 0, log_every: int = 50) -> tuple[Decoder, list[float]]:
    """AdamW (warmup + cosine) on masked NLL over length-bucketed batches in seeded order. Returns (model, losses).

    The loss mask marks the last real token of each row (completion tokens run to the row's end)."""
    if steps <= 0:
        return model, []
    graphdef, params = nnx.split(model, nnx.Param)
    sched = optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(1, steps // 10), steps, learning_rate * 0.1)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=0.01))
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, tokens, mask):
        def loss_fn(p):
            return masked_nll(nnx.merge(graphdef, p)(tokens), tokens, mask)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    # Length-bucketed batches: rows sorted by length are cut into batches, and each batch is trimmed to a multiple
    # of 32 tokens, so short traces do not pay for the longest one (a handful of compiled shapes).
    rng = np.random.default_rng(seed)
    n = tokens_nt.shape[0]
    lengths = mask_nt.shape[1] - np.argmax(mask_nt[:, ::-1] > 0, axis=1)  # one past the last masked token
    by_len = np.argsort(lengths, kind="stable")
    batches = [by_len[i: i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    losses: list[float] = []
    order, pos = rng.permutation(len(batches)), 0
    for i in range(steps):
        if pos == len(order):
            order, pos = rng.permutation(len(batches)), 0
        idx = batches[order[pos]]
        pos += 1
        width = min(tokens_nt.shape[1], int(-(-lengths[idx].max() // 32) * 32))
        params, opt_state, loss = step(params, opt_state, jnp.asarray(tokens_nt[idx, :width]),
                                       jnp.asarray(mask_nt[idx, :width]))
        losses.append(float(loss))
        if log_every and (i + 1) % log_every == 0:
            log.info("sft step %d/%d loss %.4f", i + 1, steps, np.mean(losses[-log_every:]))
    nnx.update(model, params)
    return model, losses
