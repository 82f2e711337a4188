"""The job's setup from its config: the learner's mesh, the run dir, the problem streams, the learner config.

Shared by the colocated job (``experiments.colocated``) and the disaggregated roles; imports nothing from the
entry points, so there is no import cycle between them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from mrt_jax import run_files
from mrt_jax.errors import UserError

# Fields that may differ between a run and its resumption (they do not change what is computed).
# The process layout is one of them: the data order, random streams and row placement do not depend on it.
RESUMABLE_FIELDS = ("steps", "resume", "run_dir", "eval_every", "save_every", "keep_last", "compile_only",
                    "coordinator", "num_processes", "process_id")


def make_mesh_for(cfg):
    """The learner's mesh over every device of every process (fsdp), or None for a single device."""
    import jax

    from mrt_jax.distributed import get_slice
    from mrt_jax.sharding import make_mesh

    n = jax.device_count()
    if cfg.tpu not in ("cpu", "gpu"):
        if jax.default_backend() != "tpu":
            raise UserError(f"--tpu={cfg.tpu!r}: training on a TPU slice needs its TPU VMs (launch with "
                            f"`python -m launch.tpu_vm`); on this host use --compile_only, or --tpu=cpu/gpu")
        try:
            chips = get_slice(cfg.tpu).chips
        except ValueError as e:
            raise UserError(f"--tpu: {e}") from e
        if chips != n:
            raise UserError(f"--tpu={cfg.tpu} has {chips} chips but this job sees {n} TPU devices; "
                            f"pass the slice it runs on")
    return None if n == 1 else make_mesh(data=1, fsdp=n, tensor=1)


def sampler_mesh_for(cfg, mesh, model_cfg) -> tuple[Any, Any]:
    """The colocated sampler's mesh on this process's chips and its replica's layout -> (mesh or None, specs or
    None). ``--sampler_tensor=0`` (auto): a full replica per chip, split over the smallest tensor degree that fits
    only on a TPU slice whose chip cannot hold it (``planner.sampler_tensor``: the replica, its fast weights and
    the new replica of a weight sync, beside the learner's shard of params and Adam moments; the learner step's
    own temporaries are what ``--compile_only`` adds); N > 0: split over N chips (1: a full replica)."""
    from mrt_jax.distributed import get_slice
    from mrt_jax.distributed.planner import PlanError, learner_shard_bytes
    from mrt_jax.distributed.replica import local_mesh_of, sampler_layout, tensor_specs

    tensor = cfg.sampler_tensor
    if mesh is None:
        if tensor > 1:
            raise UserError(f"--sampler_tensor={tensor} splits the sampler over this process's chips, but the job "
                            f"sees one device; use --sampler_tensor=0 or 1 here")
        return None, None
    if tensor == 0:
        if cfg.tpu in ("cpu", "gpu"):
            return local_mesh_of(mesh), None
        try:
            return sampler_layout(mesh, model_cfg, get_slice(cfg.tpu).memory_per_chip(),
                                  beside=learner_shard_bytes(model_cfg, mesh.size), sync_copy=True)
        except PlanError as e:
            raise UserError(f"--tpu={cfg.tpu}: {e}") from e
    if model_cfg.num_kv_heads % tensor:
        raise UserError(f"--sampler_tensor={tensor} must divide the model's {model_cfg.num_kv_heads} KV heads "
                        f"(the cache splits by head)")
    try:
        local = local_mesh_of(mesh, tensor)
    except ValueError as e:
        raise UserError(f"--sampler_tensor: {e}") from e
    return (local, None) if tensor == 1 else (local, tensor_specs(local, model_cfg))


def prepare_run_dir(cfg, *, write: bool = True) -> bool:
    """Create the run dir; refuse a dir whose stored config differs. Returns whether to resume. Every process
    checks; only the one with ``write`` (process 0) writes config.json (as a whole: others may be reading it).
    The run dir may be a bucket path (``mrt_jax.run_files``)."""
    from mrt_jax.checkpointing import ConfigMismatchError, check_config_compatible
    from mrt_jax.checkpointing.manager import commit_problem

    if write:
        run_files.check_writable(cfg.run_dir)
    path = run_files.run_path(cfg.run_dir, "config.json")
    ckpt_dir = run_files.run_path(cfg.run_dir, "checkpoints")
    steps = [n for n in run_files.listdir(ckpt_dir) if n.isdigit()]
    # Only complete steps are resumed from: a run killed during its first save starts afresh (a bucket has no
    # temporary names, so the unfinished step dir is there under its final name until Orbax cleans it up).
    has_ckpt = any(commit_problem(ckpt_dir / n, ("state", "meta")) is None for n in steps)
    if steps and cfg.resume and run_files.exists(path):
        stored = run_files.read_json(path)
        try:
            check_config_compatible(stored, cfg.to_dict(), ignore=RESUMABLE_FIELDS)
        except ConfigMismatchError as e:
            raise UserError(f"{cfg.run_dir} belongs to a different config, refusing to resume: {e}; "
                            f"use another --run_dir or --no_resume") from e
    if write:
        run_files.write_json(path, cfg.to_dict(), indent=1, sort_keys=True)
    return has_ckpt and cfg.resume


