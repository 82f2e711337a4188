"""Weight sync from the learner to the sampler: colocated (one set of devices) or disaggregated (two processes).

Colocated: ``reshard(params, target)`` moves the learner's params into the sampler's layout on device. Same device
set: one jitted identity with ``out_shardings`` (XLA emits the collectives); different device sets:
``jax.device_put`` (device-to-device copies). Neither goes through the host.

Disaggregated: the learner's ``WeightPublisher.publish(step, params)`` writes an Orbax checkpoint into a publish
dir (Orbax writes a temporary dir and renames it, or commits it with a marker on object stores, so readers never
see half a step); the sampler's ``WeightSubscriber.poll(target)`` restores the newest complete step it has not
loaded yet and remembers its number. Rollouts carry that number, and the learner measures their staleness
``learner_step - sampled_step``: within ``max_staleness`` they are kept (the importance ratio against the
sampler's own logprobs corrects for the older policy), beyond it they are dropped (``StalenessPolicy``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import Mesh, Sharding

from mrt_jax.checkpointing import tree as tree_lib
from mrt_jax.checkpointing.manager import absolute_dir, commit_problem, list_step_dirs

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------- colocated
_RESHARD_CACHE: dict[Any, Any] = {}


def _sharding_of(x: Any) -> Sharding:
    if isinstance(x, Sharding):
        return x
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, Sharding):
        raise TypeError(f"reshard target leaf {x!r} is neither a Sharding nor an array/ShapeDtypeStruct with one")
    return sharding


def reshard(params: Any, target: Any, *, donate: bool = False) -> Any:
    """Learner params -> the sampler's layout, on device.

    ``target``: a tree like ``params`` of ``Sharding``s, or of arrays / ``ShapeDtypeStruct``s carrying them (e.g.
    the sampler's current params). ``donate=True`` frees the source buffers (only if the learner no longer needs
    them). Without ``donate`` the result never aliases ``params`` (a jitted identity returns fresh buffers), so
    the caller may donate ``params`` afterwards. No host transfer happens: run it under
    ``jax.transfer_guard_device_to_host("disallow")`` to check.
    """
    leaves, treedef = jax.tree.flatten(params)
    t_leaves, t_treedef = jax.tree.flatten(target, is_leaf=lambda x: isinstance(x, Sharding))
    if t_treedef != treedef:
        raise ValueError(f"reshard: target tree {t_treedef} does not match the params tree {treedef}")
    shardings = tuple(_sharding_of(t) for t in t_leaves)
    src_devices = {d for x in leaves for d in x.sharding.device_set}
    dst_devices = {d for s in shardings for d in s.device_set}
    if src_devices != dst_devices:  # a jit cannot span two device sets; device_put copies device to device
        return jax.tree.unflatten(treedef, jax.device_put(leaves, list(shardings), donate=donate))
    key = (treedef, shardings, donate)
    fn = _RESHARD_CACHE.get(key)
    if fn is None:
        fn = jax.jit(lambda xs: xs, out_shardings=list(shardings), donate_argnums=(0,) if donate else ())
        _RESHARD_CACHE[key] = fn
    return jax.tree.unflatten(treedef, fn(leaves))


# ------------------------------------------------------------------------------------------------ staleness
def staleness(sampled_step: int | np.ndarray, learner_step: int) -> int | np.ndarray:
    """``learner_step - sampled_step``: how many learner updates the sampling policy is behind (0 = on-policy).
    Raises if a sample claims weights newer than the learner's (a bookkeeping bug)."""
    lag = learner_step - np.asarray(sampled_step)
    if np.any(lag < 0):
        raise ValueError(
            f"staleness: sampled_step {sampled_step} is newer than learner_step {learner_step}; samples must "
            "record the published step they were generated with"
        )
    return int(lag) if lag.ndim == 0 else lag


