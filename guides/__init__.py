"""Amortized guides q(z | x), one per file, and the registry that names them.

A guide is a ``PyroModule`` with the model's signature, ``forward(x, y=None)``, that samples
``"z"`` inside the ``"data"`` plate. Its constructor takes ``x_shape`` first, then the keywords
it wants among ``z_dim``, ``hidden``, ``net``, ``flows``, ``aux_weight`` and ``num_classes``
(:func:`pvae.engine.config.build_pair` passes those its signature names). It declares its optional traits
(``point_estimate``, ``mean_field``, ``classify(x)`` ...) as class attributes or methods:
:data:`pvae.engine.pair.DECLARATIONS` declares them all, and :func:`pvae.engine.pair.trait_table` writes them as a
table,
with the guides of :data:`GUIDES` that declare each.
"""

import torch

from pvae.base.registry import lookup
from pvae.guides.conditional_gaussian import ConditionalGaussianGuide
from pvae.guides.delta import DeltaGuide
from pvae.guides.fullrank import FullRankGuide
from pvae.guides.gaussian import GaussianGuide
from pvae.guides.iaf import IAFGuide
from pvae.guides.m2 import M2Guide
from pvae.guides.two_layer import TwoLayerGuide

#: Name → guide class; ``--guide`` chooses from these (or ``module:ClassName``).
GUIDES = {
    "gaussian": GaussianGuide,
    "delta": DeltaGuide,
    "conditional-gaussian": ConditionalGaussianGuide,
    "m2": M2Guide,
    "fullrank": FullRankGuide,
    "iaf": IAFGuide,
    "two-layer": TwoLayerGuide,
}


def get_guide(name: str) -> type:
    """The guide class registered as ``name``, or imported from ``"module:ClassName"``."""
    return lookup(GUIDES, name, "guide", torch.nn.Module)
