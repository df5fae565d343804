"""Hook workers: separate processes that call the application interface's hooks.

User hook code never runs inside the manager, so a hook that changes the
working directory, exits or crashes cannot take the manager down.  The manager
and a worker exchange one JSON object per line over the worker's stdin and
stdout (never pickle); a hook's own output goes to the log file named in the
request.

Request: ``{"id", "hook", "run_id", "run_dir", "sample", "log"}``.
Reply: ``{"id", "ok", "value"}`` or ``{"id", "ok": false, "error": traceback}``.
The first line a worker writes is ``{"hooks": [names it defines]}``.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ensemble.executors.procs import end_children
from ensemble.prep.hooks import ENV_MANAGER, ENV_SETUP_DIR, HOOKS, call_hook, load_interface
from ensemble.spec import to_json


def _serve(interface_path: str, setup_dir: str) -> None:
    # The protocol pipes move to private (non-inheritable) descriptors: hooks and the programs
    # they start see /dev/null as stdin and cannot read, or hang on, the manager's requests.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    requests = os.fdopen(os.dup(0), "r")
    saved_err = os.dup(2)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    module = load_interface(interface_path)
    protocol.write(json.dumps({"hooks": [h for h in HOOKS if hasattr(module, h)]}) + "\n")
    for line in requests:
        request = json.loads(line)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        try:
            value = call_hook(module, request["hook"], setup_dir=setup_dir, run_id=request.get("run_id"),
                              run_dir=request.get("run_dir"), sample=request.get("sample"))
            reply = {"id": request["id"], "ok": True, "value": json.loads(to_json(value, f"{request['hook']} value"))}
        except BaseException as exc:  # a hook's failure, whatever it is, goes back to the manager
            text = traceback.format_exc()
            sys.stderr.write(text)
            reply = {"id": request["id"], "ok": False, "error": f"{request['hook']} raised {exc!r}", "traceback": text}
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(devnull, 1)
        os.dup2(saved_err, 2)
        protocol.write(json.dumps(reply) + "\n")


@dataclass
class HookWorker:
    """The manager's handle to one worker process."""

    popen: subprocess.Popen
    hooks: frozenset[str]
    busy: dict[str, Any] | None = None
    buffer: bytes = b""
    dead: bool = False

    @property
    def fd(self) -> int:
        return self.popen.stdout.fileno()


@dataclass
class HookPool:
    """``size`` workers, started on first use; each takes one request at a time."""

    interface_path: str
    setup_dir: str
    manager_id: str
    cwd: str
    size: int = 1
    error_log: str = os.devnull
    workers: list[HookWorker] = field(default_factory=list)
    backlog: deque = field(default_factory=deque)
    next_id: int = 0

    def start(self) -> frozenset[str]:
        """Start the workers; return the hook names the interface defines."""
        while len(self.workers) < self.size:
            self.workers.append(self.spawn())
        return self.workers[0].hooks

    def spawn(self) -> HookWorker:
        """Start one worker and wait for its greeting; RuntimeError (with the worker's own error
        output, e.g. the traceback of a failed import) if it exits first."""
        errors = open(self.error_log, "ab+")
        with errors:
            offset = errors.tell()
            env = {**os.environ, ENV_MANAGER: self.manager_id, ENV_SETUP_DIR: self.setup_dir}
            popen = subprocess.Popen([sys.executable, "-m", "ensemble.engine.hookworker", self.interface_path,
                                      self.setup_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=errors, env=env, start_new_session=True, cwd=self.cwd)
        hello = popen.stdout.readline()
        if not hello:
            code = popen.wait()
            popen.stdout.close()
            popen.stdin.close()
            with open(self.error_log, "rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace").strip()
            raise RuntimeError(f"hook worker for {self.interface_path} exited with {code} before starting"
                               + (f":\n{text}" if text else ""))
        return HookWorker(popen, frozenset(json.loads(hello)["hooks"]))

    def replace(self, index: int) -> HookWorker:
        """Respawn the dead worker at ``index`` (RuntimeError as :meth:`spawn`)."""
        self.workers[index] = worker = self.spawn()
        self._dispatch()
        return worker

    def fail_backlog(self, error: str) -> list[dict[str, Any]]:
        """Fail every queued request (no worker can take them), writing ``error`` into each
        request's log as a worker would have; return the failure replies."""
        for request in self.backlog:
            try:
                with open(request["log"], "a", encoding="utf-8") as out:
                    out.write(error + "\n")
            except OSError:
                continue
        replies = [{"id": r["id"], "ok": False, "error": error, "traceback": error} for r in self.backlog]
        self.backlog.clear()
        return replies

    @property
    def alive(self) -> int:
        return sum(not w.dead for w in self.workers)

    def submit(self, hook: str, log: str, run_id: int | None = None, run_dir: str | None = None,
               sample: dict | None = None) -> int:
        """Queue a hook call; return its request id."""
        self.next_id += 1
        self.backlog.append(dict(id=self.next_id, hook=hook, run_id=run_id, run_dir=run_dir, sample=sample, log=log))
        self._dispatch()
        return self.next_id

    def _dispatch(self) -> None:
        for worker in self.workers:
            if not self.backlog:
                return
            if worker.busy is None and not worker.dead:
                request = self.backlog.popleft()
                try:
                    worker.popen.stdin.write((json.dumps(request) + "\n").encode())
                    worker.popen.stdin.flush()
                except BrokenPipeError:
                    worker.dead = True
                    self.backlog.appendleft(request)
                    continue
                worker.busy = request

    def readable(self, fd: int) -> list[dict[str, Any]]:
        """Read what a worker wrote; return completed replies (a dead worker fails its request)."""
        worker = next(w for w in self.workers if not w.dead and w.fd == fd)
        data = os.read(fd, 1 << 16)
        replies = []
        if not data:
            code = worker.popen.wait()
            worker.dead = True
            worker.popen.stdout.close()
            worker.popen.stdin.close()
            if worker.busy is not None:
                replies.append({"id": worker.busy["id"], "ok": False,
                                "error": f"hook worker died (exit code {code}) during {worker.busy['hook']}"})
                worker.busy = None
            replies.append({"dead": fd, "index": self.workers.index(worker)})
            return replies
        worker.buffer += data
        while b"\n" in worker.buffer:
            line, worker.buffer = worker.buffer.split(b"\n", 1)
            replies.append(json.loads(line))
            worker.busy = None
        self._dispatch()
        return replies

    def kill_busy(self) -> None:
        """Kill the workers inside a hook call (an interrupted manager must not wait for them)."""
        for worker in self.workers:
            if worker.busy is not None and not worker.dead:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.popen.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Close the workers' input and wait for them (killing stragglers)."""
        live = [w for w in self.workers if not w.dead]
        end_children([w.popen for w in live], timeout=5)
        for worker in live:
            worker.popen.stdout.close()
        self.workers.clear()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
