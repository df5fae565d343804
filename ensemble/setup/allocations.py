"""The allocation chains of an ensemble, as the store records them (meta ``allocations``).

A chain starts with the job :meth:`Ensemble.execute_alloc` submitted and is named by that job's
id.  Its record says which job runs the ensemble now (``current``), which follow-up waits for it
(``pending``, held by ``--dependency=afterany``), how many follow-ups may still be submitted
(``repeats_left``), the batch script, and every job id it used.

Changes arrive as ``{"op": "alloc", ...}`` commands through :func:`ensemble.setup.control.submit`:
applied at once when no manager runs, else handed to the running manager's inbox, so the
manager stays the only writer of the database.
"""
from __future__ import annotations

from typing import Any

from ensemble.errors import EnsembleError

META = "allocations"
#: Actions of an ``alloc`` command, each recorded as an event ``alloc_<action>``.
ACTIONS = ("submitted", "follow_up", "started", "cancelled", "pool_submitted", "pool_cancelled", "array_submitted")
#: Actions of automatic allocations and job arrays: recorded as events only (a pool's ledger is
#: its own file; an array's script lists its tasks).
EVENT_ONLY = ("pool_submitted", "pool_cancelled", "array_submitted")


def chains(store: Any) -> dict[str, dict[str, Any]]:
    """Every chain by its id."""
    return store.get_meta(META, {})


def find(store: Any, job_id: str) -> tuple[str, dict[str, Any]] | None:
    """The chain in which ``job_id`` is the current job or the pending follow-up, if any."""
    for chain_id, chain in chains(store).items():
        if job_id in (chain["current"], chain["pending"]):
            return chain_id, chain
    return None


def command(action: str, chain: str, job_id: str, **detail: Any) -> dict[str, Any]:
    """An ``alloc`` command for :func:`ensemble.setup.control.submit`."""
    return {"op": "alloc", "action": action, "chain": chain, "job_id": job_id, **detail}


def apply(store: Any, cmd: dict[str, Any]) -> None:
    """Apply one ``alloc`` command inside the caller's transaction; EnsembleError if invalid."""
    action, chain_id, job = cmd.get("action"), str(cmd.get("chain")), str(cmd.get("job_id"))
    if action not in ACTIONS:
        raise EnsembleError(f"alloc: unknown action {action!r}")
    if action not in EVENT_ONLY:
        _apply_to_chain(store, action, chain_id, job, cmd)
    detail = {k: v for k, v in cmd.items() if k not in ("op", "action")}
    store.add_events([(None, f"alloc_{action}", detail)])


def _apply_to_chain(store: Any, action: str, chain_id: str, job: str, cmd: dict[str, Any]) -> None:
    every = chains(store)
    if action == "submitted":
        every[chain_id] = {"current": job, "pending": None, "repeats_left": int(cmd["repeats"]),
                           "script": str(cmd["script"]), "jobs": [job]}
    elif chain_id not in every:
        raise EnsembleError(f"alloc: no allocation chain {chain_id!r}")
    else:
        chain = every[chain_id]
        if action == "follow_up":
            chain.update(pending=job, repeats_left=chain["repeats_left"] - 1, jobs=chain["jobs"] + [job])
        elif action == "started":
            chain.update(current=job, pending=None if chain["pending"] == job else chain["pending"])
        elif chain["pending"] == job:
            chain["pending"] = None
    store.set_meta(META, every)