DATASET_PROMPT_BUDGET = 512  # tokens, when --dataset is given without --max_prompt_tokens


@dataclasses.dataclass
class JobProblems:
    """The job's problems: a random-access training source (records, or raw rows with ``transform``), the
    held-out records, and the procedural task (None for a dataset)."""

    train: Any
    transform: Callable[[Any], dict] | None
    eval_records: list[dict]
    task: Any = None


@functools.lru_cache(maxsize=4)
def open_dataset(spec: str, flag: str, dataset_format: str, on_bad_row: str):
    """A ``--dataset`` / ``--eval_dataset`` (cached: the job checks it before writing the run dir, then uses it)."""
    from mrt_jax.data.benchmarks import DataError
    from mrt_jax.data.training_data import Dataset

    try:
        return Dataset(spec, flag=flag, dataset_format=dataset_format, on_bad_row=on_bad_row)
    except (DataError, OSError) as e:
        raise UserError(str(e)) from None


def job_problems(cfg) -> JobProblems:
    """Training and held-out problems of ``cfg``: a procedural task's streams, or ``--dataset`` (its last
    ``eval_problems`` rows held out unless ``--eval_dataset`` is given). UserError (one line) for a missing file,
    a wrong layout, an unknown format or a dataset that yields nothing."""
    if not cfg.dataset:
        task, train = problem_source(cfg, "train", 4096)
        return JobProblems(train, None, problem_source(cfg, "eval", cfg.eval_problems)[1], task)
    data = open_dataset(cfg.dataset, "--dataset", cfg.dataset_format, cfg.on_bad_row)
    if cfg.eval_dataset:
        held = open_dataset(cfg.eval_dataset, "--eval_dataset", cfg.dataset_format, cfg.on_bad_row)
        return JobProblems(data.source, data.transform, held.head(cfg.eval_problems))
    try:
        train, eval_records = data.split_off(cfg.eval_problems)
    except ValueError as e:  # DataError
        raise UserError(str(e)) from None
    return JobProblems(train, data.transform, eval_records)


def reward_kind(cfg) -> str:
    """``math`` (math-verify in a time-limited worker pool) or ``task`` (the procedural task's verifier):
    ``--reward``, where ``auto`` means math for a ``--dataset`` and the task's verifier otherwise."""
    return ("math" if cfg.dataset else "task") if cfg.reward == "auto" else cfg.reward


def prompt_budget(cfg, prompt_len: Callable[[str], int], records: list[dict]) -> int:
    """The job's prompt budget in tokens: ``--max_prompt_tokens``; else for a dataset ``DATASET_PROMPT_BUDGET``
    (measuring a large file would take long); else the longest prompt of ``records`` (a procedural task's),
    rounded up to 32 for stable shapes."""
    if cfg.max_prompt_tokens:
        return cfg.max_prompt_tokens
    if cfg.dataset:
        return DATASET_PROMPT_BUDGET
    return -(-max(prompt_len(r["question"]) for r in records) // 32) * 32


def problem_source(cfg, split: str, count: int):
    from mrt_jax.data import get_task

    seed = cfg.seed if split == "train" else 10_000 + cfg.seed  # disjoint streams for train and eval
    try:
        task = get_task(cfg.task)
        return task, [p.to_record() for p in task.problems(count, seed=seed, difficulty=cfg.difficulty)]
    except ValueError as e:  # unknown task, difficulty out of the task's range
        raise UserError(f"--task={cfg.task} --difficulty={cfg.difficulty}: {e}") from e


def learner_config(cfg):
    from mrt_jax.learner import LearnerConfig

    return LearnerConfig(
        lr=cfg.learning_rate, warmup_steps=int(cfg.warmup_frac * cfg.steps * cfg.inner_epochs),
        total_steps=cfg.steps * cfg.inner_epochs, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        clip_eps_low=cfg.clip_low, clip_eps_high=cfg.clip_high, dual_clip=cfg.dual_clip or None,
        kl_coef=cfg.kl_coef, kl_estimator=cfg.kl_estimator, entropy_coef=cfg.entropy_coef,
        aggregation=cfg.loss_aggregation, micro_batches=cfg.micro_batches, inner_epochs=cfg.inner_epochs,
        seed=cfg.seed, norm_len=cfg.max_new_tokens if cfg.loss_aggregation == "seq_sum_norm" else None,
        loss_window=cfg.max_new_tokens)  # a row's loss tokens are its completion: at most max_new_tokens
