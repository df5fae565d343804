"""Cost of the file-system metadata operations a run needs, single-threaded and overlapped on threads.

For each directory (default: a temp dir under the current directory, i.e. the
disk, and one under /dev/shm) and each operation, 1, 2 and 4 Python threads
each do ``--ops`` operations at once (``--sync-ops`` for fsync and the
synchronous SQLite commit) in one shared parent directory, as run directories
share ``runs/``. Reported: µs per operation on one thread, aggregate ops/s at
each thread count, and the speedup of 4 threads over 1. A speedup near 1 means
the file system (or a lock) serialises the operation, so preparing run
directories on helper threads cannot hide its latency; near the number of
cores (or above it, for operations that wait on the device) means it can.

Threads are Python threads, as an engine's helper threads would be; the os
calls release the GIL, the Python around them does not.

    python benchmarks/fsops.py [DIR ...] [--ops 2000] [--sync-ops 200] [--repeat 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ensemble.store import filesystem_type

CREATE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
THREADS = (1, 2, 4)


def touch(path: str) -> None:
    os.close(os.open(path, CREATE_FLAGS, 0o644))


class Op:
    """One operation: ``prepare`` (untimed) makes what thread ``k`` needs; ``body(k, i)`` is timed."""

    name = ""
    sync = False  # uses --sync-ops

    def __init__(self, root: Path, threads: int, count: int) -> None:
        self.root, self.threads, self.count = root, threads, count
        self.d = str(root)

    def prepare(self) -> None:
        pass

    def body(self, k: int, i: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Mkdir(Op):
    name = "mkdir"

    def body(self, k, i):
        os.mkdir(f"{self.d}/t{k}-{i}")


class Create(Op):
    name = "open(O_CREAT|O_EXCL|O_WRONLY)+close"

    def body(self, k, i):
        touch(f"{self.d}/t{k}-{i}")


class RunDir(Op):
    name = "run dir: mkdir + 2 log files"

    def body(self, k, i):
        run = f"{self.d}/t{k}-{i}"
        os.mkdir(run)
        touch(run + "/a.out")
        touch(run + "/a.err")


class OpenExisting(Op):
    name = "os.open existing (O_RDONLY)+close"

    def prepare(self):
        for k in range(self.threads):
            for i in range(self.count):
                touch(f"{self.d}/t{k}-{i}")

    def body(self, k, i):
        os.close(os.open(f"{self.d}/t{k}-{i}", os.O_RDONLY | os.O_CLOEXEC))


class Rename(OpenExisting):
    name = "rename (same directory)"

    def body(self, k, i):
        os.rename(f"{self.d}/t{k}-{i}", f"{self.d}/r{k}-{i}")


class Unlink(OpenExisting):
    name = "unlink"

    def body(self, k, i):
        os.unlink(f"{self.d}/t{k}-{i}")


class Fsync(Op):
    name = "write 1 byte + fsync"
    sync = True

    def prepare(self):
        self.fds = [os.open(f"{self.d}/f{k}", CREATE_FLAGS, 0o644) for k in range(self.threads)]

    def body(self, k, i):
        os.write(self.fds[k], b"x")
        os.fsync(self.fds[k])

    def close(self):
        for fd in self.fds:
            os.close(fd)


class SqliteCommit(Op):
    """One connection per thread to one shared WAL database (the ensemble has one database)."""

    synchronous = "NORMAL"

    @property
    def name(self):
        return f"SQLite WAL commit, 1 insert, synchronous={self.synchronous}"

    def prepare(self):
        path = f"{self.d}/bench.db"
        setup = sqlite3.connect(path)
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (k INTEGER, i INTEGER, payload TEXT)")
        setup.commit()
        setup.close()
        self.conns = []
        for _ in range(self.threads):
            conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            self.conns.append(conn)

    def body(self, k, i):
        conn = self.conns[k]
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?, ?)", (k, i, "running"))
        conn.execute("COMMIT")

    def close(self):
        for conn in self.conns:
            conn.close()


class SqliteCommitFull(SqliteCommit):
    synchronous = "FULL"
    sync = True


OPS: list[type[Op]] = [Mkdir, Create, RunDir, OpenExisting, Rename, Unlink, Fsync, SqliteCommit, SqliteCommitFull]


def measure_once(cls: type[Op], base: Path, threads: int, count: int) -> float:
    """Wall seconds for ``threads`` threads doing ``count`` operations each."""
    root = Path(tempfile.mkdtemp(prefix="fsops-", dir=base))
    op = cls(root, threads, count)
    try:
        op.prepare()
        barrier = threading.Barrier(threads + 1)
        errors: list[BaseException] = []

        def work(k: int) -> None:
            body = op.body
            barrier.wait()
            try:
                for i in range(count):
                    body(k, i)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise errors[0]
        return elapsed
    finally:
        op.close()
        shutil.rmtree(root, ignore_errors=True)


def fs_type(path: Path) -> str:
    return filesystem_type(Path(path)) or "?"


def measure_dir(base: Path, ops: int, sync_ops: int, repeat: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for cls in OPS:
        count = sync_ops if cls.sync else ops
        row: dict[str, Any] = {"op": cls(base, 1, 0).name, "count_per_thread": count}
        for threads in THREADS:
            walls = [measure_once(cls, base, threads, count) for _ in range(repeat)]
            wall = statistics.median(walls)
            row[f"ops_s_{threads}"] = threads * count / wall
            row[f"ops_s_{threads}_all"] = [threads * count / w for w in walls]
            if threads == 1:
                row["us_per_op"] = 1e6 * wall / count
        row["speedup_4_over_1"] = row["ops_s_4"] / row["ops_s_1"]
        log(f"  {row['op']}: {row['us_per_op']:.1f} us, x{row['speedup_4_over_1']:.2f} on 4 threads")
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", help="directories to measure in (default: . and /dev/shm); ext4 here varies "
                        "several-fold between directories, so name more than one disk directory when it matters")
    parser.add_argument("--ops", type=int, default=2000, help="operations per thread (default 2000)")
    parser.add_argument("--sync-ops", type=int, default=200, help="per thread for fsync / synchronous=FULL")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the median wall time is used")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--json-out", type=Path, help="also write the JSON object to this file")
    args = parser.parse_args()
    dirs = [Path(d).resolve() for d in (args.dirs or [".", "/dev/shm"])]
    log = (lambda s: None) if args.json else (lambda s: print(s, file=sys.stderr, flush=True))
    report: dict[str, Any] = {"python": sys.version.split()[0], "cores": len(os.sched_getaffinity(0)),
                              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": os.getloadavg(),
                              "ops": args.ops, "sync_ops": args.sync_ops, "repeat": args.repeat, "dirs": []}
    for d in dirs:
        log(f"{d} ({fs_type(d)}) ...")
        report["dirs"].append({"dir": str(d), "fs": fs_type(d),
                               "rows": measure_dir(d, args.ops, args.sync_ops, args.repeat, log)})
    report["load_after"] = os.getloadavg()
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"python {report['python']}, {report['cores']} cores, {report['date']}; {args.ops} ops per thread "
          f"({args.sync_ops} for fsync / synchronous=FULL), median of {args.repeat}; one shared parent directory; "
          f"load average {report['load_before'][0]:.2f} -> {report['load_after'][0]:.2f}")
    for entry in report["dirs"]:
        print()
        print(f"{entry['dir']} ({entry['fs']})")
        print(f"{'operation':48} {'us/op':>8} {'ops/s 1T':>10} {'ops/s 2T':>10} {'ops/s 4T':>10} {'4T/1T':>6}"
              f"  {'1T spread':>15}")
        for row in entry["rows"]:
            spread = f"{min(row['ops_s_1_all']):.0f}-{max(row['ops_s_1_all']):.0f}"
            print(f"{row['op']:48} {row['us_per_op']:8.1f} {row['ops_s_1']:10.0f} {row['ops_s_2']:10.0f} "
                  f"{row['ops_s_4']:10.0f} {row['speedup_4_over_1']:6.2f}  {spread:>15}")


if __name__ == "__main__":
    main()
