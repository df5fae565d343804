"""Hooks and the end of the queue: prep_ensemble, prep_run/post_run replies, post_ensemble, on_completion."""
from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from ensemble.engine.hookdriver import HookDriver
from ensemble.engine.hookworker import HookPool
from ensemble.engine.reactor import Source
from ensemble.engine.runstate import EngineState, KillReason, Phase, RunState
from ensemble.errors import EnsembleError
from ensemble.spec import to_json
from ensemble.status import RunStatus
from ensemble.store.lease import HEARTBEAT_SECONDS

log = logging.getLogger("ensemble.engine")


@dataclass(frozen=True)
class EngineOptions:
    """How one execution behaves (arguments of ``execute_local``)."""

    timeout: float | None = None
    max_concurrency: int | None = None
    parallelism: int = 1
    allow_multiple: bool = False
    kill_grace: float = 3.0
    #: ``split``: ``.out`` and ``.err`` per attempt; ``combined``: one ``.log`` with both streams
    #: (one file creation less per attempt, for file systems where creations are expensive).
    log_layout: str = "split"
    #: Minutes before the end (the allocation's, or ``timeout``'s) after which nothing new starts.
    early_stop: float | None = None
    #: Only runs with ids ``low..high`` (both included): one task of a job array (``--run-range``).
    run_range: tuple[int, int] | None = None


class Drain:
    """Hook calls and draining; mixed into the engine (uses its recorder, reactor and queue)."""

    def run_deferred(self) -> None:
        while self.deferred:
            self.deferred.pop(0)()

    # -- hooks ----------------------------------------------------------------------------------
    def start_hooks(self) -> None:
        if not self.config.app_interface:
            return
        pool = HookPool(self.config.app_interface, str(self.setup_dir), self.lease.manager, self.config.root_dir,
                        max(1, self.options.parallelism), error_log=str(self.setup_dir / "logs" / "hook_workers.err"))
        self.hooks = HookDriver(pool, self.reactor)
        self.hook_names = self.hooks.start()
        if "prep_ensemble" in self.hook_names and not self.store.get_meta("prep_ensemble_done"):
            self.call_ensemble_hook_blocking("prep_ensemble")

    def call_ensemble_hook_blocking(self, hook: str) -> None:
        """Call an ensemble hook and wait (a signal kills the hook and interrupts the manager)."""
        replies: list[dict[str, Any]] = []
        self.hooks.submit(hook, str(self.setup_dir / "logs" / f"{hook}.log"), replies.append)
        while not replies:
            self.recorder.heartbeat()
            for source, _, fd in self.reactor.wait(time.monotonic() + HEARTBEAT_SECONDS):
                if source is Source.HOOK:
                    self.hooks.on_readable(fd)
                elif source is Source.CHANNEL:
                    self.on_channel(fd)
                elif self.reactor.signal_received and self.state is not EngineState.INTERRUPTING:
                    self.interrupt("signal")
            self.reactor.fire_timers()
        self.ensemble_hook_done(hook, replies[0])

    def ensemble_hook_done(self, hook: str, reply: dict[str, Any]) -> None:
        if reply["ok"]:
            if hook == "prep_ensemble":
                self.recorder.batch.event(None, hook, None)
                with self.recorder.guard(), self.store.transaction():
                    self.recorder.fence()
                    self.store.set_meta("prep_ensemble_done", time.time())
            else:
                self.recorder.batch.event(None, hook, None)
            return
        if self.state is EngineState.INTERRUPTING:
            log.info("%s interrupted", hook)
            return
        log.error("%s failed: %s\n%s", hook, reply["error"], reply.get("traceback", ""))
        self.recorder.batch.event(None, f"{hook}_failed", {"error": reply["error"]})
        if hook == "prep_ensemble":
            raise EnsembleError(f"prep_ensemble failed: {reply['error']} (see {self.setup_dir}/logs/{hook}.log)")

    def run_hook_done(self, run: RunState, reply: dict[str, Any]) -> None:
        """A prep_run or post_run call ended: start the step, complete the run, or give it back."""
        ok, phase = reply["ok"], run.phase
        give_back = (run.kill_reason is KillReason.DEQUEUED or (self.state is EngineState.INTERRUPTING and not ok)
                     or (phase is Phase.PREP and not self.state.launching))
        if phase is Phase.PREP and (give_back or not ok):
            self.pool.release(run.placement)
            run.placement = None
        if give_back:
            self.release_claim(run)
        elif not ok:
            self.complete(run, RunStatus.FAILURE, f"{phase.value} failed: {reply['error']}")
        elif phase is Phase.PREP:
            run.phase = Phase.WAITING
            self.to_start.append((run, run.placement))
        else:
            value = reply.get("value")
            self.complete(run, RunStatus.SUCCESS, None, run.result_json if value is None else to_json(value, "post_run"))

    # -- draining ---------------------------------------------------------------------------------
    def begin_drain(self) -> bool:
        """The queue is empty: reclaim dead peers' runs, call post_ensemble (it may add runs);
        return False when all is done.  post_ensemble runs once per drain."""
        if self.options.allow_multiple and self.reclaim_dead_peers():
            self.queue.reset()
            return True
        if self.post_ensemble_done or self.store.count_queued():
            return False
        if "post_ensemble" in self.hook_names:
            self.state = EngineState.DRAINING
            self.hooks.submit("post_ensemble", str(self.setup_dir / "logs" / "post_ensemble.log"),
                              self._post_ensemble_done)
            return True
        return False

    def _post_ensemble_done(self, reply: dict[str, Any]) -> None:
        self.ensemble_hook_done("post_ensemble", reply)
        self.state = EngineState.RUNNING if self.state is EngineState.DRAINING else self.state
        self.post_ensemble_done = True
        self.recorder.flush()
        self._ingest()
        self.reconcile()

    def finish(self) -> None:
        """Everything ran: run the on_completion command if there is one."""
        self.recorder.flush()
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
            self.recorder.batch.event(None, "on_completion", {"args": spec["args"], "exit_code": code})
        except OSError as exc:
            log.error("on_completion %s could not run: %s", spec["args"], exc)
            self.recorder.batch.event(None, "on_completion_failed", {"args": spec["args"], "error": str(exc)})
