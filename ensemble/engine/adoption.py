"""Taking over what dead managers left on this host, so finished work is never run again.

At start, inside the transaction that takes the lease, each attempt a dead manager left open
on this host is one of three things:

* **ended** while no manager ran: its keeper (:mod:`ensemble.engine.keeper`) recorded the exit; the
  attempt ends with that status and its run moves on (next step, ``post_run``, result);
* **still running** under its live keeper: the new manager adopts it (pidfd, timeout from its
  recorded start, signals to its process group) and handles its end like any other;
* **lost** (no keeper, no record): killed if anything of it is left, recorded as interrupted
  and run again, as before;
* **never started**: a chained attempt (:mod:`ensemble.engine.chain`) with no process and no
  record; it never existed, and its row is deleted.

Steps are found by their environment (``ENSEMBLE_SETUP_DIR`` and the launch tag
``<manager>/<run>.<attempt>``), so a step adopted once can be adopted again after a second crash.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ensemble.engine.keeper import EXITS_DIR
from ensemble.engine.reactor import Source
from ensemble.engine.runstate import Phase
from ensemble.executors.adopted import (
    AdoptedHandle,
    attempt_tag,
    find_record,
    launch_key,
    read_exits,
    settled,
    started_near,
)
from ensemble.executors.local import kill_launched, launch_tag, process_environ
from ensemble.executors.procs import children
from ensemble.prep.hooks import ENV_SETUP_DIR
from ensemble.store.batch import CHAINED
from ensemble.store.lease import HOST, proc_stat, process_start_time

#: How long a starting manager waits for the keepers of managers that just died.
KEEPER_WAIT_SECONDS = 5.0
log = logging.getLogger("ensemble.engine")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    sid: int
    start: int
    tag: str

    @classmethod
    def from_stat(cls, pid: int, fields: list[str], tag: str) -> Proc:
        """From the fields of :func:`ensemble.store.lease.proc_stat`."""
        return cls(pid, int(fields[1]), int(fields[3]), int(fields[19]), tag)


@dataclass
class Survey:
    """What is left on this host of the dead managers' open attempts."""

    adopted: list[tuple[dict[str, Any], AdoptedHandle]] = field(default_factory=list)
    #: Launch tags of lost attempts whose processes are still there (to be killed).
    doomed: set[str] = field(default_factory=set)
    #: Ids of chained attempts that never started (no process, no record).
    unstarted: list[int] = field(default_factory=list)


def survey(setup_dir: Path, attempts: list[dict[str, Any]]) -> Survey:
    """Sort the open ``attempts`` (of dead managers, on this host) into ended, running and lost.
    Processes are looked at before the keepers' records, so a step that ends in between is found
    in the records."""
    if not attempts:
        return Survey()
    procs = _our_processes(str(setup_dir))
    mains = {a["id"]: _main_process(procs.get((a["run_id"], a["attempt"]), []), a["pid"]) or _ending(a)
             for a in attempts}
    pidfds = {a_id: _pidfd(p.pid) for a_id, p in mains.items() if p is not None}
    exits_dir = Path(setup_dir) / EXITS_DIR
    keepers, records = _keepers_and_records(exits_dir)
    out, lost = Survey(), []
    for a in attempts:
        main, fd = mains[a["id"]], pidfds.get(a["id"])
        record = _record_of(records, a, main)
        keeper = keepers.get(main.ppid) if main is not None else None
        if record is not None:
            _close(fd)
            out.adopted.append((a, _handle(a, main, record=record)))
        elif fd is not None and keeper is not None:
            out.adopted.append((a, _handle(a, main, pidfd=fd, started=a["start"], exits=keeper[0],
                                           keeper=keeper[1])))
        else:
            _close(fd)
            lost.append((a, main))
    if lost:
        # A step that ended during this survey is recorded by its keeper before it is reaped.
        _keepers_collecting(keepers)
        _, records = _keepers_and_records(exits_dir)
    for a, main in lost:
        record = _record_of(records, a, main)
        if record is not None:
            out.adopted.append((a, _handle(a, main, record=record)))
        elif main is not None:
            out.doomed.add(main.tag)
        elif a["outcome"] == CHAINED:
            out.unstarted.append(a["id"])
    return out


def _record_of(records: list[dict[str, Any]], attempt: dict[str, Any], main: Proc | None) -> dict[str, Any] | None:
    pid = main.pid if main is not None else attempt["pid"]
    return find_record(records, attempt["run_id"], attempt["attempt"], pid, attempt["start"])


def _handle(attempt: dict[str, Any], main: Proc | None, **more: Any) -> AdoptedHandle:
    pid = main.pid if main is not None else attempt["pid"]
    return AdoptedHandle(pid=pid, tag=main.tag if main is not None else _tag(attempt), run_id=attempt["run_id"],
                         attempt=attempt["attempt"], **more)


def _tag(attempt: dict[str, Any]) -> str:
    return attempt_tag(attempt["manager"], attempt["run_id"], attempt["attempt"])


