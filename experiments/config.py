"""The training job's configuration: one frozen dataclass, named presets, and command-line overrides.

Every field is a flag (``--group_size=8``); ``--help`` lists them with their defaults. A preset fills in defaults
first, explicit flags win. The resolved config is written to ``run_dir/config.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing

from experiments.slice_batch import fitting_prompts, misfit, prompts_multiple

ALGOS = ("mrt", "grpo", "dr_grpo", "rloo", "mrt_star")  # with --mrt_form: mrt_jax.trainer.estimators
MRT_FORMS = ("dense", "termination_baseline", "mixed")
EPISODE_RULES = ("markers", "grid")
LOSS_AGGREGATIONS = ("token_mean", "seq_mean_token_mean", "seq_sum_norm")  # = mrt_jax.rl.losses.AGGREGATIONS
KL_ESTIMATORS = ("k1", "k2", "k3")
TRUNCATION = ("zero", "mask", "none")
# mrt_jax.data.formats; auto: experiments.setup_model
PROMPT_FORMATS = ("auto", "plain", "r1", "chat", "chat_think", "chat_box")
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}  # -> the recorded name
REWARDS = ("auto", "math", "task")
ON_BAD_ROW = ("raise", "skip")  # = mrt_jax.data.training_data.ON_BAD_ROW
DATASET_FORMATS = ("math500", "aime24", "aime25", "amc23", "gsm8k", "minerva", "numina")  # = mrt_jax.data.SPECS


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    # What to run.
    preset: str = "default"
    algo: str = "mrt"
    model: str = "demo"
    tpu: str = "cpu"
    steps: int = 30
    seed: int = 0
    run_dir: str = "runs/mrt_math"
    resume: bool = True
    # Problems: a procedural task (the default), or the user's data (--dataset; then --task does not apply).
    task: str = "arithmetic"
    difficulty: int = 1
    prompt_format: str = "auto"  # auto: plain for from-scratch models, the checkpoint's chat template if it has one
    dataset: str = ""  # a .jsonl/.json/.parquet file, a TFDS dataset folder[@SPLIT] or a bundled name
    eval_dataset: str = ""  # default: the last --eval_problems rows of --dataset, held out of training
    dataset_format: str = "math500"  # the published layout of a data file (mrt_jax.data.SPECS)
    on_bad_row: str = "raise"  # or "skip": bad rows and over-long prompts are skipped and counted
    max_prompt_tokens: int = 0  # prompt budget; 0: a procedural task's longest prompt, a dataset's 512
    # Rewards: auto = the task's exact verifier for a procedural task, math-verify for a dataset.
    reward: str = "auto"
    reward_timeout: float = 5.0  # seconds per math-verify check (past it: scored 0, counted as a timeout)
    reward_workers: int = 2  # math-verify worker processes (0: in this process, SIGALRM limit)
    # Rollouts.
    prompts_per_step: int = 8
    group_size: int = 4
    max_new_tokens: int = 96
    temperature: float = 1.0
    top_p: float = 1.0
    truncation: str = "zero"
    # Reward shaping and DAPO dynamic sampling (0 / false = off).
    length_penalty: float = 0.0
    overlong_buffer: int = 0
    overlong_factor: float = 1.0
    dynamic_sampling: bool = False
    dynamic_rounds: int = 4
    # MRT.
    alpha: float = 1.0
    mrt_form: str = "dense"
    meta_samples: int = 4
    meta_max_tokens: int = 0  # forced-answer tokens; 0: the prompt format's budget (plain 16, chat 32, r1 256)
    meta_temperature: float = 0.6
    episode_rule: str = "markers"
    episode_grid: int = 32
    max_episodes: int = 4
    # Learner.
    learning_rate: float = 3e-4
    warmup_frac: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip: float = 0.0  # c > 1 caps the loss of A < 0 tokens at -c*A; 0 = off
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    loss_aggregation: str = "token_mean"
    micro_batches: int = 1
    inner_epochs: int = 1
    # Numerics of the learner and the sampler (they share the model's config): storage and compute dtypes (norms,
    # softmax and logits stay float32), and rematerialising each layer in the learner's backward pass.
    param_dtype: str = "float32"
    compute_dtype: str = "float32"
    remat: bool = False
    # The colocated sampler's layout on each process's chips: 0 = auto (a full replica per chip unless a TPU
    # slice's chip cannot hold one, then split over the fewest chips that fit), N = split weights and KV heads
    # over N chips (tensor-parallel decode).
    sampler_tensor: int = 0
    # Warm start (small from-scratch models only). Its own seed: RL seeds of a study share one base model.
    sft_steps: int = 2000
    sft_learning_rate: float = 3e-3
    sft_batch_size: int = 32
    sft_traces: int = 4000
    sft_seed: int = 0
    # Evaluation, checkpoints.
    eval_every: int = 10
    eval_problems: int = 64
    eval_samples: int = 1  # traces per held-out problem
    eval_temperature: float = 0.0  # 0: greedy
    save_every: int = 10
    keep_last: int = 2
    compile_only: bool = False
    # Multi-process (jax.distributed): explicit coordinator flags on CPU/GPU hosts; TPU VMs need none.
    coordinator: str = ""
    num_processes: int = 1
    process_id: int = 0
    # Weight sync between learner and sampler: colocated (one mesh) or disaggregated (separate processes).
    sync: str = "colocated"
    role: str = ""
    max_staleness: int = 1
    sampler_id: int = 0
    num_samplers: int = 1

    def __post_init__(self):
        choices = {"algo": ALGOS, "mrt_form": MRT_FORMS, "episode_rule": EPISODE_RULES,
                   "loss_aggregation": LOSS_AGGREGATIONS, "kl_estimator": KL_ESTIMATORS, "truncation": TRUNCATION,
                   "prompt_format": PROMPT_FORMATS, "param_dtype": tuple(DTYPES), "compute_dtype": tuple(DTYPES),
                   "reward": REWARDS, "on_bad_row": ON_BAD_ROW, "dataset_format": DATASET_FORMATS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name}={getattr(self, name)!r} is not allowed; choose one of {', '.join(allowed)}")
        for name in ("param_dtype", "compute_dtype"):  # fp32 / bf16 are recorded by their full names
            object.__setattr__(self, name, DTYPES[getattr(self, name)])
        if self.prompt_format.startswith("chat") and (self.model in ("tiny", "demo")
                                                             or self.model.startswith("arch:")):
            raise ValueError(f"--prompt_format={self.prompt_format} needs a checkpoint with a chat template; "
                             f"--model={self.model} uses the procedural tokenizer (none); choose auto, plain or r1")
        if self.meta_max_tokens < 0:
            raise ValueError(f"--meta_max_tokens must be >= 0 (0: the prompt format's budget), got "
                             f"{self.meta_max_tokens}")
        positive = ("steps", "prompts_per_step", "group_size", "max_new_tokens", "meta_samples",
                    "episode_grid", "max_episodes", "micro_batches", "inner_epochs", "eval_every", "eval_problems",
                    "save_every", "keep_last", "sft_batch_size", "sft_traces", "eval_samples")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        for name in ("temperature", "meta_temperature", "learning_rate", "sft_learning_rate", "eval_temperature"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.reward == "task" and self.dataset:
            raise ValueError("--reward=task scores with a procedural task's verifier; a --dataset is scored by "
                             "math-verify (--reward=auto or math)")
        if self.max_prompt_tokens < 0 or self.reward_workers < 0 or not self.reward_timeout > 0:
            raise ValueError(f"--max_prompt_tokens ({self.max_prompt_tokens}) and --reward_workers "
                             f"({self.reward_workers}) must be >= 0, --reward_timeout ({self.reward_timeout}) > 0")
        if self.dual_clip and not self.dual_clip > 1:
            raise ValueError(f"--dual_clip must be 0 (off) or > 1 (e.g. 3.0), got {self.dual_clip}")
        if self.length_penalty < 0 or self.overlong_factor < 0:
            raise ValueError("--length_penalty and --overlong_factor must be >= 0")
        if not 0 <= self.overlong_buffer <= self.max_new_tokens:
            raise ValueError(f"--overlong_buffer={self.overlong_buffer} must lie in [0, --max_new_tokens="
                             f"{self.max_new_tokens}]")
        if self.dynamic_rounds < 1:
            raise ValueError(f"--dynamic_rounds must be >= 1, got {self.dynamic_rounds}")
        if self.algo in ("grpo", "rloo", "mrt_star", "mrt") and self.group_size < 2:
            raise ValueError(f"--algo={self.algo} needs --group_size >= 2 (a group baseline)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"--top_p must be in (0, 1], got {self.top_p}")
        if self.prompts_per_step * self.group_size % self.micro_batches:
            rows = self.prompts_per_step * self.group_size
            raise ValueError(
                f"--micro_batches={self.micro_batches} must divide prompts_per_step x group_size = {rows}; set "
                f"--micro_batches to one of {', '.join(str(m) for m in range(1, rows + 1) if rows % m == 0)}")
        spec = _slice(self.tpu)
        if spec.platform == "tpu":
            problem = misfit(self.prompts_per_step, self.group_size, spec.name, spec.hosts, spec.chips)
            if problem:
                raise ValueError(problem)
        # Multi-process: all three flags together (TPU VMs: none of them); whole prompts (groups) per process.
        if self.num_processes < 1:
            raise ValueError(f"--num_processes must be >= 1, got {self.num_processes}")
        if not 0 <= self.process_id < self.num_processes:
            raise ValueError(f"--process_id={self.process_id} must be in [0, --num_processes={self.num_processes})")
        if self.num_processes > 1 and not self.coordinator:
            raise ValueError(f"--num_processes={self.num_processes} needs --coordinator=HOST:PORT "
                             "(process 0's address)")
        if self.coordinator and not re.fullmatch(r"[\w.\-]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", self.coordinator):
            raise ValueError(f"--coordinator={self.coordinator!r} must be HOST:PORT, e.g. 10.0.0.2:1234")
        if self.prompts_per_step % self.num_processes:
            want = -(-self.prompts_per_step // self.num_processes) * self.num_processes
            raise ValueError(f"--prompts_per_step={self.prompts_per_step} must be a multiple of --num_processes="
                             f"{self.num_processes} (each process samples whole groups); set --prompts_per_step="
                             f"{want}")
        # Weight sync (experiments.disaggregated).
        for name, allowed in (("sync", ("colocated", "disaggregated")), ("role", ("", "learner", "sampler", "both"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name}={getattr(self, name)!r} is not allowed; choose one of "
                                 f"{', '.join(repr(a) for a in allowed)}")
        for name, low in (("max_staleness", 0), ("sampler_id", 0), ("num_samplers", 1), ("sampler_tensor", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"--{name} must be >= {low}, got {getattr(self, name)}")
        if self.sampler_id >= self.num_samplers:
            raise ValueError(f"--sampler_id={self.sampler_id} must be < --num_samplers={self.num_samplers}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _slice(name: str):
    """The slice preset of ``--tpu``; an unknown name is a one-line error listing the allowed ones."""
    from mrt_jax.slice_presets import get_slice  # imports no JAX: the job sets JAX_PLATFORMS after parsing

    try:
        return get_slice(name)
    except ValueError as e:
        raise ValueError(f"--tpu: {e}") from None


def fit_to_slice(values: dict, given: dict) -> tuple[dict, str | None]:
    """Round ``prompts_per_step`` up to the slice of ``--tpu`` when the user did not set it (the presets are sized
    for one machine) -> (values, a note saying what changed, or None). An explicit misfit is left for the
    config's validation, which names the value to set."""
    spec = _slice(values.get("tpu", ExperimentConfig.tpu))
    if spec.platform != "tpu" or "prompts_per_step" in given:
        return values, None
    prompts = values.get("prompts_per_step", ExperimentConfig.prompts_per_step)
    group = values.get("group_size", ExperimentConfig.group_size)
    want = fitting_prompts(prompts, spec.hosts, spec.chips, group)
    if want == prompts:
        return values, None
    return {**values, "prompts_per_step": want}, (
        f"note: --tpu={spec.name} has {spec.hosts} hosts and {spec.chips} chips: --prompts_per_step {prompts} -> "
        f"{want} ({want} x {group} = {want * group} rows; each host samples whole groups); set --prompts_per_step "
        f"to choose another multiple of {prompts_multiple(spec.hosts, spec.chips, group)}")


