"""The run state machine: what a step's end means for its run.  Pure: no I/O, no clock.

The engine feeds each ended attempt through :func:`outcome_of` and
:func:`after_step` and carries out the :class:`Decision` (record, relaunch,
complete, release).  Everything here can be tested without processes.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ensemble.providers.resources import Placement
from ensemble.spec import Step

#: Consecutive restarts of a step that ended within this many seconds back off exponentially.
FAST_FAILURE_SECONDS = 5.0
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 30.0


class EngineState(Enum):
    """Where the manager as a whole is."""

    RUNNING = "running"          # launching what fits
    DRAINING = "draining"        # the queue is empty and post_ensemble runs (it may add runs)
    STOPPING = "stopping"        # launches nothing new; runs in flight finish
    INTERRUPTING = "interrupting"  # launches nothing; running steps are being killed

    @property
    def launching(self) -> bool:
        return self in (EngineState.RUNNING, EngineState.DRAINING)


class Phase(Enum):
    """Where a run this manager holds is."""

    WAITING = "waiting"
    PREP = "prep_run"
    STEP = "step"
    POST = "post_run"


class KillReason(Enum):
    """Why the engine signalled a running step."""

    TIMEOUT = "timeout"
    DEQUEUED = "dequeued"
    INTERRUPTED = "interrupted"


class Outcome(Enum):
    """How one attempt ended (stored in ``attempts.outcome``)."""

    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    KILLED = "killed"
    INTERRUPTED = "interrupted"
    ABORTED = "aborted"
    LAUNCH_ERROR = "launch_error"


class Action(Enum):
    """What the engine does with a run after one of its steps ended."""

    NEXT_STEP = "next_step"
    FINISH = "finish"
    RETRY = "retry"
    FAIL = "fail"
    ABORT = "abort"
    RELEASE = "release"


@dataclass(frozen=True)
class Decision:
    action: Action
    message: str | None = None
    delay: float = 0.0


@dataclass(eq=False)
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
    handle: Any = None
    placement: Placement | None = None
    attempt_id: int | None = None
    attempt_started: float = 0.0
    kill_reason: KillReason | None = None
    timers: list[Any] = field(default_factory=list)
    #: Log files of the next attempt, made ahead of launch (see :mod:`ensemble.engine.prefetch`).
    logs: tuple[int, int] | None = None
    #: The result read from the run's result file when its last step succeeded (JSON text).
    result_json: str | None = None
    #: Chained starts (:mod:`ensemble.engine.chain`): this attempt is recorded and waits for
    #: ``after``'s step to exit 0; ``successor`` waits for this one's.
    pending: bool = False
    after: RunState | None = None
    successor: RunState | None = None
    #: The sample as the database holds it (JSON text), for each step's environment.
    sample_json: str | None = None

    @property
    def current(self) -> Step:
        return self.steps[self.step]

    @property
    def finished_steps(self) -> bool:
        return self.step >= len(self.steps)


_KILL_OUTCOMES = {KillReason.TIMEOUT: Outcome.TIMEOUT, KillReason.DEQUEUED: Outcome.KILLED,
                  KillReason.INTERRUPTED: Outcome.INTERRUPTED}


def outcome_of(code: int, kill: KillReason | None, abort_on: frozenset[int] | tuple[int, ...]) -> Outcome:
    """The outcome of an attempt that ended with ``code`` (minus N: killed by signal N).

    ``kill`` is set only when the engine signalled a step that was still running, so a
    step that had exited before the kill keeps its real outcome.
    """
    if kill is not None:
        return _KILL_OUTCOMES[kill]
    if code == 0:
        return Outcome.SUCCESS
    if code > 0 and code in abort_on:
        return Outcome.ABORTED
    return Outcome.FAILURE


def retry_delay(restarts: int, duration: float) -> float:
    """Pause before restart number ``restarts``: none after a step that ran a while, else
    exponential from the second fast restart on, so an instantly failing step does not spin."""
    if duration >= FAST_FAILURE_SECONDS or restarts < 2:
        return 0.0
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (restarts - 2))


def after_step(run: RunState, outcome: Outcome, code: int | None, max_restarts: int | None,
               duration: float, message: str | None = None) -> Decision:
    """Advance ``run`` (its step and restarts) for an ended attempt; return what to do next."""
    k = run.step
    if outcome in (Outcome.INTERRUPTED, Outcome.KILLED):
        return Decision(Action.RELEASE)
    if outcome is Outcome.SUCCESS:
        run.step += 1
        return Decision(Action.FINISH if run.finished_steps else Action.NEXT_STEP)
    if outcome is Outcome.ABORTED:
        return Decision(Action.ABORT, f"step {k} exited with {code}, listed in abort_on")
    if outcome is Outcome.LAUNCH_ERROR:
        return Decision(Action.FAIL, message)
    why = message or (f"step {k} timed out after {run.steps[k].timeout} min" if outcome is Outcome.TIMEOUT
                      else f"step {k} {describe_exit(code)}")
    if max_restarts is None or run.restarts < max_restarts:
        run.restarts += 1
        return Decision(Action.RETRY, why, retry_delay(run.restarts, duration))
    return Decision(Action.FAIL, why)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "did not start"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with {code}"
