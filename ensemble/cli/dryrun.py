"""``ensemble dryrun``: prepare run directories; ``--show`` what the steps would run."""
from __future__ import annotations

import argparse
from typing import Any

from ensemble.errors import SpecError
from ensemble.manager import Ensemble
from ensemble.spec.arguments import count_arg
from ensemble.spec.files import parse_ids
from ensemble.spec.options import LAUNCHER_CHOICES


def _show(ensemble: Ensemble, prepared: list, args: argparse.Namespace) -> int:
    from ensemble.cli.dryshow import Target, show
    from ensemble.providers.resources import detect_cores, detect_gpus

    target = Target(args.launcher, count_arg("--nodes", args.nodes, 1),
                    count_arg("--cores-per-node", args.cores_per_node or detect_cores(), 1),
                    count_arg("--gpus-per-node", len(detect_gpus()[0]) if args.gpus_per_node is None
                              else args.gpus_per_node, 0))
    lines, misfits = show(ensemble.config, ensemble.runs([p.run_id for p in prepared]), prepared, target)
    print("\n".join(lines))
    if misfits:
        raise SpecError(f"{misfits} step(s) can never fit the target ({target.describe()})")
    return 0


def cmd_dryrun(args: argparse.Namespace) -> int | None:
    ensemble = Ensemble(args.setup_dir)
    prepared = ensemble.dry_run(*parse_ids(args.ids), verbosity=args.verbose)
    if args.show:
        return _show(ensemble, prepared, args)
    print(f"prepared {len(prepared)} run directories")
    for run in [] if args.verbose else prepared[:10]:
        print(f"  {run.describe()}")
    if len(prepared) > 10:
        print(f"  ... and {len(prepared) - 10} more (ensemble rundirs --all lists them)")


def register(sub: Any) -> None:
    """Add the ``dryrun`` subcommand to the CLI's subparsers."""
    dryrun = sub.add_parser("dryrun", help="prepare run directories without running anything")
    dryrun.add_argument("ids", nargs="*", help="run ids or ranges (3-7); default: every run")
    dryrun.add_argument("-v", "--verbose", action="count", default=0, help="print each run directory prepared")
    dryrun.add_argument("--show", action="store_true",
                        help="print each run's input-deck diffs and step command lines, and check every step "
                             "fits the target allocation (exit 2 if one does not)")
    dryrun.add_argument("--launcher", default="local", choices=sorted(set(LAUNCHER_CHOICES) - {"auto"}),
                        help="launcher the command lines are shown for (default local)")
    dryrun.add_argument("--nodes", type=int, default=1, help="target allocation: nodes (default 1)")
    dryrun.add_argument("--cores-per-node", type=int, help="target: cores per node (default: this machine's)")
    dryrun.add_argument("--gpus-per-node", type=int, help="target: GPUs per node (default: this machine's)")
    dryrun.set_defaults(func=cmd_dryrun)
