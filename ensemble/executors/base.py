"""The executor interface: start one step attempt, watch it, signal it, reap it."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ensemble.providers.resources import Placement
from ensemble.spec import Step


@dataclass(frozen=True)
class Launch:
    """Everything one step attempt needs to start (built by the engine, never written back)."""

    run_id: int
    step_index: int
    attempt: int
    step: Step
    placement: Placement
    argv: list[str]
    cwd: str
    #: Variables of this attempt, on top of the manager's base environment (:meth:`Executor.set_base_env`).
    env: dict[str, str]
    stdout: str
    stderr: str
    tag: str
    #: Log files already open (made ahead of launch); the executor takes them over and closes them.
    logs: tuple[int, int] | None = None


class Ending(NamedTuple):
    """How a collected attempt ended."""

    #: The exit code, or minus the signal that killed it (meaningless when ``lost`` or ``error``).
    code: int
    #: When it ended, where the executor knows it better than the time it is collected.
    at: float | None
    #: Its end is unknown: its node's agent died (not the step's fault).
    lost: bool
    #: Why an attempt started asynchronously never ran.
    error: str | None


class Handle:
    """A started step as its executor tracks it (executors subclass it)."""

    pid: int | None = None
    #: When the attempt really began (``time.time()``), where the executor knows it.
    start: float | None = None


class Executor(ABC):
    """Starts and watches step attempts; never writes the database.

    ``start`` raises :class:`OSError` or :class:`ValueError` when a step cannot start; the
    engine fails that run only.  An executor whose processes exit independently exposes one
    descriptor per handle (:meth:`fileno`) that becomes readable when the step has ended.  One
    that multiplexes many attempts over a few descriptors (node-local workers, a job API)
    returns None from :meth:`fileno`, lists those descriptors in :meth:`channels` and says
    which attempts ended in :meth:`on_readable`.
    """

    name = "base"
    base_env: Mapping[str, str] = {}
    #: Whether attempts a dead manager started on this host can be taken over (:meth:`adopt`).
    can_adopt = False

    def set_base_env(self, env: Mapping[str, str]) -> None:
        """The environment every attempt starts from (the manager's, scrubbed by the launcher)."""
        self.base_env = dict(env)

    @abstractmethod
    def start(self, launch: Launch) -> Handle:
        """Start the attempt."""

    @abstractmethod
    def fileno(self, handle: Handle) -> int | None:
        """A descriptor that becomes readable when the attempt has ended (None: see :meth:`channels`)."""

    @abstractmethod
    def exited(self, handle: Handle) -> bool:
        """Whether the attempt has already ended (without collecting it)."""

    @abstractmethod
    def signal(self, handle: Handle, sig: int) -> bool:
        """Send ``sig`` to the whole attempt; False (and nothing sent) if it had already ended."""

    @abstractmethod
    def reap(self, handle: Handle) -> int:
        """Collect an ended attempt: its exit code, or minus the signal that killed it."""

    def collect(self, handle: Handle) -> Ending:
        """Collect an ended attempt (reaped, what it left behind swept): how and when it ended."""
        lost, error, at = self.lost(handle), self.start_error(handle), self.ended_at(handle)
        code = self.reap(handle)
        self.sweep(handle)
        return Ending(code, at, lost, error)

    def committed(self) -> None:  # noqa: B027 - only executors that hold ended attempts back need it
        """The ends collected so far are recorded in the database (called after each flush)."""

    def sweep(self, handle: Handle) -> int:
        """Kill what the ended attempt left behind outside its process group; return how many."""
        return 0

    def flush(self) -> None:  # noqa: B027 - most executors send nothing later
        """Send what :meth:`start` queued (the engine calls it once a turn's attempts are started)."""

    def channels(self) -> list[int]:
        """Descriptors carrying the ends of many attempts (watched for as long as they are listed)."""
        return []

    def on_readable(self, fd: int) -> list[Handle]:
        """Read a ready channel; the attempts that ended (a channel that closed is no longer listed)."""
        return []

    def take_lost_nodes(self) -> set[str]:
        """Nodes on which nothing can start any more (their agent died) since the last call."""
        return set()

    def lost(self, handle: Handle) -> bool:
        """Whether the attempt's end is unknown because its node's agent died (not the step's fault)."""
        return False

    def adopt(self, handle: Any) -> Handle | None:
        """Take over an attempt a dead manager started on this host (an
        :class:`~ensemble.executors.adopted.AdoptedHandle`); None where this executor cannot."""
        return None

    def ended_at(self, handle: Handle) -> float | None:
        """When the attempt ended, where the executor knows it better than the time it is collected."""
        return None

    def start_error(self, handle: Handle) -> str | None:
        """Why an attempt that was started asynchronously never ran, once it has ended."""
        return None

    def take_pids(self) -> list[tuple[Handle, int]]:
        """Attempts started asynchronously whose pid became known since the last call, with it."""
        return []

    #: Whether :meth:`chain` works now (an executor that starts steps itself, beside the manager).
    can_chain = False

    def chain(self, launch: Launch, after: Handle, unchanged: tuple[str, int] | None = None) -> Handle:
        """Start ``launch`` on the placement of ``after`` the moment ``after`` exits 0, else never
        (only where :attr:`can_chain`); with ``unchanged`` (a directory and its modification time
        in ns), only if the directory was not modified since.  The start shows in
        :meth:`take_pids`, the cancel in :meth:`take_cancelled`."""
        raise NotImplementedError(f"the {self.name} executor does not chain starts")

    def cancel(self, handle: Handle) -> None:  # noqa: B027 - nothing is chained where nothing can be
        """Cancel a chained start that has not started yet."""

    def take_cancelled(self) -> list[Handle]:
        """Chained starts that were cancelled, never having started, since the last call."""
        return []

    def never_started(self, handle: Handle) -> bool:
        """Whether an ended handle is a chained start that was cancelled."""
        return False

    def take_job_ids(self) -> list[tuple[Handle, str]]:
        """Attempts that the resource manager gave an id since the last call (a Flux job id), with it."""
        return []

    def kill_leftovers(self, managers: list[str]) -> int:
        """End what dead ``managers`` left running through this executor's resource manager (jobs
        that outlive their manager); return how many.  Processes are swept by the engine itself."""
        return 0

    def start_room(self) -> int | None:
        """How many attempts may start now (None: no limit of the executor's own)."""
        return None

    def next_start(self) -> float | None:
        """When (``time.monotonic()``) more attempts may start, if the executor holds starts back now."""
        return None

    def settle(self) -> None:  # noqa: B027 - an executor whose signals act at once has nothing to wait for
        """Wait until the attempts just sent SIGKILL are gone (the manager then gives their runs
        back and drops its lease: no attempt may outlive that)."""

    def describe(self) -> dict[str, Any]:
        """What the engine logs about this executor at start."""
        return {"executor": self.name}

    def close(self) -> None:  # noqa: B027 - most executors hold nothing to release
        """Release the executor's own resources at engine exit."""
