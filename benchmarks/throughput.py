"""Execution throughput of ``ensemble`` against LLNL Themis 1.2.0 and ``xargs -P <cores>``, measured in one run.

Everything below is measured in the same invocation on the same machine, each
figure the median of ``--repeat`` repetitions:

* runs/s of ``execute_local`` over N runs of ``/bin/true`` (create excluded),
  with the setup and run directories on the disk (a temp dir under the current
  directory, or ``--dir``) and on ``/dev/shm`` (``--shm``);
* the same with ``ENSEMBLE_KEEPER=0`` (the engine in the manager process, no keeper above
  it): the baseline of what the keeper costs (target: under 5%);
* the same through Themis 1.2.0's ``execute_local`` (a venv with
  ``llnl-themis==1.2.0`` is created once under ``~/.cache/ensemble-bench``;
  if that fails the Themis lines are skipped and the reason printed);
* ``xargs -P<cores> -n1 /bin/true`` (the floor of process spawning);
* ``xargs -P<cores> -n1 sh -c 'exec /bin/true'`` (the same plus a shell per run);
* ``xargs -P<cores> -n1 sh -c 'mkdir d/$0 && exec /bin/true >d/$0/a.out 2>d/$0/a.err'``
  on the disk and on /dev/shm: the file work ensemble does per run (a run
  directory, two log files the step writes to), so the metadata cost is visible;
* one run end to end through the CLI (``ensemble create`` + ``ensemble execute
  --block``), median of ``--one-run-reps``, next to ``python -c pass``;
* the manager's CPU seconds while 2 runs sleep ``--sleep`` seconds.

Each ensemble measurement runs in a fresh interpreter (this script started
again in worker mode) so one measurement cannot warm or burden the next. The
``ensemble`` console script next to ``sys.executable`` is used for the CLI
figures, so the benchmark works from a venv that is not activated; set
PYTHONPATH to benchmark a source tree other than the installed one.

    python benchmarks/throughput.py [--runs 2000] [--repeat 3] [--dir DIR] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ensemble.store import filesystem_type

THEMIS_VERSION = "1.2.0"
THEMIS_PACKAGE = f"llnl-themis=={THEMIS_VERSION}"
DEFAULT_VENV = Path.home() / ".cache" / "ensemble-bench" / "themis-venv"

# Runs inside the Themis venv: argv = N, setup_dir (absolute; run directories go next to it).
# Themis picks its resource manager from the environment when the ensemble is created
# (themis.resource._resource_mgr_from_env: SYS_TYPE, srun+sbatch, bsub+jsrun, FLUX_URI or a
# working `flux resource list`) and stores it in the spec; execute_local then launches each run
# through that manager's build_cmd (srun / lrun / flux mini run). Forcing the identification to
# NoResourceManager ("none": runs are started directly, no launcher prefix) and dropping the
# scheduler variables keeps it local even inside an allocation.
THEMIS_DRIVER = r'''
import json, os, resource as _rusage, sys, time
for _var in list(os.environ):
    if _var.startswith(("SLURM_", "FLUX_", "LSB_", "LSF_")) or _var == "SYS_TYPE":
        del os.environ[_var]
import themis
from themis import resource
resource._resource_mgr_from_env = lambda: resource.NoResourceManager.identifier
n, setup = int(sys.argv[1]), sys.argv[2]
os.chdir(os.path.dirname(setup))
t0 = time.perf_counter()
ens = themis.Themis.create(application="/bin/true", runs=[themis.Run({"x": i}) for i in range(n)],
                           setup_dir=setup, app_is_batch_script=False)
t1 = time.perf_counter()
ens.execute_local(blocking=True)
t2 = time.perf_counter()
ok = ens.count_by_status(themis.Themis.RUN_SUCCESS)
print(json.dumps({"create_s": t1 - t0, "execute_s": t2 - t1, "success": ok,
                  "resource_mgr": json.load(open(os.path.join(setup, "ensemble_spec.json"))).get("resource_mgr")
                  if os.path.exists(os.path.join(setup, "ensemble_spec.json")) else None}))
'''


def cores() -> int:
    return len(os.sched_getaffinity(0))


def ensemble_command() -> list[str]:
    script = Path(sys.executable).parent / "ensemble"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ensemble"]


def fs_type(path: Path) -> str:
    return filesystem_type(Path(path)) or "?"


# -- worker mode: one measurement in a fresh interpreter ------------------------------------------
def worker_ensemble(n: int, work: Path, layout: str = "split") -> dict[str, Any]:
    from ensemble import Ensemble, Run

    os.chdir(work)
    runs = [Run({"x": i}) for i in range(n)]
    start = time.perf_counter()
    ens = Ensemble.create(application="/bin/true", runs=runs, app_is_batch_script=False, setup_dir="setup")
    created = time.perf_counter() - start
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    ens.execute_local(blocking=True, log_layout=layout)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ok = ens.count_by_status(Ensemble.RUN_SUCCESS)
    first, last = ens.store.conn.execute("SELECT MIN(start), MAX(end) FROM attempts").fetchone()
    return {"create_s": created, "execute_s": elapsed, "success": ok, "steps_s": last - first,
            "manager_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}


def worker_idle(sleep: float, work: Path) -> dict[str, Any]:
    """CPU the manager process itself uses while its 2 runs sleep (from /proc, start-up excluded)."""
    from ensemble import Ensemble, Run

    os.chdir(work)
    ens = Ensemble.create(application="/bin/sleep", runs=[Run({"i": i}, args=[str(sleep)]) for i in range(2)],
                          app_is_batch_script=False, setup_dir="idle")
    pid = ens.execute_local(cores=2)
    while len([a for a in ens.attempts() if a["pid"]]) < 2:
        time.sleep(0.01)
    window = max(1.0, sleep - 1.0)
    before = _cpu_seconds(pid)
    time.sleep(window)
    used = _cpu_seconds(pid) - before
    while ens.store.leases():
        time.sleep(0.05)
    return {"cpu_s": used, "wall_s": window}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_worker(*argv: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", *argv],
                         capture_output=True, text=True, env=None if env is None else {**os.environ, **env})
    if out.returncode != 0:
        raise RuntimeError(f"worker {argv} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- measurements ----------------------------------------------------------------------------------
def fresh_dir(base: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="ensemble-bench-", dir=base))


def ensemble_rate(n: int, base: Path, layout: str = "split", keeper: bool = True,
                  env: dict[str, str] | None = None) -> dict[str, Any]:
    """``keeper=False``: the engine runs in the manager process itself (``ENSEMBLE_KEEPER=0``), the
    baseline of what the keeper that lets a later manager adopt running steps costs; ``env``:
    more variables for the measurement (``ENSEMBLE_SPAWNER=0``)."""
    work = fresh_dir(base)
    env = {**(env or {}), **({} if keeper else {"ENSEMBLE_KEEPER": "0"})}
    try:
        result = run_worker("ensemble", str(n), str(work), layout, env=env or None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if result["success"] != n:
        raise RuntimeError(f"ensemble: {result['success']} of {n} runs succeeded")
    return {"rate": n / result["execute_s"], **result}


def themis_rate(python: Path, n: int, base: Path) -> dict[str, Any]:
    work = fresh_dir(base)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        out = subprocess.run([str(python), "-c", THEMIS_DRIVER, str(n), str(work / "setup")], cwd=work, env=env,
                             capture_output=True, text=True, timeout=max(600, n))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if out.returncode != 0:
        raise RuntimeError(f"themis driver failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["success"] != n:
        raise RuntimeError(f"themis: {result['success']} of {n} runs succeeded")
    if result.get("resource_mgr") not in ("none", None):
        raise RuntimeError(f"themis used resource manager {result['resource_mgr']!r}, not local")
    return {"rate": n / result["execute_s"], **result}


def xargs_rate(n: int, command: list[str], base: Path | None = None) -> dict[str, Any]:
    work = fresh_dir(base) if base else None
    if work:
        (work / "d").mkdir()
    data = "".join(f"{i}\n" for i in range(n)).encode()
    try:
        start = time.perf_counter()
        subprocess.run(["xargs", "-P", str(cores()), "-n", "1", *command], input=data, cwd=work, check=True)
        elapsed = time.perf_counter() - start
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)
    return {"rate": n / elapsed, "execute_s": elapsed}


def ensure_themis(venv: Path, install: bool) -> tuple[Path | None, str]:
    """(python of a venv with Themis 1.2.0, '') or (None, why not)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import importlib.metadata as m, themis; print(m.version('llnl-themis'))"]

    def installed() -> str | None:
        if not python.exists():
            return None
        out = subprocess.run(check, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None

    version = installed()
    if version == THEMIS_VERSION:
        return python, ""
    if not install:
        return None, f"no Themis {THEMIS_VERSION} in {venv} and --no-themis-install given"
    print(f"creating {venv} with {THEMIS_PACKAGE} (once) ...", file=sys.stderr, flush=True)
    try:
        venv.parent.mkdir(parents=True, exist_ok=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True,
                           timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", THEMIS_PACKAGE], check=True, capture_output=True,
                       text=True, timeout=900)
    except subprocess.CalledProcessError as exc:
        return None, f"installing {THEMIS_PACKAGE} failed: {(exc.stderr or exc.stdout or '').strip()[-500:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"installing {THEMIS_PACKAGE} failed: {exc}"
    version = installed()
    if version != THEMIS_VERSION:
        return None, f"Themis in {venv} reports version {version!r}, not {THEMIS_VERSION}"
    return python, ""


def timed(command: list[str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def one_run_cli(base: Path, reps: int) -> dict[str, Any]:
    cli = ensemble_command()
    work = fresh_dir(base)
    creates, executes, totals = [], [], []
    try:
        for i in range(reps):
            rep = work / str(i)
            rep.mkdir()
            (rep / "s.csv").write_text("x\n1\n")
            c = timed([*cli, "--setup-dir", "setup", "create", "s.csv", "--application", "/bin/true",
                       "--no-batch-script"], rep)
            e = timed([*cli, "--setup-dir", "setup", "execute", "--block"], rep)
            creates.append(c)
            executes.append(e)
            totals.append(c + e)
        python_pass = [timed([sys.executable, "-c", "pass"]) for _ in range(reps)]
        cli_help = [timed([*cli, "--help"]) for _ in range(reps)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    return {"command": cli, "reps": reps, "create_s": med(creates), "execute_s": med(executes), "total_s": med(totals),
            "python_pass_s": med(python_pass), "cli_help_s": med(cli_help), "totals": totals}


# -- driver ----------------------------------------------------------------------------------------
def median_of(repeat: int, measure, *args) -> dict[str, Any]:
    samples = [measure(*args) for _ in range(repeat)]
    rates = [s["rate"] for s in samples]
    result = {"rate": statistics.median(rates), "min": min(rates), "max": max(rates), "rates": rates}
    for key in ("create_s", "manager_cpu_s"):
        if key in samples[0]:
            result[key] = statistics.median(s[key] for s in samples)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs per throughput measurement (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per measurement; medians reported")
    parser.add_argument("--dir", default=None, help="directory on the disk for the temp dirs (default: .)")
    parser.add_argument("--shm", default="/dev/shm", help="in-memory directory (default /dev/shm)")
    parser.add_argument("--sleep", type=float, default=5.0, help="seconds the idle-CPU runs sleep (0: skip)")
    parser.add_argument("--one-run-reps", type=int, default=7)
    parser.add_argument("--themis-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--no-themis", action="store_true", help="skip the Themis measurements")
    parser.add_argument("--no-themis-install", action="store_true", help="use the Themis venv only if it exists")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--json-out", type=Path, help="also write the JSON object to this file")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, value, work, *layout = args.worker
        result = (worker_ensemble(int(value), Path(work), *layout) if kind == "ensemble"
                  else worker_idle(float(value), Path(work)))
        print(json.dumps(result))
        return

    n, repeat, p = args.runs, args.repeat, cores()
    disk = Path(args.dir or ".").resolve()
    shm = Path(args.shm)
    places = {"disk": disk, "shm": shm}
    import ensemble

    meta = {"python": sys.version.split()[0], "cores": p, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "host": platform.node(), "runs": n, "repeat": repeat, "ensemble_module": ensemble.__file__,
            "ensemble_cli": ensemble_command(), "load_before": os.getloadavg(),
            "dirs": {k: f"{v} ({fs_type(v)})" for k, v in places.items()}}
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))

    rows: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    log(f"measuring N={n}, {repeat} repetitions each ...")
    rows["xargs_true"] = median_of(repeat, xargs_rate, n, ["/bin/true"])
    rows["xargs_sh_true"] = median_of(repeat, xargs_rate, n, ["sh", "-c", "exec /bin/true"])
    files_cmd = ["sh", "-c", 'mkdir d/$0 && exec /bin/true >d/$0/a.out 2>d/$0/a.err']
    for place, path in places.items():
        rows[f"xargs_sh_files_{place}"] = median_of(repeat, xargs_rate, n, files_cmd, path)
    for place, path in places.items():
        log(f"ensemble on {place} ...")
        rows[f"ensemble_{place}"] = median_of(repeat, ensemble_rate, n, path)
        rows[f"ensemble_combined_{place}"] = median_of(repeat, ensemble_rate, n, path, "combined")
        rows[f"ensemble_nokeeper_{place}"] = median_of(repeat, ensemble_rate, n, path, "split", False)

    themis_python, why = (None, "--no-themis given") if args.no_themis else ensure_themis(args.themis_venv,
                                                                                            not args.no_themis_install)
    if themis_python is None:
        notes.append(f"Themis skipped: {why}")
        log(notes[-1])
    else:
        for place, path in places.items():
            log(f"themis on {place} ...")
            try:
                rows[f"themis_{place}"] = median_of(repeat, themis_rate, themis_python, n, path)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                notes.append(f"Themis on {place} failed: {exc}")
                log(notes[-1])

    # Installed packages carry compiled bytecode; a source checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module at every start.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(ensemble.__file__).parent)], check=True)
    log("one run through the CLI ...")
    one = one_run_cli(disk, args.one_run_reps)
    idle = None
    if args.sleep > 0:
        log("idle manager CPU ...")
        work = fresh_dir(disk)
        try:
            idle = run_worker("idle", str(args.sleep), str(work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    meta["load_after"] = os.getloadavg()

    ratios = {}
    if "themis_disk" in rows:
        ratios["ensemble/themis disk"] = {"value": rows["ensemble_disk"]["rate"] / rows["themis_disk"]["rate"],
                                          "target": ">= 3", "ok": None}
        ratios["ensemble/themis disk"]["ok"] = ratios["ensemble/themis disk"]["value"] >= 3
    if "themis_shm" in rows:
        ratios["ensemble/themis shm"] = {"value": rows["ensemble_shm"]["rate"] / rows["themis_shm"]["rate"],
                                         "target": None, "ok": None}
    for place in places:
        value = rows[f"ensemble_{place}"]["rate"] / rows["xargs_true"]["rate"]
        ratios[f"ensemble {place}/xargs /bin/true"] = {"value": value, "target": ">= 0.8" if place == "shm" else None,
                                                       "ok": value >= 0.8 if place == "shm" else None}
        value = rows[f"ensemble_nokeeper_{place}"]["rate"] / rows[f"ensemble_{place}"]["rate"] - 1
        ratios[f"keeper cost {place} (rate without / with - 1)"] = {"value": value, "target": "< 0.05",
                                                                    "ok": value < 0.05}
        value = rows[f"ensemble_{place}"]["rate"] / rows[f"xargs_sh_files_{place}"]["rate"]
        ratios[f"ensemble {place}/xargs sh+files {place}"] = {"value": value, "target": None, "ok": None}
    one["ok"] = one["total_s"] < 0.25

    report = {"meta": meta, "throughput": rows, "ratios": ratios, "one_run_cli": one, "idle": idle, "notes": notes}
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print_report(report)


LABELS = {
    "xargs_true": "xargs -P{p} -n1 /bin/true",
    "xargs_sh_true": "xargs -P{p} -n1 sh -c 'exec /bin/true'",
    "xargs_sh_files_disk": "xargs -P{p} sh: mkdir + 2 log files, disk",
    "xargs_sh_files_shm": "xargs -P{p} sh: mkdir + 2 log files, /dev/shm",
    "ensemble_disk": "ensemble execute_local, disk",
    "ensemble_shm": "ensemble execute_local, /dev/shm",
    "ensemble_combined_disk": "ensemble, one .log per attempt, disk",
    "ensemble_nokeeper_disk": "ensemble, no keeper (ENSEMBLE_KEEPER=0), disk",
    "ensemble_nokeeper_shm": "ensemble, no keeper (ENSEMBLE_KEEPER=0), /dev/shm",
    "ensemble_combined_shm": "ensemble, one .log per attempt, /dev/shm",
    "themis_disk": "Themis 1.2.0 execute_local, disk",
    "themis_shm": "Themis 1.2.0 execute_local, /dev/shm",
}


def print_report(r: dict[str, Any]) -> None:
    m = r["meta"]
    p = m["cores"]
    print(f"python {m['python']}, {p} cores, {m['host']}, {m['date']}; N={m['runs']} runs of /bin/true, "
          f"median of {m['repeat']}")
    print(f"ensemble from {m['ensemble_module']}; CLI {' '.join(m['ensemble_cli'])}")
    print(f"disk: {m['dirs']['disk']}   shm: {m['dirs']['shm']}")
    print(f"load average before {m['load_before'][0]:.2f}, after {m['load_after'][0]:.2f}")
    print()
    print(f"{'':50} {'runs/s':>8} {'min':>8} {'max':>8} {'us/run':>8} {'create s':>9} {'CPU s':>9}")
    for key, label in LABELS.items():
        row = r["throughput"].get(key)
        if row is None:
            print(f"{label.format(p=p):50} {'skipped':>8}")
            continue
        extra = f" {row['create_s']:9.2f}" if "create_s" in row else f" {'':9}"
        extra += f" {row['manager_cpu_s']:9.2f}" if "manager_cpu_s" in row else ""
        print(f"{label.format(p=p):50} {row['rate']:8.0f} {row['min']:8.0f} {row['max']:8.0f} "
              f"{1e6 / row['rate']:8.0f}{extra}")
    print()
    for name, ratio in r["ratios"].items():
        target = f"  (target {ratio['target']}: {'met' if ratio['ok'] else 'NOT met'})" if ratio["target"] else ""
        print(f"ratio {name:40} {ratio['value']:6.2f}x{target}")
    o = r["one_run_cli"]
    print()
    print(f"one run, `ensemble create` + `ensemble execute --block` (2 interpreter starts), median of {o['reps']}: "
          f"{o['total_s']:.3f} s (create {o['create_s']:.3f} + execute {o['execute_s']:.3f}; "
          f"target < 0.25 s: {'met' if o['ok'] else 'NOT met'})")
    print(f"  vs `python -c pass` {o['python_pass_s']:.3f} s, `ensemble --help` {o['cli_help_s']:.3f} s; "
          f"beyond 2 bare interpreter starts: {o['total_s'] - 2 * o['python_pass_s']:.3f} s")
    if r["idle"]:
        i = r["idle"]
        print(f"manager CPU while 2 runs sleep: {i['cpu_s']:.3f} s over {i['wall_s']:.1f} s "
              f"({100 * i['cpu_s'] / i['wall_s']:.2f}% of a core)")
    for note in r["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
