"""``ensemble plot``: the timeline, utilization and results charts as PNG files."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ensemble.errors import SpecError
from ensemble.manager import Ensemble


def cmd_plot(args: argparse.Namespace) -> int:
    from ensemble.watch import plots

    ensemble, path = Ensemble(args.setup_dir), Path(args.output)
    if args.chart == "timeline":
        plots.plot_timeline(ensemble, path)
    elif args.chart == "utilization":
        plots.plot_utilization(ensemble, path)
    else:
        if not (args.x and args.y):
            raise SpecError("plot results: give the columns with --x and --y")
        plots.plot_results(ensemble, path, args.x, args.y)
    print(f"wrote {path}")
    return 0


def register(sub: Any) -> None:
    """Add the ``plot`` subcommand to the CLI's subparsers."""
    plot = sub.add_parser("plot", help="a timeline, utilization or results chart as a PNG file",
                          description="Draw a chart of the ensemble (matplotlib): 'timeline' (every attempt on "
                                      "the cores it held), 'utilization' (cores busy over time) or 'results' "
                                      "(--y against --x, one point per run).")
    plot.add_argument("chart", choices=("timeline", "utilization", "results"), help="which chart")
    plot.add_argument("-o", "--output", required=True, help="the PNG file to write")
    plot.add_argument("--x", help="results: the column on the x axis (a sample label)")
    plot.add_argument("--y", help="results: the column on the y axis (a result key)")
    plot.set_defaults(func=cmd_plot)
