"""The last runs that failed or were aborted, and the tails of their logs (``status``, the end of
``execute --block``, the terminal watch and the dashboard)."""
from __future__ import annotations

from typing import Any

from ensemble.results.logs import attempt_logs, tail
from ensemble.status import RunStatus
from ensemble.store import Store


def last_failures(store: Store, limit: int = 5, lines: int = 3) -> tuple[int, list[dict[str, Any]]]:
    """How many runs failed or were aborted, and the last ``limit`` of them: ``run_id``,
    ``message`` (or the status), ``stderr`` (the last attempt's stderr file, or None) and ``tail``
    (its last ``lines`` lines)."""
    counts = store.counts_by_status()
    count = counts[RunStatus.FAILURE] + counts[RunStatus.ABORTED]
    if not count:
        return 0, []
    out = []
    for row in store.runs(store.run_ids_with_status([RunStatus.FAILURE, RunStatus.ABORTED], last=limit)):
        attempts = store.attempts(row["id"])
        path = attempt_logs(row["run_dir"], attempts[-1]["step"], attempts[-1]["attempt"])["stderr"] if attempts else None
        out.append({"run_id": row["id"], "message": row["message"] or row["status"].label, "stderr": path,
                    "tail": tail(path, lines) if path else []})
    return count, out


def failure_report(store: Store, limit: int = 5, lines: int = 3) -> list[str]:
    """Lines on the last ``limit`` failed or aborted runs: why, and the tail of their last
    attempt's stderr (for the end of ``execute --block`` and for ``status``)."""
    count, failures = last_failures(store, limit, lines)
    if not count:
        return []
    out = [f"{count} run(s) failed or were aborted; the last {len(failures)}:"]
    for failure in failures:
        out.append(f"  run {failure['run_id']}: {failure['message']}")
        if failure["stderr"]:
            out.extend(f"    | {line}" for line in failure["tail"])
            out.append(f"    (ensemble log {failure['run_id']} for more: {failure['stderr']})")
    return out
