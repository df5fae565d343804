"""Version 1 jobspecs (Flux RFC 25) for one step attempt, as plain JSON.

The dictionaries are those flux-python's ``JobspecV1.from_command`` builds, with ``duration``,
``cwd``, ``environment`` and the output files set as its properties set them; building them
here keeps them exact and testable without Flux.  Flux places the tasks: the manager does not.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: Seconds added to a step's timeout for Flux's own limit: the manager's timeout acts first and
#: records the attempt as timed out; Flux's is the backstop for a manager that could not.
DURATION_MARGIN = 60.0


def duration_of(timeout_minutes: float) -> float:
    """Flux ``duration`` (seconds, 0: none) for a step ``timeout`` in minutes."""
    return float(math.ceil(timeout_minutes * 60) + DURATION_MARGIN) if timeout_minutes else 0.0


def resources(tasks: int, cores_per_task: int, gpus_per_task: int, nodes: int | None) -> list[dict[str, Any]]:
    """``slot>core[,gpu]``, or ``node>slot>core[,gpu]`` when ``nodes`` is given."""
    inside: list[dict[str, Any]] = [{"type": "core", "count": cores_per_task}]
    if gpus_per_task:
        inside.append({"type": "gpu", "count": gpus_per_task})
    if nodes is None:
        return [{"type": "slot", "count": tasks, "label": "task", "with": inside}]
    slots = math.ceil(tasks / nodes)
    return [{"type": "node", "count": nodes,
             "with": [{"type": "slot", "count": slots, "label": "task", "with": inside}]}]


def _output(stdout: str, stderr: str) -> dict[str, Any]:
    return {"stdout": {"type": "file", "path": stdout}, "stderr": {"type": "file", "path": stderr}}


def jobspec(argv: Sequence[str], tasks: int, cores_per_task: int, gpus_per_task: int, timeout_minutes: float,
            cwd: str, environment: Mapping[str, str], stdout: str, stderr: str,
            nodes: int | None = None, name: str | None = None) -> dict[str, Any]:
    """The jobspec of one attempt: ``tasks`` copies of ``argv`` (a task per slot; ``total`` when
    ``nodes`` do not divide the tasks evenly), its limit, directory, whole environment (Flux
    inherits nothing), output files in the run directory and job ``name`` (the attempt's tag, by
    which a later manager finds the jobs of a dead one)."""
    count = {"total": tasks} if nodes is not None and tasks % nodes else {"per_slot": 1}
    system: dict[str, Any] = {
        "duration": duration_of(timeout_minutes),
        "cwd": cwd,
        "environment": dict(environment),
        "shell": {"options": {"output": _output(stdout, stderr)}},
    }
    if name is not None:
        system["job"] = {"name": name}
    return {
        "version": 1,
        "resources": resources(tasks, cores_per_task, gpus_per_task, nodes),
        "tasks": [{"command": list(argv), "slot": "task", "count": count}],
        "attributes": {"system": system},
    }
