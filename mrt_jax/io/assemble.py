"""Build a :class:`Decoder` from per-tensor checkpoint readers, one stacked parameter at a time.

Host memory stays at about one stacked parameter plus one checkpoint tensor: each stacked parameter is filled
layer by layer from the reader, cast to the parameter dtype, checked to be finite, placed on devices with its
``NamedSharding`` and the host copy dropped. The model object is created abstractly and then filled in.
"""

from __future__ import annotations

from typing import Protocol

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from mrt_jax.errors import CheckpointError
from mrt_jax.io.layout import expected_hf_tensors, hf_layout
from mrt_jax.models import Decoder, ModelConfig, param_shapes, param_shardings, resolve_dtype

# Buffers some checkpoints carry that the model recomputes.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class TensorSource(Protocol):
    """Read-only access to named checkpoint tensors in Hugging Face naming and ``[out, in]`` layout."""

    description: str  # e.g. the folder or file, for error messages

    def names(self) -> set[str]: ...

    def shape(self, name: str) -> tuple[int, ...]: ...

    def where(self, name: str) -> str: ...  # file holding ``name``

    def get(self, name: str) -> np.ndarray: ...


def validate_source(cfg: ModelConfig, source: TensorSource) -> None:
    """Raise :class:`CheckpointError` on missing, unexpected or wrongly shaped tensors (headers only)."""
    expected = expected_hf_tensors(cfg)
    present = {n for n in source.names() if not n.endswith(_IGNORED_SUFFIXES)}
    allowed_extra = {"lm_head.weight"} if cfg.tie_word_embeddings else set()
    missing = [n for n in expected if n not in present]
    extra = sorted(present - set(expected) - allowed_extra)
    if missing:
        raise CheckpointError(
            f"{source.description}: {len(missing)} tensors the config needs are missing, e.g. {missing[:5]} "
            f"(config: {cfg.architecture}, {cfg.num_layers} layers, tie_word_embeddings={cfg.tie_word_embeddings})"
        )
    if extra:
        raise CheckpointError(
            f"{source.description}: {len(extra)} unexpected tensors, e.g. {extra[:5]}; the config "
            f"({cfg.architecture}, {cfg.num_layers} layers, attention_bias={cfg.attention_bias}) does not use them"
        )
    for name in sorted(present & (set(expected) | allowed_extra)):
        want = expected.get(name, (cfg.vocab_size, cfg.hidden_size))
        got = tuple(source.shape(name))
        if got != want:
            raise CheckpointError(
                f"{source.where(name)}: tensor {name!r} has shape {got}, expected {want} from the config "
                f"(vocab={cfg.vocab_size}, hidden={cfg.hidden_size}, heads={cfg.num_heads}, "
                f"kv_heads={cfg.num_kv_heads}, head_dim={cfg.head_dim}, ffn={cfg.intermediate_size})"
            )


def _finite(x: np.ndarray, name: str, source: TensorSource) -> None:
    if not np.isfinite(x).all():  # works on float16/bfloat16 too, without a float32 copy
        raise CheckpointError(f"{source.where(name)}: tensor {name!r} holds NaN or infinite values")


def load_params(cfg: ModelConfig, source: TensorSource, mesh: Mesh | None = None) -> dict[str, jax.Array]:
    """Our parameter name -> device array (sharded on ``mesh`` when given), streamed from ``source``."""
    validate_source(cfg, source)
    np_dtype = np.dtype(resolve_dtype(cfg.param_dtype))
    shardings = param_shardings(cfg, mesh) if mesh is not None else {}
    out = {}
    for pname, tmap in hf_layout(cfg).items():
        host = np.empty(param_shapes(cfg)[pname], np_dtype)
        for i, hf_name in enumerate(tmap.names(cfg.num_layers)):
            raw = source.get(hf_name)
            _finite(raw, hf_name, source)
            if tmap.per_layer:
                host[i] = tmap.to_ours(raw)
            else:
                host[...] = tmap.to_ours(raw)
            del raw
        if pname == "embed" and cfg.tie_word_embeddings and "lm_head.weight" in source.names():
            head = source.get("lm_head.weight")
            if not np.array_equal(head.astype(np_dtype), host):
                raise CheckpointError(
                    f"{source.where('lm_head.weight')}: tie_word_embeddings is true but lm_head.weight differs "
                    "from model.embed_tokens.weight; set tie_word_embeddings=false in config.json"
                )
            del head
        sharding = shardings.get(pname)
        arr = jax.device_put(host, sharding) if sharding is not None else jax.device_put(host)
        # device_put is asynchronous and keeps ``host`` alive until the copy ends: wait, so that only one
        # stacked parameter is ever held on the host
        out[pname] = arr.block_until_ready()
        del host
    return out


def model_from_params(cfg: ModelConfig, params: dict[str, jax.Array]) -> Decoder:
    """A :class:`Decoder` holding ``params`` (created abstractly, so no random init is computed)."""
    abstract = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    want = nnx.to_pure_dict(state)
    if set(want) != set(params):
        raise CheckpointError(f"parameters {sorted(params)} do not match the model's {sorted(want)}")
    for name, spec in want.items():
        if params[name].shape != spec.shape or params[name].dtype != spec.dtype:
            raise CheckpointError(
                f"parameter {name!r}: got {params[name].shape} {params[name].dtype}, "
                f"expected {spec.shape} {spec.dtype}"
            )
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)


def build_model(cfg: ModelConfig, source: TensorSource, mesh: Mesh | None = None) -> Decoder:
    """Validate ``source`` against ``cfg`` and stream it into a (sharded) :class:`Decoder`."""
    return model_from_params(cfg, load_params(cfg, source, mesh))
