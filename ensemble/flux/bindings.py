"""Importing flux-python, with an error that names the missing piece."""
from __future__ import annotations

import importlib
import shutil
from types import ModuleType

from ensemble.errors import EnsembleError


def import_flux() -> ModuleType:
    """The ``flux`` module (with ``flux.job``), or EnsembleError saying what to install.

    PyPI's ``flux-python`` needs ``libflux-core.so`` of the same flux-core version; PyPI's
    ``flux-core`` is an unrelated package that shadows ``flux`` and is named as such.
    """
    try:
        flux = importlib.import_module("flux")
        importlib.import_module("flux.job")
    except ModuleNotFoundError as exc:
        if exc.name not in ("flux", "flux.job"):
            raise EnsembleError(f"use_flux: flux-python needs the Python module {exc.name!r} "
                                f"(pip install {exc.name})") from None
        raise EnsembleError("use_flux: the flux-python bindings are not installed (pip install flux-python "
                            f"matching the flux-core version{_installed_flux()})") from None
    except OSError as exc:
        raise EnsembleError(f"use_flux: flux-python cannot load libflux-core ({exc}); install flux-core, "
                            "or use the flux-python that comes with it") from None
    if not hasattr(flux, "Flux"):
        raise EnsembleError(f"use_flux: the module 'flux' at {getattr(flux, '__file__', '?')} is not "
                            "flux-python (PyPI's 'flux-core' package shadows it: pip uninstall flux-core)")
    return flux


def _installed_flux() -> str:
    path = shutil.which("flux")
    return f"; flux-core's flux is {path}" if path else "; no flux command is on PATH either"
