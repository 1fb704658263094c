"""The variational autoencoder's generative model p(x | z) p(z) (Kingma & Welling, 2014)."""

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from pvae.likelihoods import get_likelihood
from pvae.nets import MLP
from pvae.sites import DATA, X, Z


class VAE(PyroModule):
    """p(z) = N(0, I), x | z ~ likelihood(decoder(z)).

    Sites: ``"z"`` (latent) and ``"x"`` (observed), both in the ``"data"`` plate at ``dim=-1``.

    :param x_shape: shape of one datapoint, e.g. ``(1, 28, 28)``.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the MLP decoder; ``()`` makes it affine.
    :param likelihood: a name from :data:`pvae.likelihoods.LIKELIHOODS`.
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        z_dim: int = 20,
        hidden: Sequence[int] = (400,),
        likelihood: str = "bernoulli",
    ):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.z_dim = z_dim
        self.likelihood = get_likelihood(likelihood)(self.x_shape)
        out_dim = math.prod(self.x_shape) * self.likelihood.params_per_pixel
        self.decoder = MLP(z_dim, hidden, out_dim)
        self.register_buffer("prior_loc", torch.zeros(z_dim), persistent=False)
        self.register_buffer("prior_scale", torch.ones(z_dim), persistent=False)

    def prior(self, batch_shape: Sequence[int] = ()) -> dist.Distribution:
        """p(z) with the given batch shape; event shape ``(z_dim,)``."""
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1).expand(tuple(batch_shape))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
        """p(x | z) for ``z`` of shape ``(..., z_dim)``; event shape ``x_shape``."""
        return self.likelihood(self.decoder(z))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        with pyro.plate(DATA, x.shape[0]):
            z = pyro.sample(Z, self.prior())
            pyro.sample(X, self.decode(z), obs=x)
