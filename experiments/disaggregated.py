"""The training job with learner and sampler in separate processes that talk only through the run dir:
``python -m experiments.disaggregated --role=learner|sampler|both [the job's flags]``.

The learner publishes its params as Orbax steps in RUN/weights and trains on the rollout batches in RUN/rollouts;
each sampler loads the newest complete published step and writes batches tagged with that step (see
``experiments.disagg_layout`` for the run dir, ``disagg_learner`` and ``disagg_sampler`` for the roles).
``--role=both`` runs the learner and ``--num_samplers`` samplers as child processes of this interpreter on one
machine and waits for all; if one fails it stops the others and exits non-zero naming the failed role.
One flag of this entry point only: ``--wait_timeout=SECONDS`` (default 900), how long a role waits for the other
side (the first weights, the next batch, any progress) before it stops with an error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time

from experiments.config import OneLineErrorParser, parse_args

PROG = "python -m experiments.disaggregated"
DEFAULT_WAIT_TIMEOUT = 900.0


def _usage_error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _split_args(argv: list[str]) -> tuple[float, list[str]]:
    """Take ``--wait_timeout`` off the command line; the rest are the job's flags."""
    pre = OneLineErrorParser(prog=PROG, add_help=False)
    pre.add_argument("--wait_timeout", type=float, default=DEFAULT_WAIT_TIMEOUT)
    known, rest = pre.parse_known_args(argv)
    if not known.wait_timeout > 0:
        pre.error(f"--wait_timeout must be > 0 seconds, got {known.wait_timeout}")
    return known.wait_timeout, rest


def _stop(procs: dict[str, subprocess.Popen], grace: float = 20.0) -> None:
    """SIGTERM the children still running (the learner then checkpoints), SIGKILL whatever outlives ``grace``."""
    for p in procs.values():
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs.values():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_both(argv: list[str], cfg, wait_timeout: float) -> int:
    """Spawn the learner and the samplers; 0 when all finish cleanly."""
    from experiments.disagg_layout import RunLayout
    from mrt_jax import run_files

    # A DONE from an earlier attempt must not stop the new samplers.
    run_files.remove(RunLayout.of(cfg.run_dir).done, missing_ok=True)
    cmd = [sys.executable, "-m", "experiments.disaggregated", *argv]  # a flag given twice: the last one wins
    # Own sessions: a Ctrl-C in the terminal reaches the children once, through forward() below (a second
    # SIGINT would make the learner stop without saving).
    spawn = lambda *extra: subprocess.Popen([*cmd, *extra], start_new_session=True)
    procs = {"learner": spawn("--role=learner")}
    for i in range(cfg.num_samplers):
        procs[f"sampler {i}"] = spawn("--role=sampler", f"--sampler_id={i}")

    stopping = []

    def forward(signum, _frame):  # preemption reaches every role; the learner saves and writes DONE
        stopping.append(signum)
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    learner_done_at = None
    try:
        while True:
            if stopping:  # every role got the signal: wait for them to save and leave
                codes = {name: p.wait() for name, p in procs.items()}
                bad = {name: rc for name, rc in codes.items() if rc != 0}
                if bad:
                    print(f"error: stopped by signal; roles that did not exit cleanly: {bad}", file=sys.stderr)
                return 1 if bad else 0
            codes = {name: p.poll() for name, p in procs.items()}
            failed = [(name, rc) for name, rc in codes.items() if rc not in (None, 0)]
            if failed:
                name, rc = failed[0]
                _stop(procs)
                print(f"error: the {name} process exited with code {rc}; stopped the other roles", file=sys.stderr)
                return rc if rc > 0 else 1
            if all(rc == 0 for rc in codes.values()):
                return 0
            if codes["learner"] == 0:
                learner_done_at = learner_done_at or time.monotonic()
                if time.monotonic() - learner_done_at > wait_timeout:
                    _stop(procs)
                    print(f"error: samplers still running {wait_timeout:g} s after the learner finished; stopped "
                          f"them", file=sys.stderr)
                    return 1
            time.sleep(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax is chatty at INFO
    argv = list(sys.argv[1:] if argv is None else argv)
    wait_timeout, job_args = _split_args(argv)
    # This entry point is --sync=disaggregated: its flags (--role, --max_staleness, ...) are not inert here.
    given_sync = any(a.startswith("--sync") for a in job_args)
    cfg = parse_args(job_args if given_sync else ["--sync=disaggregated", *job_args])
    if not cfg.role:
        return _usage_error("--role is required: learner, sampler or both")
    if cfg.compile_only:
        return _usage_error("--compile_only belongs to the colocated job: python -m experiments.mrt_math")
    if cfg.sync != "disaggregated":
        return _usage_error(f"--sync={cfg.sync!r} contradicts this entry point (disaggregated); "
                            f"run python -m experiments.mrt_math for the colocated job")
    cfg = dataclasses.replace(cfg, sync="disaggregated")
    if cfg.role == "both":
        return run_both(argv, cfg, wait_timeout)
    if cfg.tpu == "cpu":  # before jax is imported: a CPU run probes no accelerator
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from mrt_jax.errors import UserError

    try:
        if cfg.role == "learner":
            from experiments.disagg_learner import run_learner

            run_learner(cfg, wait_timeout)
        else:
            from experiments.disagg_sampler import run_sampler

            run_sampler(cfg, wait_timeout)
    except UserError as e:  # ConfigMismatchError and CheckpointError are UserErrors too
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
