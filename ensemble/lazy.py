"""Packages whose public names are imported on first use (PEP 562).

``ensemble.executors``, ``ensemble.providers`` and ``ensemble.launchers`` each export a class per
kind of machine; a manager uses one of each.  Importing all of them costs a manager's start about
5 ms (their modules and their dataclasses), so each package names where its exports live and
:func:`lazy_exports` imports a module when one of its names is first asked for.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__``: ``where`` maps each exported name to the
    submodule defining it (``{"SrunExecutor": "srun"}``)."""
    namespace = import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
