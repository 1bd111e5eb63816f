"""Sphinx configuration of the mixforget documentation.

Build: ``pip install '.[docs]' && sphinx-build -W --keep-going -b html docs docs/_build/html``
(the package must be importable: the API reference is generated from its docstrings and the
tutorials are executed during the build).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import mixforget

project = "mixforget"
author = "the mixforget authors"
copyright = "the mixforget authors, MIT licence"
release = mixforget.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    # MathJax shipped with the build (no CDN): formulas render offline (issue 25)
    "sphinx-mathjax-offline",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    # "(docs: theory-…)" citations in docstrings become links (docs/_ext/docs_links.py)
    "docs_links",
]
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "tutorials_src/README.txt", "Thumbs.db", ".DS_Store"]
root_doc = "index"

# MyST: $…$ / $$…$$ maths, ::: fences, heading anchors for Markdown links.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc + numpydoc: signatures without the type hints (numpydoc's Parameters sections say
# them in words), members in source order.
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
}
# The build must not need the network (CI runs offline): intersphinx inventories are fetched
# only when MIXFORGET_DOCS_INTERSPHINX=1.
if os.environ.get("MIXFORGET_DOCS_INTERSPHINX") != "1":
    intersphinx_mapping = {}

# Executed tutorials (sphinx-gallery): every tutorials_src/tutorial_*.py runs during the build.
sphinx_gallery_conf = {
    "examples_dirs": "tutorials_src",
    "gallery_dirs": "tutorials",
    "filename_pattern": r"tutorial_",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "min_reported_time": 1,
    # its execution-times page loads jQuery/DataTables from a CDN: the docs must read offline
    "write_computation_times": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"mixforget {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_depth": 3,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars: dict[str, list[str]] = {"index": [], "speed": []}

# Matplotlib without a display, quietly.
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")
