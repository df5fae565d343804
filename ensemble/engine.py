"""The execution engine: one event loop that packs runs onto resources and records everything.

The same engine runs ``execute_local`` and (later) each batch allocation; it
knows a :class:`~ensemble.providers.Provider` (the nodes it has) and a
:class:`~ensemble.launchers.Launcher` (how a step starts) only through their
small interfaces.

The loop never busy-polls: it sleeps in ``epoll`` on the pidfds of its
children, its hook workers' pipes and a signal pipe, waking for the nearest
timeout or the inbox poll (every :data:`INBOX_POLL_SECONDS`).  All database
changes of one loop turn are committed in one transaction.
"""
from __future__ import annotations

import heapq
import logging
import os
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ensemble import control
from ensemble.config import EnsembleConfig
from ensemble.errors import EnsembleError
from ensemble.hooks import ENV_MANAGER, run_env
from ensemble.hookworker import HookPool
from ensemble.launchers import Launcher
from ensemble.lease import HEARTBEAT_SECONDS, HOST, Lease, acquire
from ensemble.procs import Child, kill_tagged, reap, signal_group, spawn
from ensemble.providers import Provider
from ensemble.resources import Placement, Pool
from ensemble.rundir import RunDirPreparer, step_cwd
from ensemble.spec import Step, to_json
from ensemble.status import RunStatus
from ensemble.store import Store, WriteBatch

INBOX_POLL_SECONDS = 0.5
FETCH_BATCH = 512
SCAN_WINDOW = 1024
log = logging.getLogger("ensemble.engine")


@dataclass(frozen=True)
class EngineOptions:
    """How one execution behaves (arguments of ``execute_local``)."""

    timeout: float | None = None
    max_concurrency: int | None = None
    parallelism: int = 1
    allow_multiple: bool = False
    kill_grace: float = 3.0


class Phase(Enum):
    WAITING = "waiting"
    PREP = "prep_run"
    STEP = "step"
    POST = "post_run"


@dataclass
class RunState:
    """A run this manager has in memory."""

    id: int
    sample: dict[str, Any]
    steps: list[Step]
    run_dir: str
    step: int
    restarts: int
    attempts: int
    claimed: bool = False
    prepared: bool = False
    phase: Phase = Phase.WAITING
    child: Child | None = None
    placement: Placement | None = None
    attempt_started: float = 0.0
    kill_reason: str | None = None


@dataclass(order=True)
class Timer:
    when: float
    run_id: int = field(compare=False)
    attempt: int = field(compare=False)
    kind: str = field(compare=False)


