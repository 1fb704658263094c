"""Amortized guides q(z | x), one per file, and the registry that names them.

A guide is a ``PyroModule`` with the model's signature, ``forward(x, y=None)``, that samples
``"z"`` inside the ``"data"`` plate. Its constructor takes ``x_shape`` first, then keywords
(``z_dim``, ``hidden``).
"""

from guides.gaussian import GaussianGuide
from pvae.registry import lookup

#: Name → guide class; ``--guide`` chooses from these (or ``module:ClassName``).
GUIDES = {"gaussian": GaussianGuide}


def get_guide(name: str) -> type:
    """The guide class registered as ``name``, or imported from ``"module:ClassName"``."""
    return lookup(GUIDES, name, "guide")
