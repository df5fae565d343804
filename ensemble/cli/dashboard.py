"""``ensemble dashboard``: serve a read-only web page of the ensemble (see :mod:`ensemble.watch.dashboard`)."""
from __future__ import annotations

import argparse
import errno
import ipaddress
import sys
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.manager import Ensemble
from ensemble.setup.setupdir import setup_path


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ensemble.watch.dashboard.server import serve

    setup = setup_path(args.setup_dir)
    if not Ensemble.exists(setup):
        raise EnsembleError(f"setup_dir: no ensemble in {str(setup)!r} (create one first)")
    if not 0 <= args.port <= 65535:
        raise EnsembleError(f"--port: expected 0 to 65535, got {args.port}")
    if not _is_loopback(args.host):
        print(f"ensemble: warning: --host {args.host}: others who can reach this address can try the token; "
              "the default 127.0.0.1 (with an SSH tunnel) is safer", file=sys.stderr)
    try:
        serve(setup, args.host, args.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise EnsembleError(f"--port: {args.port} is in use (--port 0 picks a free port)") from None
        raise
    return 0


def register(sub: Any) -> None:
    """Add the ``dashboard`` subcommand to the CLI's subparsers."""
    parser = sub.add_parser("dashboard", help="a read-only web page of the ensemble",
                            description="Serve a web page for watching the ensemble: live counts, progress, rate "
                                        "and ETA, running runs and the last failures; a sortable, filterable table "
                                        "of runs; a page per run with its attempts and logs; a timeline and a "
                                        "utilization chart.  Open the URL it prints (it holds the access token). "
                                        "Ctrl-C stops it.")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0: a free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.set_defaults(func=cmd_dashboard)
