"""What the dashboard's pages show, read from a read-only store with cheap queries."""
from __future__ import annotations

from typing import Any

from ensemble.results.failures import last_failures
from ensemble.results.logs import attempt_logs, tail
from ensemble.status import RunStatus
from ensemble.store import Store
from ensemble.store.lease import live_leases

#: Completions the rate is estimated from (the last ones).
RATE_WINDOW = 50
#: Running runs listed on the overview.
RUNNING_SHOWN = 50
#: Lines of each log shown on a run page, and the attempts whose logs are shown (the last ones).
LOG_LINES, LOGGED_ATTEMPTS = 20, 10


def estimate(ends: list[float], remaining: int, now: float) -> tuple[float | None, float | None]:
    """Runs per second over the last completions ``ends`` (ascending) and the seconds left for
    ``remaining`` runs at that rate.  While runs remain the window reaches up to ``now``, so the
    rate falls when nothing completes.

    >>> estimate([10.0, 11.0, 12.0], 4, 12.0)
    (1.0, 4.0)
    >>> estimate([10.0, 11.0, 12.0], 0, 99.0)
    (1.0, 0.0)
    >>> estimate([10.0], 3, 12.0)
    (None, None)
    """
    if len(ends) < 2:
        return None, None
    span = (max(now, ends[-1]) if remaining else ends[-1]) - ends[0]
    if span <= 0:
        return None, None
    rate = (len(ends) - 1) / span
    return rate, remaining / rate


def state_of(status: RunStatus, claimed_by: str | None) -> str:
    """A run's state: its status, a queued one split into running (a manager holds it) and waiting."""
    if status is RunStatus.QUEUED:
        return "running" if claimed_by else "waiting"
    return status.label


def counts(store: Store) -> dict[str, int]:
    """Runs per status, ``running`` and ``waiting`` (the queued runs split), and ``total``."""
    by_status = {s.label: n for s, n in store.counts_by_status().items()}
    running = store.count_running()
    return {"waiting": by_status["queued"] - running, "running": running,
            **{label: n for label, n in by_status.items() if label != "queued"}, "total": sum(by_status.values())}


def status(store: Store, now: float) -> dict[str, Any]:
    """The live view (what ``/api/status`` returns): counts, progress, rate, ETA, managers and
    the running runs with their elapsed seconds."""
    numbers = counts(store)
    remaining = numbers["waiting"] + numbers["running"]
    rate, eta = estimate(store.completion_times(RATE_WINDOW), remaining, now)
    total = numbers["total"]
    return {"counts": numbers, "completed": total - remaining,
            "percent": 100.0 * (total - remaining) / total if total else 100.0,
            "rate": rate, "eta": eta, "managers": len(live_leases(store)),
            "running": [{**a, "elapsed": now - a["start"]} for a in store.open_attempts(RUNNING_SHOWN)]}


def overview(store: Store, now: float) -> dict[str, Any]:
    """The live view plus the last failures and their stderr tails."""
    failed, failures = last_failures(store)
    return {**status(store, now), "failed": failed, "failures": failures}


def _logs(run_dir: str, attempt: dict[str, Any]) -> dict[str, Any]:
    """The tails of an attempt's logs by stream (``log`` for the combined layout's one file)."""
    paths = attempt_logs(run_dir, attempt["step"], attempt["attempt"])
    shown = {"log": paths["stdout"]} if paths["stdout"] and paths["stdout"] == paths["stderr"] else paths
    return {stream: {"path": path, "tail": tail(path, LOG_LINES)} for stream, path in shown.items() if path}


def run_detail(store: Store, run_id: int) -> dict[str, Any] | None:
    """One run: its record, its attempts (each with the tails of its logs for the last
    :data:`LOGGED_ATTEMPTS`); None if there is no such run."""
    rows = store.runs([run_id])
    if not rows:
        return None
    run = rows[0]
    attempts = store.attempts(run_id)
    for index, attempt in enumerate(attempts):
        attempt["logs"] = _logs(run["run_dir"], attempt) if index >= len(attempts) - LOGGED_ATTEMPTS else {}
    return {**run, "state": state_of(run["status"], run["claimed_by"]), "attempts": attempts}
