"""Batched math scoring in worker processes with per-item time limits enforced by the parent.

Each worker is a plain subprocess running `_mv_core.py` (no `mrt_jax`/JAX import, no fork of the trainer). The
parent extracts answers, de-duplicates (answer, gold) pairs and hands each worker a short queue of pairs over a
JSON-lines pipe; the worker answers one line per pair, in order. The item at the head of a worker's queue must be
answered within `timeout_s` of the previous answer (or of the send); past that the worker is killed, the item is
scored 0 with status TIMEOUT, the rest of its queue goes back to the pending list and a fresh worker takes over.
A hung sympy call therefore costs one item, never the step. (Queues of several items save a parent/worker round
trip per item, which dominates on a loaded machine.)
"""

from __future__ import annotations

import collections
import json
import os
import selectors
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence

import numpy as np

from mrt_jax.rewards.extraction import DEFAULT_EXTRACTION, ExtractionConfig, extract_answer, gold_answer
from mrt_jax.rewards.math_reward import verify_in_process
from mrt_jax.rewards.result import ScoreResult, Status, as_truncated, make_result

_CORE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_mv_core.py")
_MAX_ATTEMPTS = 2  # an item whose worker died (not timed out) is retried once on a fresh worker
_MAX_QUEUE = 16  # items queued per worker at once
_MAX_QUEUE_BYTES = 32 * 1024  # below the 64 KiB pipe buffer: a send never blocks on a worker that hangs mid-queue


