"""Sphinx configuration for the ensemble documentation.

Build with::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""
from __future__ import annotations

import os
import sys

# Document the package in this checkout, installed or not.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import ensemble  # noqa: E402

project = "ensemble"
author = "the ensemble authors"
copyright = "the ensemble authors"
version = ensemble.__version__
release = ensemble.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# Type hints go into the parameter descriptions, not the signatures; with
# nitpicky off, hints that name no documented object (``Sequence``, ``IO``)
# render as plain text instead of warnings.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_member_order = "bysource"
autoclass_content = "class"
nitpicky = False

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "alabaster"
html_static_path: list[str] = []
html_title = f"ensemble {release}"
