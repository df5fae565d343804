"""Steps as jobs of the enclosing Flux instance, through flux-python's job API.

Nothing here polls and nothing runs in a thread of its own: the Flux handle's descriptor
(``flux_pollfd``) is one channel of the engine's reactor (:meth:`Executor.channels`).  When it is
readable the Flux reactor runs without blocking (``FLUX_REACTOR_NOWAIT``), which calls the
callbacks of the futures: a submission's answer (the job id, or why Flux refused the job), then
each event of the job's eventlog, until ``finish`` (or ``clean`` for a job that never ran) ends
the attempt with the exit code :func:`~ensemble.flux.results.job_end` gives.

Submission is asynchronous and in bulk: :meth:`start` queues a jobspec, :meth:`flush` sends all
of a turn's at once.  Flux places each job; the engine admits steps against the instance's cores
and GPUs (:class:`~ensemble.flux.instance.FluxProvider`) and this executor adds a limit on jobs
submitted but not yet started (:data:`AHEAD`).
"""
from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ensemble.executors.base import Executor, Handle, Launch
from ensemble.flux.bindings import import_flux
from ensemble.flux.jobspec import jobspec
from ensemble.flux.results import job_end

#: Jobs submitted but not started at most (``ENSEMBLE_FLUX_AHEAD`` overrides): Flux accepted
#: 210-275 submissions/s on the test machine, so this is about half a second of submissions.
AHEAD = 128
#: Seconds :meth:`FluxExecutor.settle` waits for cancelled jobs to end.
SETTLE_TIMEOUT = 30.0
#: Flux reactor turns one readable event may run before returning to the engine's loop.
PUMP_TURNS = 64
log = logging.getLogger("ensemble.executors")


def flux_ahead() -> int:
    value = os.environ.get("ENSEMBLE_FLUX_AHEAD")
    return int(value) if value else AHEAD


@dataclass(eq=False)
class FluxHandle(Handle):
    """One attempt as a Flux job: its jobspec, then its id and eventlog."""

    tag: str
    spec: str
    job: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    code: int | None = None
    error: str | None = None
    started: bool = False
    #: A signal asked for before the job id came back (sent once it does).
    wanted: int | None = None
    futures: list[Any] = field(default_factory=list)