@dataclass(frozen=True)
class StalenessPolicy:
    """Keep samples at most ``max_staleness`` learner steps behind; drop older ones (counted, never silent)."""

    max_staleness: int = 1

    def __post_init__(self):
        if not isinstance(self.max_staleness, int) or self.max_staleness < 0:
            raise ValueError(f"StalenessPolicy max_staleness must be an int >= 0, got {self.max_staleness!r}")

    def keep_mask(self, sampled_steps_b: np.ndarray, learner_step: int) -> np.ndarray:
        """Bool [B]: True where ``staleness <= max_staleness``."""
        return np.asarray(staleness(np.asarray(sampled_steps_b), learner_step)) <= self.max_staleness

    def stats(self, sampled_steps_b: np.ndarray, learner_step: int) -> dict[str, float]:
        """Metrics for the log: mean / max staleness and the fraction dropped."""
        lag_b = np.atleast_1d(staleness(np.asarray(sampled_steps_b), learner_step))
        keep_b = lag_b <= self.max_staleness
        return {
            "staleness_mean": float(lag_b.mean()),
            "staleness_max": float(lag_b.max()),
            "stale_dropped_frac": float(1.0 - keep_b.mean()),
        }


# ------------------------------------------------------------------------------------------- disaggregated
class WeightPublisher:
    """Learner side: ``publish(step, params)`` writes the step's params to ``publish_dir`` (keeps the newest
    ``keep``; a sampler still reading an older one retries on the next poll). Asynchronous by default."""

    def __init__(self, publish_dir: str | epath.PathLike, *, keep: int = 3, async_save: bool = True):
        if keep < 1:
            raise ValueError(f"WeightPublisher keep must be >= 1, got {keep}")
        self.directory = absolute_dir(publish_dir)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, cleanup_tmp_directories=True, create=True
        )
        self._mngr = ocp.CheckpointManager(self.directory, options=options)

    def publish(self, step: int, params: Any) -> None:
        flat, spec = tree_lib.flatten_for_save(params)
        dtypes = {k: str(v.dtype) for k, v in flat.items()}
        meta = {**spec, "fingerprints": tree_lib.fingerprint(flat), "dtypes": dtypes}
        self._mngr.save(
            step, args=ocp.args.Composite(params=ocp.args.StandardSave(flat), meta=ocp.args.JsonSave(meta)), force=True
        )

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()


class WeightSubscriber:
    """Sampler side: ``poll(target)`` -> ``(params, step)`` for the newest complete published step newer than
    ``self.step`` (the step the sampler's weights come from; record it with every rollout), else None."""

    def __init__(self, publish_dir: str | epath.PathLike, *, mesh: Mesh | None = None):
        self.directory = absolute_dir(publish_dir)
        self.mesh = mesh
        self.step: int | None = None
        self._mngr: ocp.CheckpointManager | None = None  # opened once the publish dir exists

    def newest_complete_step(self) -> int | None:
        for step in reversed(list_step_dirs(self.directory)):
            if commit_problem(self.directory / str(step), ("params", "meta")) is None:
                return step
        return None

    def poll(self, target: Any) -> tuple[Any, int] | None:
        """``target``: abstract tree of the sampler's params (ShapeDtypeStructs with the sampler's shardings)."""
        step = self.newest_complete_step()
        if step is None or (self.step is not None and step <= self.step):
            return None
        try:
            params = self._restore(step, target)
        except Exception as e:  # noqa: BLE001  (Orbax raises plain Exception for unreadable arrays)
            # Deleted by the learner meanwhile, or broken: try again at the next poll.
            log.warning("weight sync: published step %d in %s unusable (%s); will retry", step, self.directory, e)
            return None
        self.step = step
        return params, step

    def _restore(self, step: int, target: Any) -> Any:
        if self._mngr is None:
            options = ocp.CheckpointManagerOptions(read_only=True, create=False)
            self._mngr = ocp.CheckpointManager(self.directory, options=options)
        self._mngr.reload()  # read-only: safe, and needed to see steps published by the other process
        meta = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        flat_target, paths, treedef, _ = tree_lib.flatten_target(tree_lib.on_mesh(target, self.mesh))
        tree_lib.check_paths(meta["paths"], paths, f"published step {step} in {self.directory}")
        flat = dict(
            self._mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(flat_target))).params
        )
        same = {k: v for k, v in flat.items() if str(v.dtype) == meta["dtypes"].get(k)}
        if any(fp != meta["fingerprints"].get(k) for k, fp in tree_lib.fingerprint(same).items()):
            raise ValueError(f"published step {step}: contents differ from what was published (fingerprint)")
        return tree_lib.unflatten_restored(flat, treedef, meta["key_impls"])

    def close(self) -> None:
        if self._mngr is not None:
            self._mngr.close()
