"""Steps started by node-local workers (:mod:`ensemble.executors.nodeworker`), one per node, over srun's stdio.

One ``srun --overlap`` per node starts the worker when the manager starts; after that an attempt
costs one JSON line each way instead of one job step.  Every worker is a channel
(:meth:`Executor.channels`): its stdout carries the exits of all attempts of its node.  A worker
that dies (its stdout ends) takes its node away: its attempts are reported ended and
:meth:`lost`, so the engine gives their runs back to the queue.
"""
from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ensemble.executors.base import Executor, Handle, Launch
from ensemble.executors.local import die_with_parent
from ensemble.executors.procs import end_children
from ensemble.executors.wire import READ_SIZE, Lines, encode, start_request
from ensemble.providers.resources import Node

#: Seconds the workers may take to say "ready" at start (srun, then a Python interpreter); well
#: inside the lease's staleness (60 s), since the manager does not heartbeat while it waits.
READY_TIMEOUT = 30.0
#: Seconds a worker may take to exit after its stdin closed, before its srun is killed.
EXIT_TIMEOUT = 10.0
log = logging.getLogger("ensemble.executors")


def srun_worker_command(node: Node) -> list[str]:
    """The one launcher call per node: all the node's CPUs, overlapping the steps of wide runs
    (the worker's arguments, if any, are appended)."""
    return ["srun", "--overlap", "-N1", "-n1", "-c", str(len(node.cores)), "-w", node.name,
            "--kill-on-bad-exit=1", "--quiet", sys.executable, "-m", "ensemble.executors.nodeworker"]


@dataclass(eq=False)
class WorkerHandle(Handle):
    key: int
    node: str
    tag: str
    code: int | None = None
    error: str | None = None
    lost: bool = False

    @property
    def ended(self) -> bool:
        return self.code is not None or self.error is not None or self.lost


@dataclass(eq=False)
class Channel:
    """One node's worker: its srun process and the attempts it runs."""

    node: str
    popen: subprocess.Popen
    lines: Lines = field(default_factory=Lines)
    handles: dict[int, WorkerHandle] = field(default_factory=dict)
    ready: bool = False
    pid: int | None = None
    outbox: bytearray = field(default_factory=bytearray)

    @property
    def fd(self) -> int:
        return self.popen.stdout.fileno()

    def flush(self) -> bool:
        """Write the queued requests at once; False if the worker is gone (its end of file follows)."""
        data, self.outbox = bytes(self.outbox), bytearray()
        try:
            self.popen.stdin.write(data)
            self.popen.stdin.flush()
        except (OSError, ValueError):
            return False
        return True


