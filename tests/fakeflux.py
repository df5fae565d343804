"""A stand-in for flux-python and a Flux instance, for the tests of the Flux executor.

flux-core cannot be installed on these machines (see docs/hpc.rst), so this module implements
the part of flux-python's documented API that :mod:`ensemble.flux` calls, with the behaviour
measured against a real flux-core 0.88.0 (``../shared/notes/flux-facts.md``): jobs get no
environment but the jobspec's, their output goes to the jobspec's files, a request no node can
hold is refused at submit, ``duration`` ends a job with a ``timeout`` exception and SIGALRM,
``cancel`` raises a ``cancel`` exception (a pending job never starts; a running one gets SIGTERM,
then SIGKILL), and every job's eventlog is ``submit``, [``alloc``, ``start``, ``finish``],
``clean``.  The "broker" is a thread that starts the tasks as real processes; callbacks of the
futures run only inside ``flux_reactor_run``, as they do with the real bindings, and the handle's
``pollfd`` is readable while any wait.  It is a mock: the real-Flux tests are in
``test_flux_real.py``.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import signal
import subprocess
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any

FLUX_POLLIN, FLUX_REACTOR_NOWAIT = 1, 2
KILL_AFTER = 2.0
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(eq=False)
class Job:
    id: int
    spec: dict
    name: str
    slots: int
    cores: int
    gpus: int
    nodes: int | None
    state: str = "pending"
    events: list = field(default_factory=list)
    procs: list = field(default_factory=list)
    held: list = field(default_factory=list)
    started_at: float = 0.0
    kill_at: float | None = None
    exception: str | None = None


class Instance:
    """One fake Flux instance: ``nodes`` of ``(host, cores, gpus)``; ``expiration`` as in R."""

    def __init__(self, nodes: list[tuple[str, int, int]], expiration: float = 0.0) -> None:
        self.nodes, self.expiration = nodes, expiration
        self.free = [[c, g] for _, c, g in nodes]
        self.jobs: dict[int, Job] = {}
        self.pending: list[Job] = []
        self.lock = threading.RLock()
        self.calls: collections.deque = collections.deque()
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.next_id = 1 << 40
        self.submitted: list[dict] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._broker, daemon=True)
        self.thread.start()

    # -- the "messages" --------------------------------------------------------------------------
    def post(self, call) -> None:
        with self.lock:
            self.calls.append(call)
        os.write(self.write_fd, b".")

    def dispatch(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.read_fd, 4096):
                pass
        with self.lock:
            calls, self.calls = list(self.calls), collections.deque()
        for call in calls:
            call()

    # -- jobs ------------------------------------------------------------------------------------
    def submit(self, text: str) -> int:
        spec = json.loads(text)
        top = spec["resources"][0]
        nodes, slot = (top["count"], top["with"][0]) if top["type"] == "node" else (None, top)
        counts = {w["type"]: w["count"] for w in slot["with"]}
        cores, gpus = counts.get("core", 1), counts.get("gpu", 0)
        count = spec["tasks"][0]["count"]
        slots = count.get("total") or slot["count"] * (nodes or 1)
        if not self._fits_empty(slots, cores, gpus):
            raise OSError(errno.ENOSPC, "unsatisfiable request")
        with self.lock:
            self.next_id += 1
            job = Job(self.next_id, spec, spec["attributes"]["system"].get("job", {}).get("name", ""),
                      slots, cores, gpus, nodes)
            self.jobs[job.id] = job
            self.submitted.append(spec)
            self._event(job, "submit", {})
            self.pending.append(job)
        return job.id

    def _fits_empty(self, slots: int, cores: int, gpus: int) -> bool:
        room = sum(min(c // cores, g // gpus if gpus else slots) for _, c, g in self.nodes)
        return room >= slots

    def _event(self, job: Job, name: str, context: dict) -> None:
        job.events.append({"timestamp": time.time(), "name": name, "context": context})

    def _place(self, job: Job) -> list | None:
        plan, left = [], job.slots
        for k, (c, g) in enumerate(self.free):
            fit = min(c // job.cores, g // job.gpus if job.gpus else left)
            take = min(fit, left)
            if take:
                plan.append((k, take))
                left -= take
            if not left:
                return plan
        return None

    def _start(self, job: Job, plan: list) -> None:
        system = job.spec["attributes"]["system"]
        out = system["shell"]["options"]["output"]
        argv = job.spec["tasks"][0]["command"]
        for k, take in plan:
            self.free[k][0] -= take * job.cores
            self.free[k][1] -= take * job.gpus
        job.held = plan
        job.state, job.started_at = "running", time.time()
        self._event(job, "alloc", {})
        try:
            with open(out["stdout"]["path"], "ab") as so, open(out["stderr"]["path"], "ab") as se:
                for rank in range(job.slots):
                    env = {**system["environment"], "FLUX_TASK_RANK": str(rank), "FLUX_JOB_ID": str(job.id)}
                    job.procs.append(subprocess.Popen(argv, cwd=system["cwd"], env=env, stdout=so, stderr=se,
                                                      stdin=subprocess.DEVNULL, start_new_session=True))
        except OSError as exc:
            self._event(job, "exception", {"type": "exec", "severity": 0, "note": str(exc)})
            self._finish(job, None)
            return
        self._event(job, "start", {})

    def _signal(self, job: Job, sig: int) -> None:
        for proc in job.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    def _finish(self, job: Job, status: int | None) -> None:
        for k, take in job.held:
            self.free[k][0] += take * job.cores
            self.free[k][1] += take * job.gpus
        job.held = []
        if status is not None:
            self._event(job, "finish", {"status": status})
            self._event(job, "release", {"ranks": "all", "final": True})
        self._event(job, "clean", {})
        job.state = "inactive"

    def cancel(self, job_id: int, reason: str) -> None:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.state == "inactive":
                raise OSError(errno.EINVAL, "job is inactive")
            self._event(job, "exception", {"type": "cancel", "severity": 0, "note": reason})
            if job.state == "pending":
                self.pending.remove(job)
                self._finish(job, None)
            else:
                self._signal(job, signal.SIGTERM)
                job.kill_at = time.monotonic() + KILL_AFTER

    def kill(self, job_id: int, sig: int) -> None:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.state != "running":
                raise OSError(errno.EINVAL, "job is not running")
            self._signal(job, sig)

    def _broker(self) -> None:
        while not self.stopping:
            with self.lock:
                changed = self._turn()
            if changed:
                self.post(lambda: None)
            time.sleep(0.01)

    def _turn(self) -> bool:
        changed = False
        for job in list(self.pending):
            plan = self._place(job)
            if plan is not None:
                self.pending.remove(job)
                self._start(job, plan)
                changed = True
        now = time.monotonic()
        for job in self.jobs.values():
            if job.state != "running":
                continue
            duration = job.spec["attributes"]["system"]["duration"]
            if duration and job.exception is None and time.time() - job.started_at > duration:
                job.exception = "timeout"
                self._event(job, "exception", {"type": "timeout", "severity": 0, "note": "resource allocation expired"})
                self._signal(job, signal.SIGALRM)
                job.kill_at = now + KILL_AFTER
            if job.kill_at is not None and now > job.kill_at:
                self._signal(job, signal.SIGKILL)
            codes = [p.poll() for p in job.procs]
            if all(c is not None for c in codes):
                statuses = [(-c) if c < 0 else c << 8 for c in codes]
                self._finish(job, max(statuses))
                changed = True
        return changed

    def stop(self) -> None:
        self.stopping = True
        self.thread.join()
        for job in self.jobs.values():
            self._signal(job, signal.SIGKILL)
            for proc in job.procs:
                proc.wait()
        os.close(self.read_fd)
        os.close(self.write_fd)


# -- the bindings ------------------------------------------------------------------------------------
class Future:
    def __init__(self, instance: Instance) -> None:
        self.instance, self.callback, self.ready, self.stopped = instance, None, False, False
        self.value: Any = None
        self.error: OSError | None = None

    def fulfil(self, value: Any = None, error: OSError | None = None) -> None:
        self.value, self.error, self.ready = value, error, True
        self._fire()

    def _fire(self) -> None:
        if self.callback is not None:
            callback, args = self.callback
            self.instance.post(lambda: None if self.stopped else callback(self, *args))

    def then(self, callback, *args) -> Future:
        self.callback = (callback, args)
        if self.ready:
            self._fire()
        return self

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value

    get_id = get


class EventWatch(Future):
    def __init__(self, instance: Instance, job: Job) -> None:
        super().__init__(instance)
        instance.post(lambda: None)  # makes the handle readable: the eventlog so far is waiting
        self.job, self.seen, self.delivered, self.ended = job, 0, 0, False
        instance.watches.append(self)

    def news(self) -> bool:
        """Whether events (or the end of the stream) wait to be delivered."""
        with self.instance.lock:
            return not self.stopped and (self.seen < len(self.job.events) or
                                         self.job.state == "inactive" and not self.ended)

    def poke(self) -> None:
        with self.instance.lock:
            new = len(self.job.events) - self.seen
            done = self.job.state == "inactive"
        for _ in range(new):
            self.seen += 1
            self._fire()
        if done and not self.ended and self.seen == len(self.job.events):
            self.ended = True  # the end of the stream: one more callback, and get_event() gives None
            self._fire()

    def get_event(self) -> types.SimpleNamespace | None:
        if self.delivered >= len(self.job.events):
            return None
        event = self.job.events[self.delivered]
        self.delivered += 1
        return types.SimpleNamespace(name=event["name"], context=event["context"], timestamp=event["timestamp"])

    def cancel(self, stop: bool = False) -> None:
        self.stopped = True
        if self in self.instance.watches:
            self.instance.watches.remove(self)


class Handle:
    def __init__(self, instance: Instance) -> None:
        self.instance = instance

    def pollfd(self) -> int:
        return self.instance.read_fd

    def pollevents(self) -> int:
        with self.instance.lock:
            waiting = self.instance.calls or any(w.news() for w in self.instance.watches)
        return FLUX_POLLIN if waiting else 0

    def get_reactor(self) -> object:
        return self.instance

    def flux_reactor_run(self, reactor: object, flags: int) -> int:
        assert flags == FLUX_REACTOR_NOWAIT, "the engine never blocks in the Flux reactor"
        for watch in list(self.instance.watches):
            watch.poke()
        self.instance.dispatch()
        return 0

    @contextlib.contextmanager
    def in_reactor(self):
        yield

    @staticmethod
    def raise_if_exception() -> None:
        return None


def module(instance: Instance) -> dict[str, types.ModuleType]:
    """The ``flux`` package and its submodules, bound to ``instance`` (for ``sys.modules``)."""
    instance.watches = []
    flux = types.ModuleType("flux")
    job = types.ModuleType("flux.job")
    flux.Flux = lambda *a, **k: Handle(instance)
    flux.job = job
    flux.constants = types.SimpleNamespace(FLUX_POLLIN=FLUX_POLLIN, FLUX_REACTOR_NOWAIT=FLUX_REACTOR_NOWAIT)

    def submit_async(handle, spec):
        future = Future(instance)
        try:
            future.fulfil(instance.submit(spec))
        except OSError as exc:
            future.fulfil(error=exc)
        return future

    def answer(call):
        future = Future(instance)
        try:
            call()
            future.fulfil(None)
        except OSError as exc:
            future.fulfil(error=exc)
        return future

    job.submit_async = submit_async
    job.event_watch_async = lambda handle, jobid: EventWatch(instance, instance.jobs[int(jobid)])
    job.cancel_async = lambda handle, jobid, reason=None: answer(lambda: instance.cancel(int(jobid), reason or ""))
    job.kill_async = lambda handle, jobid, signum=signal.SIGTERM: answer(lambda: instance.kill(int(jobid), signum))
    job.cancel = lambda handle, jobid, reason=None: instance.cancel(int(jobid), reason or "")
    job.JobID = lambda jobid: types.SimpleNamespace(f58plain=_f58(int(jobid)))

    class JobList:
        def __init__(self, handle, filters=(), **_):
            self.filters = set(filters)

        def jobs(self):
            with instance.lock:
                return [types.SimpleNamespace(id=j.id, name=j.name) for j in instance.jobs.values()
                        if j.state in self.filters]

    job.JobList = JobList
    flux.kvs = types.SimpleNamespace(get=lambda handle, key: _resource_set(instance))
    flux.idset = types.SimpleNamespace(decode=_idset)
    flux.hostlist = types.SimpleNamespace(decode=lambda text: text.split(","))
    return {"flux": flux, "flux.job": job}


def _resource_set(instance: Instance) -> dict:
    lite = [{"rank": str(k), "children": {"core": f"0-{c - 1}", **({"gpu": f"0-{g - 1}"} if g else {})}}
            for k, (_, c, g) in enumerate(instance.nodes)]
    return {"version": 1, "execution": {"R_lite": lite, "nodelist": [",".join(h for h, _, _ in instance.nodes)],
                                        "starttime": time.time(), "expiration": instance.expiration}}


def _idset(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    return out


def _f58(number: int) -> str:
    digits = ""
    while number:
        number, rest = divmod(number, 58)
        digits = B58[rest] + digits
    return "f" + (digits or "1")

