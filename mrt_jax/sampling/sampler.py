"""``Sampler``: batched generation and prefix forking over a preallocated KV cache, under an optional mesh.

The host pads the batch (rows to a power of two that the data axes divide, prompt block and token budget to a few
bucketed sizes, so requests of similar size reuse one compiled program), then runs one jitted prefill and one
jitted ``while_loop`` decode (the cache carried and donated). With stop strings the loop runs in chunks and the
host checks the decoded text between chunks (stop strings may span token boundaries).

Both run on the sampler's own per-layer copy of the weights (``mrt_jax.models.layerwise``: no weight copies per
step on XLA:CPU, fused q/k/v and gate/up matmuls), rebuilt by ``update_params``; it costs one more copy of the
layer weights (and of an untied output projection) in memory.
``state`` keeps the decoder's stacked layout (weight sync).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mrt_jax.models.config import resolve_dtype
from mrt_jax.models.layerwise import LAYER_CACHE_AXES, SharedPrefix
from mrt_jax.random_streams import as_key
from mrt_jax.sampling.engine import DecodeState, init_state, make_engine, make_fan_prefill
from mrt_jax.sampling.fast_weights import fast_weights
from mrt_jax.sampling.layout import block_sizes, bucket, chunk_window, plan_block, row_bucket
from mrt_jax.sampling.output import Branch, CacheRef, SampleOutput
from mrt_jax.sampling.sample_logits import SamplingParams, validate_sampling
from mrt_jax.sampling.stops import find_stop
from mrt_jax.sharding import named_sharding


class _Shared(NamedTuple):
    """A fork's shared prefix (see ``Sampler._fork_shared``): per-layer [U, K, P, E] caches, per-row valid prefix
    slots [R, P], per-row count of prefix tokens (where positions continue), slots the longest prefix spans, and
    which caller row each laid-out row is."""

    cache: tuple
    valid: np.ndarray
    offsets: np.ndarray
    used: int
    order: list  # laid-out row -> the caller's row (None: an empty filler row)


def _model_mesh(state):
    for leaf in jax.tree.leaves(state):
        sh = getattr(leaf, "sharding", None)
        if isinstance(sh, jax.sharding.NamedSharding) and sh.mesh.size > 1:
            return sh.mesh
    return None


class Sampler:
    """Generate from a ``Decoder``. ``tokenizer`` (optional) follows ``mrt_jax.tokenizer``'s protocol.

    ``mesh``: defaults to the mesh of the model's parameters (none for a single device). ``max_cache_len``: the
    most slots (prompt + generated) a row may use. ``chunk``: decode steps between host stop-string checks.
    ``window``: without stop strings, decode runs in chunks of this many steps, each attending over only the
    (bucketed) part of the cache it can reach; None = one loop over the whole cache. ``share_prefix``: ``fork``
    keeps each source row's prefix once for all its branches instead of a copy per branch when the prefixes span at
    least this many cache slots (single device, without ``keep_cache``); None: always copy. Short prefixes are cheap
    to copy, and sharing compiles programs per (sources, branches per source) layout (both powers of two; rows that
    stop leave by whole groups and within groups), so it pays off on longer traces (BUILD.md "RL step on CPU").
    """

    def __init__(self, model, tokenizer=None, *, mesh=None, max_cache_len: int | None = None,
                 eos_ids: Sequence[int] | None = None, pad_id: int | None = None, chunk: int = 8,
                 window: int | None = 128, share_prefix: int | None = 128):
        self.cfg = model.cfg
        if share_prefix is not None and share_prefix < 0:
            raise ValueError(f"share_prefix must be >= 0 slots or None, got {share_prefix}")
        self.share_prefix = share_prefix
        self.tokenizer = tokenizer
        self.graphdef, self.state = nnx.split(model)
        self.mesh = mesh if mesh is not None else _model_mesh(self.state)
        self.max_cache_len = int(max_cache_len or self.cfg.max_position_embeddings)
        if eos_ids is None:
            eos_ids = tuple(getattr(tokenizer, "eos_ids", ()) or ())
        self.eos_ids = tuple(int(e) for e in eos_ids)
        if pad_id is None:
            pad_id = getattr(tokenizer, "pad_id", None)
            pad_id = pad_id if pad_id is not None else (self.eos_ids[0] if self.eos_ids else 0)
        self.pad_id = int(pad_id)
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.chunk = chunk
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        self.window = window
        self._prefill, self._decode = make_engine(self.cfg, pad_id=self.pad_id)
        self._prefill_fan = make_fan_prefill(self.cfg, pad_id=self.pad_id)
        self._stop_token_ids: dict[tuple[str, ...], list[int]] = {}
        self._shards = 1
        if self.mesh is not None:
            self._shards = int(np.prod([self.mesh.shape[a] for a in ("data", "fsdp") if a in self.mesh.shape]))
        self._weights = fast_weights(self.cfg, self.state, self.mesh)

    # ---------------------------------------------------------------- helpers
    def update_params(self, model_or_state) -> None:
        """Use new weights (same architecture), e.g. after a learner step; nothing recompiles.

        The sampler decodes from its own per-layer copy of the weights (``mrt_jax.models.layerwise``), rebuilt
        here: ``state`` keeps the decoder's stacked layout for weight sync."""
        self.state = model_or_state if isinstance(model_or_state, nnx.State) else nnx.split(model_or_state)[1]
        self._weights = fast_weights(self.cfg, self.state, self.mesh)

    def _mesh_ctx(self):
        return jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()

    def _put(self, x, names):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if self.mesh is None:
            return jnp.asarray(x)
        return jax.device_put(x, named_sharding(self.mesh, names, x.shape))

    def _encode(self, prompt, where: str) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError(f"{where} is a string but the Sampler has no tokenizer; pass token ids")
            ids = list(self.tokenizer.encode(prompt))
        else:
            ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError(f"{where} is empty; every prompt needs at least one token")
        bad = [t for t in ids if not 0 <= t < self.cfg.vocab_size]
        if bad:
            raise ValueError(f"{where} has token ids outside [0, {self.cfg.vocab_size}): {bad[:5]}")
        return ids

    def _decode_text(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _budgets(self, max_new_tokens, n: int) -> np.ndarray:
        b = np.broadcast_to(np.asarray(max_new_tokens), (n,)).astype(np.int64)
        if np.any(b < 0):
            raise ValueError(f"max_new_tokens must be >= 0 per row, got {max_new_tokens!r}")
        return b

    # ---------------------------------------------------------------- public API
    def generate(self, prompts: Sequence[str | Sequence[int]], *, max_new_tokens: int | Sequence[int] = 256,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int | jax.Array = 0,
                 stop: Sequence[str] | None = None, ignore_eos: bool = False, keep_cache: bool = False,
                 row_ids: Sequence[int] | None = None) -> SampleOutput:
        """Complete every prompt (a string or token ids). temperature 0 = greedy. Row i's randomness depends only
        on (seed, i), never on the batch size, padding or device count. ``row_ids`` replaces i by a caller's id
        (e.g. the row's index in a global batch split over processes)."""
        if isinstance(prompts, (str, bytes)) or not len(prompts):
            raise ValueError("prompts must be a non-empty list of strings or token-id lists")
        ids = [self._encode(p, f"prompt {i}") for i, p in enumerate(prompts)]
        budgets = self._budgets(max_new_tokens, len(ids))
        return self._run([np.zeros(0, np.int64)] * len(ids), ids, ids, None, None, budgets,
                         _stream_ids(row_ids, len(ids)), temperature, top_k, top_p, seed, stop, ignore_eos, keep_cache)

    def prefill(self, prompts: Sequence[str | Sequence[int]], completions: Sequence[Sequence[int]] | None = None
                ) -> SampleOutput:
        """Cache given traces (prompt + completion tokens) without generating, so ``fork`` can branch from them."""
        ids = [self._encode(p, f"prompt {i}") for i, p in enumerate(prompts)]
        comps = [list(map(int, c)) for c in completions] if completions is not None else [[] for _ in ids]
        out = self._run([np.zeros(0, np.int64)] * len(ids), [a + c for a, c in zip(ids, comps)], ids, None, None,
                        np.zeros(len(ids), np.int64), list(range(len(ids))), 0.0, None, None, 0, None, False, True)
        out.tokens = comps
        out.lengths = np.asarray([len(c) for c in comps])
        out.logprobs = [np.zeros(len(c), np.float32) for c in comps]
        out.sample_logprobs = [np.zeros(len(c), np.float32) for c in comps]
        out.texts = [self._decode_text(c) for c in comps] if self.tokenizer is not None else None
        return out

    def fork(self, source: SampleOutput, branches: Sequence[Branch], *, max_new_tokens: int = 256,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, seed: int | jax.Array = 0,
             stop: Sequence[str] | None = None, ignore_eos: bool = False, keep_cache: bool = False,
             row_ids: Sequence[int] | None = None) -> SampleOutput:
        """Branch continuations from cached prefixes of ``source`` (see ``Branch``); the prefix is not recomputed.

        Output rows follow ``branches`` in order, ``n`` rows each. Without a kept cache in ``source`` the used rows
        are prefilled once first. Random streams: output row j uses (seed, j), or (seed, row_ids[j]) if given.
        """
        if not branches:
            raise ValueError("fork needs at least one Branch")
        if source.cache is None:
            used = sorted({b.row for b in branches})
            pre = self.prefill([source.prompt_tokens[r] for r in used], [source.tokens[r] for r in used])
            remap = {r: i for i, r in enumerate(used)}
            branches = [Branch(remap[b.row], b.position, b.text, b.n) for b in branches]
            source = pre
        # One fed row per branch; its n output rows share that row's prefill (``fan``: output row -> fed row).
        rows, kept, feeds, prefixes, fan = [], [], [], [], []
        for j, br in enumerate(branches):
            if not 0 <= br.row < len(source):
                raise ValueError(f"branch {j}: row {br.row} is outside the source's {len(source)} rows")
            comp = source.tokens[br.row]
            if not 0 <= br.position <= len(comp):
                raise ValueError(f"branch {j}: position {br.position} is outside [0, {len(comp)}] (completion "
                                 f"tokens of row {br.row})")
            if br.n < 1:
                raise ValueError(f"branch {j}: n must be >= 1, got {br.n}")
            seq = list(source.prompt_tokens[br.row]) + list(comp[:br.position])
            extra = (self._encode(br.text, f"branch {j} text") if br.text not in ("", []) else [])
            slots = source.cache.seq_slots[br.row]
            c = min(len(seq) - 1, len(slots))
            rows.append(br.row)
            kept.append(np.asarray(slots[:c]))
            feeds.append(seq[c:] + extra)
            fan += [j] * br.n
            prefixes += [seq + extra] * br.n
        budgets = self._budgets(max_new_tokens, len(fan))
        ids = _stream_ids(row_ids, len(fan))
        sampling = (temperature, top_k, top_p, seed, stop, ignore_eos)
        longest = max((int(k[-1]) + 1 for k in kept if len(k)), default=0)
        exact = len({len(f) for f in feeds}) == 1  # every branch feeds the same forced text after its prefix
        if self.share_prefix is not None and longest >= self.share_prefix and self.mesh is None and not keep_cache:
            return self._fork_shared(source.cache.cache, rows, kept, feeds, fan, prefixes, budgets, ids, sampling,
                                     longest, exact)
        return self._run(kept, feeds, prefixes, source.cache.cache, rows, budgets, ids, *sampling, keep_cache,
                         fan=fan, exact_block=exact)

    def _fork_shared(self, src_cache, rows, kept, feeds, fan, prefixes, budgets, ids, sampling, used, exact
                     ) -> SampleOutput:
        """``fork`` with each source row's cached prefix kept once for all its branches (``SharedPrefix``) instead
        of copied into every output row: at K branches per row a decode step reads the prefix once, not K times.
        Fed rows (one per branch) and output rows are laid out source row by source row (padded with empty rows to
        U groups of Mf fed / M output rows), then put back. ``used``: the prefix slots the branches attend (the
        longest kept prefix)."""
        sources = sorted(set(rows))
        members = [[j for j, r in enumerate(rows) if r == u] for u in sources]  # fed rows (branches) per source
        outs = [[b for b, j in enumerate(fan) if rows[j] == u] for u in sources]  # output rows per source
        U = row_bucket(len(sources), 1)
        Mf, M = row_bucket(max(map(len, members)), 1), row_bucket(max(map(len, outs)), 1)
        fed_order = [(members[g][m] if g < len(members) and m < len(members[g]) else None)
                     for g in range(U) for m in range(Mf)]
        order = [(outs[g][m] if g < len(outs) and m < len(outs[g]) else None) for g in range(U) for m in range(M)]
        fed_at = {j: b for b, j in enumerate(fed_order) if j is not None}
        # An empty output row (budget 0: it never samples) reads a fed row of its group (itself when M == Mf).
        lay_fan = [fed_at[fan[j]] if j is not None else (b // M) * Mf + min(b % M, Mf - 1)
                   for b, j in enumerate(order)]
        P = min(int(src_cache[0][0].shape[2]), bucket(max(used, 1)))
        valid = np.zeros((U * Mf, P), bool)
        for b, j in enumerate(fed_order):
            if j is not None:
                valid[b, kept[j]] = True
        src_rows = np.asarray([sources[g] if g < len(sources) else 0 for g in range(U)], np.int32)
        shared = _Shared(_gather_rows(src_cache, jnp.asarray(src_rows), P), valid,
                         np.asarray([len(kept[j]) if j is not None else 0 for j in fed_order], np.int32), used,
                         order)
        fed = lambda seq, fill: [seq[j] if j is not None else fill for j in fed_order]  # noqa: E731
        pick = lambda seq, fill: [seq[j] if j is not None else fill for j in order]  # noqa: E731
        dummy_ids = iter(range(2**30, 2**31))
        out = self._run([np.zeros(0, np.int64)] * len(fed_order), fed(feeds, [self.pad_id]), pick(prefixes, []), None,
                        None, np.asarray(pick(budgets, 0), np.int64),
                        [ids[j] if j is not None else next(dummy_ids) for j in order], *sampling, False,
                        shared=shared, fan=lay_fan, exact_block=exact)
        where = {j: b for b, j in enumerate(order) if j is not None}
        return out.select([where[j] for j in range(len(fan))])

    # ---------------------------------------------------------------- the common path
    def _run(self, kept, feeds, prefixes, src_cache, src_rows, budgets, row_ids, temperature, top_k, top_p, seed,
             stop, ignore_eos, keep_cache, shared: _Shared | None = None, fan: Sequence[int] | None = None,
             exact_block: bool = False) -> SampleOutput:
        """``kept``, ``feeds``, ``src_rows``: per fed row; ``prefixes``, ``budgets``, ``row_ids``: per output row;
        ``fan[r]``: the fed row output row r continues (None: fed row r). ``exact_block``: no bucketing of the fed
        block (``block_sizes``)."""
        validate_sampling(temperature, top_k, top_p)
        stop = [s for s in (stop or []) if s]
        if stop and self.tokenizer is None:
            raise ValueError("stop strings need a tokenizer; pass token ids in eos_ids instead")
        n, nf = len(prefixes), len(feeds)
        if shared is not None:  # laid out by _fork_shared
            R, Rf = n, nf
        else:
            R, Rf = row_bucket(n, self._shards), row_bucket(nf, self._shards)
        fanned = fan is not None and (Rf != R or list(fan) != list(range(n)))
        # Padding output rows (budget 0: they never sample) read the last fed row.
        fan_r = np.asarray(list(fan) + [Rf - 1] * (R - n), np.int32) if fanned else np.arange(R, dtype=np.int32)
        kept = list(kept) + [np.zeros(0, np.int64)] * (Rf - nf)
        feeds = list(feeds) + [[self.pad_id]] * (Rf - nf)
        budgets = np.concatenate([budgets, np.zeros(R - n, np.int64)])
        max_b = int(budgets.max())
        start = max((int(s[-1]) + 1 if len(s) else 0) for s in kept)
        before = start if shared is None else shared.used  # slots a row's sequence occupies before the block
        A_need = max(len(f) for f in feeds)
        need = before + A_need + max_b
        if need > self.max_cache_len:
            worst = int(np.argmax([len(feeds[f]) + b for f, b in zip(fan_r, budgets)]))
            label = worst if shared is None else shared.order[worst]  # the caller's row, not the laid-out one
            raise ValueError(f"row {label}: {before + len(feeds[fan_r[worst]])} prefix tokens + "
                             f"{int(budgets[worst])} new tokens need {need} cache slots but max_cache_len="
                             f"{self.max_cache_len}; shorten the prompt, lower max_new_tokens or raise max_cache_len")
        A, N, S = block_sizes(before, start, A_need, max_b, self.max_cache_len, exact_block=exact_block)
        plan = plan_block(kept, feeds, S, self.pad_id, block_len=A, start=start)
        prefix = fed_prefix = None
        if shared is not None:  # positions continue after each row's kept prefix, which lives in the shared part
            plan = plan._replace(pos_ba=plan.pos_ba + shared.offsets[:, None], pos0_b=plan.pos0_b + shared.offsets)
            fed_prefix = SharedPrefix(shared.cache, jnp.asarray(shared.valid))
            prefix = SharedPrefix(shared.cache, jnp.asarray(shared.valid[fan_r])) if fanned else fed_prefix

        greedy = temperature == 0
        use_filter = not greedy and ((top_k or 0) > 0 or (top_p is not None and top_p < 1.0))
        params = SamplingParams(jnp.float32(temperature if not greedy else 1.0), jnp.int32(top_k or 0),
                                jnp.float32(top_p if top_p is not None else 1.0))
        stops = sorted(set(() if ignore_eos else self.eos_ids))
        stop_ids = jnp.asarray(stops + self._stop_tokens(stop) or [-1], jnp.int32)
        ids = np.asarray(list(row_ids) + [2**31 - 1 - i for i in range(R - n)], np.uint32)
        keys = row_keys(seed, ids)

        with self._mesh_ctx():
            cache = self._make_cache(src_cache, src_rows, Rf, S)
            bat = ("batch", None)
            st = init_state(R, N, budgets, plan.pos0_b[fan_r], keys, self.pad_id)
            st = DecodeState(*[self._put(x, bat[:x.ndim]) if x.ndim else x for x in st])
            fed_valid = self._put(plan.valid_bs, bat)
            args = (self._weights, cache, self._put(plan.block_ba, bat), self._put(plan.pos_ba, bat), fed_valid,
                    jnp.int32(start), st, params, stop_ids)
            if fanned:
                valid = self._put(plan.valid_bs[fan_r], bat)
                cache, st = self._prefill_fan(*args, self._put(fan_r, ("batch",)), fed_prefix, greedy=greedy,
                                              use_filter=use_filter)
            else:
                valid = fed_valid
                cache, st = self._prefill(*args, prefix, greedy=greedy, use_filter=use_filter)
            trunc = {}
            dec_start = jnp.int32(start + A)
            # Rows that finished leave the batch between chunks (a smaller row bucket; with a shared prefix, fewer
            # and smaller groups); ``live``: row -> output row.
            compact = stop and not keep_cache and self.mesh is None
            live, final = np.arange(R), None
            while True:
                step = int(st.step)
                if step >= max_b or bool(jnp.all(st.done_b)):
                    break
                stop_at = min(step + (self.chunk if stop else (self.window or max_b)), max_b)
                # Attend over (and carry) only the slots this chunk can reach: the cache tail is never read.
                W = chunk_window(S, start + A, stop_at, self.window)
                sub, sub_valid = (cache, valid) if W == S else (_slice_slots(cache, W), valid[:, :W])
                sub, st = self._decode(self._weights, sub, st, sub_valid, dec_start, jnp.int32(stop_at), params,
                                       stop_ids, prefix, greedy=greedy, use_filter=use_filter)
                cache = sub if W == S else _put_slots(cache, sub)
                if stop:
                    st = self._check_stops(st, stop, trunc, n, live)
                if compact:
                    done = np.asarray(st.done_b)
                    if prefix is None:
                        pick, groups = compact_rows(done, self._shards), None
                    else:
                        pick, groups = compact_groups(done, int(prefix.cache[0][0].shape[0]))
                    if pick is not None:
                        final = _keep_rows(final, st, live, R)
                        pick_d = jnp.asarray(pick.astype(np.int32))
                        cache = _gather_rows(cache, pick_d, S)
                        st = DecodeState(*[jnp.take(x, pick_d, axis=0) if x.ndim else x for x in st])
                        valid, live = valid[pick_d], live[pick]
                        if groups is not None:
                            prefix = SharedPrefix(
                                _gather_rows(prefix.cache, jnp.asarray(groups.astype(np.int32)),
                                             int(prefix.cache[0][0].shape[2])), prefix.valid_bs[pick_d])
            if stop:
                st = self._check_stops(st, stop, trunc, n, live)
            if final is not None:
                st = _keep_rows(final, st, live, R)
        seq_slots = [plan.seq_slots[f] for f in fan_r[:n]]
        return self._collect(st, n, trunc, prefixes, seq_slots, start + A, cache if keep_cache else None, set(stops))

    def _stop_tokens(self, rules: Sequence) -> list[int]:
        """Tokens whose own text contains one of the stop strings of ``rules``: a row that samples one has stopped,
        so the decode loop marks it done on the device and ends once every row is (where the host cuts the text is
        unchanged: stops that span tokens, and rules such as ``BoxClosed`` that no single token meets, are found
        between chunks)."""
        stop = tuple(r for r in rules if isinstance(r, str))
        if not stop:
            return []
        if stop not in self._stop_token_ids:
            n = min(self.cfg.vocab_size, int(getattr(self.tokenizer, "vocab_size", self.cfg.vocab_size)))
            self._stop_token_ids[stop] = [t for t in range(n) if any(s in self._decode_text([t]) for s in stop)]
        return self._stop_token_ids[stop]

    def _make_cache(self, src_cache, src_rows, R: int, S: int) -> tuple:
        shape = (R, self.cfg.num_kv_heads, S, self.cfg.head_dim)
        sharding = named_sharding(self.mesh, LAYER_CACHE_AXES, shape) if self.mesh is not None else None
        if src_cache is None:
            dtype = jnp.dtype(resolve_dtype(self.cfg.dtype))
            return _zeros_fn(self.cfg.num_layers, shape, dtype, sharding)()
        rows = np.asarray(list(src_rows) + [0] * (R - len(src_rows)), np.int32)
        return _gather_rows(src_cache, self._put(rows, ("batch",)), S)

    def _check_stops(self, st: DecodeState, stop, trunc: dict, n: int, live: np.ndarray) -> DecodeState:
        """Mark rows whose decoded text now contains a stop string as done; remember where to cut them (``trunc``:
        output row -> tokens kept; ``live``: batch row -> output row)."""
        toks, lens, done = np.asarray(st.tokens_bn), np.asarray(st.length_b), np.asarray(st.done_b)
        newly = done.copy()
        for r, o in enumerate(live):
            if o >= n or lens[r] == 0 or (o in trunc and newly[r]):
                continue
            cut = trunc.get(o) or find_stop(toks[r, :lens[r]], stop, self._decode_text)
            if cut is not None:
                trunc[o] = cut
                newly[r] = True
        if (newly != done).any():
            st = st._replace(done_b=self._put(newly, ("batch",)))
        return st

    def _collect(self, st: DecodeState, n, trunc, prefixes, seq_slots, dec_start, cache, stopset) -> SampleOutput:
        toks, lp, slp = np.asarray(st.tokens_bn), np.asarray(st.logp_bn), np.asarray(st.slogp_bn)
        lens = np.asarray(st.length_b)
        tokens, logps, slogps, reasons, slots = [], [], [], [], []
        for r in range(n):
            L = int(trunc.get(r, lens[r]))
            t = [int(x) for x in toks[r, :L]]
            tokens.append(t)
            logps.append(lp[r, :L].copy())
            slogps.append(slp[r, :L].copy())
            if r in trunc:
                reasons.append("stop")
            elif L and t[-1] in stopset:
                reasons.append("eos")
            else:
                reasons.append("length")
            slots.append(np.concatenate([seq_slots[r], np.arange(dec_start, dec_start + max(L - 1, 0))]))
        texts = [self._decode_text(t) for t in tokens] if self.tokenizer is not None else None
        ref = CacheRef(cache, slots) if cache is not None else None
        return SampleOutput(tokens, logps, slogps, np.asarray([len(t) for t in tokens]), reasons,
                            [list(p) for p in prefixes], texts, ref)


def row_keys(seed, ids: np.ndarray) -> jax.Array:
    """The raw key data [R, 2] of each sampled row: ``fold_in(base, row id)``, ``base`` an int seed's key or a named
    stream's key (mrt_jax.random_streams). A row's tokens depend on its id only, not on the rows beside it."""
    base = as_key(seed)
    return jax.random.key_data(jax.vmap(lambda r: jax.random.fold_in(base, r))(jnp.asarray(ids)))


def _stream_ids(row_ids: Sequence[int] | None, n: int) -> list[int]:
    """The random-stream id of each output row: its position, or the caller's ids (distinct, in [0, 2**30))."""
    if row_ids is None:
        return list(range(n))
    ids = [int(i) for i in row_ids]
    if len(ids) != n or len(set(ids)) != n or any(not 0 <= i < 2**30 for i in ids):
        raise ValueError(f"row_ids must be {n} distinct ints in [0, 2**30) (one per output row), got {len(ids)} "
                         f"ids, {len(set(ids))} distinct, range [{min(ids, default=0)}, {max(ids, default=0)}]")
    return ids


def compact_rows(done_b: np.ndarray, multiple: int) -> np.ndarray | None:
    """The rows to keep decoding once rows finished: every active row, then finished ones to fill the row bucket
    (a multiple of ``multiple``); None when the bucket would not shrink (or nothing is active)."""
    active = np.flatnonzero(~done_b)
    rows_now = row_bucket(max(len(active), 1), multiple)
    if not len(active) or rows_now >= len(done_b):
        return None
    return np.concatenate([active, np.flatnonzero(done_b)])[:rows_now]


def compact_groups(done_b: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """``compact_rows`` for rows laid out in ``groups`` equal groups that read one shared prefix each: keep the
    groups with an active row (filled up to a power of two with finished groups) and, in each, its active rows
    first (filled with its finished rows) up to the largest active count's power of two. Returns (rows to keep,
    laid out group by group; the groups they come from), or (None, None) when the layout would not shrink."""
    M = len(done_b) // groups
    active_um = ~done_b.reshape(groups, M)
    counts = active_um.sum(1)
    live = np.flatnonzero(counts)
    if not len(live):
        return None, None
    U2, M2 = row_bucket(len(live), 1), row_bucket(int(counts.max()), 1)
    if U2 * M2 >= len(done_b):
        return None, None
    keep = np.concatenate([live, np.flatnonzero(counts == 0)])[:U2]
    rows = [g * M + np.concatenate([np.flatnonzero(active_um[g]), np.flatnonzero(~active_um[g])])[:M2]
            for g in keep]
    return np.concatenate(rows), keep


def _keep_rows(final: DecodeState | None, st: DecodeState, live: np.ndarray, rows: int) -> DecodeState:
    """Host copies of every output row's decode state: ``st``'s rows written at their output rows ``live``."""
    host = [np.asarray(x) for x in st]
    if final is None:
        final = DecodeState(*[np.zeros((rows, *x.shape[1:]), x.dtype) if x.ndim else x for x in host])
    for f, x in zip(final, host):
        if x.ndim:
            f[live] = x
    return final._replace(step=host[-1])


# The cache is a tuple of per-layer (keys, values) pairs, each [B, K, S, E]: rows on axis 0, slots on axis 2.

@functools.lru_cache(maxsize=64)
def _zeros_fn(n_layers: int, shape: tuple, dtype, sharding):
    """A compiled maker of an empty cache (cached: one compile per shape/sharding, not per call)."""
    pair = lambda: (jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))  # noqa: E731
    return jax.jit(lambda: tuple(pair() for _ in range(n_layers)), out_shardings=sharding)


@functools.partial(jax.jit, static_argnums=(1,))
def _slice_slots(cache: tuple, n_slots: int) -> tuple:
    return jax.tree.map(lambda x: x[:, :, :n_slots], cache)


@functools.partial(jax.jit, donate_argnums=(0,))
def _put_slots(cache: tuple, sub: tuple) -> tuple:
    return jax.tree.map(lambda x, y: jax.lax.dynamic_update_slice(x, y, (0, 0, 0, 0)), cache, sub)


@functools.partial(jax.jit, static_argnums=(2,))
def _gather_rows(cache: tuple, rows_r, n_slots: int) -> tuple:
    """Rows ``rows_r`` of a cache, cut or zero-padded to ``n_slots`` slots."""
    def take(x):
        x = jnp.take(x, rows_r, axis=0)
        S = x.shape[2]
        if n_slots <= S:
            return x[:, :, :n_slots]
        return jnp.pad(x, ((0, 0), (0, 0), (0, n_slots - S), (0, 0)))
    return jax.tree.map(take, cache)
