"""The node-local worker: ``python -m ensemble.executors.nodeworker``, one per node of an allocation.

The manager starts it with one ``srun --overlap`` per node and talks to it over that srun's
stdin and stdout (:mod:`ensemble.executors.wire`).  It starts attempts as a
:class:`~ensemble.executors.local.LocalExecutor` does on the manager's host (a new session per
attempt, one pidfd each, log files opened here, leftovers swept as a subreaper), reports each
exit, and never writes the database.  It dies with the manager: end of file on stdin, SIGTERM
(srun forwards it), or the death of its parent (``PR_SET_PDEATHSIG``) make it kill every attempt
it started and exit.  If the worker itself is killed, the manager runs ``python -m
ensemble.executors.nodeworker --kill TAG...`` on that node, which kills the attempts by their launch tags (the
attempts carry no ``PR_SET_PDEATHSIG`` of their own: a Python ``preexec_fn`` would more than
double the cost of each start).
"""
from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
from typing import Any

from ensemble.executors.base import Launch
from ensemble.executors.local import LocalExecutor, LocalHandle, die_with_parent, kill_launched
from ensemble.executors.wire import READ_SIZE, Lines, encode

#: Variables of the worker's own srun step that its attempts must not see (as with local steps).
DROP_PREFIXES = ("PMI_", "PMIX_")


class Stop(Exception):
    """SIGTERM, SIGINT or SIGHUP reached the worker."""


class Worker:
    """One worker's requests and attempts."""

    def __init__(self, out: int = 1) -> None:
        self.out = out
        self.executor = LocalExecutor()
        self.executor.set_base_env({k: v for k, v in os.environ.items() if not k.startswith(DROP_PREFIXES)})
        self.attempts: dict[int, LocalHandle] = {}
        self.selector = selectors.DefaultSelector()
        self.outbox = bytearray()

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; :meth:`flush` writes a round's messages at once."""
        self.outbox += encode(message)

    def flush(self) -> None:
        """One write per round: srun's I/O is TCP, where a second small write waits for the
        first one's acknowledgement (Nagle), up to 40 ms of delayed ACK."""
        data, self.outbox = bytes(self.outbox), bytearray()
        while data:
            data = data[os.write(self.out, data):]

    def serve(self, inp: int = 0) -> None:
        """Answer requests until end of file on ``inp``."""
        os.set_blocking(inp, False)
        self.selector.register(inp, selectors.EVENT_READ, None)
        lines = Lines()
        self.send({"op": "ready", "node": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
                   "pid": os.getpid()})
        while True:
            self.flush()
            for key, _ in self.selector.select():
                if key.data is not None:
                    self.ended(key.data)
                    continue
                try:
                    data = os.read(inp, READ_SIZE)
                except BlockingIOError:
                    continue
                if not data:
                    return
                for message in lines.feed(data):
                    self.handle(message)

    def handle(self, message: dict[str, Any]) -> None:
        if message["op"] == "start":
            self.start(message)
        elif message["op"] == "signal":
            handle = self.attempts.get(message.get("id"))
            if handle is not None:
                self.executor.signal(handle, int(message["sig"]))

    def start(self, request: dict[str, Any]) -> None:
        key = request.get("id")
        try:
            # Only the fields the local executor reads: the run, step and placement stay with the manager.
            launch = Launch(0, 0, 0, None, None, request["argv"], request["cwd"], request["env"], request["stdout"],
                            request["stderr"], request["tag"])
            handle = self.executor.start(launch)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            self.send({"op": "exit", "id": key, "error": str(exc) or repr(exc)})
            return
        self.attempts[key] = handle
        self.selector.register(handle.pidfd, selectors.EVENT_READ, key)

    def ended(self, key: int) -> None:
        handle = self.attempts.pop(key)
        self.selector.unregister(handle.pidfd)
        code = self.executor.reap(handle)
        self.executor.sweep(handle)
        self.executor.committed()
        self.send({"op": "exit", "id": key, "code": code, "pid": handle.pid})

    def kill_all(self) -> None:
        """SIGKILL every attempt still running and collect it (nothing is reported)."""
        for handle in self.attempts.values():
            self.executor.reap(handle)
            self.executor.sweep(handle)
            self.executor.committed()
        self.attempts.clear()
        self.executor.close()


def _stop(signum: int, frame: Any) -> None:
    raise Stop(signum)


def main(argv: list[str]) -> int:
    """Serve requests; ``--kill TAG...`` instead kills what a dead worker left (see
    :meth:`~ensemble.executors.worker.WorkerExecutor.on_readable`)."""
    if argv[:1] == ["--kill"]:
        kill_launched(set(argv[1:]))
        return 0
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop)
    die_with_parent(signal.SIGTERM, os.getppid())
    worker = Worker()
    try:
        worker.serve()
    except (Stop, BrokenPipeError):
        pass
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
        worker.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
