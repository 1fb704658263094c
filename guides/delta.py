"""The Delta guide q(z | x) = δ(z − f(x)): a deterministic encoder, for the plain autoencoder."""

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from pvae.base.sites import DATA, Z
from pvae.engine.nets import encoder


class DeltaGuide(PyroModule):
    """A point mass at the encoder's output: with beta=0 on ``"z"`` the objective is reconstruction alone.

    Under beta=0 every latent term, log p(z) and log q(z|x) = 0 alike, is multiplied by zero, and the
    loss is −log p(x | z = f(x)): the autoencoder's reconstruction error (for a Bernoulli
    likelihood, the binary cross-entropy). With beta > 0 it is MAP-style regularisation by log p(z),
    not a VAE: a point mass has no entropy, its KL to the prior is infinite, and
    :func:`pvae.measures.evaluate.evaluate` reports no ELBO or log p(x) for it (``point_estimate``).

    :param x_shape: shape of one datapoint.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the encoder.
    :param net: encoder family, a name from :data:`pvae.engine.nets.NETS`.
    """

    #: q(z|x) has no density: bounds on log p(x) do not apply.
    point_estimate = True

    def __init__(self, x_shape: Sequence[int], z_dim: int = 20, hidden: Sequence[int] = (400,), net: str = "mlp"):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.z_dim = z_dim
        self.encoder = encoder(net, self.x_shape, hidden, z_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code f(x), ``(batch, z_dim)``."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample ``"z"`` from the point mass at f(x)."""
        with pyro.plate(DATA, x.shape[0]):
            return pyro.sample(Z, dist.Delta(self.encode(x)).to_event(1))
