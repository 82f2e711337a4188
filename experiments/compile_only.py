"""``--compile_only``: lower and compile the job's real learner step (and the decode step) for a TPU slice on
this host, and print per-chip memory from the compiled program next to the planner's estimate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from mrt_jax.distributed.steps import StepShape, StepSpec, abstract_model, opt_state_like
from mrt_jax.learner import LearnerConfig
from mrt_jax.learner.state import TrainState, make_optimizer
from mrt_jax.learner.step import REQUIRED_KEYS, build_train_step
from mrt_jax.models import ModelConfig
from mrt_jax.sharding import named_sharding


def learner_train_builder(lcfg: LearnerConfig):
    """A StepBuilder for ``mrt_jax.distributed.aot.compile_for_slice`` that compiles the learner's train_step."""

    def build(cfg: ModelConfig, mesh, shape: StepShape) -> StepSpec:
        graphdef, params = abstract_model(cfg, mesh)
        params = nnx.to_pure_dict(params)
        replicated = NamedSharding(mesh, PartitionSpec())
        scalar = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
        state = TrainState(params=params, opt_state=opt_state_like(make_optimizer(lcfg), params, cfg, mesh),
                           step=scalar, rng=jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated),
                           skipped=scalar, graphdef=graphdef)
        bt = (shape.batch, shape.seq)
        dtypes = {"tokens": jnp.int32, "loss_mask": jnp.float32, "old_logp": jnp.float32,
                  "advantages": jnp.float32, "attn_mask": jnp.bool_}
        batch = {k: jax.ShapeDtypeStruct(bt, dtypes[k], sharding=named_sharding(mesh, ("batch", "seq"), bt))
                 for k in (*REQUIRED_KEYS, "attn_mask")}
        return StepSpec("train", build_train_step(lcfg), (state, batch), donate_argnums=(0,))

    return build


def run_compile_only(cfg, lcfg: LearnerConfig, seq: int) -> int:
    from mrt_jax.distributed.aot import compile_for_slice
    from mrt_jax.models import PRESETS

    if cfg.model not in PRESETS:
        raise ValueError(f"--compile_only needs an architecture preset for --model (one of {', '.join(PRESETS)}), "
                         f"got {cfg.model!r}")
    on_tpu = cfg.tpu not in ("cpu", "gpu")
    dtype = "bfloat16" if on_tpu else "float32"
    model_cfg = PRESETS[cfg.model].replace(param_dtype=dtype, dtype=dtype, remat=True)
    rows = cfg.prompts_per_step * cfg.group_size
    report = compile_for_slice(cfg.tpu, model_cfg, rows, seq, sample_batch=rows, model_name=cfg.model,
                               train_builder=learner_train_builder(lcfg))
    print(report.table())
    print(report.to_json())
    return 0
