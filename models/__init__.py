"""Generative models p(x | z) p(z), one per file, and the registry that names them.

A model is a ``PyroModule`` whose ``forward(x, y=None)`` samples the latent site ``"z"`` and
observes ``"x"`` inside the ``"data"`` plate, and which offers

* ``prior(batch_shape)``: the distribution of z,
* ``decode(z, y=None)``: the distribution of x given z (its ``mean`` is what pictures show),
* ``z_dim`` and ``x_shape``,

and declares its optional traits as class attributes or methods (``labels``, ``latent_sites``,
``default_guide``, ``defaults`` ...): :data:`pvae.engine.pair.DECLARATIONS` declares them all, and
:func:`pvae.engine.pair.trait_table` writes them as a table, with the models of :data:`MODELS` that declare each.

Its constructor takes ``x_shape`` first, then keywords (``z_dim``, ``hidden``, ``likelihood``,
``net``, ``num_classes``): :func:`pvae.engine.config.build_pair` passes those its signature names.
"""

import torch

from pvae.base.registry import lookup
from pvae.models.cvae import CVAE
from pvae.models.linear import LinearGaussian
from pvae.models.m2 import M2
from pvae.models.two_layer import TwoLayerVAE
from pvae.models.vae import VAE

#: Name → model class; ``--model`` chooses from these (or ``module:ClassName``).
MODELS = {"vae": VAE, "linear": LinearGaussian, "cvae": CVAE, "m2": M2, "two-layer": TwoLayerVAE}


#: Names ``--model`` also accepts that stand for several settings at once.
PRESETS: dict[str, dict] = {
    # The plain autoencoder: the VAE's model, a point-mass guide, no latent term in the loss.
    "ae": {"model": "vae", "guide": "delta", "beta": 0.0},
}


def get_model(name: str) -> type:
    """The model class registered as ``name``, or imported from ``"module:ClassName"``."""
    return lookup(MODELS, name, "model", torch.nn.Module)