def _keepers_collecting(keepers: dict[int, Any], timeout: float = 1.0) -> None:
    """Wait (at most ``timeout``) until no live keeper holds an unreaped child."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_has_zombie_child(pid) for pid in keepers):
        time.sleep(0.01)


def wait_for_keepers(setup_dir: Path, timeout: float = KEEPER_WAIT_SECONDS) -> None:
    """Before a survey: let the keepers of managers that just died record the steps that had
    already ended (a few milliseconds; bounded by ``timeout``)."""
    exits_dir = Path(setup_dir) / EXITS_DIR
    if not exits_dir.is_dir():
        return
    waiting = []
    for path in exits_dir.glob(f"{HOST}-*.jsonl"):
        header, _ = read_exits(path)
        engine = path.stem.rsplit("-", 1)[1]
        if (header is not None and engine.isdigit() and process_start_time(int(engine)) is None
                and process_start_time(int(header["keeper"])) == header["keeper_start"]):
            waiting.append((path, int(header["keeper"]), header["keeper_start"]))
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        waiting = [(path, pid, start) for path, pid, start in waiting
                   if not settled(path) and process_start_time(pid) == start]
        if waiting:
            time.sleep(0.01)


def _our_processes(setup_dir: str) -> dict[tuple[int, int], list[Proc]]:
    """Live processes started for attempts of this ensemble, by (run id, attempt)."""
    needle = f"{ENV_SETUP_DIR}={setup_dir}".encode() + b"\0"
    found: dict[tuple[int, int], list[Proc]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        env = process_environ(int(entry.name))
        if needle not in env:
            continue
        fields = proc_stat(int(entry.name))
        tag = launch_tag(env)
        key = launch_key(tag)
        if fields is not None and key is not None and fields[0] not in ("Z", "X"):
            found.setdefault(key, []).append(Proc.from_stat(int(entry.name), fields, tag))
    return found


def _ending(attempt: dict[str, Any]) -> Proc | None:
    """The attempt's process if it has just ended and its keeper has not collected it yet (a
    zombie shows no environment: it is found by the recorded pid and its start time)."""
    fields = proc_stat(attempt["pid"]) if attempt["pid"] is not None else None
    if fields is None or fields[0] != "Z" or not started_near(fields[19], attempt["start"]):
        return None
    return Proc.from_stat(attempt["pid"], fields, _tag(attempt))


def _main_process(procs: list[Proc], pid: int | None) -> Proc | None:
    """The process the manager started: the recorded pid, else the oldest session leader."""
    for proc in procs:
        if proc.pid == pid:
            return proc
    leaders = sorted((p for p in procs if p.sid == p.pid), key=lambda p: (p.start, p.pid))
    return leaders[0] if leaders else None


def _keepers_and_records(exits_dir: Path) -> tuple[dict[int, tuple[Path, tuple[int, str]]], list[dict[str, Any]]]:
    """Live keepers of this host (by pid: their exits file and identity) and every record."""
    keepers, records = {}, []
    for path in sorted(exits_dir.glob(f"{HOST}-*.jsonl")) if exits_dir.is_dir() else []:
        header, lines = read_exits(path)
        records.extend(lines)
        if header is not None and process_start_time(int(header["keeper"])) == header["keeper_start"]:
            keepers[int(header["keeper"])] = (path, (int(header["keeper"]), header["keeper_start"]))
    return keepers, records


def _has_zombie_child(pid: int) -> bool:
    return any((proc_stat(kid) or ["?"])[0] == "Z" for kid in children(pid))


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


class Adoption:
    """Mixed into the engine: takes over the attempts of :func:`survey` once hooks can run."""

    def await_keepers(self) -> None:
        """Before taking the lease: give keepers of managers that just died time to record."""
        if self.executor.can_adopt:
            wait_for_keepers(self.setup_dir)

    def survey_leftovers(self) -> tuple[Survey, int]:
        """Inside the lease's transaction (after dead leases were dropped): adopt what managers
        without a lease left open here; return the survey and how many lost attempts' processes
        were killed."""
        if not self.executor.can_adopt:
            return Survey(), 0
        found = survey(self.setup_dir, self.store.orphaned_attempts(HOST))
        self.store.adopt_attempts(self.lease.manager, [(a["id"], a["run_id"], h.pid) for a, h in found.adopted])
        self.store.drop_unstarted(found.unstarted)
        return found, kill_launched(found.doomed) if found.doomed else 0

    def take_over(self, found: Survey) -> None:
        """Hold the adopted attempts' runs: end those that ended, watch those still running."""
        for attempt, handle in found.adopted:
            run = self.load_runs([attempt["run_id"]])[0]
            self.runs[run.id] = run
            self.claimed(run)
            run.prepared, run.phase = True, Phase.STEP
            run.attempt_id, run.attempt_started = attempt["id"], attempt["start"]
            run.placement = self.pool.reserve(json.loads(attempt["placement"] or "[]"))
            run.handle = self.executor.adopt(handle)
            if handle.pidfd is None:
                self._on_exit(run)
                continue
            self.reactor.watch(handle.pidfd, Source.STEP, run)
            timeout = run.current.timeout
            if timeout:
                left = max(0.0, timeout * 60 - (time.time() - attempt["start"]))
                run.timers.append(self.reactor.call_later(
                    left, lambda r=run, attempt_id=attempt["id"]: self._on_timeout(r, attempt_id)))
        if found.adopted:
            log.info("took over %d attempts of dead managers: %d had ended, %d still run", len(found.adopted),
                     sum(h.pidfd is None for _, h in found.adopted), sum(h.pidfd is not None for _, h in found.adopted))
