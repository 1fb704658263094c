"""The variational autoencoder's generative model p(x | z) p(z) (Kingma & Welling, 2014)."""

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from pvae.base.sites import DATA, X, Z
from pvae.engine.likelihoods import get_likelihood
from pvae.engine.nets import decoder


class VAE(PyroModule):
    """p(z) = N(0, I), x | z ~ likelihood(decoder(z)).

    Sites: ``"z"`` (latent) and ``"x"`` (observed), both in the ``"data"`` plate at ``dim=-1``.
    Variants override one hook each: :meth:`prior`, :meth:`decode`, or :meth:`label` (the
    conditional models observe ``"y"`` there).

    :param x_shape: shape of one datapoint, e.g. ``(1, 28, 28)``.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the decoder; ``()`` makes an MLP decoder affine.
    :param likelihood: a name from :data:`pvae.engine.likelihoods.LIKELIHOODS`.
    :param net: decoder family, a name from :data:`pvae.engine.nets.NETS`.
    :param library: ``"observed"``: counts conditioned on each row's total, the library size (the decoder
        gives proportions; see :meth:`pvae.engine.likelihoods.Likelihood.use_library`); ``"none"``: not.
    """

    #: Latent sites beta scales (see :func:`pvae.engine.objectives.loss_module`).
    latent_sites: tuple[str, ...] = (Z,)

    def __init__(
        self,
        x_shape: Sequence[int],
        z_dim: int = 20,
        hidden: Sequence[int] = (400,),
        likelihood: str = "bernoulli",
        net: str = "mlp",
        library: str = "none",
    ):
        super().__init__()
        if library not in ("none", "observed"):
            raise ValueError(f"library must be 'none' or 'observed', not {library!r}")
        self.x_shape = tuple(x_shape)
        self.z_dim = z_dim
        self.library = library
        self.likelihood = get_likelihood(likelihood)(self.x_shape)
        if library == "observed":
            self.likelihood.use_library()
        self.decoder = decoder(net, self.code_dim, hidden, self.x_shape, self.likelihood.params_per_pixel)
        self.register_buffer("prior_loc", torch.zeros(z_dim), persistent=False)
        self.register_buffer("prior_scale", torch.ones(z_dim), persistent=False)

    @property
    def code_dim(self) -> int:
        """Width of the decoder's input."""
        return self.z_dim

    def prior(self, batch_shape: Sequence[int] = ()) -> dist.Distribution:
        """p(z) with the given batch shape; event shape ``(z_dim,)``."""
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1).expand(tuple(batch_shape))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
        """p(x | z) for ``z`` of shape ``(..., z_dim)``; event shape ``x_shape``."""
        return self.likelihood(self.decoder(z))

    def label(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """The label site, inside the data plate: none here; conditional models observe ``"y"``."""
        return None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Sample ``"z"`` from the prior and observe ``x`` (and the label, for conditional models)."""
        if self.library == "observed":  # p(x | z, l): the likelihood reads each row's total
            self.likelihood.library = x.reshape(x.shape[0], -1).sum(-1, keepdim=True)
        try:
            with pyro.plate(DATA, x.shape[0]):
                y = self.label(y)
                z = pyro.sample(Z, self.prior())
                pyro.sample(X, self.decode(z, y), obs=x)
        finally:
            self.likelihood.library = None
