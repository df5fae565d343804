"""The exactly-once check the benchmarks make of a finished ensemble, read-only from its database."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from ensemble.status import RunStatus


def broken_promises(db: Path, runs: int) -> list[str]:
    """What is wrong with ``runs`` runs that should each have succeeded with exactly one attempt:
    an empty list when every run succeeded once, none ran twice, and no attempt or claim is open."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        ok = one(f"SELECT COUNT(*) FROM runs WHERE status={int(RunStatus.SUCCESS)}")
        attempts = one("SELECT COUNT(*) FROM attempts")
        twice = one("SELECT COUNT(*) FROM (SELECT run_id FROM attempts GROUP BY run_id HAVING COUNT(*) > 1)")
        good = one("SELECT COUNT(DISTINCT run_id) FROM attempts WHERE outcome='success'")
        open_ = one("SELECT COUNT(*) FROM attempts WHERE end IS NULL")
        claimed = one("SELECT COUNT(*) FROM runs WHERE claimed_by IS NOT NULL")
    finally:
        conn.close()
    return [text for bad, text in (
        (ok != runs, f"{ok} of {runs} runs succeeded"), (attempts != runs, f"{attempts} attempts for {runs} runs"),
        (twice, f"{twice} runs have more than one attempt"), (good != runs, f"{good} runs with a successful attempt"),
        (open_, f"{open_} open attempts"), (claimed, f"{claimed} runs still claimed")) if bad]
