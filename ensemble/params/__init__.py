"""Parameter studies: lists of samples for ``Run(sample)`` and ``CompositeRun(sample, steps)``.

Everything here returns a plain list of plain dicts and checks its arguments,
raising :class:`~ensemble.errors.SpecError` or :class:`~ensemble.errors.SpecTypeError`
that names the function, the argument and the value.

* Named values: :func:`grid` (every combination) and :func:`together` (varied together).
* Sample lists: :func:`product`, :func:`zip_`, :func:`concat` (or ``+``),
  :func:`difference`, :func:`missing` and :func:`unique`.
* Samplers: :func:`uniform`, :func:`latin_hypercube` and :func:`sobol`.
* Files: :func:`read_samples` (CSV, JSON, YAML).
* Names: :func:`dir_name`, for run directories.
* psweep's :func:`plist`, :func:`pgrid` and :func:`pzip`.

>>> from ensemble.params import grid, together, product
>>> product(together(a=[1, 2], b=["xx", "yy"]), grid(c=[88, None]))
[{'a': 1, 'b': 'xx', 'c': 88}, {'a': 1, 'b': 'xx', 'c': None},
 {'a': 2, 'b': 'yy', 'c': 88}, {'a': 2, 'b': 'yy', 'c': None}]
"""
from ensemble.params.files import read_samples
from ensemble.params.names import dir_name
from ensemble.params.psweep import pgrid, plist, pzip
from ensemble.params.samplers import latin_hypercube, sobol, uniform
from ensemble.params.spaces import concat, difference, grid, missing, product, together, unique, zip_

__all__ = [
    "concat",
    "difference",
    "dir_name",
    "grid",
    "latin_hypercube",
    "missing",
    "pgrid",
    "plist",
    "product",
    "pzip",
    "read_samples",
    "sobol",
    "together",
    "uniform",
    "unique",
    "zip_",
]
