"""Two stochastic layers, z2 → z1 → x: the 2-layer model of Burda, Grosse & Salakhutdinov (2015),
"Importance Weighted Autoencoders".

    z2 ~ N(0, I)                              site ``"z"``  (:data:`pvae.base.sites.Z`)
    z1 | z2 ~ N(mu(z2), diag sigma(z2)^2)     site ``"z1"`` (:data:`Z1`)
    x | z1 ~ likelihood(decoder(z1))          site ``"x"``

The *top* latent z2 takes the engine's site name ``"z"``, so :meth:`TwoLayerVAE.prior` is p(z2) and
the engine's pictures and latent plots show z2; the lower latent is the site :data:`Z1`, which the
matching guide (:class:`pvae.guides.two_layer.TwoLayerGuide`) imports from here.

Sizes follow Burda et al., who used z1 of 100 and z2 of 50 dimensions, two deterministic layers of
200 units between x and z1 and two of 100 between z1 and z2: ``hidden`` gives the widths of the
networks between x and z1, the networks between z1 and z2 take half of each width, and z1 has twice
the dimensions of z2 unless ``z1_dim`` says otherwise (see :func:`stage_sizes`). Burda's numbers are
``TwoLayerVAE(x_shape, z_dim=50, hidden=(200, 200))``; the hidden layers here are pvae's ReLU
:class:`~pvae.engine.nets.MLP`, where Burda used tanh.
"""

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from pvae.base.sites import DATA, Z1, X, Z
from pvae.engine.nets import MLP, diagonal_normal, stage_sizes
from pvae.models.vae import VAE


class TwoLayerVAE(VAE):
    """p(z2) p(z1 | z2) p(x | z1), with the top latent z2 as site ``"z"`` and z1 as site ``"z1"``.

    Beta scales both latent sites (:attr:`latent_sites`). :meth:`decode` maps z2 to x through
    the *mean* of p(z1 | z2), so pictures show the decoder at E[z1 | z2] rather than at one noisy
    draw of z1; the model's marginal p(x | z2) averages over z1 instead and has no closed form.

    :param x_shape: shape of one datapoint, e.g. ``(1, 28, 28)``.
    :param z_dim: dimension of the top latent z2.
    :param hidden: hidden widths of the decoder p(x | z1); the network of p(z1 | z2) takes half of
        each width (see :func:`stage_sizes`).
    :param likelihood: a name from :data:`pvae.engine.likelihoods.LIKELIHOODS`.
    :param net: family of the decoder p(x | z1), a name from :data:`pvae.engine.nets.NETS`; p(z1 | z2)
        maps vectors to vectors and is always an MLP.
    :param z1_dim: dimension of z1; ``None`` takes ``2 * z_dim``.
    """

    latent_sites: tuple[str, ...] = (Z, Z1)
    #: What ``pvae train --model two-layer`` trains with unless told otherwise: the guide's z2
    #: depends on z1, so the mean-field estimator does not apply.
    default_guide = "two-layer"
    default_elbo = "trace"

    def __init__(
        self,
        x_shape: Sequence[int],
        z_dim: int = 20,
        hidden: Sequence[int] = (400,),
        likelihood: str = "bernoulli",
        net: str = "mlp",
        z1_dim: int | None = None,
    ):
        # Set before VAE's constructor, which sizes the decoder by code_dim.
        self.z1_dim, upper_hidden = stage_sizes(z_dim, hidden, z1_dim)
        super().__init__(x_shape, z_dim, hidden, likelihood, net)
        self.upper = MLP(z_dim, upper_hidden, 2 * self.z1_dim)

    @property
    def code_dim(self) -> int:
        """Width of the decoder's input: z1's dimension."""
        return self.z1_dim

    def z1_given_z(self, z: torch.Tensor) -> dist.Distribution:
        """p(z1 | z2) for ``z`` of shape ``(..., z_dim)``; event shape ``(z1_dim,)``."""
        return diagonal_normal(self.upper(z))

    def x_given_z1(self, z1: torch.Tensor) -> dist.Distribution:
        """p(x | z1) for ``z1`` of shape ``(..., z1_dim)``; event shape ``x_shape``."""
        return super().decode(z1)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
        """p(x | z1 = E[z1 | z2]) for ``z`` (the top latent z2) of shape ``(..., z_dim)``; ``y`` is unused."""
        return self.x_given_z1(self.z1_given_z(z).mean)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Sample z2 and z1 and observe ``x`` ``(batch, *x_shape)``; ``y`` is unused."""
        with pyro.plate(DATA, x.shape[0]):
            z = pyro.sample(Z, self.prior())
            z1 = pyro.sample(Z1, self.z1_given_z(z))
            pyro.sample(X, self.x_given_z1(z1), obs=x)
