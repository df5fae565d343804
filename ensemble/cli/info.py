"""``ensemble info``: what an ensemble is and where it came from (its provenance)."""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ensemble.manager import Ensemble


def info(ensemble: Ensemble) -> dict[str, Any]:
    """The ensemble's setup directory, creation, provenance, main options and run counts."""
    store = ensemble.store
    config = ensemble.config
    return {
        "setup_dir": str(ensemble.setup_dir),
        "created": store.get_meta("created"),
        "provenance": store.get_meta("provenance"),
        "schema_version": store.schema_version,
        "options": {key: getattr(config, key) for key in ("application", "run_dir_names", "app_interface",
                                                          "max_restarts", "max_failed_runs", "use_flux",
                                                          "result_file", "template_engine")},
        "runs": ensemble.status_counts(),
    }


def _when(seconds: float | None) -> str:
    return "unknown" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _git(git: dict[str, Any] | None) -> str:
    if not git or not git.get("commit"):
        return "not in a git repository"
    dirty = {True: ", uncommitted changes", False: ", clean", None: ""}[git.get("dirty")]
    return f"git {git['commit'][:12]} of {git.get('root')}{dirty}"


def lines(data: dict[str, Any]) -> list[str]:
    """``info`` as aligned text lines."""
    prov = data["provenance"] or {}
    packages = ", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items())
    rows = [("setup dir", data["setup_dir"]),
            ("created", f"{_when(data['created'])} by {prov.get('user', '?')} on {prov.get('host', '?')}"
                        if prov else f"{_when(data['created'])} (no provenance recorded)")]
    if prov:
        rows += [("from", f"{prov.get('cwd')} ({_git(prov.get('git'))})"),
                 ("command", " ".join(prov.get("command") or [])),
                 ("python", f"{prov.get('python')} ({prov.get('python_executable')}) on {prov.get('platform')}"),
                 ("packages", packages)]
    rows += [(key.replace("_", " "), "" if value is None else str(value)) for key, value in data["options"].items()]
    rows.append(("runs", ", ".join(f"{k} {v}" for k, v in data["runs"].items())))
    width = max(len(k) for k, _ in rows)
    return [f"{key + ':':<{width + 1}} {value}" for key, value in rows]


def cmd_info(args: argparse.Namespace) -> int:
    data = info(Ensemble(args.setup_dir))
    print(json.dumps(data, indent=1) if args.json else "\n".join(lines(data)))
    return 0


def register(sub: Any) -> None:
    """Add the ``info`` subcommand to the CLI's subparsers."""
    parser = sub.add_parser("info", help="what the ensemble is and where it came from",
                            description="Print the setup directory, who created the ensemble where and when, "
                                        "from which command, Python, packages and git commit, its main options "
                                        "and its run counts.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=cmd_info)
