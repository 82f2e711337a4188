"""Checkpointer: asynchronous Orbax saves every N steps, keep the last K plus the best, validated resume.

One checkpoint step dir holds two Orbax items: ``state`` (the flat array dict from ``tree.flatten_for_save``) and
``meta`` (JSON: the caller's JSON items, eval metrics, key paths, typed-key impls, fingerprints, dtypes).

Retention ("last K plus best"): before each save, every committed step that is neither among the K newest steps
(counting the one about to be written) nor the best committed step by ``best_metric`` is deleted, so the dir never
holds more than K + 1 steps. The step being written only counts as best once committed, so a failed save cannot
take the old best with it. ``wait()``/``close()`` prune again: at rest the dir holds exactly the K newest steps plus
the best (max or min of ``best_metric``; steps saved without that metric never count as best).

Validation (restore without an explicit step tries newest first and falls back with a logged warning): a step
must have Orbax's ``_CHECKPOINT_METADATA`` with a commit timestamp, both items, a restore without errors, and the
same fingerprints as at save time. A step found broken is moved to ``<dir>.quarantine/`` so later saves at lower
step numbers are not blocked and the evidence is kept. Across processes the fallback moves in lockstep (see
``consensus``): all use process 0's step list, and a step is good only if it restored on every process.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import Mesh

from mrt_jax import run_files
from mrt_jax.checkpointing import consensus
from mrt_jax.checkpointing import tree as tree_lib
from mrt_jax.errors import CheckpointError

log = logging.getLogger(__name__)


def absolute_dir(path: str | os.PathLike) -> epath.Path:
    """``path`` as an absolute path (Orbax refuses relative ones, e.g. a user's ``--run_dir=runs/x``); bucket
    paths such as gs://... are kept as they are."""
    return run_files.run_path(path)  # the run-dir layer's rule, in one place


def commit_problem(step_dir: epath.Path, items: tuple[str, ...]) -> str | None:
    """Why an Orbax step dir is not a complete save (None if it looks complete): Orbax writes
    ``_CHECKPOINT_METADATA`` with a commit timestamp when it finalises a step; each item must have its dir. On an
    object store (no rename) Orbax writes into the final name and finalises with ``commit_success.txt`` last."""
    if run_files.is_remote(step_dir) and not (step_dir / "commit_success.txt").exists():
        return "no commit_success.txt: the save did not finish"
    marker = step_dir / "_CHECKPOINT_METADATA"
    if not marker.exists():
        return f"no Orbax commit metadata ({marker.name}): the save did not finish"
    try:
        if "commit_timestamp_nsecs" not in json.loads(marker.read_text()):
            return f"{marker.name} has no commit timestamp: the save did not finish"
    except (ValueError, OSError) as e:
        return f"{marker.name} is unreadable ({e})"
    for item in items:
        if not (step_dir / item).exists():
            return f"item dir {item!r} is missing"
    return None


def list_step_dirs(directory: epath.Path) -> list[int]:
    """Integer-named step dirs (Orbax's default naming; a save in flight has a temporary name)."""
    try:  # no exists() first: on a bucket the dir is a name prefix that can vanish in between (Orbax cleanup)
        return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())
    except FileNotFoundError:
        return []


