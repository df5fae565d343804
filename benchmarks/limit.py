"""How close ``ensemble`` runs to the floor of the work each run really needs, measured in one run.

For N runs of ``/bin/true`` on the disk (a temp dir under ``--dir``, default the current
directory) and on ``/dev/shm``, each figure the median of ``--repeat`` repetitions, each in a
fresh process, the measurements taken in turn (one of each per round):

* **ensemble**: ``execute_local(blocking=True)`` (create excluded), as ``benchmarks/throughput.py``
  measures it: default options, so the ``split`` log layout and one run directory per run, steps
  started by the compiled spawner; and the same with ``ENSEMBLE_SPAWNER=0`` (steps started from
  the Python manager itself), the baseline of what the spawner gains.  Two rates of the same
  executions: **per run**, from the first attempt's start to the last attempt's end (read from
  the attempts table): the work each run needs, as the floor measures it; and **end to end**, the
  whole call, which adds the manager's fixed start and stop (a new interpreter, its imports, the
  lease, the spawner: about 0.3 s here, whatever the number of runs, measured on its own as the
  one-run CLI figure of ``throughput.py``);
* **floor, Python**: a tight loop doing exactly the per-run file-system work ``ensemble`` does
  (measured with ``strace``: ``mkdir runs/<id>``; ``ensemble.step0.attempt1.out`` and ``.err``
  created with ``O_EXCL``; an ``access`` check of the run's ``ensemble_result.json``, which is not there)
  and starting the step as ``ensemble`` does (``os.posix_spawn`` in a new session, the two log
  files as stdout and stderr, ``/dev/null`` as stdin), with as many in flight as ``ensemble``
  uses (the cores), reaped with ``os.wait``;
* **floor, C**: the same loop in C (``posix_spawn`` with ``POSIX_SPAWN_SETSID``), compiled with
  ``cc -O2`` when a compiler is there;
* ``xargs -P<cores> -n1 /bin/true``: spawning alone, no file work.

The floor is the faster of the two loops.  Printed: runs/s of each, then ensemble / floor and
ensemble / xargs (per run), the end-to-end ensemble / floor, and ensemble / ensemble without the
spawner (per run) for the disk and for /dev/shm.
Nothing here fails on time.

    python benchmarks/limit.py [--runs 2000] [--repeat 5] [--dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from throughput import cores, ensemble_rate, fresh_dir, fs_type, xargs_rate

C_LOOP = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    int n = atoi(argv[1]), p = atoi(argv[2]), running = 0;
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char path[4096];
    char *args[] = {"/bin/true", NULL};
    for (int i = 1; i <= n; i++) {
        if (running == p) { if (wait(NULL) < 0) return 3; running--; }
        snprintf(path, sizeof path, "runs/%d", i);
        if (mkdir(path, 0777) != 0) return 4;
        snprintf(path, sizeof path, "runs/%d/ensemble.step0.attempt1.out", i);
        int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        snprintf(path, sizeof path, "runs/%d/ensemble.step0.attempt1.err", i);
        int err = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (out < 0 || err < 0) return 5;
        snprintf(path, sizeof path, "runs/%d/ensemble_result.json", i);
        if (access(path, F_OK) == 0) return 7;
        posix_spawn_file_actions_t actions;
        posix_spawnattr_t attr;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, devnull, 0);
        posix_spawn_file_actions_adddup2(&actions, out, 1);
        posix_spawn_file_actions_adddup2(&actions, err, 2);
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
        pid_t pid;
        if (posix_spawn(&pid, args[0], &actions, &attr, args, environ) != 0) return 6;
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        close(out);
        close(err);
        running++;
    }
    while (running-- > 0) wait(NULL);
    return 0;
}
"""


def python_loop(n: int, parallel: int) -> None:
    """The per-run work of ``ensemble`` and nothing else, in the current directory."""
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    env = dict(os.environ)
    running = 0
    for i in range(1, n + 1):
        if running == parallel:
            os.wait()
            running -= 1
        run_dir = f"runs/{i}"
        os.mkdir(run_dir)
        out = os.open(f"{run_dir}/ensemble.step0.attempt1.out", flags, 0o644)
        err = os.open(f"{run_dir}/ensemble.step0.attempt1.err", flags, 0o644)
        os.posix_spawn("/bin/true", ["/bin/true"], env, setsid=True, file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)])
        os.close(out)
        os.close(err)
        if os.access(f"{run_dir}/ensemble_result.json", os.F_OK):
            raise RuntimeError(f"{run_dir}/ensemble_result.json exists")
        running += 1
    while running:
        os.wait()
        running -= 1


