"""What the training job's device programs process, from its config alone (no weights are built): the model
config the job runs (the architecture preset at the job's ``--param_dtype`` / ``--compute_dtype`` / ``--remat``),
the learner batch, and the sizes of the Sampler's calls on one process (rollouts and meta-prover forks).

Mirrors ``experiments.job_parts.build_job`` (prompt budget, cache length; a test holds them equal) and
``mrt_jax.trainer.rollout`` (rows per call). Worst cases are taken where the job's sizes depend on the data: the
longest prompt of the job, every trace at full length with ``max_episodes - 1`` episode boundaries.
"""

from __future__ import annotations

import dataclasses

from mrt_jax.sampling.programs import CallShape, call_shape


@dataclasses.dataclass(frozen=True)
class SamplerCall:
    """One Sampler call the job makes on every process: its padded sizes and its static sampling flags."""

    name: str
    shape: CallShape
    greedy: bool
    use_filter: bool


@dataclasses.dataclass(frozen=True)
class JobShapes:
    model_cfg: object  # mrt_jax.models.ModelConfig
    pad_id: int
    n_stops: int
    max_prompt: int
    cache_len: int
    suffix_tokens: int  # the forced-termination suffix, tokenised
    answer_tokens: int  # a forced answer's budget (--meta_max_tokens, 0: the prompt format's)
    train_rows: int  # global learner batch rows
    train_len: int  # learner tokens per row: prompt budget + max_new_tokens
    batch_keys: tuple[str, ...]


def _tokenizer_and_format(cfg):
    """The tokenizer and prompt format ``setup_model.build`` gives ``cfg.model`` (presets only: a path's model
    would have to be read)."""
    from experiments.setup_model import architecture_name, procedural_tokenizer, prompt_format
    from mrt_jax.models import PRESETS

    if architecture_name(cfg.model) not in PRESETS:
        raise ValueError(f"--compile_only needs an architecture preset for --model (one of {', '.join(PRESETS)}, "
                         f"with or without arch:), got {cfg.model!r}")
    if cfg.model == "smollm2-135m":
        from mrt_jax.assets import smollm2_gguf_path
        from mrt_jax.tokenizers.gguf_tokenizer import tokenizer_from_gguf

        tokenizer = tokenizer_from_gguf(smollm2_gguf_path())
    else:
        tokenizer = procedural_tokenizer(cfg.task)
    return tokenizer, prompt_format(cfg, tokenizer)


def job_shapes(cfg) -> JobShapes:
    from experiments.job_setup import problem_source as _problem_source
    from experiments.job_setup import prompt_budget
    from experiments.setup_model import FROM_SCRATCH, answer_budget, architecture_name, numerics
    from mrt_jax.models import PRESETS

    tokenizer, fmt = _tokenizer_and_format(cfg)
    model_cfg = PRESETS[architecture_name(cfg.model)].replace(**numerics(cfg))
    if cfg.model in FROM_SCRATCH:
        model_cfg = model_cfg.replace(vocab_size=tokenizer.vocab_size)
    records = [] if cfg.dataset or cfg.max_prompt_tokens else (
        _problem_source(cfg, "train", 4096)[1] + _problem_source(cfg, "eval", cfg.eval_problems)[1])
    max_prompt = prompt_budget(cfg, lambda q: len(tokenizer.encode(fmt.build_prompt(q))), records)
    eos = tuple(getattr(tokenizer, "eos_ids", ()) or ())
    pad = getattr(tokenizer, "pad_id", None)
    keys = ("tokens", "loss_mask", "old_logp", "advantages", "attn_mask") + (("ref_logp",) if cfg.kl_coef > 0 else ())
    answer = answer_budget(cfg, fmt)
    return JobShapes(
        model_cfg=model_cfg, pad_id=int(pad if pad is not None else (eos[0] if eos else 0)),
        n_stops=max(len(set(eos)), 1), max_prompt=max_prompt, cache_len=max_prompt + cfg.max_new_tokens + 64 + answer,
        answer_tokens=answer,
        suffix_tokens=len(tokenizer.encode(fmt.forced_termination_suffix)),
        train_rows=cfg.prompts_per_step * cfg.group_size, train_len=max_prompt + cfg.max_new_tokens,
        batch_keys=keys)


def sampler_calls(cfg, shapes: JobShapes, processes: int, shards: int) -> list[SamplerCall]:
    """The Sampler calls of one training step on one of ``processes`` processes whose sampler splits rows over
    ``shards`` chips: the rollouts (``generate``) and, for MRT, the meta-prover fork at every episode boundary."""
    prompts = cfg.prompts_per_step // processes
    rows = prompts * cfg.group_size
    gen = call_shape(rows, shards, shapes.max_prompt, cfg.max_new_tokens, shapes.cache_len)
    calls = [SamplerCall("rollout", gen, greedy=cfg.temperature == 0, use_filter=cfg.top_p < 1)]
    if cfg.algo in ("mrt", "mrt_star"):
        # J_0 on each group's first row, then one branch per boundary (at most max_episodes - 1 per trace); the
        # deepest branch keeps every slot up to the one before a full-length trace's last token.
        branches = prompts + rows * (cfg.max_episodes - 1)
        start = gen.block + cfg.max_new_tokens - 2
        fork = call_shape(branches * cfg.meta_samples, shards, 1 + shapes.suffix_tokens, shapes.answer_tokens,
                          shapes.cache_len, kept=start)
        calls.append(SamplerCall("fork", fork, greedy=cfg.meta_temperature == 0, use_filter=False))
    return calls
