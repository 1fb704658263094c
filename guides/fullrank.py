"""The full-covariance Gaussian guide q(z | x) = N(mu(x), L(x) L(x)ᵀ)."""

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from pvae.base.sites import DATA, Z
from pvae.engine.nets import encoder


class FullRankGuide(PyroModule):
    """Amortized full-rank Gaussian: the encoder gives the mean and a Cholesky factor of the covariance.

    For each datapoint the encoder's output is split into ``z_dim`` means, ``z_dim`` log-diagonal
    entries and ``z_dim (z_dim − 1) / 2`` free strictly-lower entries of L(x)::

        q(z | x) = N(mu(x), L(x) L(x)ᵀ),   L(x)_ii = exp(s_i(x)),   L(x)_ij = l_ij(x) for i > j.

    Every symmetric positive-definite covariance has exactly one such factor, so this family
    contains the exact posterior of any linear-Gaussian model (probabilistic PCA, Tipping &
    Bishop, 1999), which a diagonal guide cannot reach when the posterior is correlated. The
    parametrisation is the Cholesky one of Kucukelbir et al., 2017 (ADVI's full-rank family) and
    Titsias & Lázaro-Gredilla, 2014, amortized as in Kingma & Welling, 2014.

    Pyro 1.9.2 registers no analytic KL between a ``MultivariateNormal`` and the models'
    ``Normal(...).to_event(1)`` prior; :func:`pvae.engine.estimators.kl_mvn_diagonal` does, so
    ``TraceMeanField_ELBO`` computes that term in closed form (``Trace_ELBO`` samples it).

    :param x_shape: shape of one datapoint.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the encoder; ``()`` makes an MLP encoder affine.
    :param net: encoder family, a name from :data:`pvae.engine.nets.NETS`.
    """

    def __init__(self, x_shape: Sequence[int], z_dim: int = 20, hidden: Sequence[int] = (400,), net: str = "mlp"):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.z_dim = z_dim
        rows, cols = torch.tril_indices(z_dim, z_dim, offset=-1)
        # Positions of the strictly-lower entries, in the order the encoder emits them (row-major).
        self.register_buffer("tril_rows", rows, persistent=False)
        self.register_buffer("tril_cols", cols, persistent=False)
        self.encoder = encoder(net, self.x_shape, hidden, 2 * z_dim + len(rows))
        # Start as the diagonal guide: the off-diagonal entries come from zeroed output rows. With
        # the usual random initialisation, z_dim = 50 gives rows of L with up to 49 entries of
        # size 0.3 or so: prior-sized noise that the encoder had to unlearn first (on
        # Fashion-MNIST the guide trailed the diagonal one by 7 nats after 10 epochs).
        last = [m for m in self.encoder.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            last.weight[2 * z_dim :].zero_()
            last.bias[2 * z_dim :].zero_()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(batch, z_dim)`` and lower-triangular Cholesky factor ``(batch, z_dim, z_dim)`` of q(z | x)."""
        out = self.encoder(x)
        loc, log_diag, lower = out.split([self.z_dim, self.z_dim, len(self.tril_rows)], dim=-1)
        scale_tril = torch.diag_embed(log_diag.exp())  # (..., z_dim, z_dim), a fresh tensor
        scale_tril[..., self.tril_rows, self.tril_cols] = lower
        return loc, scale_tril

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample ``"z"`` from q(z | x) in the data plate; ``y`` is ignored."""
        loc, scale_tril = self.encode(x)
        with pyro.plate(DATA, x.shape[0]):
            return pyro.sample(Z, dist.MultivariateNormal(loc, scale_tril=scale_tril))