class WorkerExecutor(Executor):
    """Starts single-node, single-task attempts through the worker of their node."""

    name = "worker"

    def __init__(self, nodes: Sequence[Node], command: Callable[[Node], list[str]] = srun_worker_command,
                 ready_timeout: float = READY_TIMEOUT) -> None:
        self.nodes, self.command, self.ready_timeout = tuple(nodes), command, ready_timeout
        self.channels_by_fd: dict[int, Channel] = {}
        self.by_node: dict[str, Channel] = {}
        self.lost_nodes: set[str] = set()
        #: Channels whose worker ended: their stdout stays open until :meth:`close`, so the number
        #: cannot be reused while the engine still watches it.
        self.dead: list[Channel] = []
        self.next_key = 0

    def set_base_env(self, env: Mapping[str, str]) -> None:
        """Start one worker per node with ``env`` (the base environment of its attempts)."""
        super().set_base_env(env)
        parent = os.getpid()
        for node in self.nodes:
            popen = subprocess.Popen(self.command(node), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=dict(env), start_new_session=True,
                                     preexec_fn=lambda: die_with_parent(signal.SIGTERM, parent))
            os.set_blocking(popen.stdout.fileno(), False)
            channel = Channel(node.name, popen)
            self.channels_by_fd[channel.fd] = channel
            self.by_node[node.name] = channel
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Wait until every worker said ready; one that ends or stays silent loses its node."""
        end = time.monotonic() + self.ready_timeout
        with selectors.DefaultSelector() as selector:
            for channel in self.channels_by_fd.values():
                selector.register(channel.fd, selectors.EVENT_READ, channel)
            while selector.get_map() and (left := end - time.monotonic()) > 0:
                for key, _ in selector.select(left):
                    self.on_readable(key.fd)
                    if key.data.ready or key.fd not in self.channels_by_fd:
                        selector.unregister(key.fd)
            for key in list(selector.get_map().values()):
                log.error("worker on %s did not start within %gs", key.data.node, self.ready_timeout)
                key.data.popen.kill()
                self._lose(key.data)

    def describe(self) -> dict[str, object]:
        return {"executor": self.name, "workers": {c.node: c.pid for c in self.by_node.values()},
                "lost_nodes": sorted(self.lost_nodes)}

    def start(self, launch: Launch) -> WorkerHandle:
        node = launch.placement.shares[0].node
        channel = self.by_node.get(node)
        if channel is None:
            raise OSError(f"no worker runs on {node}")
        if launch.logs is not None:
            for fd in launch.logs:
                os.close(fd)
        self.next_key += 1
        handle = WorkerHandle(self.next_key, node, launch.tag)
        channel.handles[handle.key] = handle
        channel.outbox += encode(start_request(handle.key, launch))
        return handle

    def flush(self) -> None:
        for channel in self.by_node.values():
            if channel.outbox:
                channel.flush()

    def fileno(self, handle: Handle) -> None:
        return None

    def channels(self) -> list[int]:
        return list(self.channels_by_fd)

    def on_readable(self, fd: int) -> list[Handle]:
        channel = self.channels_by_fd[fd]
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return []
        if not data:
            return self._lose(channel)
        ended: list[Handle] = []
        for message in channel.lines.feed(data):
            op, handle = message["op"], channel.handles.get(message.get("id"))
            if op == "ready":
                channel.ready, channel.pid = True, message.get("pid")
                log.info("worker on %s ready: pid %s", channel.node, channel.pid)
            elif handle is None:
                continue
            elif op == "exit":
                handle.code, handle.error, handle.pid = message.get("code"), message.get("error"), message.get("pid")
                ended.append(channel.handles.pop(handle.key))
        return ended

    def _lose(self, channel: Channel) -> list[Handle]:
        """The worker ended: its node is lost, its attempts ended with unknown results."""
        del self.channels_by_fd[channel.fd]
        self.by_node.pop(channel.node, None)
        self.lost_nodes.add(channel.node)
        self._end(channel)
        self.dead.append(channel)
        log.error("worker on %s ended (srun exit %s): %d attempts lost", channel.node, channel.popen.returncode,
                  len(channel.handles))
        ended = list(channel.handles.values())
        for handle in ended:
            handle.lost = True
        channel.handles.clear()
        if ended:
            self._sweep_node(channel.node, {h.tag for h in ended})
        return ended

    def _sweep_node(self, name: str, tags: set[str]) -> None:
        """Kill, on the node, what the dead worker's attempts left running (they die with it only
        where Slurm tracks the step's processes with cgroups), and wait for it: the runs are
        requeued only once their old processes are gone, so no run ever runs twice at once."""
        node = next(n for n in self.nodes if n.name == name)
        try:
            sweeper = subprocess.Popen([*self.command(node), "--kill", *sorted(tags)], stdin=subprocess.DEVNULL,
                                       env=dict(self.base_env), start_new_session=True)
        except OSError as exc:
            log.error("could not sweep %s after its worker died: %s", name, exc)
            return
        end_children([sweeper], EXIT_TIMEOUT)

    def take_lost_nodes(self) -> set[str]:
        lost, self.lost_nodes = self.lost_nodes, set()
        return lost

    def exited(self, handle: Handle) -> bool:
        return handle.ended

    def signal(self, handle: Handle, sig: int) -> bool:
        if handle.ended:
            return False
        channel = self.by_node.get(handle.node)
        if channel is None:
            return False
        channel.outbox += encode({"op": "signal", "id": handle.key, "sig": int(sig)})
        return channel.flush()

    def reap(self, handle: Handle) -> int:
        return handle.code if handle.code is not None else -signal.SIGKILL

    def lost(self, handle: Handle) -> bool:
        return handle.lost

    def start_error(self, handle: Handle) -> str | None:
        return handle.error

    @staticmethod
    def _end(channel: Channel) -> None:
        """End of file to the worker, then wait for its srun (killed if it takes too long: a node
        that died with its worker may leave its srun waiting)."""
        end_children([channel.popen], EXIT_TIMEOUT)

    def settle(self) -> None:
        """The kills went over the workers' pipes: end the workers (each kills what it started and
        exits) and wait for them; :meth:`close` later finds nothing left to end."""
        self.close()

    def close(self) -> None:
        channels = list(self.by_node.values())
        end_children([c.popen for c in channels], EXIT_TIMEOUT)
        for channel in channels + self.dead:
            channel.popen.stdout.close()
        self.by_node.clear()
        self.channels_by_fd.clear()
