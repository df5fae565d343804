"""ensemble: run many simulations (one application, many inputs) on HPC allocations."""
from ensemble.errors import (
    EnsembleBusy,
    EnsembleError,
    EnsembleExists,
    HookError,
    ManagerFailed,
    SpecError,
    SpecTypeError,
    TemplateError,
)
from ensemble.manager import DEFAULT_SETUP_DIR, Ensemble
from ensemble.results.analysis import filter_runs
from ensemble.spec import CompositeRun, Run, Step
from ensemble.status import RUN_ABORTED, RUN_FAILURE, RUN_KILLED, RUN_QUEUED, RUN_SUCCESS, RunStatus

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SETUP_DIR",
    "RUN_ABORTED",
    "RUN_FAILURE",
    "RUN_KILLED",
    "RUN_QUEUED",
    "RUN_SUCCESS",
    "CompositeRun",
    "Ensemble",
    "EnsembleBusy",
    "EnsembleError",
    "EnsembleExists",
    "HookError",
    "ManagerFailed",
    "Run",
    "RunStatus",
    "SpecError",
    "SpecTypeError",
    "Step",
    "TemplateError",
    "__version__",
    "filter_runs",
]
