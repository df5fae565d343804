"""The hook driver: the engine's side of the hook worker processes.

Requests go to a :class:`~ensemble.engine.hookworker.HookPool`; replies come back as
callbacks.  A worker that dies fails only the request it was serving; it is
respawned from a timer (never inside event handling), with exponential backoff
while respawns fail.  While no worker can start, requests fail with the
worker's own error output (the traceback of a broken interface) in the reply.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ensemble.engine.hookworker import HookPool
from ensemble.engine.reactor import Reactor, Source, Timer

RESPAWN_FIRST = 0.05
RESPAWN_MAX = 30.0
log = logging.getLogger("ensemble.engine")
Reply = dict[str, Any]


class HookDriver:
    """Submits hook calls and routes replies; respawns dead workers with backoff."""

    def __init__(self, pool: HookPool, reactor: Reactor) -> None:
        self.pool = pool
        self.reactor = reactor
        self.names: frozenset[str] = frozenset()
        self.callbacks: dict[int, Callable[[Reply], None]] = {}
        self.dead: set[int] = set()
        self.failures = 0
        self.respawn_timer: Timer | None = None

    def start(self) -> frozenset[str]:
        self.names = self.pool.start()
        for worker in self.pool.workers:
            self.reactor.watch(worker.fd, Source.HOOK, None)
        return self.names

    def submit(self, hook: str, log_path: str, callback: Callable[[Reply], None], run_id: int | None = None,
               run_dir: str | None = None, sample: dict | None = None) -> int:
        request = self.pool.submit(hook, log_path, run_id, run_dir, sample)
        self.callbacks[request] = callback
        if not self.pool.alive:
            self._schedule_respawn()
        return request

    def on_readable(self, fd: int) -> None:
        for reply in self.pool.readable(fd):
            if "dead" in reply:
                self.reactor.unwatch(reply["dead"])
                self.dead.add(reply["index"])
                self._schedule_respawn()
            else:
                self._deliver(reply)

    def _deliver(self, reply: Reply) -> None:
        callback = self.callbacks.pop(reply["id"], None)
        if callback is not None:
            callback(reply)

    def _schedule_respawn(self) -> None:
        if self.respawn_timer is not None and not self.respawn_timer.cancelled:
            return
        delay = 0.0 if not self.failures else min(RESPAWN_MAX, RESPAWN_FIRST * 2 ** self.failures)
        self.respawn_timer = self.reactor.call_later(delay, self._respawn)

    def _respawn(self) -> None:
        self.respawn_timer = None
        for index in sorted(self.dead):
            try:
                worker = self.pool.replace(index)
            except RuntimeError as exc:
                self.failures += 1
                log.error("hook worker could not be restarted (attempt %d): %s", self.failures, exc)
                if not self.pool.alive:
                    for reply in self.pool.fail_backlog(f"no hook worker could start: {exc}"):
                        self._deliver(reply)
                if self.callbacks:
                    self._schedule_respawn()
                return
            self.dead.discard(index)
            self.failures = 0
            self.reactor.watch(worker.fd, Source.HOOK, None)

    def kill_busy(self) -> None:
        self.pool.kill_busy()

    def stop(self) -> None:
        self.reactor.cancel(self.respawn_timer)
        self.pool.stop()
