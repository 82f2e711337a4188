"""Inputs of ``experiments.evaluate``: the problems (a procedural task or a benchmark file) and the model (a preset,
a path, or the newest checkpoint of a training run, restored read-only).

Every user mistake raises ``UserError`` with one line that says what, where and what is allowed. The light checks
(``check_run_dir``, ``load_problems``) import no JAX, so bad flags fail in about a second.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable

from mrt_jax import run_files
from mrt_jax.errors import UserError  # noqa: F401  (re-exported: the evaluator's callers catch it here)

log = logging.getLogger("evaluate")

CHECKPOINT_ITEMS = ("state", "meta")


@dataclasses.dataclass
class Problems:
    ids: list[str]
    questions: list[str]
    answers: list[str]
    verify: Callable[[str, str], float]
    source: str  # "task arithmetic:2" or the file path
    task: str  # the procedural task (names the tokenizer of from-scratch models)
    difficulty: int = 1


# ------------------------------------------------------------------------------------------------ training runs
def _committed(step_dir: str) -> bool:
    """Orbax finalises a step by writing _CHECKPOINT_METADATA with a commit timestamp (see mrt_jax.checkpointing)."""
    if run_files.is_remote(step_dir) and not run_files.exists(run_files.join(step_dir, "commit_success.txt")):
        return False  # on an object store Orbax finalises a step with this marker, last
    try:
        done = "commit_timestamp_nsecs" in run_files.read_json(run_files.join(step_dir, "_CHECKPOINT_METADATA"))
    except (OSError, ValueError):
        return False
    return done and all(run_files.isdir(run_files.join(step_dir, item)) for item in CHECKPOINT_ITEMS)


def check_run_dir(run_dir: str) -> tuple[dict, str, int]:
    """(the run's config dict, its checkpoint dir, the newest committed step) or UserError. ``run_dir`` may be a
    bucket path (``mrt_jax.run_files``)."""
    try:
        found = run_files.isdir(run_dir)
    except (ImportError, ValueError, OSError) as e:  # no filesystem for the URL's scheme, no access
        raise UserError(f"--run_dir={run_dir!r} cannot be read: {str(e).strip().splitlines()[0]}") from None
    if not found:
        raise UserError(f"--run_dir={run_dir!r}: no such directory")
    cfg_path = run_files.join(run_dir, "config.json")
    try:
        cfg = run_files.read_json(cfg_path)
    except FileNotFoundError:
        raise UserError(f"--run_dir={run_dir!r} is not a training run: no config.json") from None
    except ValueError as e:
        raise UserError(f"{cfg_path}: malformed JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{cfg_path}: expected a JSON object of config fields, got {type(cfg).__name__}")
    ckpt_dir = run_files.join(run_dir, "checkpoints")
    steps = sorted((int(n) for n in run_files.listdir(ckpt_dir) if n.isdigit()), reverse=True)
    step = next((s for s in steps if _committed(run_files.join(ckpt_dir, str(s)))), None)
    if step is None:
        found = f"step dirs {sorted(steps)} are incomplete" if steps else "none found"
        raise UserError(f"--run_dir={run_dir!r} has no complete checkpoint under checkpoints/ ({found})")
    return cfg, ckpt_dir, step


def run_config(stored: dict, path: str):
    """The run's ExperimentConfig (fields this version does not know are dropped with a warning)."""
    from experiments.config import ExperimentConfig

    known = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = sorted(set(stored) - known)
    if unknown:
        log.warning("%s: ignoring config fields this version does not know: %s", path, unknown)
    try:
        return ExperimentConfig(**{k: v for k, v in stored.items() if k in known})
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: not a valid training config ({e})") from None


def restore_params(model, cfg, ckpt_dir: str, step: int):
    """Put the parameters of checkpoint ``step`` into ``model`` (read-only: the run dir is never modified).

    The target tree is the training job's own ``TrainState`` (same learner config), so the stored key paths match.
    """
    import orbax.checkpoint as ocp
    from flax import nnx

    from experiments.job_setup import learner_config
    from mrt_jax.checkpointing import tree as tree_lib
    from mrt_jax.checkpointing.manager import absolute_dir
    from mrt_jax.learner import create_train_state

    where = f"checkpoint step {step} in {ckpt_dir}"
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    state = create_train_state(model.cfg, learner_config(cfg), None, params=params)
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, cleanup_tmp_directories=False,
                                           enable_async_checkpointing=False)
    mngr = ocp.CheckpointManager(absolute_dir(ckpt_dir), options=options)
    try:
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        flat_target, paths, treedef, _ = tree_lib.flatten_target(tree_lib.on_mesh(state, None))
        try:
            tree_lib.check_paths(meta["paths"], paths, where)
        except ValueError as e:
            raise UserError(f"{e}; was the run trained with another model or learner config?") from None
        flat = dict(mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(flat_target))).state)
    except UserError:
        raise
    except Exception as e:  # Orbax raises many types for unreadable or partial steps
        raise UserError(f"{where}: unreadable ({type(e).__name__}: {str(e)[:200]})") from None
    finally:
        mngr.close()
    if meta.get("fingerprints"):
        same = {k: v for k, v in flat.items() if str(v.dtype) == meta["dtypes"].get(k)}
        bad = [meta["paths"][int(k.split("_")[1])] for k, fp in tree_lib.fingerprint(same).items()
               if fp != meta["fingerprints"].get(k)]
        if bad:
            raise UserError(f"{where}: contents differ from what was saved (fingerprint mismatch) in {bad[:3]}")
    restored = tree_lib.unflatten_restored(flat, treedef, meta["key_impls"])
    graphdef, model_state = nnx.split(model)
    nnx.replace_by_pure_dict(model_state, restored.params)
    return nnx.merge(graphdef, model_state)


