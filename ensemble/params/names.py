"""Directory names from samples (automan's ``opts2path``)."""
from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from typing import Any

from ensemble.errors import SpecError, SpecTypeError
from ensemble.params import checks

#: Characters a value keeps in a name; every other one is written ``%XX`` (its UTF-8 bytes).
SAFE = frozenset(string.ascii_letters + string.digits + ".,+-")
#: Longest file name most file systems accept, in bytes.
MAX_NAME_BYTES = 255


def dir_name(sample: Mapping[str, Any], *, keys: Iterable[str] | None = None, ignore: Iterable[str] = (),
             rename: Mapping[str, str] | None = None) -> str:
    """A stable, file-system-safe name for a sample: ``label=value`` pairs joined by ``_``.

    Labels come in sorted order, or in the order of ``keys`` (which must be
    labels of the sample); ``ignore`` leaves labels out and ``rename`` writes a
    label under another name.  Floats are written as ``repr`` writes them,
    lists and dicts as JSON.  Characters other than letters, digits and
    ``.,+-`` (and ``_`` in labels) are escaped as ``%XX``, so a value holds no
    ``/``, ``_``, ``=`` or space and cannot run into the next label.  Samples
    with the same labels get different names unless their values differ only
    in type (``1`` and ``"1"``); :meth:`~ensemble.Ensemble.create` refuses two
    runs with the same directory.

    >>> dir_name(dict(x=1, y="hello", z=0.1))
    'x=1_y=hello_z=0.1'
    >>> dir_name(dict(x=1, y="hello", z=0.1), keys=["x"])
    'x=1'
    >>> dir_name(dict(x=1, y="hello", z=0.1), ignore=["x"])
    'y=hello_z=0.1'
    >>> dir_name(dict(x=1, y="hello", z=0.1), rename=dict(x="XX"))
    'XX=1_y=hello_z=0.1'
    >>> dir_name({"case": "a/b c", "max_iter": 100})
    'case=a%2Fb%20c_max_iter=100'

    ``Ensemble.create(run_dir_names=...)`` is a format string over sample labels
    (default ``runs/{run_id}``).  To name run directories this way, add the name
    to each sample as a label and use that label::

        samples = [{**sample, "name": dir_name(sample)} for sample in space]
        Ensemble.create(..., runs=[Run(sample) for sample in samples], run_dir_names="runs/{name}")
    """
    item = checks.sample("dir_name: sample", sample)
    renamed = _renames(item, rename)
    pairs = [f"{_escape(renamed.get(label, label), '_')}={_escape(_text(item[label]))}"
             for label in _labels(item, keys, ignore)]
    name = "_".join(pairs)
    if len(name.encode()) > MAX_NAME_BYTES:
        raise SpecError(f"dir_name: {name!r} is {len(name.encode())} bytes, more than the {MAX_NAME_BYTES} a file "
                        "name may have; pick fewer labels with keys= or ignore=")
    return name


def _labels(item: dict[str, Any], keys: Iterable[str] | None, ignore: Iterable[str]) -> list[str]:
    for argument, value in (("keys", keys), ("ignore", ignore)):
        if isinstance(value, str):
            raise SpecTypeError(f"dir_name: {argument}: expected a list of labels, got {value!r}")
    chosen = sorted(item) if keys is None else list(keys)
    for label in chosen:
        if label not in item:
            raise SpecError(f"dir_name: keys: {label!r} is not a label of the sample {item!r}")
    skipped = set(ignore)
    labels = [label for label in chosen if label not in skipped]
    if not labels:
        raise SpecError(f"dir_name: no labels left to name the sample {item!r} (keys={keys!r}, ignore={ignore!r})")
    return labels


def _renames(item: dict[str, Any], rename: Mapping[str, str] | None) -> dict[str, str]:
    if rename is None:
        return {}
    if not isinstance(rename, Mapping):
        raise SpecTypeError(f"dir_name: rename: expected a dict of label: name, got {rename!r}")
    for label, name in rename.items():
        if label not in item:
            raise SpecError(f"dir_name: rename: {label!r} is not a label of the sample {item!r}")
        checks.check_name(f"dir_name: rename[{label!r}]", name)
    return dict(rename)


def _text(value: Any) -> str:
    value = checks.plain(value)
    if isinstance(value, float):
        return repr(value)
    if getattr(value, "ndim", 0):
        value = value.tolist()
    if isinstance(value, (list, tuple, dict)):
        try:
            return json.dumps(value, separators=(",", ":"))
        except TypeError as exc:
            raise SpecTypeError(f"dir_name: cannot write {value!r} as JSON: {exc}") from None
    return str(value)


def _escape(text: str, keep: str = "") -> str:
    return "".join(char if char in SAFE or char in keep else "".join(f"%{byte:02X}" for byte in char.encode())
                   for char in text)
