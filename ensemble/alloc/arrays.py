"""Launch-and-forget job arrays: :meth:`Ensemble.execute_array` / ``ensemble submit --array``.

The queued runs are cut, in id order, into chunks of ``runs_per_task``; each chunk is one task
of a Slurm job array (``sbatch --array=1-N%M``).  The script lists every chunk's id range; task
``k`` runs ``ensemble execute --block --allow-multiple --run-range LO-HI`` with the k-th range: the
same engine as in a pilot allocation, recording into the same store (restarts within a task,
statuses, results and attempts as ever).  Tasks that run at once share the store as managers
that allow several.  A task that dies leaves its runs queued (interrupted): submit again, and
the new array covers what is still queued.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ensemble.alloc.chain import batch_system, discard_script
from ensemble.errors import EnsembleError, SpecError
from ensemble.providers.sbatch import AllocRequest, client_command, execute_argv, render_script, sbatch, write_script
from ensemble.setup import allocations
from ensemble.setup.handle import EnsembleHandle
from ensemble.spec.arguments import count_arg

#: Slurm's default MaxArraySize: task ids must stay below it.
DEFAULT_MAX_ARRAY_SIZE = 1001
_ID_PAGE = 50_000


@dataclass(frozen=True)
class ArrayRequest:
    """A checked array: runs per task and how many tasks may run at once (None: Slurm decides)."""

    runs_per_task: int
    max_running: int | None


def check_array(runs_per_task: Any = 1, max_running: Any = None) -> ArrayRequest:
    """SpecError/SpecTypeError naming the field for a bad value."""
    return ArrayRequest(count_arg("runs_per_task", runs_per_task, 1),
                        None if max_running is None else count_arg("max_running", max_running, 1))


def _queued_ids(ensemble: EnsembleHandle) -> Iterator[int]:
    after = 0
    while ids := ensemble.store.queued_ids(after, _ID_PAGE):
        yield from ids
        after = ids[-1]


def chunk_ranges(ids: Iterator[int], runs_per_task: int) -> list[tuple[int, int]]:
    """``(first, last)`` run id of each chunk of ``runs_per_task`` consecutive queued ids."""
    ranges: list[tuple[int, int]] = []
    chunk: list[int] = []
    for run_id in ids:
        chunk.append(run_id)
        if len(chunk) == runs_per_task:
            ranges.append((chunk[0], chunk[-1]))
            chunk = []
    if chunk:
        ranges.append((chunk[0], chunk[-1]))
    return ranges


def max_array_size() -> int:
    """The cluster's ``MaxArraySize`` (``scontrol show config``), or Slurm's default where unread."""
    try:
        found = re.search(r"^MaxArraySize\s*=\s*(\d+)", client_command(["scontrol", "show", "config"]), re.M)
    except EnsembleError:
        return DEFAULT_MAX_ARRAY_SIZE
    return int(found.group(1)) if found else DEFAULT_MAX_ARRAY_SIZE


def render_array_script(ensemble: EnsembleHandle, request: AllocRequest, array: ArrayRequest,
                        ranges: list[tuple[int, int]]) -> str:
    """The array's batch script: ``--array``, one log per task, the ranges, the exec line."""
    spec = f"1-{len(ranges)}" + (f"%{array.max_running}" if array.max_running else "")
    argv = execute_argv(ensemble.setup_dir, request)
    body = ("# Task k executes the k-th range of run ids below (ensemble submit --array).",
            "RANGES=(", *(f"  {low}-{high}" for low, high in ranges), ")")
    line = f'exec {shlex.join(argv)} --run-range "${{RANGES[SLURM_ARRAY_TASK_ID-1]}}"'
    return render_script(ensemble.setup_dir, request, line, directives=(f"--array={spec}",),
                         log_name="slurm-%A_%a.out", body=body)


def plan_array(ensemble: EnsembleHandle, request: AllocRequest, array: ArrayRequest) -> list[tuple[int, int]]:
    """Check everything and return the tasks' run id ranges (nothing is written): SpecError for an
    array with no runs, too many tasks for the cluster, or a batch system other than Slurm."""
    system = batch_system(ensemble.config.use_flux)
    if system != "slurm" or ensemble.config.use_flux:
        raise SpecError(f"array: job arrays are built on Slurm (sbatch --array); here the batch system is "
                        f"{system}{' with use_flux' if ensemble.config.use_flux else ''}")
    if request.repeats or request.max_allocations:
        raise SpecError("array: a job array takes neither repeats nor max_allocations")
    ranges = chunk_ranges(_queued_ids(ensemble), array.runs_per_task)
    if not ranges:
        raise SpecError("array: no run is queued, so the array would have no task")
    limit = max_array_size() - 1
    if len(ranges) > limit:
        need = -(-sum(1 for _ in _queued_ids(ensemble)) // limit)
        raise SpecError(f"runs_per_task: {array.runs_per_task} makes {len(ranges)} array tasks, more than this "
                        f"cluster's MaxArraySize allows ({limit}); use runs_per_task >= {need}")
    return ranges


def submit_array(ensemble: EnsembleHandle, request: AllocRequest, array: ArrayRequest) -> str:
    """Write and submit the array's script; the array's job id."""
    ranges = plan_array(ensemble, request, array)
    path = write_script(ensemble.setup_dir, render_array_script(ensemble, request, array, ranges))
    try:
        job = sbatch(path)
    except EnsembleError:
        discard_script(path)
        raise
    ensemble.submit_command(allocations.command("array_submitted", job, job, script=str(path), tasks=len(ranges),
                                         runs_per_task=array.runs_per_task, max_running=array.max_running))
    return job