class _Worker:
    """One worker subprocess: a pipe pair, a read buffer and its queue of items (head = the one being checked)."""

    def __init__(self, memory_limit_mb: int | None):
        env = dict(os.environ, MRT_JAX_REWARD_MEMORY_MB=str(memory_limit_mb or 0))
        code = f"import runpy; runpy.run_path({_CORE_PATH!r}, run_name='__main__')"
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.ready = False
        self.started_at = time.monotonic()
        self.queue: collections.deque[int] = collections.deque()
        self.deadline = 0.0  # for the head of the queue

    def send(self, lines: list[bytes]) -> None:
        self.proc.stdin.write(b"".join(lines))
        self.proc.stdin.flush()

    def read_messages(self) -> list[dict] | None:
        """Complete messages received so far; None once the worker has closed its output (it died)."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        *lines, self.buffer = (self.buffer + chunk).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def stop(self, grace_s: float = 0.0) -> None:
        """End the worker: EOF on stdin and `grace_s` to exit by itself, then SIGKILL (this process only)."""
        if self.proc.poll() is None and grace_s > 0:
            try:
                if not self.proc.stdin.closed:
                    self.proc.stdin.close()
                self.proc.wait(grace_s)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


def _stop_all(workers: list[_Worker]) -> None:
    for worker in workers:  # EOF to all first, so they exit in parallel
        try:
            worker.proc.stdin.close()
        except OSError:
            pass
    for worker in workers:
        worker.stop(grace_s=0.5)
    workers.clear()


class MathScorer:
    """Scores completions against gold answers with math-verify, `num_workers` processes, `timeout_s` per item.

    reward_i = 1.0 if status_i == CORRECT else 0.0, where status_i comes from `extract_answer` (the part after
    `</think>`, last box, else Answer: line) and `math_verify.verify(gold_i, answer_i)`; see `Status` for the codes.
    A gold that is a worked solution is reduced to its last box (`gold_answer`).
    `num_workers=0` scores in this process with a SIGALRM limit (main thread only; for tiny jobs and tests).
    Workers start lazily on the first `score` and live until `close()` (or the end of a `with` block).
    Answers longer than `max_answer_chars` are scored WRONG without parsing. `memory_limit_mb` caps each worker's
    address space (None: no cap), so a runaway expression raises MemoryError there instead of exhausting the host.
    """

    def __init__(
        self,
        num_workers: int = 4,
        timeout_s: float = 5.0,
        *,
        extraction: ExtractionConfig = DEFAULT_EXTRACTION,
        max_answer_chars: int = 1000,
        memory_limit_mb: int | None = 2048,
        startup_timeout_s: float = 120.0,
    ):
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"MathScorer: num_workers must be an int >= 0 (0 = in-process), got {num_workers!r}")
        if not timeout_s > 0:
            raise ValueError(f"MathScorer: timeout_s must be > 0 seconds, got {timeout_s!r}")
        if max_answer_chars < 1 or startup_timeout_s <= 0:
            raise ValueError(f"MathScorer: max_answer_chars ({max_answer_chars}) and startup_timeout_s "
                             f"({startup_timeout_s}) must be positive")
        self.num_workers = num_workers
        self.timeout_s = float(timeout_s)
        self.extraction = extraction
        self.max_answer_chars = max_answer_chars
        self.memory_limit_mb = memory_limit_mb
        self.startup_timeout_s = startup_timeout_s
        self.stats = {"workers_started": 0, "workers_killed": 0, "items_checked": 0}
        self._workers: list[_Worker] = []
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)

    def __enter__(self) -> MathScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop all workers. Idempotent; `score` raises afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for worker in self._workers:
                self._selector.unregister(worker.fd)
            self._finalizer()
            self._selector.close()

    @property
    def num_alive_workers(self) -> int:
        return sum(w.proc.poll() is None for w in self._workers)

    def score(
        self, completions: Sequence[str], golds: Sequence[str], truncated: Sequence[bool] | None = None
    ) -> ScoreResult:
        """Score B completions against B golds (`truncated`: optional bool [B], the completion hit the length limit;
        a truncated completion without an answer gets status TRUNCATED). Identical (answer, gold) pairs are checked
        once. Returns rewards, statuses, flags and extracted answers."""
        batch = len(completions)
        if len(golds) != batch:
            raise ValueError(f"MathScorer.score: {batch} completions but {len(golds)} golds; need one gold each")
        for i, (c, g) in enumerate(zip(completions, golds, strict=True)):
            if not isinstance(c, str) or not isinstance(g, str):
                raise TypeError(f"MathScorer.score: item {i}: completion and gold must be str, got "
                                f"{type(c).__name__} and {type(g).__name__}")
        truncated_b = as_truncated(truncated, batch)
        answers = tuple(extract_answer(c, self.extraction) for c in completions)
        too_long = [a is not None and len(a) > self.max_answer_chars for a in answers]
        pairs: dict[tuple[str | None, str], list[int]] = collections.defaultdict(list)
        for i, (a, g) in enumerate(zip(answers, golds, strict=True)):
            pairs[(None if too_long[i] else a, gold_answer(g))].append(i)
        unique = list(pairs)
        with self._lock:
            if self._closed:
                raise RuntimeError("MathScorer.score: the scorer is closed")
            if self.num_workers == 0:
                codes = [int(verify_in_process(a, g, self.timeout_s)) for a, g in unique]
            else:
                try:
                    codes = self._run(unique)
                except BaseException:  # e.g. KeyboardInterrupt: never leave stale queued items behind
                    for worker in [w for w in self._workers if w.queue]:
                        self._retire(worker)
                    raise
            self.stats["items_checked"] += len(unique)
        status_b = np.empty(batch, np.int8)
        for pair, code in zip(unique, codes, strict=True):
            status_b[pairs[pair]] = code
        status_b[np.asarray(too_long, bool) & (status_b == Status.NO_ANSWER)] = Status.WRONG
        status_b[truncated_b & (status_b == Status.NO_ANSWER)] = Status.TRUNCATED
        return make_result((status_b == Status.CORRECT).astype(np.float32), status_b, truncated_b, answers)

    # --- worker pool -------------------------------------------------------------------------------------------

    def _start_worker(self) -> None:
        worker = _Worker(self.memory_limit_mb)
        self._workers.append(worker)
        self._selector.register(worker.fd, selectors.EVENT_READ, worker)
        self.stats["workers_started"] += 1

    def _retire(self, worker: _Worker) -> None:
        self._selector.unregister(worker.fd)
        self._workers.remove(worker)
        worker.stop()

    def _run(self, items: list[tuple[str | None, str]]) -> list[int]:
        results: list[int] = [Status.ERROR] * len(items)
        attempts = [0] * len(items)
        pending = collections.deque(range(len(items)))
        lines = [(json.dumps({"a": a, "g": g}) + "\n").encode() for a, g in items]

        def give_back(worker: _Worker, head_failed: bool) -> None:
            """Return a retired worker's queue to `pending`; its head counts one failed attempt if `head_failed`."""
            rest = list(worker.queue)
            worker.queue.clear()
            if head_failed and rest:
                k = rest.pop(0)
                attempts[k] += 1
                if attempts[k] < _MAX_ATTEMPTS:
                    rest.insert(0, k)
                else:
                    results[k] = Status.ERROR
            pending.extendleft(reversed(rest))

        while True:
            in_flight = sum(len(w.queue) for w in self._workers)
            if not pending and not in_flight:
                return results
            while len(self._workers) < min(self.num_workers, len(pending) + in_flight):
                self._start_worker()
            # Queue length: up to _MAX_QUEUE, smaller near the end so that workers finish together.
            per_worker = max(1, min(_MAX_QUEUE, len(pending) // (2 * len(self._workers))))
            for worker in list(self._workers):
                if not (worker.ready and not worker.queue and pending):
                    continue
                batch, size = [], 0
                while pending and len(batch) < per_worker and (not batch or size + len(lines[pending[0]]) <=
                                                               _MAX_QUEUE_BYTES):
                    batch.append(pending.popleft())
                    size += len(lines[batch[-1]])
                worker.queue.extend(batch)
                try:
                    worker.send([lines[k] for k in batch])
                except OSError:  # died while idle (BrokenPipeError): its items go to another worker
                    self._retire(worker)
                    give_back(worker, head_failed=True)
                    continue
                worker.deadline = time.monotonic() + self.timeout_s
            deadlines = [w.deadline if w.ready else w.started_at + self.startup_timeout_s for w in self._workers
                         if w.queue or not w.ready]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 0.0
            for key, _ in self._selector.select(wait_s):
                self._on_readable(key.data, results, give_back)
            now = time.monotonic()
            for worker in list(self._workers):
                if worker.queue and now >= worker.deadline:
                    results[worker.queue.popleft()] = Status.TIMEOUT
                    self.stats["workers_killed"] += 1
                    self._retire(worker)
                    give_back(worker, head_failed=False)
                elif not worker.ready and now >= worker.started_at + self.startup_timeout_s:
                    self._retire(worker)
                    raise RuntimeError(f"MathScorer: a worker did not start within {self.startup_timeout_s} s "
                                       f"({sys.executable} {_CORE_PATH}); is math-verify installed?")

    def _on_readable(self, worker: _Worker, results: list[int], give_back) -> None:
        messages = worker.read_messages()
        if messages is None:  # the worker exited
            code = worker.proc.poll()
            self._retire(worker)
            if not worker.ready:
                raise RuntimeError(f"MathScorer: a worker exited during start-up with code {code} "
                                   f"({sys.executable} {_CORE_PATH}); see its stderr above")
            give_back(worker, head_failed=True)
            return
        for message in messages:
            if message.get("ready"):
                worker.ready = True
            elif worker.queue:
                results[worker.queue.popleft()] = int(message["s"])
                # The worker moved on to the next queued item as soon as it wrote this answer.
                worker.deadline = time.monotonic() + self.timeout_s