class Checkpointer:
    """Orbax ``CheckpointManager`` wrapper for a training run's state (see the module docstring)."""

    def __init__(
        self,
        directory: str | epath.PathLike,
        *,
        save_every: int,
        keep_last: int = 3,
        keep_best: bool = True,
        best_metric: str = "eval_accuracy",
        best_mode: str = "max",
        async_save: bool = True,
        fingerprints: bool = True,
    ):
        if not isinstance(save_every, int) or save_every < 1:
            raise ValueError(f"Checkpointer save_every must be a positive int, got {save_every!r}")
        if not isinstance(keep_last, int) or keep_last < 1:
            raise ValueError(f"Checkpointer keep_last must be a positive int, got {keep_last!r}")
        if best_mode not in ("max", "min"):
            raise ValueError(f"Checkpointer best_mode must be 'max' or 'min', got {best_mode!r}")
        self.directory = absolute_dir(directory)
        self.save_every, self.keep_last = save_every, keep_last
        self.keep_best, self.best_metric, self.best_mode = keep_best, best_metric, best_mode
        self.fingerprints = fingerprints  # one extra read of the state per save (~ms on TPU/GPU, ~0.5 s/256 MiB CPU)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None,  # retention is ours (last K plus best), see _prune
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,  # leftovers of a save killed mid-write
            create=True,
        )
        self._mngr = ocp.CheckpointManager(self.directory, options=options)
        self._metrics: dict[int, dict[str, float]] = {}  # committed step -> metrics, filled lazily
        self._in_flight: int | None = None
        self._pending_metrics: dict[str, float] = {}
        self._last_saved: int | None = None

    # ----------------------------------------------------------------------------------------------- saving
    def should_save(self, step: int) -> bool:
        return step % self.save_every == 0 and step != self._last_saved

    def maybe_save(
        self,
        step: int,
        state: Any,
        json_items: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        force: bool = False,
    ) -> bool:
        """Save ``state`` (any pytree of arrays / typed keys) and ``json_items`` if ``step % save_every == 0`` or
        ``force``; returns whether a save was issued. Asynchronous: returns once device arrays are copied out.
        ``metrics`` (e.g. ``{"eval_accuracy": 0.4}``) decide which step is the best one."""
        try:
            step = operator.index(step)  # accepts numpy / 0-d integer JAX scalars too
        except TypeError:
            raise ValueError(f"checkpoint step must be a non-negative int, got {step!r}") from None
        if step < 0:
            raise ValueError(f"checkpoint step must be a non-negative int, got {step!r}")
        if step == self._last_saved or not (force or self.should_save(step)):
            return False
        if step in self.all_steps():  # e.g. the step just resumed from
            log.info("checkpoint step %d already exists in %s; not saving it again", step, self.directory)
            self._last_saved = step
            return False
        flat, spec = tree_lib.flatten_for_save(state)
        items = dict(json_items or {})
        try:
            json.dumps(items)
        except TypeError as e:
            raise TypeError(f"checkpoint json_items for step {step} are not JSON-serialisable: {e}") from e
        meta = {
            "json_items": items,
            "metrics": {k: float(v) for k, v in (metrics or {}).items()},
            "paths": spec["paths"],
            "key_impls": spec["key_impls"],
            "dtypes": {k: str(v.dtype) for k, v in flat.items()},
            "fingerprints": tree_lib.fingerprint(flat) if self.fingerprints else None,
            "saved_at": time.time(),
        }
        self._settle()  # the previous save is committed now (Orbax would wait for it anyway)
        self._prune(upcoming=step)
        self._mngr.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(flat), meta=ocp.args.JsonSave(meta)),
            force=True,  # the save/skip decision is ours
        )
        self._in_flight, self._last_saved = step, step
        self._pending_metrics = meta["metrics"]
        return True

    def _settle(self) -> None:
        self._mngr.wait_until_finished()
        if self._in_flight is not None:
            self._metrics[self._in_flight] = self._pending_metrics
            self._in_flight = None

    def wait(self) -> None:
        """Block until the save in flight is committed, then apply retention."""
        self._settle()
        self._prune()

    def close(self) -> None:
        self.wait()
        self._mngr.close()

    # ------------------------------------------------------------------------------------------- retention
    def _step_metrics(self, step: int) -> dict[str, float]:
        if step not in self._metrics:
            try:
                self._metrics[step] = dict(self._read_meta(step).get("metrics", {}))
            except Exception:  # unreadable meta: never the best; restore will report it
                self._metrics[step] = {}
        return self._metrics[step]

    def best_step(self) -> int | None:
        """The committed step with the best ``best_metric`` (latest among ties), or None."""
        metrics = {s: self._step_metrics(s) for s in self._committed()}
        scored = [(m[self.best_metric], s) for s, m in metrics.items() if self.best_metric in m]
        if not scored:
            return None
        sign = 1.0 if self.best_mode == "max" else -1.0
        return max(scored, key=lambda vs: (sign * vs[0], vs[1]))[1]

    def _committed(self) -> list[int]:
        return [s for s in self.all_steps() if s != self._in_flight]

    def _prune(self, upcoming: int | None = None) -> None:
        # Only called with no save in flight: reloading Orbax's step list mid-save corrupts its bookkeeping.
        self._mngr.reload()
        committed = self._committed()
        newest = sorted(set(committed) | ({upcoming} if upcoming is not None else set()))[-self.keep_last :]
        keep = set(newest)
        if self.keep_best and (best := self.best_step()) is not None:
            keep.add(best)
        for step in committed:
            if step not in keep:
                self._mngr.delete(step)
                self._metrics.pop(step, None)

    # ---------------------------------------------------------------------------------------------- restore
    def all_steps(self) -> list[int]:
        """Step dirs on disk (committed or not; a save in flight still has a temporary name)."""
        return list_step_dirs(self.directory)

    def latest_step(self) -> int | None:
        """Newest step that looks complete (commit metadata present); ``restore`` does the full check."""
        for step in reversed(self.all_steps()):
            if self._commit_problem(step) is None:
                return step
        return None

    def _read_meta(self, step: int) -> dict[str, Any]:
        return self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def _commit_problem(self, step: int) -> str | None:
        return commit_problem(self.directory / str(step), ("state", "meta"))

    def _restore_step(self, step: int, abstract_state: Any, mesh: Mesh | None) -> tuple[Any, dict[str, Any]]:
        if (problem := self._commit_problem(step)) is not None:
            raise CheckpointError(f"checkpoint step {step} in {self.directory}: {problem}")
        where = f"checkpoint step {step} in {self.directory}"
        try:
            meta = self._read_meta(step)
        except Exception as e:
            raise CheckpointError(f"{where}: meta item unreadable ({type(e).__name__}: {e})") from e
        flat_target, paths, treedef, _ = tree_lib.flatten_target(tree_lib.on_mesh(abstract_state, mesh))
        tree_lib.check_paths(meta["paths"], paths, where)
        try:
            restored = self._mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(flat_target)))
        except Exception as e:
            raise CheckpointError(f"{where}: arrays unreadable ({type(e).__name__}: {str(e)[:300]})") from e
        flat = dict(restored.state)
        if meta.get("fingerprints") is None:  # saved with fingerprints=False
            return tree_lib.unflatten_restored(flat, treedef, meta["key_impls"]), meta
        same_dtype = {k: v for k, v in flat.items() if str(v.dtype) == meta["dtypes"].get(k)}
        got = tree_lib.fingerprint(same_dtype)
        bad = [meta["paths"][int(k.split("_")[1])] for k, fp in got.items() if fp != meta["fingerprints"].get(k)]
        if bad:
            raise CheckpointError(f"{where}: contents differ from what was saved (fingerprint mismatch) in {bad[:5]}")
        return tree_lib.unflatten_restored(flat, treedef, meta["key_impls"]), meta

    def _restore_everywhere(self, step: int, abstract_state: Any, mesh: Mesh | None) -> tuple[Any, dict[str, Any]]:
        """``_restore_step`` on every process; a ``CheckpointError`` on any of them is raised on all of them, so
        the processes fall back (and quarantine) in step."""
        try:
            result, error = self._restore_step(step, abstract_state, mesh), None
        except CheckpointError as e:
            result, error = None, e
        failed = consensus.failed_processes(error is None)
        if error is not None:
            raise error
        if failed:
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory}: could not be restored on process(es) {failed} "
                "(their logs say why)"
            )
        return result

    def restore(
        self, abstract_state: Any, step: int | None = None, *, mesh: Mesh | None = None
    ) -> tuple[Any, dict[str, Any], int]:
        """Restore onto the layout of ``abstract_state`` -> ``(state, json_items, step)``.

        ``abstract_state``: same tree structure as saved; leaves ShapeDtypeStruct (with the NEW run's shardings;
        an AbstractMesh from ``nnx.eval_shape`` is rebuilt on ``mesh``) or arrays. ``step=None``: newest valid
        step; broken newer steps are logged, quarantined and skipped. An explicit broken step raises
        ``CheckpointError``. No step at all raises ``FileNotFoundError``.
        """
        self._settle()
        if step is not None:
            state, meta = self._restore_everywhere(step, abstract_state, mesh)
            self._last_saved = step
            return state, meta["json_items"], step
        steps = consensus.process_zero_steps(self.all_steps())  # before anyone quarantines anything
        if not steps:
            raise FileNotFoundError(f"no checkpoint steps in {self.directory}")
        problems = []
        for candidate in reversed(steps):
            try:
                state, meta = self._restore_everywhere(candidate, abstract_state, mesh)
            except CheckpointError as e:
                log.warning("%s; falling back to an earlier checkpoint", e)
                problems.append(str(e))
                self._quarantine(candidate)
                continue
            self._last_saved = candidate
            return state, meta["json_items"], candidate
        raise CheckpointError(f"no usable checkpoint in {self.directory}: " + " | ".join(problems))

    def _quarantine(self, step: int) -> None:
        if jax.process_index() == 0:
            dest_root = epath.Path(str(self.directory) + ".quarantine")
            dest_root.mkdir(parents=True, exist_ok=True)
            # run_files: a rename locally; a copy and delete on a bucket (object stores have no rename)
            run_files.move_tree(self.directory / str(step), dest_root / f"{step}-{int(time.time())}")
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"checkpoint_quarantine_{step}")
        self._mngr.reload()
        self._metrics.pop(step, None)

    def read_json_items(self, step: int | None = None) -> dict[str, Any]:
        """The JSON items of ``step`` (default: newest complete) without touching the arrays, e.g. the config."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no complete checkpoint steps in {self.directory}")
        return self._read_meta(step)["json_items"]