# ----------------------------------------------------------------------------------------------------- problems
def _procedural(spec: str, count: int, seed: int) -> Problems:
    from mrt_jax.data import get_task

    name, _, level = spec.rpartition(":") if spec.rpartition(":")[2].isdigit() else (spec, "", "1")
    try:
        task = get_task(name)
        # The training job's held-out stream (seed offset 10_000), so a run is scored on problems it never saw.
        problems = task.problems(count, seed=10_000 + seed, difficulty=int(level))
    except (ValueError, ImportError) as e:
        raise UserError(f"--dataset={spec!r}: {e}") from None
    return Problems([p.uid for p in problems], [p.question for p in problems], [p.answer for p in problems],
                    task.verify, f"task {name}:{level}", name, int(level))


def _math_verify(response: str, gold: str) -> float:
    from mrt_jax.rewards import score_math

    return score_math(response, gold, timeout=5.0)


def _from_file(path: str, count: int, dataset_format: str, task: str) -> Problems:
    from mrt_jax.data import SPECS, DataError, read_benchmark
    from mrt_jax.data.benchmarks import DATA_SUFFIXES
    from mrt_jax.rewards import InvalidGoldError

    if dataset_format not in SPECS:
        raise UserError(f"--dataset_format={dataset_format!r} is not allowed; choose one of {', '.join(SPECS)}")
    if not path.endswith(DATA_SUFFIXES):
        raise UserError(f"--dataset={path!r}: unsupported file type; allowed: {', '.join(DATA_SUFFIXES)}")
    try:
        records, _ = read_benchmark([path], SPECS[dataset_format])
    except DataError as e:
        raise UserError(str(e)) from None
    records = records[:count]
    for r in records:  # a gold the verifier cannot read would score every answer 0: refuse it up front
        try:
            ok = _math_verify(f"\\boxed{{{r['answer']}}}", r["answer"])
        except InvalidGoldError:
            ok = 0.0
        if ok != 1.0:
            raise UserError(f"{path}: record {r['id']!r}: gold answer {r['answer'][:80]!r} is not an expression "
                            "math-verify can check")
    return Problems([r["id"] for r in records], [r["problem"] for r in records], [r["answer"] for r in records],
                    _math_verify, path, task)


def looks_like_file(dataset: str) -> bool:
    """A data file path rather than a procedural task spec (``arithmetic:2``)."""
    return os.sep in dataset or dataset.endswith((".jsonl", ".json", ".parquet")) or os.path.exists(dataset)
def run_problems(run_cfg, count: int) -> Problems:
    """The held-out problems of a training run on ``--dataset`` (``experiments.job_setup.job_problems``: its
    ``--eval_dataset``, else the rows it held out of training), scored by math-verify."""
    from experiments.job_setup import job_problems

    records = job_problems(run_cfg).eval_records[:count]
    source = run_cfg.eval_dataset or f"{run_cfg.dataset} (held-out rows)"
    return Problems([r["where"] for r in records], [r["question"] for r in records], [r["answer"] for r in records],
                    _math_verify, source, run_cfg.task)


def load_problems(dataset: str, count: int, *, seed: int, dataset_format: str, task: str) -> Problems:
    """``dataset``: a procedural task (``arithmetic``, ``arithmetic:2``, ``gym:<name>:1``), a data file path, or a
    dataset shipped with the package (``easy-math``, read in its own layout, as training reads it)."""
    from mrt_jax.data.training_data import BUNDLED, resolve_bundled

    if dataset in BUNDLED:
        path, layout = resolve_bundled(dataset, dataset_format)
        return _from_file(path, count, layout, task)
    if looks_like_file(dataset):
        if not os.path.isfile(dataset):
            raise UserError(f"--dataset={dataset!r}: no such file")
        return _from_file(dataset, count, dataset_format, task)
    return _procedural(dataset, count, seed)


def check_prompt_lengths(ids: list[str], prompt_lens: list[int], need_after: int, limit: int) -> None:
    """Every prompt + ``need_after`` tokens (trace, suffix, answer) must fit the model's context ``limit``."""
    for pid, n in zip(ids, prompt_lens):
        if n + need_after > limit:
            raise UserError(f"problem {pid!r}: prompt of {n} tokens + {need_after} for the trace and forced answer "
                            f"exceed the model's context of {limit} tokens; lower --max_tokens/--extrapolate or "
                            f"drop the problem")
