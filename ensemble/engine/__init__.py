"""The execution engine: one event loop that packs runs onto resources and records everything.

The same engine runs ``execute_local`` and each batch allocation.  Its parts:

* :mod:`~ensemble.engine.reactor` - selector, cancellable timers, signal pipe;
* :mod:`~ensemble.engine.runstate` - the run state machine (pure: outcome -> decision);
* :mod:`~ensemble.engine.runqueue` - which runs start next (backfill, reservation);
* :mod:`~ensemble.engine.recorder` - batched writes fenced by the manager's lease;
* :mod:`~ensemble.engine.hookdriver` - hook worker processes, respawned with backoff;
* :mod:`~ensemble.engine.lifecycle` and :mod:`~ensemble.engine.drain` - start, stop, inbox, hooks, drain;
* :mod:`~ensemble.engine.core` - the loop that ties them together.

Processes are started by an :class:`~ensemble.executors.Executor`; command lines are built by a
:class:`~ensemble.launchers.Launcher`; resources come from a :class:`~ensemble.providers.Provider`.
"""
from ensemble.engine.core import Engine
from ensemble.engine.drain import EngineOptions
from ensemble.engine.lifecycle import EXIT_DISK_FULL, EXIT_LEASE_LOST, EXIT_MAX_FAILED, EXIT_RUNS_FAILED, EXIT_WORK_LEFT

__all__ = ["EXIT_DISK_FULL", "EXIT_LEASE_LOST", "EXIT_MAX_FAILED", "EXIT_RUNS_FAILED", "EXIT_WORK_LEFT", "Engine",
           "EngineOptions"]
