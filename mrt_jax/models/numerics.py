"""Change a decoder's numerics (storage dtype, compute dtype, remat) after it was built or loaded."""

from __future__ import annotations

import jax
from flax import nnx

from mrt_jax.models.config import resolve_dtype
from mrt_jax.models.decoder import Decoder


def cast_model(model: Decoder, *, param_dtype: str, dtype: str, remat: bool) -> Decoder:
    """``model`` with its config's ``param_dtype`` / ``dtype`` / ``remat`` replaced and its parameters cast to
    ``param_dtype`` (each keeps its sharding); the model itself when nothing changes. A from-scratch warm start is
    trained in float32 and cast here, so its cache serves every job's numerics."""
    cfg = model.cfg.replace(param_dtype=param_dtype, dtype=dtype, remat=remat)
    if cfg == model.cfg:
        return model
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    pdt = resolve_dtype(param_dtype)
    return nnx.merge(graphdef, jax.tree.map(lambda x: x.astype(pdt), nnx.state(model)))