# Presets: partial overrides of the defaults. "default" is the embedded laptop run.
PRESETS: dict[str, dict] = {
    # The laptop demo: one-operation arithmetic, where the warm-started model answers about half of its sampled
    # traces correctly (greedy about 90%): enough reward variance for RL to act on.
    # Held-out pass@1 is measured on 4 sampled traces per problem at the rollout temperature (greedy is ~0.9).
    "default": dict(difficulty=0, eval_samples=4, eval_temperature=1.0),
    "tiny": dict(model="tiny", steps=3, prompts_per_step=2, group_size=2, max_new_tokens=12, meta_samples=2,
                 meta_max_tokens=4, sft_steps=0, eval_every=2, eval_problems=4, save_every=1, episode_rule="grid",
                 episode_grid=4, max_episodes=2),
    # SmolLM2-135M-Instruct (the registry's GGUF) on easy problems in MATH-500 layout (mrt_jax/data/files), its
    # chat template, math-verify rewards. Sized for a CPU: see README "MRT on your checkpoint and your data".
    "smollm2-math": dict(model="smollm2-135m", dataset="easy-math", steps=20, prompts_per_step=4, group_size=4,
                         max_new_tokens=64, max_prompt_tokens=96, learning_rate=1e-6, sft_steps=0, micro_batches=4,
                         meta_samples=2, meta_max_tokens=16, episode_rule="grid", episode_grid=32, max_episodes=2,
                         eval_every=10, eval_problems=16, save_every=5),
    "smollm2": dict(model="smollm2-135m", task="arithmetic", steps=20, prompts_per_step=4, group_size=4,
                    max_new_tokens=128, learning_rate=1e-6, sft_steps=0, meta_max_tokens=24, episode_rule="grid",
                    episode_grid=32),
}


