"""No allocation: this machine, as it is."""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from ensemble.errors import SpecError, SpecTypeError
from ensemble.providers.base import Provider
from ensemble.providers.resources import NOTHING_FOUND, Node, detect_cores, detect_gpus
from ensemble.spec.arguments import count_arg
from ensemble.store.lease import HOST

log = logging.getLogger(__name__)

#: What ``gpus=`` accepts: None (detect), a count, or exact device ids.
GpuOption = int | Sequence[str] | None


def gpu_option(gpus: object) -> int | list[str] | None:
    """``gpus=`` validated: None, an integer >= 0, or a list of distinct device ids (JSON-ready)."""
    if gpus is None:
        return None
    if isinstance(gpus, (list, tuple)):
        for gpu in gpus:
            if not isinstance(gpu, str) or not gpu or "," in gpu or "\0" in gpu:
                raise SpecError(f"gpus: expected device ids as non-empty strings without ',' or NUL, got {gpu!r}")
        if len(set(gpus)) != len(gpus):
            raise SpecError(f"gpus: device ids must be distinct, got {list(gpus)!r}")
        return list(gpus)
    if isinstance(gpus, bool) or not isinstance(gpus, int):
        raise SpecTypeError(f"gpus: expected an integer >= 0 or a list of device ids, got {gpus!r}")
    if gpus < 0:
        raise SpecError(f"gpus: expected an integer >= 0, got {gpus!r}")
    return gpus


def choose_gpus(gpus: GpuOption, dev_root: str | os.PathLike = "/") -> tuple[str, ...]:
    """The GPU ids this host's node gets for ``gpus=`` (see :class:`LocalProvider`); logs what it found."""
    option = gpu_option(gpus)
    if isinstance(option, list):
        log.info("gpus: %d given as gpus=%s", len(option), ",".join(option))
        return tuple(option)
    found, source = detect_gpus(dev_root)
    if option is None or option == len(found):
        log.info("gpus: %d from %s", len(found), source)
        return found
    if option < len(found):
        log.info("gpus: %d of %d from %s (gpus=%d)", option, len(found), source, option)
        return found[:option]
    if source != NOTHING_FOUND:
        raise SpecError(f"gpus: {option} requested but {len(found)} found here ({source})")
    log.warning("gpus: %d requested but none detected (%s); assuming ids 0..%d", option, source, option - 1)
    return tuple(str(k) for k in range(option))


@dataclass(frozen=True)
class LocalProvider(Provider):
    """This host with ``cores`` cores and some GPUs.

    ``gpus``: None takes the detected GPU ids; an integer N takes the first N detected ids (more than
    detected is an error, unless nothing at all was detected: then ids ``"0"``..``"N-1"`` with a
    warning); a list of strings is the exact device ids.  ``dev_root`` is where ``dev/nvidia<N>``
    device files are looked for.
    """

    cores: int | None = None
    gpus: GpuOption = None
    dev_root: str = "/"
    name = "local"

    def nodes(self) -> tuple[Node, ...]:
        cores = detect_cores() if self.cores is None else count_arg("cores", self.cores, 1)
        return (Node(HOST, tuple(range(cores)), choose_gpus(self.gpus, self.dev_root)),)
