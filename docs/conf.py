"""Sphinx configuration of pvae's site: guides in Markdown (MyST), a reference generated from the code
(``_ext/pvae_reference.py``), a gallery of examples run at build time (sphinx-gallery) and results pages.

Build it, offline, with ``pip install -e ".[docs]"`` then ``sphinx-build -W --keep-going -b html docs
docs/_build/html``.
"""

import os
import sys
from pathlib import Path

# the gallery's figures are drawn without a display
os.environ.setdefault("MPLBACKEND", "Agg")
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pvae  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "pvae"
author = "the pvae authors"
copyright = "the pvae authors"
release = version = pvae.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx_gallery.gen_gallery",
    "pvae_reference",  # writes reference/_generated/ from the code when the build starts
]

# option names stay as typed: no "--" turned into a dash, no curled quotes
smartquotes = False

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "_static", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# --- Markdown -------------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "amsmath"]
# links such as [the options](../reference/_generated/commands.md#pvae-train) reach a section
myst_heading_anchors = 3

# --- the API from the docstrings (Sphinx :param: style) ----------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_class_signature = "mixed"
# annotations written as strings of names imported only for type checkers, which two modules define
autodoc_type_aliases = {"Table": "pvae.studies.study.Table"}
# no intersphinx: the build runs offline

# --- the gallery: examples/gallery/plot_*.py, run at build time ----------------------------------------------
# the gallery's models are small: one thread each avoids contention on small machines (3-6 times faster on 2 cores)
import torch  # noqa: E402

torch.set_num_threads(1)
sphinx_gallery_conf = {
    "examples_dirs": "../examples/gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "within_subsection_order": "FileNameSortKey",
}

# --- HTML ---------------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"pvae {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