def _flag_type(tp):
    if tp is bool:
        return lambda s: {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[s.lower()]
    return tp


def int_list_flag(name: str, minimum: int = 1):
    """An argparse ``type`` for ``--name=3,1,2``: a non-empty comma list of integers >= ``minimum``, returned
    sorted without repeats."""

    def parse(text: str) -> list[int]:
        kind = "positive integers" if minimum == 1 else f"integers >= {minimum}"
        problem = f"--{name} must be a comma list of {kind}, got {text!r}"
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(problem) from None
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(problem)
        return sorted(set(values))

    return parse


class OneLineErrorParser(argparse.ArgumentParser):
    """The parser of every command line here: a user mistake is one line on stderr, exit code 2, no usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None = None, *, refuse_inert: bool = True) -> ExperimentConfig:
    """Preset first, then flags. Raises SystemExit(2) with a one-line message for bad values, and (``refuse_inert``)
    for a flag given a non-default value under settings where it does nothing (``experiments.inert_flags``)."""
    hints = typing.get_type_hints(ExperimentConfig)
    defaults = ExperimentConfig()
    parser = OneLineErrorParser(
        prog="python -m experiments.mrt_math",
        description="Train a policy with MRT (or GRPO / MRT-STaR) and report accuracy vs token budget and regret.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(ExperimentConfig):
        tp = hints[f.name]
        kw = dict(type=_flag_type(tp), default=None, help=f"(default: {getattr(defaults, f.name)!r})")
        if tp is bool:
            kw.update(nargs="?", const=True)
        parser.add_argument(f"--{f.name}", **kw)
        if tp is bool:
            parser.add_argument(f"--no_{f.name}", dest=f.name, action="store_false", help=f"turn off --{f.name}")
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    preset = given.get("preset", "default")
    if preset not in PRESETS:
        parser.error(f"--preset={preset!r} is not allowed; choose one of {', '.join(PRESETS)}")
    try:
        values, note = fit_to_slice({**PRESETS[preset], **given}, given)
        cfg = ExperimentConfig(**values)
    except ValueError as e:
        parser.error(str(e))
    from experiments.inert_flags import inert_given

    inert = inert_given(cfg, given, {**defaults.to_dict(), **PRESETS[preset]}) if refuse_inert else []
    if inert:
        name, why = inert[0]
        parser.error(f"--{name}={given[name]!r} has no effect here: {why}; drop it")
    if note:
        print(note, file=sys.stderr)
    return cfg


def without_inert(flags: list[str], *extra: str) -> list[str]:
    """``flags`` less those inert for the config they make together with ``extra`` (e.g. ``--algo=grpo``): the
    study passes one set of job flags to every algorithm."""
    from experiments.inert_flags import INERT

    cfg = parse_args([*flags, *extra], refuse_inert=False)
    inert = {name for name, (is_inert, _) in INERT.items() if is_inert(cfg)}
    return [f for f in flags if f.lstrip("-").split("=")[0].removeprefix("no_") not in inert]
