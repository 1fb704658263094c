"""The diagonal Gaussian guide q(z | x) = N(mu(x), diag sigma(x)^2)."""

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from pvae.base.sites import DATA, Z
from pvae.engine.nets import encoder


class GaussianGuide(PyroModule):
    """Amortized mean-field Gaussian: one encoder maps x to the mean and log-scale of z.

    :param x_shape: shape of one datapoint.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the encoder; ``()`` makes an MLP encoder affine.
    :param net: encoder family, a name from :data:`pvae.engine.nets.NETS`.
    """

    def __init__(self, x_shape: Sequence[int], z_dim: int = 20, hidden: Sequence[int] = (400,), net: str = "mlp"):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.z_dim = z_dim
        self.encoder = encoder(net, self.x_shape, hidden, 2 * z_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z | x), each ``(batch, z_dim)``."""
        loc, log_scale = self.encoder(x).chunk(2, dim=-1)
        return loc, log_scale.exp()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample ``"z"`` from q(z | x); labels are ignored."""
        loc, scale = self.encode(x)
        with pyro.plate(DATA, x.shape[0]):
            return pyro.sample(Z, dist.Normal(loc, scale).to_event(1))