class FluxExecutor(Executor):
    """Starts every attempt as a Flux job of the instance at ``FLUX_URI``."""

    name = "flux"

    def __init__(self, flux: ModuleType | None = None, ahead: int | None = None) -> None:
        self.flux = flux or import_flux()
        self.handle = self.flux.Flux()
        self.fd = self.handle.pollfd()
        self.ahead = ahead or flux_ahead()
        self.outbox: list[FluxHandle] = []
        self.unstarted: set[FluxHandle] = set()
        self.ended: list[FluxHandle] = []
        self.new_ids: list[tuple[Handle, str]] = []
        self.killed: set[FluxHandle] = set()
        self.requests: set[Any] = set()

    def describe(self) -> dict[str, object]:
        return {"executor": self.name, "flux_uri": os.environ.get("FLUX_URI"), "flux_ahead": self.ahead}

    # -- starting ------------------------------------------------------------------------------------
    def start(self, launch: Launch) -> FluxHandle:
        if launch.logs is not None:  # the job shell opens the files itself
            for fd in launch.logs:
                os.close(fd)
        step, shares = launch.step, launch.placement.shares
        tasks, cores, gpus = (1, 1, 0) if step.batch_script else (step.tasks, step.cores_per_task, step.gpus_per_task)
        spec = jobspec(launch.argv, tasks, cores, gpus, step.timeout or 0, launch.cwd,
                       {**self.base_env, **launch.env}, launch.stdout, launch.stderr,
                       nodes=len(shares) if len(shares) > 1 and not step.batch_script else None, name=launch.tag)
        handle = FluxHandle(launch.tag, _dumps(spec))
        self.outbox.append(handle)
        self.unstarted.add(handle)
        return handle

    def flush(self) -> None:
        """Send the turn's submissions (answers come back on the channel)."""
        for handle in self.outbox:
            future = self.flux.job.submit_async(self.handle, handle.spec)
            handle.futures.append(future)
            future.then(self._submitted, handle)
        self.outbox.clear()

    def start_room(self) -> int | None:
        return max(0, self.ahead - len(self.unstarted))

    # -- the channel ---------------------------------------------------------------------------------
    def fileno(self, handle: Handle) -> None:
        return None

    def channels(self) -> list[int]:
        return [self.fd]

    def on_readable(self, fd: int) -> list[Handle]:
        self._pump()
        ended, self.ended = self.ended, []
        return ended

    def take_job_ids(self) -> list[tuple[Handle, str]]:
        ids, self.new_ids = self.new_ids, []
        return ids

    def _pump(self) -> None:
        """Run the Flux reactor without blocking until the handle has nothing more to read."""
        flux, reactor = self.flux, self.handle.get_reactor()
        with self.handle.in_reactor():
            for _ in range(PUMP_TURNS):
                self.handle.flux_reactor_run(reactor, flux.constants.FLUX_REACTOR_NOWAIT)
                if not self.handle.pollevents() & flux.constants.FLUX_POLLIN:
                    break
        self.handle.raise_if_exception()

    def _submitted(self, future: Any, handle: FluxHandle) -> None:
        try:
            handle.job = future.get_id()
        except OSError as exc:
            self._end(handle, -signal.SIGKILL, f"flux refused the job: {exc.strerror or exc}")
            return
        self.new_ids.append((handle, job_text(self.flux, handle.job)))
        watch = self.flux.job.event_watch_async(self.handle, handle.job)
        handle.futures.append(watch)
        watch.then(self._event, handle)
        if handle.wanted is not None:
            self._send(handle, handle.wanted)

    def _event(self, future: Any, handle: FluxHandle) -> None:
        event = future.get_event()
        if event is None:  # the eventlog ended without an end: the job is gone
            self._end(handle, -signal.SIGKILL, handle.error)
            return
        handle.events.append({"name": event.name, "context": event.context})
        if event.name == "start":
            handle.started = True
            self.unstarted.discard(handle)
        end = job_end(handle.events)
        if end is not None:
            future.cancel(stop=True)
            self._end(handle, end.code, end.start_error)

    def _end(self, handle: FluxHandle, code: int, error: str | None) -> None:
        if handle.code is not None:
            return
        handle.code, handle.error = code, error
        handle.futures.clear()
        self.unstarted.discard(handle)
        self.killed.discard(handle)
        self.ended.append(handle)

    # -- signals -------------------------------------------------------------------------------------
    def exited(self, handle: Handle) -> bool:
        return handle.code is not None

    def signal(self, handle: Handle, sig: int) -> bool:
        """SIGKILL (or any signal to a job not yet running) cancels the job; other signals go to
        its tasks.  Before its id is known the signal waits for it."""
        if handle.code is not None:
            return False
        if sig == signal.SIGKILL:
            self.killed.add(handle)
        if handle.job is None:
            handle.wanted = sig if handle.wanted != signal.SIGKILL else handle.wanted
            return True
        self._send(handle, sig)
        return True

    def _send(self, handle: FluxHandle, sig: int) -> None:
        job = self.flux.job
        if sig == signal.SIGKILL or not handle.started:
            future = job.cancel_async(self.handle, handle.job, f"ensemble: {signal.Signals(sig).name}")
        else:
            future = job.kill_async(self.handle, handle.job, sig)
        self.requests.add(future)
        future.then(self._answered)

    def _answered(self, future: Any) -> None:
        self.requests.discard(future)
        try:
            future.get()
        except OSError as exc:  # the job ended meanwhile
            log.debug("flux kill/cancel: %s", exc)

    def reap(self, handle: Handle) -> int:
        return handle.code if handle.code is not None else -signal.SIGKILL

    def start_error(self, handle: Handle) -> str | None:
        return handle.error

    def settle(self) -> None:
        """Wait (at most :data:`SETTLE_TIMEOUT`) until the cancelled jobs have ended in Flux."""
        end = time.monotonic() + SETTLE_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self.fd, selectors.EVENT_READ)
            while self.killed and (left := end - time.monotonic()) > 0:
                selector.select(min(left, 1.0))
                self._pump()
        if self.killed:
            log.error("%d flux jobs did not end within %gs of their cancel: %s", len(self.killed), SETTLE_TIMEOUT,
                      sorted(job_text(self.flux, h.job) for h in self.killed if h.job is not None))

    def kill_leftovers(self, managers: list[str]) -> int:
        """Cancel the pending and running jobs whose name is a tag of one of ``managers``."""
        if not managers:
            return 0
        prefixes = tuple(f"{m}/" for m in managers)
        jobs = self.flux.job.JobList(self.handle, filters=["pending", "running"]).jobs()
        mine = [j for j in jobs if str(getattr(j, "name", "")).startswith(prefixes)]
        for info in mine:
            try:
                self.flux.job.cancel(self.handle, info.id, "ensemble: its manager died")
            except OSError as exc:
                log.debug("flux cancel of leftover %s: %s", info.id, exc)
        return len(mine)

    def close(self) -> None:
        self.settle()


def _dumps(spec: dict[str, Any]) -> str:
    return json.dumps(spec, separators=(",", ":"))


def job_text(flux: ModuleType, job: int) -> str:
    """A job id as Flux prints it, in ASCII (``f58plain``: ``fABC...``)."""
    return flux.job.JobID(job).f58plain
