"""Changes to runs from outside the manager: the inbox and how commands apply.

While a manager executes, it is the only writer of the database.  Other
processes (the CLI, the Python API, applications through
:mod:`ensemble.runtime`, on any node sharing the file system) drop commands as
JSON files into ``<setup_dir>/inbox``; each file is written under a temporary
name and renamed, so a reader never sees half of it.  The manager ingests the
inbox within a second.  With no live manager, commands apply directly.

A command applies inside one transaction together with a row in
``inbox_done``, so a command is applied exactly once even if the process dies
between committing and deleting the file.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.setup import allocations
from ensemble.setup.intake import Row, RunIntake, insert_runs
from ensemble.spec import CompositeRun, Step, to_json
from ensemble.spec.config import EnsembleConfig
from ensemble.store import Store
from ensemble.store.lease import live_leases

INBOX = "inbox"
log = logging.getLogger(__name__)


@dataclass
class Applied:
    """What a batch of commands changed."""

    changed: bool = False
    stop: bool = False
    added: int = 0
    errors: list[str] = field(default_factory=list)


def inbox_dir(setup_dir: Path) -> Path:
    return Path(setup_dir) / INBOX


def post(setup_dir: Path, command: dict[str, Any]) -> Path:
    """Write one command atomically into the inbox."""
    return post_text(setup_dir, [to_json(command, "command")])


def post_text(setup_dir: Path, parts: Iterable[str]) -> Path:
    """Write one command, the concatenation of ``parts`` (JSON text), atomically into the inbox.

    ``parts`` may be a generator that raises: the half-written file is removed and nothing is posted.
    """
    inbox = inbox_dir(setup_dir)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.json"
    tmp = inbox / f".{name}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            out.writelines(parts)
            out.flush()
            os.fsync(out.fileno())
        final = inbox / name
        os.rename(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def pending(setup_dir: Path) -> list[Path]:
    """Inbox files waiting to be applied, oldest first."""
    try:
        names = sorted(e.name for e in os.scandir(inbox_dir(setup_dir)) if e.name.endswith(".json")
                       and not e.name.startswith("."))
    except FileNotFoundError:
        return []
    return [inbox_dir(setup_dir) / n for n in names]


class InboxWatch:
    """Tells cheaply whether the inbox changed since the last look (one ``stat``: a file
    renamed into the directory changes its modification time)."""

    def __init__(self, setup_dir: Path) -> None:
        self.path = str(inbox_dir(setup_dir))
        self.seen = -1

    def changed(self) -> bool:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self.seen:
            return False
        self.seen = mtime
        return True


def composite_from_dict(data: dict[str, Any]) -> CompositeRun:
    return CompositeRun(data["sample"], [Step.from_dict(s) for s in data["steps"]])


def insert_added(store: Store, intake: RunIntake, runs: Iterable[Any]) -> int:
    """Validate and insert runs after the last one (inside the caller's transaction); return how many."""
    first = store.next_run_id()
    added = insert_runs(store, intake, runs, first)
    if added:
        store.add_events([(None, "runs_added", {"first": first, "last": first + added - 1})])
    return added


def add_runs(setup_dir: Path, store: Store, config: EnsembleConfig, runs: Iterable[Any] | None,
             progress: Callable[[int], None] | None = None) -> None:
    """Add runs, validated and inserted batch by batch in one transaction (an error adds none).

    While a manager runs, they are validated the same way (run directories against the
    database's) and posted to it as one command, written batch by batch.
    """
    intake = RunIntake(config, progress)
    runs = intake.iterable(runs)
    if live_leases(store):
        post_runs(setup_dir, intake, runs, store.next_run_id(), store)
        if not live_leases(store):
            ingest(store, config, setup_dir)
        return
    with store.transaction():
        if insert_added(store, intake, runs):
            store.bump_generation()


def post_runs(setup_dir: Path, intake: RunIntake, runs: Iterable[Any], first_id: int,
              store: Store | None = None) -> None:
    """Validate runs and post them as one ``add_runs`` command (nothing is posted for no runs).

    Run directories must differ from one another and, given a ``store``, from its runs'.
    """
    batches = iter(intake.batches(runs, first_id))
    head = next(batches, None)
    if head is not None:
        post_text(setup_dir, _add_command(itertools.chain([head], batches), first_id, intake, store))


def _add_command(batches: Iterable[list[Row]], first_id: int, intake: RunIntake,
                 store: Store | None) -> Iterator[str]:
    """The text of an ``add_runs`` command, one batch of runs at a time."""
    seen: set[str] = set()
    run_id = first_id
    yield '{"op":"add_runs","runs":['
    for n, batch in enumerate(batches):
        taken = store.existing_run_dirs(d for _, _, d in batch) if store is not None else set()
        for _, _, run_dir in batch:
            if run_dir in taken or run_dir in seen:
                raise intake.duplicate_dir(run_id, run_dir)
            seen.add(run_dir)
            run_id += 1
        yield ("," if n else "") + ",".join(f'{{"sample":{s},"steps":{t}}}' for s, t, _ in batch)
    yield "]}"


def apply_command(store: Store, config: EnsembleConfig, command: dict[str, Any], applied: Applied) -> None:
    """Apply one command inside the caller's transaction; raise EnsembleError if invalid."""
    op = command.get("op")
    if op == "add_runs":
        applied.added += insert_added(store, RunIntake(config), (composite_from_dict(r) for r in command["runs"]))
    elif op == "set_result":
        run_id = int(command["run_id"])
        if not store.existing_run_ids([run_id]):
            raise EnsembleError(f"run_id: no run {run_id} in this ensemble")
        store.set_result(run_id, to_json(command["result"], "result"))
        store.add_events([(run_id, "result_set", None)])
    elif op in ("dequeue", "requeue"):
        ids = [int(i) for i in command["run_ids"]]
        changed = store.dequeue(ids) if op == "dequeue" else store.requeue(ids, bool(command.get("hard")))
        kind = "killed" if op == "dequeue" else ("requeued_hard" if command.get("hard") else "requeued")
        store.add_events([(i, kind, {"by": "dequeue"} if op == "dequeue" else None) for i in changed])
    elif op == "on_completion":
        store.set_meta("on_completion", _on_completion_spec(command["spec"]))
    elif op == "alloc":
        allocations.apply(store, command)
    elif op == "stop":
        store.set_meta("stop_requested", time.time())
        store.add_events([(None, "stop_requested", command.get("reason"))])
        applied.stop = True
    else:
        raise EnsembleError(f"op: unknown command {op!r}")
    applied.changed = True
    store.bump_generation()


def _on_completion_spec(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict) or not isinstance(spec.get("args"), list) or not spec["args"] \
            or not all(isinstance(a, str) for a in spec["args"]) or not isinstance(spec.get("cwd"), str):
        raise EnsembleError(f"on_completion: expected args (a list of strings) and cwd, got {spec!r}")
    for name in ("stdout", "stderr"):
        if spec.get(name) is not None and not isinstance(spec[name], str):
            raise EnsembleError(f"on_completion.{name}: expected a path or None, got {spec[name]!r}")
    return spec


def apply_direct(store: Store, config: EnsembleConfig, commands: Iterable[dict[str, Any]]) -> Applied:
    """Apply commands in one transaction; any error rolls all of them back and is raised."""
    applied = Applied()
    with store.transaction():
        for command in commands:
            apply_command(store, config, command, applied)
    return applied


def ingest(store: Store, config: EnsembleConfig, setup_dir: Path, fence: Callable[[], None] | None = None) -> Applied:
    """Apply every pending inbox file once; invalid ones are logged and recorded, not raised.

    A manager passes ``fence``: called first inside the transaction, it raises when the
    manager's lease is gone, so a fenced-off manager applies nothing.
    """
    files = pending(setup_dir)
    applied = Applied()
    if not files:
        return applied
    with store.transaction():
        if fence is not None:
            fence()
        for path in files:
            if store.inbox_done(path.name):
                continue
            try:
                with store.savepoint("command"):
                    command = json.loads(path.read_text(encoding="utf-8"))
                    if not isinstance(command, dict):
                        raise EnsembleError(f"expected a JSON object, got {type(command).__name__}")
                    apply_command(store, config, command, applied)
            except Exception as exc:  # noqa: BLE001 - any bad command is rejected alone, never blocks the inbox
                message = f"inbox command {path.name} rejected: {exc}"
                log.error(message)
                applied.errors.append(message)
                store.add_events([(None, "command_rejected", {"file": path.name, "error": str(exc)})])
            store.mark_inbox_done(path.name)
    for path in files:
        path.unlink(missing_ok=True)
    return applied


def submit(setup_dir: Path, store: Store, config: EnsembleConfig, command: dict[str, Any]) -> str:
    """Apply a command now (no live manager) or hand it to the live manager.

    Returns ``"applied"`` or ``"posted"``.  If the manager stops between the
    post and its last ingest, this process ingests the inbox itself.
    """
    if not live_leases(store):
        apply_direct(store, config, [command])
        return "applied"
    post(setup_dir, command)
    if not live_leases(store):
        ingest(store, config, setup_dir)
        return "applied"
    return "posted"

