"""The MRT-vs-GRPO study in one command: ``python -m experiments.study --out=runs/study``.

For every seed it trains GRPO and MRT from the same warm-started base with the same job flags (equal optimizer
steps), and, with ``--equal_compute``, GRPO again for as many steps as buy the tokens MRT sampled (rollouts plus
meta-prover answers), so MRT's extra sampling is paid for. The base model is a run with learning rate 0 (its weights
stay the warm start), evaluated through the same code. Every run is then evaluated out of distribution
(``--ood``, default: the training task one difficulty up; none for a ``--dataset``), and ``experiments.compare``
draws and tabulates all of them: mean and spread over seeds per algorithm, in distribution and out of it.
``OUT/STUDY.md`` collects the tables and the command that made them. Runs that already finished are kept, so an
interrupted study resumes.

OUT may be a bucket path (``--out=gs://BUCKET/study``): every run dir, eval dir, comparison and STUDY.md lives there
(read and written through ``mrt_jax.run_files``, as the job does), so a resumed study on another machine keeps the
runs finished in the bucket. The subprocess logs are streams, which an object store cannot append to: they are
written to a local staging dir (printed at the start) and uploaded to ``OUT/logs/`` after every command.

Flags it does not know go to ``experiments.mrt_math`` unchanged (``--preset=smollm2``, ``--steps=40``, ...).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import subprocess
import sys
import time

from experiments.config import ALGOS, OneLineErrorParser, int_list_flag, without_inert
from mrt_jax import run_files
from mrt_jax.errors import UserError

log = logging.getLogger("study")



def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = OneLineErrorParser(prog="python -m experiments.study", description=__doc__.split("\n")[0],
                            allow_abbrev=False,  # --seed must not pass for --seeds: the study sets each run's seed
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/study", help="study dir: one run dir per (algo, seed), compare/, STUDY.md")
    p.add_argument("--seeds", type=int_list_flag("seeds", minimum=0), default=[0, 1, 2])
    p.add_argument("--algos", default="grpo,mrt", help="comma list of --algo values")
    p.add_argument("--equal_compute", action=argparse.BooleanOptionalAction, default=None,
                   help="also train GRPO for as many sampled tokens as MRT used (label grpo_eqtok); default: on "
                        "when --algos has both mrt and grpo, and refused otherwise")
    p.add_argument("--base", action=argparse.BooleanOptionalAction, default=True,
                   help="evaluate the warm-started base model (a learning-rate-0 run) per seed")
    p.add_argument("--ood", default="auto", help="out-of-distribution dataset for experiments.evaluate "
                   "(task:difficulty or a file; auto: the training task one difficulty up, none for a --dataset; "
                   "'none' to skip)")
    p.add_argument("--ood_problems", type=int, default=64)
    p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    args, job_flags = p.parse_known_args(argv)
    args.algos = [a for a in args.algos.split(",") if a]
    bad = [a for a in args.algos if a not in ALGOS]
    if bad or not args.algos:
        p.error(f"--algos={','.join(args.algos)}: choose from {', '.join(ALGOS)}")
    both = "mrt" in args.algos and "grpo" in args.algos
    if args.equal_compute and not both:
        p.error(f"--equal_compute matches GRPO's sampled tokens to MRT's: --algos={','.join(args.algos)} needs "
                f"both mrt and grpo (or drop --equal_compute)")
    args.equal_compute = both if args.equal_compute is None else args.equal_compute
    for flag in job_flags:
        if not flag.startswith("--"):  # the study edits job flags by name: each must be one --name=value item
            p.error(f"job flags are passed as --name=value; got {flag!r} on its own (write --flag=VALUE)")
        name = flag.split("=")[0].lstrip("-")
        if name in ("algo", "seed", "run_dir"):
            p.error(f"--{name} is set by the study per run; do not pass it")
    return args, job_flags


def _job_config(job_flags: list[str]):
    """The job's resolved config for these flags (validates them before hours of training)."""
    from experiments.config import parse_args as job_parse

    return job_parse(job_flags)