class Engine:
    """Executes one ensemble until it drains, is stopped, or its time is up."""

    def __init__(self, setup_dir: Path, provider: Provider, launcher: Launcher, options: EngineOptions) -> None:
        self.setup_dir = Path(setup_dir)
        self.options = options
        self.launcher = launcher
        self.store = Store.open(self.setup_dir)
        self.config = EnsembleConfig.from_dict(self.store.get_meta("config"))
        self.pool = Pool(provider.nodes())
        self.preparer = RunDirPreparer(self.config)
        self.batch = WriteBatch()
        self.selector = selectors.DefaultSelector()
        self.lease: Lease | None = None
        self.hooks: HookPool | None = None
        self.hook_names: frozenset[str] = frozenset()
        self.hook_waiters: dict[int, RunState | str] = {}
        self.runs: dict[int, RunState] = {}
        self.ready: deque[RunState] = deque()
        self.waiting: deque[RunState] = deque()
        self.cursor = 0
        self.exhausted = False
        self.timers: list[Timer] = []
        self.by_pidfd: dict[int, RunState] = {}
        self.inflight = 0
        self.stop_reason: str | None = None
        self.interrupting = False
        self.draining = False
        self.post_ensemble_done = False
        self.failed = 0
        self.generation = 0
        self.started = 0.0
        self.signal_received: int | None = None
        self.deadline = None if options.timeout is None else time.monotonic() + options.timeout * 60
        self.next_poll = 0.0
        self.next_heartbeat = 0.0
        self.base_env = dict(os.environ)

    # -- start and stop ------------------------------------------------------------------
    def run(self) -> int:
        """Execute; return 0 when done or stopped cleanly, 128+N after signal N."""
        try:
            self._acquire()
        except BaseException:
            self.selector.close()
            self.store.close()
            raise
        try:
            self._start()
            self._loop()
            if self.stop_reason is None:
                self._finish()
        finally:
            self._shutdown()
        return 128 + self.signal_received if self.signal_received else 0

    def _acquire(self) -> None:
        now = self.started = time.time()
        with self.store.transaction():
            self.lease, dead = acquire(self.store, self.options.allow_multiple)
            killed = kill_tagged([d["manager"] for d in dead if d["host"] == HOST])
            attempts, runs = self.store.recover_orphans(now)
            self.store.add_events([(None, "manager_started", {
                "manager": self.lease.manager, "cores": self.pool.total_cores, "gpus": self.pool.total_gpus,
                "recovered_attempts": attempts, "recovered_runs": runs, "killed_leftovers": killed})])
        log.info("manager %s started: %d cores, %d gpus; recovered %d interrupted attempts, killed %d leftovers",
                 self.lease.manager, self.pool.total_cores, self.pool.total_gpus, attempts, killed)

    def _start(self) -> None:
        self.base_env[ENV_MANAGER] = self.lease.manager
        self._install_signals()
        control.ingest(self.store, self.config, self.setup_dir)
        self.generation = self.store.generation()
        self.failed = self.store.count_failed()
        if self.config.app_interface:
            self.hooks = HookPool(self.config.app_interface, str(self.setup_dir), self.lease.manager,
                                  self.config.root_dir, max(1, self.options.parallelism))
            self.hook_names = self.hooks.start()
            for worker in self.hooks.workers:
                self.selector.register(worker.fd, selectors.EVENT_READ, "hook")
            if "prep_ensemble" in self.hook_names and not self.store.get_meta("prep_ensemble_done"):
                self._call_ensemble_hook_blocking("prep_ensemble")

    def _install_signals(self) -> None:
        read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(read, selectors.EVENT_READ, "signal")
        self.signal_pipe = (read, write)
        if threading.current_thread() is not threading.main_thread():
            self.saved_signals = {}
            return
        self.saved_wakeup = signal.set_wakeup_fd(write)
        self.saved_signals = {sig: signal.signal(sig, self._on_signal)
                              for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signal_received = signum

    def _restore_signals(self) -> None:
        for sig, handler in self.saved_signals.items():
            signal.signal(sig, handler)
        if self.saved_signals:
            signal.set_wakeup_fd(self.saved_wakeup)
        for fd in self.signal_pipe:
            os.close(fd)

    def _shutdown(self) -> None:
        """Whatever happened: no process left, no run left claimed, lease released."""
        now = time.time()
        for run in list(self.runs.values()):
            if run.child is not None:
                signal_group(run.child.pid, signal.SIGKILL)
                code = reap(run.child)
                self._end_attempt(run, now, code, "interrupted")
            if run.claimed:
                self.batch.unclaim(run.id, run.step, run.restarts)
        if self.hooks is not None:
            self.hooks.stop()
        kill_tagged([self.lease.manager])
        self.batch.event(None, "manager_stopped", {"manager": self.lease.manager, "reason": self.stop_reason})
        self.batch.flush(self.store)
        with self.store.transaction():
            self.store.drop_lease(self.lease.manager)
        control.ingest(self.store, self.config, self.setup_dir)
        self._restore_signals()
        self.selector.close()
        self.store.close()
        log.info("manager %s stopped (%s)", self.lease.manager, self.stop_reason or "drained")

    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            if self.stop_reason is None:
                self._launch()
            self.batch.flush(self.store)
            if not self.draining and not self.inflight:
                if self.stop_reason is not None:
                    return
                if self._queue_empty():
                    if not self._begin_drain():
                        return
                    continue
            self._wait()

    def _wait(self) -> None:
        now = time.monotonic()
        wake = self.next_poll
        if self.timers:
            wake = min(wake, self.timers[0].when)
        if self.deadline is not None and not self.interrupting:
            wake = min(wake, self.deadline)
        events = self.selector.select(max(0.0, wake - now))
        # What a step or a hook posted (stop, dequeue, a result) applies before its end is handled.
        if any(key.data in ("child", "hook") for key, _ in events) and control.pending(self.setup_dir):
            self._poll_inbox()
        for key, _ in events:
            if key.data == "child":
                self._on_exit(self.by_pidfd.pop(key.fd))
            elif key.data == "hook":
                self._on_hook_output(key.fd)
            elif key.data == "signal":
                self._drain_signal_pipe()
        now = time.monotonic()
        self._fire_timers(now)
        if now >= self.next_poll:
            self._poll_inbox()
        if self.deadline is not None and now >= self.deadline and not self.interrupting:
            self._interrupt("timeout")

    def _drain_signal_pipe(self) -> None:
        try:
            while os.read(self.signal_pipe[0], 512):
                pass
        except BlockingIOError:
            pass
        if self.signal_received and not self.interrupting:
            self._interrupt("signal")

    def _poll_inbox(self) -> None:
        self.next_poll = time.monotonic() + INBOX_POLL_SECONDS
        applied = control.ingest(self.store, self.config, self.setup_dir)
        generation = self.store.generation()
        if generation != self.generation or applied.changed:
            self.generation = generation
            self._reconcile()
            stop = self.store.get_meta("stop_requested")
            if stop is not None and stop > self.started and self.stop_reason is None:
                self._stop("stop requested")
        if time.monotonic() >= self.next_heartbeat:
            self.next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
            with self.store.transaction():
                self.store.heartbeat(self.lease.manager)

    def _stop(self, reason: str) -> None:
        """Launch nothing new; runs in flight finish normally."""
        log.info("stopping: %s", reason)
        self.stop_reason = reason
        self.batch.event(None, "stopping", {"reason": reason})
        for run in list(self.waiting):
            self.runs.pop(run.id, None)
        self.waiting.clear()
        for run in list(self.ready):
            self._release_claim(run)
        self.ready.clear()

    def _interrupt(self, reason: str) -> None:
        """Stop and kill every running step; their attempts are recorded as interrupted."""
        self._stop(reason)
        self.interrupting = True
        for run in list(self.runs.values()):
            if run.phase is Phase.STEP:
                self._kill(run, "interrupted")
        if self.hooks is not None:
            self.hooks.kill_busy()

    # -- picking and launching ------------------------------------------------------------
    def _queue_empty(self) -> bool:
        self._refill()
        return not self.waiting and not self.ready

    def _refill(self) -> None:
        if len(self.waiting) >= FETCH_BATCH // 2 or self.exhausted:
            return
        self.batch.flush(self.store)
        ids = [i for i in self.store.queued_ids(self.cursor, FETCH_BATCH) if i not in self.runs]
        if not ids:
            self.exhausted = True
            return
        self.cursor = ids[-1]
        for run in self._load_runs(ids):
            self.runs[run.id] = run
            self.waiting.append(run)

    def _load_runs(self, ids: list[int]) -> list[RunState]:
        """Fresh in-memory states of runs from the database (with their attempt counts)."""
        counts = self.store.attempt_counts(ids)
        return [RunState(row["id"], row["sample"], [Step.from_dict(s) for s in row["steps"]], row["run_dir"],
                         row["step"], row["restarts"], counts.get(row["id"], 0)) for row in self.store.runs(ids)]

    def _reconcile(self) -> None:
        """Runs changed outside the loop (dequeue, requeue, add): refresh what is in memory."""
        for run in list(self.waiting):
            self.runs.pop(run.id, None)
        self.waiting.clear()
        self.cursor, self.exhausted = 0, False
        claimed = [r for r in self.runs.values() if r.claimed]
        for run_id, status in self.store.statuses([r.id for r in claimed]).items():
            if status is not RunStatus.KILLED:
                continue
            run = self.runs[run_id]
            if run.phase is Phase.STEP:
                self._kill(run, "dequeued")
            elif run in self.ready:
                self.ready.remove(run)
                self._release_claim(run)
            else:
                run.kill_reason = "dequeued"
        self.failed = self.store.count_failed()
        self._check_failed_limit()

    def _launch(self) -> None:
        for run in list(self.ready):
            if self._try_place(run):
                self.ready.remove(run)
        limit = self.options.max_concurrency
        chosen: list[tuple[RunState, Placement | None]] = []
        full: set[tuple[int, int, int]] = set()
        self._refill()
        scanned = 0
        for run in list(self.waiting):
            if scanned >= SCAN_WINDOW or (limit is not None and self.inflight + len(chosen) >= limit):
                break
            scanned += 1
            if not self.pool.any_free():
                break
            placement = None
            if run.step < len(run.steps):
                step = run.steps[run.step]
                shape = (step.tasks, step.cores_per_task, step.gpus_per_task)
                if shape in full or not self._fits_ever(run):
                    continue
                placement = self.pool.allocate(*shape)
                if placement is None:
                    full.add(shape)
                    continue
            self.waiting.remove(run)
            chosen.append((run, placement))
        if chosen:
            self._claim_and_start(chosen)

    def _fits_ever(self, run: RunState) -> bool:
        """Fail (and drop from the queue) a run with a step larger than the whole allocation.

        With several managers the run is only skipped: another manager may be large enough.
        """
        for k, step in enumerate(run.steps[run.step:], start=run.step):
            if not self.pool.can_ever_fit(step.tasks, step.cores_per_task, step.gpus_per_task):
                message = (f"step {k} needs {step.tasks} tasks x {step.cores_per_task} cores x "
                           f"{step.gpus_per_task} gpus; the allocation has {self.pool.total_cores} cores and "
                           f"{self.pool.total_gpus} gpus on {len(self.pool.nodes)} node(s): it can never fit")
                self.waiting.remove(run)
                if self.options.allow_multiple:
                    log.warning("run %d left queued for a larger manager: %s", run.id, message)
                    self.runs.pop(run.id, None)
                    return False
                self.batch.claim(self.lease.manager, run.id)
                self._claimed(run)
                self._complete(run, RunStatus.FAILURE, message)
                return False
        return True

    def _claim_and_start(self, chosen: list[tuple[RunState, Placement | None]]) -> None:
        self.post_ensemble_done = False
        if self.options.allow_multiple:
            self.batch.flush(self.store)
            with self.store.transaction():
                taken = set(self.store.claim(self.lease.manager, [r.id for r, _ in chosen]))
            chosen = self._refreshed(chosen, taken)
        else:
            taken = {r.id for r, _ in chosen}
            for run, _ in chosen:
                self.batch.claim(self.lease.manager, run.id)
        for run, placement in chosen:
            if run.id not in taken:
                if placement is not None:
                    self.pool.release(placement)
                self.runs.pop(run.id, None)
                continue
            self._claimed(run)
            self._advance(run, placement)

    def _refreshed(self, chosen: list[tuple[RunState, Placement | None]],
                   taken: set[int]) -> list[tuple[RunState, Placement | None]]:
        """With several managers, another may have advanced a run since it was read: re-read the runs
        just claimed; one whose step changed gives back the placement taken for its old step."""
        ids = [r.id for r, _ in chosen if r.id in taken]
        fresh = {run.id: run for run in self._load_runs(ids)} if ids else {}
        out = []
        for run, placement in chosen:
            new = fresh.get(run.id)
            if new is not None and (new.step, new.restarts) != (run.step, run.restarts):
                new.prepared = new.step > 0
                if placement is not None:
                    self.pool.release(placement)
                placement = None
            if new is not None:
                self.runs[run.id] = run = new
            out.append((run, placement))
        return out

    def _claimed(self, run: RunState) -> None:
        run.claimed = True
        self.inflight += 1

    def _advance(self, run: RunState, placement: Placement | None) -> None:
        """Move a newly claimed run on: prepare it, then prep_run, its step, or post_run."""
        if run.step >= len(run.steps):
            self._post_run(run)
            return
        if placement is None:
            self.ready.append(run)
            return
        if run.step == 0 and not run.prepared:
            if not self._prepare(run):
                self.pool.release(placement)
                return
            if "prep_run" in self.hook_names:
                run.placement = placement
                self._call_run_hook(run, Phase.PREP)
                return
        self._start_step(run, placement)

    def _try_place(self, run: RunState) -> bool:
        step = run.steps[run.step]
        placement = self.pool.allocate(step.tasks, step.cores_per_task, step.gpus_per_task)
        if placement is None:
            return False
        self._start_step(run, placement)
        return True

    def _prepare(self, run: RunState) -> bool:
        try:
            self.preparer.prepare(run.id, run.run_dir, run.sample)
        except Exception as exc:  # noqa: BLE001 - any failure to prepare fails this run only
            self._complete(run, RunStatus.FAILURE, f"preparing {run.run_dir} failed: {exc!r}")
            return False
        run.prepared = True
        return True

    def _start_step(self, run: RunState, placement: Placement) -> None:
        step = run.steps[run.step]
        cwd = step_cwd(run.run_dir, step.cwd)
        run.attempts += 1
        run.placement, run.phase, run.kill_reason = placement, Phase.STEP, None
        run.attempt_started = time.time()
        prefix = self.launcher.prefix(step, placement)
        argv = list(step.args)
        base = os.path.join(run.run_dir, f"ensemble.step{run.step}.attempt{run.attempts}")
        try:
            if step.cwd != ".":
                os.makedirs(cwd, exist_ok=True)
            if step.batch_script:
                argv[0] = self.preparer.render_script(argv[0], cwd, run.id, run.run_dir, run.sample,
                                                      shlex.join(prefix))
            command = self.launcher.command(step, placement, argv, step.batch_script)
            env = {**self.base_env, **self.launcher.env(step, placement),
                   **run_env(str(self.setup_dir), run.id, run.run_dir, run.sample),
                   "ENSEMBLE_STEP": str(run.step), "ENSEMBLE_ATTEMPT": str(run.attempts)}
            result: Child | Exception = spawn(command, cwd, env, base + ".out", base + ".err")
        except (OSError, EnsembleError) as exc:
            result = exc
        self._spawned(run, argv if isinstance(result, Exception) else command, result)

    def _spawned(self, run: RunState, command: list[str], result: Child | Exception) -> None:
        """A step's process started (or could not start): record the attempt, watch the process."""
        placement = run.placement.to_list()
        if not isinstance(result, Child):
            self.batch.start_attempt(run.id, run.step, run.attempts, self.lease.manager, HOST, None,
                                     run.attempt_started, command, placement)
            self.pool.release(run.placement)
            run.placement = None
            self._step_done(run, time.time(), None, "launch_error", f"step {run.step} could not start: {result}")
            return
        run.child = result
        self.batch.start_attempt(run.id, run.step, run.attempts, self.lease.manager, HOST, result.pid,
                                 run.attempt_started, command, placement)
        self.by_pidfd[result.pidfd] = run
        self.selector.register(result.pidfd, selectors.EVENT_READ, "child")
        timeout = run.steps[run.step].timeout
        if timeout:
            heapq.heappush(self.timers, Timer(time.monotonic() + timeout * 60, run.id, run.attempts, "timeout"))
        if run.kill_reason is not None:
            self._signal_kill(run)

    # -- exits, timeouts, kills ---------------------------------------------------------------
    def _kill(self, run: RunState, reason: str) -> None:
        """Kill a running step's process group (SIGTERM, then SIGKILL after the grace period).

        A step already being killed (its timeout) keeps dying; a dequeue meanwhile still makes
        the outcome "killed", so the timeout cannot restart a dequeued run.
        """
        if run.kill_reason is not None:
            if reason == "dequeued":
                run.kill_reason = reason
            return
        run.kill_reason = reason
        if run.child is not None:
            self._signal_kill(run)

    def _signal_kill(self, run: RunState) -> None:
        signal_group(run.child.pid, signal.SIGTERM)
        heapq.heappush(self.timers, Timer(time.monotonic() + self.options.kill_grace, run.id, run.attempts, "kill"))

    def _fire_timers(self, now: float) -> None:
        while self.timers and self.timers[0].when <= now:
            timer = heapq.heappop(self.timers)
            run = self.runs.get(timer.run_id)
            if run is None or run.child is None or run.attempts != timer.attempt:
                continue
            if timer.kind == "timeout":
                self._kill(run, "timeout")
            else:
                signal_group(run.child.pid, signal.SIGKILL)

    def _on_exit(self, run: RunState) -> None:
        self.selector.unregister(run.child.pidfd)
        code = reap(run.child)
        run.child = None
        end = time.time()
        self.pool.release(run.placement)
        run.placement = None
        reason = run.kill_reason
        if reason is not None:
            outcome = {"timeout": "timeout", "dequeued": "killed", "interrupted": "interrupted"}[reason]
        elif code == 0:
            outcome = "success"
        elif code > 0 and code in self.config.abort_on:
            outcome = "aborted"
        else:
            outcome = "failure"
        self._step_done(run, end, code, outcome, None)

    def _end_attempt(self, run: RunState, end: float, code: int | None, outcome: str) -> None:
        exit_code = code if code is not None and code >= 0 else None
        sig = -code if code is not None and code < 0 else None
        self.batch.end_attempt(run.id, run.attempts, end, exit_code, sig, outcome)

    def _step_done(self, run: RunState, end: float, code: int | None, outcome: str, message: str | None) -> None:
        self._end_attempt(run, end, code, outcome)
        k = run.step
        if outcome == "interrupted" or outcome == "killed":
            self._release_claim(run)
        elif outcome == "success":
            run.step += 1
            self.batch.progress(run.id, run.step, run.restarts)
            if run.step < len(run.steps):
                self._requeue_front(run)
            else:
                self._post_run(run)
        elif outcome == "aborted":
            self._complete(run, RunStatus.ABORTED, f"step {k} exited with {code}, listed in abort_on")
        elif outcome == "launch_error":
            self._complete(run, RunStatus.FAILURE, message)
        else:
            why = message or (f"step {k} timed out after {run.steps[k].timeout} min" if outcome == "timeout"
                              else f"step {k} {_describe(code)}")
            self._retry_or_fail(run, why)

    def _retry_or_fail(self, run: RunState, why: str) -> None:
        limit = self.config.max_restarts
        if limit is None or run.restarts < limit:
            run.restarts += 1
            self.batch.progress(run.id, run.step, run.restarts)
            self.batch.event(run.id, "restart", {"restarts": run.restarts, "why": why})
            self._requeue_front(run)
        else:
            self._complete(run, RunStatus.FAILURE, why)

    def _requeue_front(self, run: RunState) -> None:
        if self.stop_reason is not None:
            self._release_claim(run)
            return
        run.phase = Phase.WAITING
        if not self._try_place(run):
            self.ready.appendleft(run)

    # -- hooks ---------------------------------------------------------------------------------
    def _post_run(self, run: RunState) -> None:
        if "post_run" in self.hook_names:
            self._call_run_hook(run, Phase.POST)
        else:
            self._complete(run, RunStatus.SUCCESS, None)

    def _call_run_hook(self, run: RunState, phase: Phase) -> None:
        run.phase = phase
        request = self.hooks.submit(phase.value, os.path.join(run.run_dir, f"ensemble.{phase.value}.log"),
                                    run.id, run.run_dir, run.sample)
        self.hook_waiters[request] = run

    def _call_ensemble_hook_blocking(self, hook: str) -> None:
        request = self.hooks.submit(hook, str(self.setup_dir / "logs" / f"{hook}.log"))
        while True:
            for key, _ in self.selector.select():
                if key.data == "signal":
                    self._drain_signal_pipe()
                elif key.data == "hook":
                    for reply in self._hook_replies(key.fd):
                        if reply.get("id") == request:
                            self._ensemble_hook_done(hook, reply)
                            return

    def _ensemble_hook_done(self, hook: str, reply: dict[str, Any]) -> None:
        if reply["ok"]:
            if hook == "prep_ensemble":
                with self.store.transaction():
                    self.store.set_meta("prep_ensemble_done", time.time())
            self.batch.event(None, hook, None)
            return
        log.error("%s failed: %s\n%s", hook, reply["error"], reply.get("traceback", ""))
        self.batch.event(None, f"{hook}_failed", {"error": reply["error"]})
        if hook == "prep_ensemble":
            raise EnsembleError(f"prep_ensemble failed: {reply['error']} (see {self.setup_dir}/logs/{hook}.log)")

    def _hook_replies(self, fd: int) -> list[dict[str, Any]]:
        replies = []
        for reply in self.hooks.readable(fd):
            if "replaced" in reply:
                self.selector.unregister(reply["replaced"])
                self.selector.register(reply["fd"], selectors.EVENT_READ, "hook")
            else:
                replies.append(reply)
        return replies

    def _on_hook_output(self, fd: int) -> None:
        for reply in self._hook_replies(fd):
            waiter = self.hook_waiters.pop(reply["id"], None)
            if waiter == "post_ensemble":
                self._ensemble_hook_done("post_ensemble", reply)
                self._end_drain()
            elif isinstance(waiter, RunState):
                self._run_hook_done(waiter, reply)

    def _run_hook_done(self, run: RunState, reply: dict[str, Any]) -> None:
        """A prep_run or post_run call ended: start the step, complete the run, or give it back."""
        ok, phase = reply["ok"], run.phase
        give_back = (run.kill_reason == "dequeued" or (self.interrupting and not ok)
                     or (phase is Phase.PREP and self.stop_reason is not None))
        if phase is Phase.PREP and (give_back or not ok):
            self.pool.release(run.placement)
        if give_back:
            self._release_claim(run)
        elif not ok:
            self._complete(run, RunStatus.FAILURE, f"{phase.value} failed: {reply['error']}")
        elif phase is Phase.PREP:
            self._start_step(run, run.placement)
        else:
            value = reply.get("value")
            self._complete(run, RunStatus.SUCCESS, None, None if value is None else to_json(value, "post_run"))

    # -- completion -----------------------------------------------------------------------------
    def _complete(self, run: RunState, status: RunStatus, message: str | None, result_json: str | None = None) -> None:
        self.batch.complete(run.id, status, run.step, run.restarts, message, result_json)
        self.batch.event(run.id, status.label, None if message is None else {"message": message})
        self._forget(run)
        if status is RunStatus.FAILURE:
            self.failed += 1
            self._check_failed_limit()

    def _check_failed_limit(self) -> None:
        limit = self.config.max_failed_runs
        if limit is not None and self.failed > limit and self.stop_reason is None:
            self._stop(f"max_failed_runs exceeded: {self.failed} failed runs > {limit}")

    def _release_claim(self, run: RunState) -> None:
        """Give a run back to the queue untouched (interrupted, stopped, dequeued then requeued)."""
        self.batch.unclaim(run.id, run.step, run.restarts)
        self._forget(run)
        self.cursor, self.exhausted = min(self.cursor, run.id - 1), False

    def _forget(self, run: RunState) -> None:
        if run.claimed:
            run.claimed = False
            self.inflight -= 1
        self.runs.pop(run.id, None)

    # -- draining ---------------------------------------------------------------------------------
    def _begin_drain(self) -> bool:
        """The queue is empty: call post_ensemble (it may add runs); return False when all is done.

        post_ensemble runs once per drain: again only after runs have been launched since.
        """
        if self.post_ensemble_done or self.store.count_queued():
            return False
        if "post_ensemble" in self.hook_names:
            self.draining = True
            request = self.hooks.submit("post_ensemble", str(self.setup_dir / "logs" / "post_ensemble.log"))
            self.hook_waiters[request] = "post_ensemble"
            return True
        return False

    def _end_drain(self) -> None:
        self.draining = False
        self.post_ensemble_done = True
        control.ingest(self.store, self.config, self.setup_dir)
        self._reconcile()

    def _finish(self) -> None:
        """Everything ran: run the on_completion command if there is one."""
        self.batch.flush(self.store)
        if self.store.count_queued():
            return
        spec = self.store.get_meta("on_completion")
        if not spec:
            return
        logs = self.setup_dir / "logs"
        try:
            with open(spec.get("stdout") or logs / "on_completion.out", "ab") as out, \
                    open(spec.get("stderr") or logs / "on_completion.err", "ab") as err:
                code = subprocess.run(spec["args"], cwd=spec["cwd"], stdout=out, stderr=err, env=self.base_env,
                                      start_new_session=True).returncode
            self.batch.event(None, "on_completion", {"args": spec["args"], "exit_code": code})
        except OSError as exc:
            log.error("on_completion %s could not run: %s", spec["args"], exc)
            self.batch.event(None, "on_completion_failed", {"args": spec["args"], "error": str(exc)})


def _describe(code: int | None) -> str:
    if code is None:
        return "did not start"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with {code}"