def loop_rate(n: int, base: Path, command: list[str]) -> dict[str, Any]:
    """runs/s of one floor loop (a fresh process) in a fresh directory; its run directories checked."""
    work = fresh_dir(base)
    (work / "runs").mkdir()
    try:
        start = time.perf_counter()
        subprocess.run(command, cwd=work, check=True)
        elapsed = time.perf_counter() - start
        made = sum(1 for _ in (work / "runs").iterdir())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if made != n:
        raise RuntimeError(f"{command[0]}: {made} of {n} run directories")
    return {"rate": n / elapsed, "execute_s": elapsed}


def compile_c(where: Path) -> Path | None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None
    source, binary = where / "floor.c", where / "floor"
    source.write_text(C_LOOP)
    done = subprocess.run([compiler, "-O2", "-o", str(binary), str(source)], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"limit: the C loop did not compile: {done.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return binary


def measure_fs(label: str, base: Path, n: int, repeat: int, c_loop: Path | None) -> dict[str, Any]:
    """Each figure the median of ``repeat`` measurements, taken in turn (one of each per round),
    so that a machine that speeds up or slows down meanwhile weighs on all of them alike."""
    p = cores()
    py = [sys.executable, str(Path(__file__).resolve()), "--loop", str(n), str(p)]
    measures = {
        "ensemble": lambda: ensemble_rate(n, base),
        "no_spawner": lambda: ensemble_rate(n, base, "split", True, {"ENSEMBLE_SPAWNER": "0"}),
        "floor_python": lambda: loop_rate(n, base, py),
        **({"floor_c": lambda: loop_rate(n, base, [str(c_loop), str(n), str(p)])} if c_loop else {}),
        "xargs": lambda: xargs_rate(n, ["/bin/true"]),
    }
    got: dict[str, list[dict[str, Any]]] = {name: [] for name in measures}
    for _ in range(repeat):
        for name, measure in measures.items():
            got[name].append(measure())
    row = {"fs": f"{label} ({fs_type(base)})", "floor_c": None,
           **{name: statistics.median(r["rate"] for r in results) for name, results in got.items()}}
    row["end_to_end"] = row["ensemble"]
    for name in ("ensemble", "no_spawner"):
        row[name] = statistics.median(n / r["steps_s"] for r in got[name])
    row["floor"] = max(r for r in (row["floor_python"], row["floor_c"]) if r)
    row["ensemble_over_floor"] = row["ensemble"] / row["floor"]
    row["ensemble_over_xargs"] = row["ensemble"] / row["xargs"]
    row["end_to_end_over_floor"] = row["end_to_end"] / row["floor"]
    row["spawner_gain"] = row["ensemble"] / row["no_spawner"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where the disk measurements go (default: .)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    parser.add_argument("--loop", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        python_loop(*args.loop)
        return
    with tempfile.TemporaryDirectory() as scratch:
        c_loop = compile_c(Path(scratch))
        print(f"limit: {args.runs:,} runs of /bin/true, {cores()} in flight, medians of {args.repeat}, "
              f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}"
              f"{'' if c_loop else ', no C compiler: Python floor only'}")
        rows = [measure_fs("disk", args.dir.resolve(), args.runs, args.repeat, c_loop)]
        if Path("/dev/shm").is_dir():
            rows.append(measure_fs("/dev/shm", Path("/dev/shm"), args.runs, args.repeat, c_loop))
    print(f"{'':16} {'ensemble':>9} {'e2e':>6} {'no spawn':>9} {'floor py':>9} {'floor C':>9} {'xargs':>9}  "
          f"{'ens/floor':>9} {'ens/xargs':>9} {'e2e/floor':>9} {'spawner':>8}")
    for r in rows:
        c = f"{r['floor_c']:9.0f}" if r["floor_c"] else f"{'-':>9}"
        print(f"{r['fs']:16} {r['ensemble']:9.0f} {r['end_to_end']:6.0f} {r['no_spawner']:9.0f} "
              f"{r['floor_python']:9.0f} {c} {r['xargs']:9.0f}  {r['ensemble_over_floor']:9.2f} "
              f"{r['ensemble_over_xargs']:9.2f} {r['end_to_end_over_floor']:9.2f} {r['spawner_gain']:7.2f}x")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
