"""PreemptionGuard: turn SIGTERM/SIGINT into "save at the next step boundary, then exit 0".

The signal handler only sets a flag (nothing async-unsafe runs inside it); the training loop polls
``guard.should_stop()`` once per step. In a multi-process run the processes agree (logical OR over processes),
so every process saves the same step and leaves together. Typical loop::

    with PreemptionGuard() as guard:
        for step in range(start, total):
            state = train_step(state, ...)
            if guard.should_stop():
                ckpt.maybe_save(step, state, items, force=True)
                ckpt.close()          # waits for the save to be committed
                sys.exit(0)
            ckpt.maybe_save(step, state, items)
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

import jax

from mrt_jax.checkpointing import consensus

log = logging.getLogger(__name__)


class PreemptionGuard:
    """Installs handlers for ``signals`` on enter (main thread only), restores the previous ones on exit."""

    def __init__(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT), sync_every: int = 1):
        if sync_every < 1:
            raise ValueError(f"PreemptionGuard sync_every must be >= 1, got {sync_every}")
        self.signals = tuple(signals)
        self.sync_every = sync_every
        self._requested = threading.Event()
        self._received: int | None = None
        self._previous: dict[int, object] = {}
        self._polls = 0

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._requested.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means "stop now", not "save first"
        self._received = signum
        self._requested.set()

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("PreemptionGuard must be entered on the main thread (signal handlers live there)")
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()

    def request(self) -> None:
        """Ask for a save-and-exit as if a signal had arrived (tests, schedulers with their own notices)."""
        self._requested.set()

    @property
    def requested_locally(self) -> bool:
        return self._requested.is_set()

    def should_stop(self) -> bool:
        """True once a stop was requested on any process. Multi-process runs all-gather the flag every
        ``sync_every`` polls (a tiny collective), so each process must call this at the same steps."""
        self._polls += 1
        local = self._requested.is_set()
        if jax.process_count() > 1:
            if self._polls % self.sync_every:
                return False
            local = any(consensus.every_process(local))
        if local and self._received is not None:
            name = signal.Signals(self._received).name
            log.warning("received %s: saving a checkpoint at this step boundary, then exiting", name)
            self._received = None
        return local
