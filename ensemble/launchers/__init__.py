"""Launchers: how one step is started (a command line and environment; never state)."""
from __future__ import annotations

from ensemble.launchers.base import Launcher
from ensemble.launchers.local import LocalLauncher

LAUNCHERS: dict[str, type[Launcher]] = {"local": LocalLauncher}


def get_launcher(name: str) -> Launcher:
    """The launcher registered under ``name``."""
    try:
        return LAUNCHERS[name]()
    except KeyError:
        raise ValueError(f"launcher: unknown launcher {name!r} (known: {', '.join(LAUNCHERS)})") from None


__all__ = ["LAUNCHERS", "Launcher", "LocalLauncher", "get_launcher"]