class _Logs:
    """OUT/logs, where each subprocess's output is appended: that dir itself for a local OUT; for a bucket OUT a
    local staging dir (a child process writes a stream; an object store takes whole objects only) whose logs are
    uploaded to OUT/logs after every command. A log an earlier invocation left in the bucket is fetched before the
    first append, so logs grow across resumes as local ones do."""

    def __init__(self, out: str):
        self.dest = run_files.join(out, "logs")
        self.staging = run_files.Staging(self.dest)
        if self.staging.remote:
            print(f"logs: written to {self.staging.local} while a command runs, uploaded to {self.dest}", flush=True)

    def path(self, name: str) -> str:
        """The local file to append ``name``'s output to."""
        local = os.path.join(self.staging.local, name)
        if self.staging.remote and not os.path.exists(local):
            try:
                earlier = run_files.read_bytes(run_files.join(self.dest, name))
            except FileNotFoundError:
                return local
            with open(local, "wb") as f:
                f.write(earlier)
        return local

    def shown(self, local: str) -> str:
        """Where to look for a log: the bucket object (and the local copy, kept) for a bucket OUT."""
        if not self.staging.remote:
            return local
        return f"{run_files.join(self.dest, os.path.basename(local))} (local copy: {local})"

    def sync(self) -> None:
        self.staging.sync()

    def close(self) -> None:
        """Upload the last logs and remove the staging dir (only after a study that ended well: a failed one keeps
        its local copy for the message that points at it)."""
        self.staging.close()


def _run(cmd: list[str], log: str, logs: _Logs, dry_run: bool) -> None:
    print("$ " + shlex.join(cmd), flush=True)
    if dry_run:
        return
    t0 = time.time()
    log_path = logs.path(log)
    try:
        with open(log_path, "a") as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    finally:
        logs.sync()  # also when interrupted: the bucket keeps the log of the command that was running
    if proc.returncode != 0:
        raise SystemExit(f"study: {shlex.join(cmd[2:4])}... failed (exit {proc.returncode}); see "
                         f"{logs.shown(log_path)}")
    print(f"  done in {time.time() - t0:.0f} s", flush=True)


def _sampled_tokens(run_dir: str) -> tuple[float, int]:
    """(rollout + meta-prover tokens sampled over the run, steps) from its metrics.jsonl."""
    rows = run_files.read_jsonl(run_files.join(run_dir, "metrics.jsonl"))
    total = sum(float(r.get("sampled_tokens", 0.0)) + float(r.get("meta_tokens", 0.0)) for r in rows)
    return total, len(rows)


def _read(path: str) -> dict:
    try:
        return run_files.read_json(path)
    except FileNotFoundError:
        return {}


def _finished(run_dir: str, steps: int) -> bool:
    """Whether a run trained all ``steps`` (a job stopped by a signal also writes result.json, with fewer steps;
    running it again resumes it from its checkpoint). A run started for another step count (its config.json, written
    at every start, also for a run killed before result.json) is refused, not extended: the job would resume it, but
    the learning-rate schedule spans the run's steps, so the result would not equal a run of that length."""
    planned = _read(run_files.join(run_dir, "config.json")).get("steps")
    if planned is not None and planned != steps:
        raise SystemExit(f"study: {run_dir} was trained for --steps={planned} but this study asks for {steps} "
                         "(equal-compute GRPO follows MRT's sampled tokens); move or delete that run dir to retrain it")
    return _read(run_files.join(run_dir, "result.json")).get("steps_done", 0) >= steps


def _ood_is_current(run_dir: str, out: str) -> bool:
    """Whether OUT/eval.json evaluated the run's final checkpoint (a resumed run moves past an older eval)."""
    step = _read(run_files.join(out, "eval.json")).get("source", {}).get("checkpoint_step")
    return step is not None and step == _read(run_files.join(run_dir, "result.json")).get("steps_done")


def _train(name: str, flags: list[str], args, logs: _Logs) -> str:
    run_dir = run_files.join(args.out, name)
    if _finished(run_dir, _job_config(flags).steps):
        print(f"{name}: finished earlier, kept", flush=True)
        return run_dir
    _run([sys.executable, "-m", "experiments.mrt_math", f"--run_dir={run_dir}", *flags], f"{name}.log", logs,
         args.dry_run)
    return run_dir


def _evaluate_ood(run_dir: str, dataset: str, args, logs: _Logs) -> str:
    out = run_files.join(run_dir, "eval_ood")
    if not _ood_is_current(run_dir, out):
        _run([sys.executable, "-m", "experiments.evaluate", f"--run_dir={run_dir}", f"--dataset={dataset}",
              f"--problems={args.ood_problems}", f"--out={out}", "--title=out of distribution: " + dataset],
             run_files.basename(run_dir) + "-ood.log", logs, args.dry_run)
    return out


def _compare(dirs: list[str], labels: list[str], out: str, title: str, logs: _Logs, dry_run: bool) -> None:
    _run([sys.executable, "-m", "experiments.compare", *dirs, f"--labels={','.join(labels)}", f"--out={out}",
          f"--title={title}"], "compare.log", logs, dry_run)


