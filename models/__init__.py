"""Generative models p(x | z) p(z), one per file, and the registry that names them.

A model is a ``PyroModule`` whose ``forward(x, y=None)`` samples the latent site ``"z"`` and
observes ``"x"`` inside the ``"data"`` plate, and which offers

* ``prior(batch_shape)``: the distribution of z,
* ``decode(z, y=None)``: the distribution of x given z (its ``mean`` is what pictures show),
* ``z_dim`` and ``x_shape``; ``conditional = True`` if it observes labels ``y``.

Its constructor takes ``x_shape`` first, then keywords (``z_dim``, ``hidden``, ``likelihood``).
"""

from models.linear import LinearGaussian
from models.vae import VAE
from pvae.registry import lookup

#: Name → model class; ``--model`` chooses from these (or ``module:ClassName``).
MODELS = {"vae": VAE, "linear": LinearGaussian}


def get_model(name: str) -> type:
    """The model class registered as ``name``, or imported from ``"module:ClassName"``."""
    return lookup(MODELS, name, "model")
