"""Orbax checkpoints of a :class:`Decoder`: ``path/params`` (Orbax) + ``path/model_config.json``.

Restore works onto any mesh or device count: the abstract target is rebuilt from the stored config with real
``NamedSharding``s (Orbax rejects the AbstractMesh that ``nnx.eval_shape`` trees carry).
"""

from __future__ import annotations

import json
import os

import jax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding

from mrt_jax.io.assemble import model_from_params
from mrt_jax.models import Decoder, ModelConfig, param_shapes, param_shardings, resolve_dtype

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"


def save_orbax(model: Decoder, path: str) -> None:
    """Save parameters and config under ``path`` (a new folder). Every process must call this."""
    path = os.path.abspath(path)
    params = nnx.to_pure_dict(nnx.state(model))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(os.path.join(path, PARAMS_DIR), params)
        ckpt.wait_until_finished()
    if jax.process_index() == 0:
        with open(os.path.join(path, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(model.cfg.to_dict(), f, indent=2)


def read_orbax_config(path: str, **overrides) -> ModelConfig:
    """The :class:`ModelConfig` stored with an Orbax checkpoint (``overrides`` such as remat win)."""
    cfg_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{cfg_path} is missing: not an Orbax checkpoint written by save_orbax")
    with open(cfg_path, encoding="utf-8") as f:
        d = json.load(f)
    try:
        return ModelConfig(**{**d, **overrides})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{cfg_path}: invalid model config ({e})") from e


def load_orbax(path: str, mesh: Mesh | None = None, **overrides) -> Decoder:
    """Restore a :class:`Decoder` saved by :func:`save_orbax`, sharded on ``mesh`` (default: one device).

    ``overrides`` may change non-shape fields (``dtype``, ``remat``, ``param_dtype``: values are cast on restore).
    """
    path = os.path.abspath(path)
    cfg = read_orbax_config(path, **overrides)
    pdt = resolve_dtype(cfg.param_dtype)
    if mesh is None:
        shardings = dict.fromkeys(param_shapes(cfg), SingleDeviceSharding(jax.devices()[0]))
    else:
        shardings = param_shardings(cfg, mesh)
    target = {n: jax.ShapeDtypeStruct(s, pdt, sharding=shardings[n]) for n, s in param_shapes(cfg).items()}
    with ocp.StandardCheckpointer() as ckpt:
        params = ckpt.restore(os.path.join(path, PARAMS_DIR), target)
    return model_from_params(cfg, params)
