"""Sample identity: a stable hash of a sample's canonical JSON.

Canonical means keys sorted, no whitespace, UTF-8: ``{"y": 2, "x": 1}`` and ``{"x": 1, "y": 2}``
are one sample; ``1`` and ``1.0`` are two (JSON tells them apart, and so does the application).
The hash is the first 32 hex digits (128 bits) of SHA-256: stored per run, it lets
``add_runs(skip_existing=True)`` and ``create_resume`` extend a study without running a sample
twice.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from ensemble.spec import to_json

HEX_DIGITS = 32


def hash_of_value(sample: Any) -> str:
    """The hash of a plain JSON value (what ``json.loads`` gives)."""
    text = json.dumps(sample, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:HEX_DIGITS]


def hash_of_json(sample_json: str) -> str:
    """The hash of a sample stored as JSON text."""
    return hash_of_value(json.loads(sample_json))


def sample_hash(sample: Any) -> str:
    """The hash of a sample as given to ``Run`` (tuples, numpy numbers... as they are stored)."""
    return hash_of_json(to_json(sample, "sample"))
