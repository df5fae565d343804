"""The reactor: one selector, cancellable timers and a signal pipe.

Ready descriptors are handed back ordered by their kind's priority (step exits
and channels before hook replies before signals), so an exit that happened before a kill
request in the same turn keeps its real outcome.
"""
from __future__ import annotations

import heapq
import itertools
import os
import selectors
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Source(IntEnum):
    """What a watched descriptor is; lower values are handled first in a turn.

    A signal comes first: when Slurm signals the manager and its steps together, the steps that
    end in the same turn are already known to be interrupted.
    """

    SIGNAL = 0
    STEP = 1
    #: A descriptor carrying the ends of many steps (:meth:`~ensemble.executors.Executor.channels`).
    CHANNEL = 2
    HOOK = 3


@dataclass(order=True)
class Timer:
    """A callback due at ``when`` (monotonic seconds); ``cancel()`` drops it."""

    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Reactor:
    """Waits for descriptors and timers; knows nothing of runs."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.timers: list[Timer] = []
        self.cancelled = 0
        self._seq = itertools.count()
        self.signal_received: int | None = None
        self._saved: dict[int, Any] = {}
        self._saved_wakeup = -1
        self.signal_pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self.signal_pipe[0], selectors.EVENT_READ, (Source.SIGNAL, None))

    # -- signals -----------------------------------------------------------------------------
    def install_signals(self) -> None:
        """Record SIGTERM/SIGINT/SIGHUP instead of dying (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._saved_wakeup = signal.set_wakeup_fd(self.signal_pipe[1])
        self._saved = {sig: signal.signal(sig, self._on_signal) for sig in HANDLED_SIGNALS}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signal_received is None:
            self.signal_received = signum

    def restore_signals(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        if self._saved:
            signal.set_wakeup_fd(self._saved_wakeup)
        self._saved = {}

    def _drain_signal_pipe(self) -> None:
        try:
            while os.read(self.signal_pipe[0], 512):
                pass
        except BlockingIOError:
            pass

    # -- descriptors -------------------------------------------------------------------------
    def watch(self, fd: int, source: Source, data: Any) -> None:
        self.selector.register(fd, selectors.EVENT_READ, (source, data))

    def unwatch(self, fd: int) -> None:
        self.selector.unregister(fd)

    # -- timers --------------------------------------------------------------------------------
    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + delay, next(self._seq), callback)
        heapq.heappush(self.timers, timer)
        return timer

    def cancel(self, timer: Timer | None) -> None:
        """Cancel a timer; the heap is rebuilt when most of it is cancelled."""
        if timer is None or timer.cancelled:
            return
        timer.cancel()
        self.cancelled += 1
        if self.cancelled > 64 and self.cancelled > len(self.timers) // 2:
            self.timers = [t for t in self.timers if not t.cancelled]
            heapq.heapify(self.timers)
            self.cancelled = 0

    def _next_timer(self) -> float | None:
        while self.timers and self.timers[0].cancelled:
            heapq.heappop(self.timers)
            self.cancelled = max(0, self.cancelled - 1)
        return self.timers[0].when if self.timers else None

    def fire_timers(self) -> None:
        now = time.monotonic()
        while (when := self._next_timer()) is not None and when <= now:
            heapq.heappop(self.timers).callback()

    # -- waiting -------------------------------------------------------------------------------
    def wait(self, until: float) -> list[tuple[Source, Any, int]]:
        """Sleep until a descriptor is ready, a timer is due or ``until``; return ready
        ``(source, data, fd)`` in priority order (signals drained, reported once)."""
        due = self._next_timer()
        wake = until if due is None else min(until, due)
        events = self.selector.select(max(0.0, wake - time.monotonic()))
        ready = sorted(((key.data[0], key.data[1], key.fd) for key, _ in events), key=lambda e: e[0])
        if any(source is Source.SIGNAL for source, _, _ in ready):
            self._drain_signal_pipe()
        return ready

    def close(self) -> None:
        self.restore_signals()
        self.selector.close()
        for fd in self.signal_pipe:
            os.close(fd)
