"""Sphinx configuration of ptb's documentation site.

Build it with ``sphinx-build -W docs docs/_build/html`` (the ``docs`` extra
installs what it needs; ``tests/test_docs.py`` builds it the same way).
The front page is the README itself (``index.rst`` includes it), so the
guide is written once; its links to ``docs/<page>.rst``, which work on
GitHub, become links between the site's pages here.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, List

sys.path.insert(0, os.path.abspath(".."))        # this checkout's ptb, installed or not (Read the Docs)

from ptb._version import __version__  # noqa: E402

project = "ptb, the provenance toolbox"
author = "the provenance-toolbox authors"
copyright = "the provenance-toolbox authors; MIT licence"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx_click"]
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"ptb {__version__}"

autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
smartquotes = False                         # "--runs" stays as typed, as in --help

_DOC_LINK = re.compile(r"`([^`<]+?) <docs/([\w-]+)\.rst>`__?")


def _links_between_pages(app: Any, relative_path: Any, parent_docname: str, content: List[str]) -> None:
    """In the README, ```text <docs/page.rst>`__`` (a file on GitHub) becomes ``:doc:`text <page>``` here."""
    if str(relative_path).endswith("README.rst"):
        content[0] = _DOC_LINK.sub(r":doc:`\1 <\2>`", content[0])


def setup(app: Any) -> None:
    app.connect("include-read", _links_between_pages)
