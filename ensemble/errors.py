"""Exceptions raised for user errors (the CLI prints these as one line)."""
from __future__ import annotations


class EnsembleError(Exception):
    """A user-facing error: bad input, missing ensemble, busy ensemble."""


class SpecError(EnsembleError, ValueError):
    """A run, step or ensemble option is invalid; the message names field and value."""


class SpecTypeError(EnsembleError, TypeError):
    """A run, step or ensemble option has the wrong type."""


class TemplateError(EnsembleError, ValueError):
    """An input deck refers to an unknown token or cannot be rendered."""


class HookError(EnsembleError):
    """The application interface module cannot be loaded or a hook failed."""


class EnsembleExists(EnsembleError, ValueError):
    """``Ensemble.create`` found an ensemble already in the setup directory."""


class EnsembleBusy(EnsembleError):
    """Another live manager holds the ensemble's lease."""


class ManagerFailed(EnsembleError):
    """A manager process ended with a failure status (``exit_code``: 2, 74, 75, ...)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
