"""The SQLite store of one ensemble: every SQL statement lives in this package.

One database file per setup directory.  WAL journaling is used where the file
system supports it (local disks); on network file systems (NFS, Lustre, GPFS,
...) the rollback journal is used because WAL needs shared memory on one host.
Writers use ``BEGIN IMMEDIATE`` and group changes into one transaction per batch.
Samples, steps and results are JSON text, never pickle.

Parts: :mod:`~ensemble.store.schema` (tables, journal mode, full-disk errors),
:mod:`~ensemble.store.core` (opening, transactions, meta, events),
:mod:`~ensemble.store.runs` (runs and attempts), :mod:`~ensemble.store.execution`
(leases, inbox, claims), :mod:`~ensemble.store.batch` (a manager's write batch) and
:mod:`~ensemble.store.summary` (columnar reads for summaries).
"""
from ensemble.store.batch import WriteBatch
from ensemble.store.core import Store
from ensemble.store.schema import (
    BUSY_TIMEOUT_MS,
    DB_NAME,
    NETWORK_FS,
    SCHEMA_VERSION,
    filesystem_type,
    is_disk_full,
    journal_mode_for,
)

__all__ = ["BUSY_TIMEOUT_MS", "DB_NAME", "NETWORK_FS", "SCHEMA_VERSION", "Store", "WriteBatch", "filesystem_type",
           "is_disk_full", "journal_mode_for"]
