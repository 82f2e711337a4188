"""Child processes for tests that run several at once: their output goes to files, never to pipes.

Processes that wait for each other (two ``jax.distributed`` peers, a learner and its sampler) must not be read one
after the other through pipes: while the test drains the first, the second can fill its 64 KiB pipe, block on a log
line and never reach the barrier the first one waits at. Under load that showed as "Shutdown barrier timed out" in
the two-process checkpoint test. Files never block a writer.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
import time


@functools.cache
def _session_log_dir() -> str:
    """Where children without a ``log_dir`` write (one dir per test session, removed when it ends)."""
    path = tempfile.mkdtemp(prefix="mrt-tests-children-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


class Child:
    """``subprocess.Popen`` with stdout/stderr in files; ``communicate`` returns their text like a piped Popen's."""

    def __init__(self, cmd: list[str], *, env: dict | None = None, cwd: str | None = None, log_dir: str | None = None):
        log_dir = log_dir or _session_log_dir()
        fd, self.out_path = tempfile.mkstemp(suffix=".out", dir=log_dir)
        os.close(fd)
        fd, self.err_path = tempfile.mkstemp(suffix=".err", dir=log_dir)
        os.close(fd)
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def output(self) -> tuple[str, str]:
        with open(self.out_path, errors="replace") as out, open(self.err_path, errors="replace") as err:
            return out.read(), err.read()

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the exit (killing the child and raising ``TimeoutExpired`` past ``timeout``), then its output."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return self.output()


def finish_all(children: list[Child], timeout: float) -> list[tuple[str, str]]:
    """Wait for every child under one shared deadline; past it, kill them all and fail with their stderr tails."""
    deadline = time.monotonic() + timeout
    try:
        for c in children:
            c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for c in children:
            if c.poll() is None:
                c.kill()
        tails = "\n---\n".join(c.output()[1][-2500:] for c in children)
        raise AssertionError(f"processes still running after {timeout:.0f} s; stderr tails:\n{tails}") from None
    return [c.output() for c in children]
