"""The guide of the two-layer model: q(z1 | x) q(z2 | z1), both diagonal Gaussians (Burda et al., 2015)."""

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from pvae.base.sites import DATA, Z1, Z
from pvae.engine.nets import MLP, diagonal_normal, encoder, stage_sizes


class TwoLayerGuide(PyroModule):
    """q(z1 | x) = N(mu(x), diag sigma(x)^2), then q(z2 | z1) = N(mu(z1), diag sigma(z1)^2).

    Sites: the lower latent ``"z1"`` (:data:`pvae.base.sites.Z1`) and the top latent z2 as ``"z"``,
    matching :class:`pvae.models.two_layer.TwoLayerVAE`; sizes mirror it (:func:`pvae.engine.nets.stage_sizes`).
    z2 depends on z1, so the guide is not mean-field: train it with an estimator that scores samples
    (``trace``), not ``meanfield``, whose analytic KL of z1 would ignore that dependence (Pyro warns
    under validation that it cannot verify the mean-field restriction).

    :param x_shape: shape of one datapoint.
    :param z_dim: dimension of the top latent z2.
    :param hidden: hidden widths of the encoder of q(z1 | x); the network of q(z2 | z1) takes half
        of each width.
    :param net: family of the encoder of q(z1 | x), a name from :data:`pvae.engine.nets.NETS`; q(z2 | z1)
        is always an MLP.
    :param z1_dim: dimension of z1; ``None`` takes ``2 * z_dim``, as the model does.
    """

    #: q(z2 | z1) depends on another latent: ``TraceMeanField_ELBO`` does not apply.
    mean_field = False

    def __init__(
        self,
        x_shape: Sequence[int],
        z_dim: int = 20,
        hidden: Sequence[int] = (400,),
        net: str = "mlp",
        z1_dim: int | None = None,
    ):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.z_dim = z_dim
        self.z1_dim, upper_hidden = stage_sizes(z_dim, hidden, z1_dim)
        self.encoder = encoder(net, self.x_shape, hidden, 2 * self.z1_dim)
        self.upper = MLP(self.z1_dim, upper_hidden, 2 * z_dim)

    def z1_given_x(self, x: torch.Tensor) -> dist.Distribution:
        """q(z1 | x) for ``x`` of shape ``(batch, *x_shape)``; event shape ``(z1_dim,)``."""
        return diagonal_normal(self.encoder(x))

    def z_given_z1(self, z1: torch.Tensor) -> dist.Distribution:
        """q(z2 | z1) for ``z1`` of shape ``(..., z1_dim)``; event shape ``(z_dim,)``."""
        return diagonal_normal(self.upper(z1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample z1, then z2, for ``x`` ``(batch, *x_shape)``; returns z2. ``y`` is unused."""
        with pyro.plate(DATA, x.shape[0]):
            z1 = pyro.sample(Z1, self.z1_given_x(x))
            return pyro.sample(Z, self.z_given_z1(z1))
