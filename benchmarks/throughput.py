"""Execution throughput of ``execute_local`` against ``xargs -P <cores>`` measured in the same run.

Prints, for each N: runs/s of /bin/true through ensemble, of a two-line batch
script through ensemble, and of /bin/true through xargs, with the ratios; the
end-to-end time of a one-run ensemble (create + execute, in process and
through the CLI); and the manager's CPU seconds while 2 runs sleep.

    python benchmarks/throughput.py [--runs 1000 5000] [--sleep 10]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ensemble import Ensemble, Run

SCRIPT = "#!/bin/sh\necho %%x%% > out.txt\n"


def cores() -> int:
    return len(os.sched_getaffinity(0))


def xargs_rate(n: int) -> float:
    data = "".join(f"{i}\n" for i in range(n)).encode()
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", str(cores()), "-n", "1", "/bin/true"], input=data, check=True)
    return n / (time.perf_counter() - start)


def ensemble_rate(n: int, batch_script: bool, work: Path) -> tuple[float, float]:
    """(runs/s of execute_local, seconds to create) for n runs of /bin/true or of a two-line script."""
    os.chdir(work)
    app = "/bin/true"
    if batch_script:
        app = "two_lines.sh"
        Path(app).write_text(SCRIPT)
        Path(app).chmod(0o755)
    runs = [Run({"x": i}) for i in range(n)]
    start = time.perf_counter()
    ens = Ensemble.create(application=app, runs=runs, app_is_batch_script=batch_script, setup_dir="setup")
    created = time.perf_counter() - start
    start = time.perf_counter()
    ens.execute_local(blocking=True)
    elapsed = time.perf_counter() - start
    assert ens.count_by_status(Ensemble.RUN_SUCCESS) == n, ens.status_counts()
    return n / elapsed, created


def filesystem_floor(work: Path, n: int) -> float:
    """Seconds per run to create a run directory and its two log files, as the engine does."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    start = time.perf_counter()
    for i in range(n):
        run_dir = work / "runs" / str(i)
        os.makedirs(run_dir)
        for name in ("out", "err"):
            os.close(os.open(run_dir / f"ensemble.step0.attempt1.{name}", flags, 0o644))
    return (time.perf_counter() - start) / n


def one_run_seconds(work: Path) -> float:
    os.chdir(work)
    start = time.perf_counter()
    ens = Ensemble.create(application="/bin/true", runs=[Run({"x": 1})], app_is_batch_script=False,
                          setup_dir="one")
    ens.execute_local(blocking=True)
    elapsed = time.perf_counter() - start
    assert ens.count_by_status(Ensemble.RUN_SUCCESS) == 1
    return elapsed


def one_run_cli_seconds(work: Path) -> float:
    (work / "s.csv").write_text("x\n1\n")
    start = time.perf_counter()
    subprocess.run(["ensemble", "--setup-dir", "cli", "create", "s.csv", "--application", "/bin/true",
                    "--no-batch-script"], cwd=work, check=True, capture_output=True)
    subprocess.run(["ensemble", "--setup-dir", "cli", "execute", "--block"], cwd=work, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def idle_cpu_seconds(work: Path, sleep: float) -> tuple[float, float]:
    """(manager CPU seconds, wall seconds) for 2 runs of ``sleep``."""
    os.chdir(work)
    ens = Ensemble.create(application="/bin/sleep", runs=[Run({"i": i}, args=[str(sleep)]) for i in range(2)],
                          app_is_batch_script=False, setup_dir="idle")
    before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    ens.execute_local(blocking=True, cores=2)
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--sleep", type=float, default=10.0)
    parser.add_argument("--dir", default=None, help="where run directories go (default: the system temp dir); "
                        "compare a disk with /dev/shm to see the file-system share")
    args = parser.parse_args()
    tempfile.tempdir = args.dir
    print(f"python {sys.version.split()[0]}, {cores()} cores, {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as tmp:
        floor = filesystem_floor(Path(tmp), max(args.runs))
    print(f"run directories in {tempfile.gettempdir()}: mkdir + 2 log files cost {floor * 1e6:.0f} us per run "
          f"(the file-system floor; xargs creates no files)")
    for n in args.runs:
        base = xargs_rate(n)
        with tempfile.TemporaryDirectory() as tmp:
            true_rate, created = ensemble_rate(n, False, Path(tmp))
        with tempfile.TemporaryDirectory() as tmp:
            script_rate, _ = ensemble_rate(n, True, Path(tmp))
        print(f"N={n}: xargs -P{cores()} /bin/true {base:7.0f} runs/s | ensemble /bin/true {true_rate:7.0f} runs/s "
              f"(ratio {true_rate / base:.2f}) | ensemble 2-line script {script_rate:7.0f} runs/s "
              f"(ratio {script_rate / base:.2f}) | create {created:.2f} s")
    ones = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(5):
            (Path(tmp) / str(i)).mkdir()
            ones.append(one_run_seconds(Path(tmp) / str(i)))
    print(f"one run, create + execute in process: median {statistics.median(ones):.3f} s (of 5)")
    with tempfile.TemporaryDirectory() as tmp:
        clis = []
        for i in range(3):
            (Path(tmp) / str(i)).mkdir()
            clis.append(one_run_cli_seconds(Path(tmp) / str(i)))
    print(f"one run, `ensemble create` + `ensemble execute --block` (2 interpreter starts): "
          f"median {statistics.median(clis):.3f} s (of 3)")
    with tempfile.TemporaryDirectory() as tmp:
        cpu, wall = idle_cpu_seconds(Path(tmp), args.sleep)
    print(f"manager CPU while 2 runs sleep {args.sleep:g} s: {cpu:.3f} s over {wall:.1f} s "
          f"({100 * cpu / wall:.2f}% of a core)")


if __name__ == "__main__":
    main()
