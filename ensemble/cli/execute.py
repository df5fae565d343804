"""``ensemble execute``, ``submit`` and ``stop``: starting, submitting and stopping managers."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ensemble.errors import ManagerFailed
from ensemble.manager import Ensemble
from ensemble.results.failures import failure_report
from ensemble.spec.options import LAUNCHER_CHOICES


def _open(args: argparse.Namespace) -> Ensemble:
    return Ensemble(args.setup_dir)


def cmd_execute(args: argparse.Namespace) -> int:
    """Start a manager; with --block the exit status is the manager's (see ``docs/cli.rst``)."""
    from ensemble.alloc import execution
    from ensemble.watch import progress

    ensemble = _open(args)
    # --block runs the manager in this process (no second interpreter to start).
    start = lambda: execution.execute_local(  # noqa: E731
        ensemble.setup_dir, ensemble.store, blocking=args.block, in_process=args.block, timeout=args.timeout,
        parallelism=args.parallelism, allow_multiple=args.allow_multiple, max_concurrency=args.max_concurrency,
        cores=args.cores, gpus=args.gpus, kill_grace=args.kill_grace, log_layout=args.logs,
        launcher=args.launcher, mpi=args.mpi, early_stop=args.early_stop, run_range=args.run_range)
    if args.block:
        _announce(args, ensemble)
    try:
        # Inside a job of an allocation chain (ensemble submit --repeats), a blocking manager is one link.
        # A detached manager gets no bar: this command returns as soon as it has started.
        with progress.watch_runs(ensemble.setup_dir, quiet=args.quiet or not args.block):
            pid = _in_allocation(ensemble, start, args) if args.block else start()
    except ManagerFailed as exc:
        print(f"ensemble: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.block:
        counts = ensemble.status_counts()
        print(" ".join(f"{k}={v}" for k, v in counts.items()))
        for line in failure_report(ensemble.store):
            print(line, file=sys.stderr)
        return pid
    print(f"manager pid {pid} started; log: {ensemble.setup_dir / 'logs' / 'manager.log'}")
    return 0


def _in_allocation(ensemble: Ensemble, start: Any, args: argparse.Namespace) -> int:
    """A blocking manager as one allocation of a pool (``--pool``), of a chain, or on its own."""
    from pathlib import Path

    if args.pool:
        from ensemble.alloc import autoalloc

        return autoalloc.run_in_pool(ensemble, start, Path(args.pool))
    from ensemble.alloc import chain

    return chain.run_in_job(ensemble, start)


def _announce(args: argparse.Namespace, ensemble: Ensemble) -> None:
    """One line on stderr: what a blocking manager runs on and where its log is; a warning line
    for more cores than this machine has (accepted: oversubscribing and testing are legitimate;
    GPUs are detected, and warned about, where the manager chooses them: its log lists them)."""
    from ensemble.alloc.backends import resolve_launcher
    from ensemble.providers.resources import detect_cores

    launcher = resolve_launcher(args.launcher, queued=ensemble.store.count_queued(),
                                use_flux=ensemble.config.use_flux)
    if launcher == "local":
        cores = detect_cores()
        if args.cores is not None and args.cores > cores:
            print(f"ensemble: warning: --cores {args.cores} is more than the {cores} cores here: "
                  "runs will share them", file=sys.stderr)
        where = f"{args.cores or cores} cores of this machine"
    else:
        where = "the Flux instance's resources" if launcher == "flux" else "the allocation's nodes"
    print(f"ensemble: executing with launcher {launcher} on {where}; manager log: "
          f"{ensemble.setup_dir / 'logs' / 'manager.log'}", file=sys.stderr)


def cmd_submit(args: argparse.Namespace) -> None:
    """Write and submit the batch script (``--dry-run``: print it, write and submit nothing)."""
    from ensemble.alloc import arrays, autoalloc, chain
    from ensemble.providers.sbatch import check_request

    ensemble = _open(args)
    array = arrays.check_array(args.runs_per_task, args.max_running) if args.array else None
    request = check_request(args.nodes, args.partition, args.bank, args.name, args.time, args.repeats,
                            args.parallelism, args.early_stop, args.allow_multiple or bool(array),
                            args.max_concurrency, args.launcher, args.mpi, args.kill_grace, args.logs,
                            args.max_allocations)
    logs = ensemble.setup_dir / "logs"
    if array and args.dry_run:
        print(arrays.render_array_script(ensemble, request, array, arrays.plan_array(ensemble, request, array)), end="")
    elif array:
        job = arrays.submit_array(ensemble, request, array)
        print(f"submitted job array {job}; output: {logs / f'slurm-{job}_<task>.out'}")
    elif args.dry_run:
        extra = ("--pool", "<ledger>") if request.max_allocations else ()
        print(chain.script_text(ensemble, request, *extra), end="")
    elif request.max_allocations:
        job = autoalloc.submit_pool(ensemble, request)
        print(f"submitted job {job} (automatic allocations, at most {request.max_allocations}); "
              f"output: {logs / 'slurm-<job>.out'}")
    else:
        job = chain.submit_alloc(ensemble, request)
        print(f"submitted job {job}; output: {logs / f'slurm-{job}.out'}")


def _add_manager_options(parser: argparse.ArgumentParser) -> None:
    """Options of the manager, for ``execute`` and ``submit``."""
    parser.add_argument("--max-concurrency", type=int, help="most runs in flight at once")
    parser.add_argument("--parallelism", type=int, help="hook worker processes (default 1)")
    parser.add_argument("--kill-grace", type=float, default=3.0,
                        help="seconds between SIGTERM and SIGKILL when a step is killed (default 3)")
    parser.add_argument("--logs", choices=("split", "combined"), default="split",
                        help="one .out and one .err per attempt (split, default) or one .log with both")
    parser.add_argument("--allow-multiple", action="store_true", help="share the work with other managers")
    parser.add_argument("--launcher", choices=LAUNCHER_CHOICES, default="auto",
                        help="how steps start: auto (inside a Flux instance or with use_flux, Flux jobs; inside a Slurm "
                             "job srun, or worker from 200 queued runs; inside an LSF job lrun, else jsrun; else local), "
                             "local, srun, mpirun, worker, jsrun, lrun, flux")
    parser.add_argument("--mpi", help="srun --mpi= plugin for steps (default: $ENSEMBLE_MPI, else Slurm's MpiDefault)")
    parser.add_argument("--early-stop", type=float,
                        help="minutes before the allocation's end (or --timeout) to stop starting runs (0: never)")


def cmd_stop(args: argparse.Namespace) -> None:
    from ensemble.store.lease import live_leases

    ensemble = _open(args)
    if not live_leases(ensemble.store):
        print("no manager is executing this ensemble: nothing to stop")
        return
    ensemble.submit_command({"op": "stop", "reason": "ensemble stop"})
    print("stop posted: the manager starts nothing more and exits when its running runs end")


def register(sub: Any) -> None:
    """Add ``execute``, ``submit`` and ``stop`` to the CLI's subparsers."""
    execute = sub.add_parser("execute", help="execute the ensemble here (this machine or this allocation)")
    execute.add_argument("--block", action="store_true", help="wait until the manager exits")
    execute.add_argument("--timeout", type=float, help="minutes to run, then interrupt running steps")
    execute.add_argument("--cores", type=int, help="cores to use (default: detected)")
    execute.add_argument("--gpus", type=int, help="GPUs to use (default: detected)")
    execute.add_argument("--run-range", metavar="LO-HI",
                         help="execute only runs with ids LO to HI (one task of a job array: ensemble submit --array)")
    execute.add_argument("--pool", metavar="LEDGER",
                         help="run as one allocation of automatic allocations (written by ensemble submit "
                              "--max-allocations; --block only)")
    _add_manager_options(execute)
    execute.add_argument("-q", "--quiet", action="store_true",
                         help="no progress bar with --block (there is none either when standard error is not a "
                              "terminal)")
    execute.set_defaults(func=cmd_execute)

    submit = sub.add_parser("submit", help="submit a Slurm batch job that executes the ensemble")
    submit.add_argument("--nodes", type=int, default=1, help="whole nodes to allocate (default 1)")
    submit.add_argument("--partition", help="Slurm partition (default: Slurm's)")
    submit.add_argument("--bank", help="account to charge (sbatch --account)")
    submit.add_argument("--name", default="ensemble", help="job name (default ensemble)")
    submit.add_argument("--time", type=int, help="the allocation's time limit in minutes")
    submit.add_argument("--repeats", type=int, default=0,
                        help="follow-up allocations while runs are left when one ends (default 0)")
    submit.add_argument("--max-allocations", type=int, metavar="K",
                        help="automatic allocations: keep up to K queued or running while work waits")
    submit.add_argument("--array", action="store_true",
                        help="submit the queued runs as a job array, one task per --runs-per-task runs")
    submit.add_argument("--runs-per-task", type=int, default=1, help="runs per array task (default 1)")
    submit.add_argument("--max-running", type=int, help="array tasks running at once (sbatch --array=...%%M)")
    _add_manager_options(submit)
    submit.add_argument("--dry-run", action="store_true", help="print the batch script; write and submit nothing")
    submit.set_defaults(func=cmd_submit)

    stop = sub.add_parser("stop", help="ask the running manager to start nothing more (runs in flight finish)")
    stop.set_defaults(func=cmd_stop)
