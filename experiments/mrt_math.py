"""The training job: ``python -m experiments.mrt_math`` (MRT, GRPO, Dr.GRPO, RLOO or MRT-STaR on a procedural task).

One step: prompts -> rollouts -> episode boundaries -> meta-prover forks (MRT) -> rewards -> advantages -> learner
update -> weight sync to the sampler -> metrics -> periodic evaluation -> checkpoint. With no flags it runs the
embedded default (a small model warm-started on one-operation arithmetic, offline, minutes on a laptop CPU).

This module is the entry point only: flags (``experiments.config``), process setup and the one-line error. The
job is ``experiments.colocated.run`` (the library's step loop, ``mrt_jax.trainer``); ``--sync=disaggregated``
hands over to ``experiments.disaggregated``.
"""

from __future__ import annotations

import logging
import os
import sys

from experiments.config import parse_args
from experiments.job_setup import RESUMABLE_FIELDS, learner_config  # noqa: F401  (re-exported for callers)
from mrt_jax.errors import UserError  # noqa: F401  (re-exported: one line on stderr, exit code 2, no traceback)


def run(cfg) -> dict:
    from experiments.colocated import run as run_colocated

    return run_colocated(cfg)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax is chatty at INFO
    cfg = parse_args(argv)
    if cfg.sync == "disaggregated":  # learner and sampler(s) as separate processes (default: all on this machine)
        from experiments.disaggregated import main as disaggregated_main

        args = list(sys.argv[1:] if argv is None else argv)
        return disaggregated_main(args if cfg.role else [*args, "--role=both"])
    if cfg.tpu == "cpu" or cfg.compile_only:  # before jax is imported: a CPU run (or AOT) probes no accelerator
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from mrt_jax.distributed import init_distributed, log_on_main

    try:
        if not cfg.compile_only:  # before any JAX computation; no flags: a single process, or a TPU VM's workers
            explicit = (cfg.coordinator, cfg.num_processes, cfg.process_id) if cfg.coordinator else (None,) * 3
            try:
                init_distributed(*explicit)
            except ValueError as e:
                raise UserError(str(e)) from e
            log_on_main()
        run(cfg)
    except UserError as e:  # ConfigMismatchError and CheckpointError are UserErrors too
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
