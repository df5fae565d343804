"""An open setup directory: what the layers below the :class:`~ensemble.Ensemble` facade are given.

The facade calls down and nothing below imports it: the allocation layer (chains, pools, arrays)
takes an :class:`EnsembleHandle`, of which :class:`~ensemble.Ensemble` is one, and opens one of its
own where it has no facade (a pool's tender)."""
from __future__ import annotations

import os
from typing import Any, TypeVar

from ensemble.errors import EnsembleError
from ensemble.setup import setupdir
from ensemble.setup.control import submit
from ensemble.setup.setupdir import DEFAULT_SETUP_DIR, setup_path
from ensemble.spec.config import EnsembleConfig
from ensemble.store import Store

Handle = TypeVar("Handle", bound="EnsembleHandle")


class EnsembleHandle:
    """An existing ensemble, open: its setup directory, store and configuration, and the one way
    to change its runs (:meth:`submit_command`)."""

    def __init__(self, setup_dir: str | os.PathLike = DEFAULT_SETUP_DIR) -> None:
        self.setup_dir = setup_path(setup_dir)
        if not setupdir.exists(self.setup_dir):
            raise EnsembleError(f"setup_dir: no ensemble in {str(self.setup_dir)!r} (create one first)")
        self.store = Store.open(self.setup_dir)
        self.config = EnsembleConfig.from_dict(self.store.get_meta("config"))

    def close(self) -> None:
        """Close the database connection."""
        self.store.close()

    def __enter__(self: Handle) -> Handle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def submit_command(self, command: dict[str, Any]) -> str:
        """Apply a command now, or hand it to the live manager (``"applied"`` or ``"posted"``)."""
        return submit(self.setup_dir, self.store, self.config, command)