def main(argv: list[str] | None = None) -> int:
    args, job_flags = parse_args(argv)
    try:
        cfg = _job_config(job_flags)
    except SystemExit as e:  # the job's parser already printed its one-line error
        return int(e.code or 2)
    trained_on = _trained_on(cfg)
    ood = args.ood
    if ood == "auto":  # a procedural task one difficulty up; a dataset has no harder level we know of
        ood = "none" if cfg.dataset else f"{cfg.task}:{cfg.difficulty + 1}"
        if cfg.dataset:
            print(f"note: --ood=auto evaluates nothing out of distribution for --dataset={cfg.dataset}; pass "
                  f"--ood=FILE or TASK:DIFFICULTY to add one", flush=True)
    try:  # a bucket OUT without its filesystem installed, or refusing writes: one line now, not hours later
        run_files.check_writable(args.out, "--out")
    except UserError as e:
        print(f"study: error: {e}", file=sys.stderr)
        return 2
    logs = _Logs(args.out)
    t0 = time.time()
    runs: list[tuple[str, str]] = []  # (label, run dir)
    for seed in args.seeds:
        seed_flags = [*job_flags, f"--seed={seed}"]
        if args.base:
            base = [*without_inert(seed_flags, "--algo=grpo"), "--algo=grpo", "--learning_rate=0", "--steps=1"]
            runs.append(("base", _train(f"base-s{seed}", base, args, logs)))
        for algo in args.algos:  # a flag that does nothing for this algo (e.g. --alpha for grpo) is left out
            flags = [*without_inert(seed_flags, f"--algo={algo}"), f"--algo={algo}"]
            runs.append((algo, _train(f"{algo}-s{seed}", flags, args, logs)))
    if args.equal_compute and not args.dry_run:
        mrt_tokens = [_sampled_tokens(d)[0] for label, d in runs if label == "mrt"]
        grpo = [_sampled_tokens(d) for label, d in runs if label == "grpo"]
        per_step = sum(t for t, _ in grpo) / max(1, sum(s for _, s in grpo))
        steps = max(1, math.ceil(sum(mrt_tokens) / len(mrt_tokens) / per_step))
        print(f"equal compute: MRT sampled {sum(mrt_tokens) / len(mrt_tokens):.0f} tokens per run, GRPO "
              f"{per_step:.0f} per step -> grpo_eqtok trains {steps} steps", flush=True)
        for seed in args.seeds:
            flags = [*without_inert(job_flags, "--algo=grpo"), f"--seed={seed}", "--algo=grpo", f"--steps={steps}"]
            runs.append(("grpo_eqtok", _train(f"grpo_eqtok-s{seed}", flags, args, logs)))
    _compare([d for _, d in runs], [lb for lb, _ in runs], run_files.join(args.out, "compare"),
             f"{trained_on} ({cfg.model}), in distribution", logs, args.dry_run)
    if ood != "none":
        ood_dirs = [_evaluate_ood(d, ood, args, logs) for _, d in runs]
        _compare(ood_dirs, [lb for lb, _ in runs], run_files.join(args.out, "compare_ood"),
                 f"{trained_on} ({cfg.model}), out of distribution: {ood}", logs, args.dry_run)
    if not args.dry_run:
        _write_summary(args, argv if argv is not None else sys.argv[1:], ood, time.time() - t0)
    logs.close()
    return 0


def _trained_on(cfg) -> str:
    """What the runs train on, for titles: the dataset, or the procedural task and its difficulty."""
    return cfg.dataset or f"{cfg.task}:{cfg.difficulty}"


def _write_summary(args, argv: list[str], ood: str, seconds: float) -> None:
    parts = ["# MRT vs GRPO study", "", "Reproduce: `python -m experiments.study " + shlex.join(argv) + "`", "",
             f"Wall time of this invocation: {seconds / 60:.1f} min (runs finished earlier were kept).", ""]
    for sub, heading in (("compare", "In distribution"), ("compare_ood", f"Out of distribution ({ood})")):
        path = run_files.join(args.out, sub, "compare.md")
        if run_files.exists(path):
            body = run_files.read_text(path).split("\n", 1)[-1]  # drop the compare document's own title
            parts += [f"## {heading}", "", body.replace("](", f"]({sub}/"), ""]
    run_files.write_text(run_files.join(args.out, "STUDY.md"), "\n".join(parts))
    print(f"study: {run_files.join(args.out, 'STUDY.md')}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
