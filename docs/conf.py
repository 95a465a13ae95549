"""Sphinx configuration: the user guide, the architecture page and an API reference from docstrings.

Built by the test suite (``tests/test_docs.py``) with warnings as errors:
``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import kb_streams

project = "kb_streams"
author = "kb_streams developers"
release = version = kb_streams.__version__

extensions = [
    "myst_parser",  # the guide and the architecture page stay Markdown, readable on GitHub too
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # numpy-style docstrings
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "alabaster"  # ships with Sphinx: the site builds with no network
html_title = f"kb_streams {release}"
