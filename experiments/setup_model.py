"""Model + tokenizer + prompt format for the training job, from ``--model``.

- a preset name: ``tiny`` / ``demo`` (from scratch, with the procedural tasks' sentencepiece tokenizer; ``demo`` is
  warm-started by SFT on worked multi-episode traces and cached) or ``smollm2-135m`` (the registry's GGUF weights);
- a path: a Hugging Face folder or a ``.gguf`` file;
- ``arch:NAME``: random weights in the shape of an architecture preset (``arch:r1-distill-qwen-1.5b``), for
  benchmarks and plumbing. The name must say so: a bare real model's name (``r1-distill-qwen-1.5b``) whose weights
  are not here is refused, never silently trained from random weights.

The model comes at ``--param_dtype`` / ``--compute_dtype`` / ``--remat`` (the learner and the sampler both take
its config); the prompt format is ``--prompt_format`` (``prompt_format``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil

from mrt_jax.data import PLAIN, cached_spm, chat_format, corpus, get_format, load_spm, sft_examples
from mrt_jax.errors import UserError
from mrt_jax.models import PRESETS, cast_model, create_model
from mrt_jax.sft import SFTExample, pack_examples, train_sft

log = logging.getLogger(__name__)

FROM_SCRATCH = ("tiny", "demo")
BUNDLED = ("smollm2-135m",)  # weights shipped by a registry package (scripts/setup.sh installs it)
ARCH_PREFIX = "arch:"


def architecture_name(model: str) -> str:
    """The architecture preset ``--model`` names (``arch:NAME`` or a preset name), for shape-only uses such as
    ``--compile_only``; the name itself when it is neither."""
    return model.removeprefix(ARCH_PREFIX)


def check_model_name(model: str) -> None:
    """Raise UserError (one line) for a model the training job cannot load: a real model's preset name without
    its weights, an unknown ``arch:`` preset, or a path that does not exist."""
    if model in FROM_SCRATCH or model in BUNDLED:
        return
    if model.startswith(ARCH_PREFIX):
        if architecture_name(model) not in PRESETS:
            raise UserError(f"--model={model!r}: no architecture preset {architecture_name(model)!r}; "
                            f"allowed: {', '.join(ARCH_PREFIX + n for n in sorted(PRESETS))}")
        return
    if model in PRESETS:
        raise UserError(
            f"--model={model!r} names a real model whose weights are not here: pass its Hugging Face folder or "
            f".gguf file (--model=/path/to/it; on a TPU VM launch with --model_path=gs://...), or "
            f"--model={ARCH_PREFIX}{model} for random weights of its shape")
    if not os.path.exists(model):
        raise UserError(f"--model={model!r} is neither a preset ({', '.join(FROM_SCRATCH + BUNDLED)}, "
                        f"{ARCH_PREFIX}NAME) nor an existing folder or .gguf file")


def cache_dir() -> str:
    return os.environ.get("MRT_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "mrt_jax"))


def procedural_tokenizer(task: str):
    texts = corpus([task, "arithmetic"], 300, difficulties=(1, 2, 3))
    return load_spm(cached_spm(texts, os.path.join(cache_dir(), "spm")))


def _warm_start(model, tokenizer, cfg, mesh):
    """SFT on worked traces; the result is cached under a key of everything that determines it."""
    from mrt_jax.io import load_pretrained, save_pretrained

    settings = dict(model=model.cfg.to_dict(), task=cfg.task, difficulty=cfg.difficulty, steps=cfg.sft_steps,
                    lr=cfg.sft_learning_rate, batch=cfg.sft_batch_size, traces=cfg.sft_traces, seed=cfg.sft_seed,
                    vocab=tokenizer.vocab_size, version=2)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    folder = os.path.join(cache_dir(), "warm_start", f"{cfg.model}-{key}")
    if os.path.exists(os.path.join(folder, "config.json")):
        log.info("warm start: cached model %s", folder)
        loaded, _ = load_pretrained(folder, mesh=mesh)
        return loaded, {"sft_cached": True}
    examples = []
    diffs = (cfg.difficulty,)
    for ex in sft_examples([cfg.task], cfg.sft_traces, seed=cfg.sft_seed + 1000, difficulties=diffs):
        examples.append(SFTExample(tokenizer.encode(ex["prompt"]), tokenizer.encode(ex["completion"]) +
                                   [tokenizer.eos_id]))
    seq_len = max(len(e.prompt_ids) + len(e.completion_ids) for e in examples)
    seq_len = -(-seq_len // 16) * 16
    tokens, mask = pack_examples(examples, seq_len, tokenizer.pad_id)
    log.info("warm start: SFT on %d worked traces (seq %d) for %d steps", len(examples), seq_len, cfg.sft_steps)
    model, losses = train_sft(model, tokens, mask, steps=cfg.sft_steps, batch_size=cfg.sft_batch_size,
                              learning_rate=cfg.sft_learning_rate, seed=cfg.sft_seed)
    staging = f"{folder}.tmp{os.getpid()}"  # written whole, then renamed: readers never see half a model
    save_pretrained(model, tokenizer, staging)
    try:
        os.replace(staging, folder)
    except OSError:  # another run cached the same settings first; its model is the same
        shutil.rmtree(staging, ignore_errors=True)
    return model, {"sft_cached": False, "sft_final_loss": float(sum(losses[-20:]) / max(1, len(losses[-20:])))}


def prompt_format(cfg, tokenizer):
    """The format of ``--prompt_format`` for ``tokenizer``. ``auto``: the checkpoint's chat template when it has
    one, else plain (the from-scratch models' procedural tokenizer has none). A chat format without a chat
    template is a UserError."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if cfg.prompt_format == "auto":
        return chat_format(tokenizer) if has_template else PLAIN
    if cfg.prompt_format.startswith("chat") and not has_template:
        raise UserError(f"--prompt_format={cfg.prompt_format}: the tokenizer of --model={cfg.model} has no chat "
                        f"template; choose auto, plain or r1")
    return get_format(cfg.prompt_format, tokenizer)


def answer_budget(cfg, fmt) -> int:
    """Tokens of a forced answer (the meta-prover's, and the evaluation's): ``--meta_max_tokens``, or with 0 the
    prompt format's recommended budget."""
    return cfg.meta_max_tokens or fmt.answer_tokens


def numerics(cfg) -> dict:
    """The model-config fields of ``--param_dtype`` / ``--compute_dtype`` / ``--remat``."""
    return dict(param_dtype=cfg.param_dtype, dtype=cfg.compute_dtype, remat=cfg.remat)


def build(cfg, mesh):
    """-> (model at the job's numerics, tokenizer, prompt format, info dict)."""
    name = cfg.model
    check_model_name(name)
    info = {}
    if name in FROM_SCRATCH:
        tokenizer = procedural_tokenizer(cfg.task)
        mcfg = PRESETS[name].replace(vocab_size=tokenizer.vocab_size)
        warm = name == "demo" and cfg.sft_steps > 0
        model = create_model(mcfg if warm else mcfg.replace(**numerics(cfg)), mesh=mesh,
                             seed=cfg.sft_seed if warm else cfg.seed)
        if warm:  # the warm start trains (and is cached) in float32 whatever the job's numerics
            model, info = _warm_start(model, tokenizer, cfg, mesh)
    elif name.startswith(ARCH_PREFIX):  # asked for by name: random weights of the preset's shape
        tokenizer = procedural_tokenizer(cfg.task)
        mcfg = PRESETS[architecture_name(name)]
        mcfg = mcfg.replace(vocab_size=max(mcfg.vocab_size, tokenizer.vocab_size))  # every token id has a row
        model = create_model(mcfg.replace(**numerics(cfg)), mesh=mesh, seed=cfg.seed)
        info = {"random_weights": True}
    else:
        from mrt_jax.io import load_pretrained

        if name == "smollm2-135m":
            from mrt_jax.assets import smollm2_gguf_path

            path = str(smollm2_gguf_path())
        else:
            path = name
        model, tokenizer = load_pretrained(path, dtype=cfg.compute_dtype, param_dtype=cfg.param_dtype, mesh=mesh,
                                           remat=cfg.remat)
        if tokenizer is None:
            raise ValueError(f"--model={path!r} has no tokenizer files; the training job needs one")
        info = {"path": path}
    return cast_model(model, **numerics(cfg)), tokenizer, prompt_format(cfg, tokenizer), info
