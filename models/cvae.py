"""The conditional VAE: p(x | z, y) p(z) p(y), with the label observed (Sohn et al., 2015)."""

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

from pvae.base.sites import Y
from pvae.models.vae import VAE


class CVAE(VAE):
    """The VAE whose decoder also reads the label: x | z, y ~ likelihood(decoder([z, onehot(y)])).

    The model observes ``"y"`` (``obs=y``) under a uniform p(y), so its sites are ``"y"``,
    ``"z"`` and ``"x"``, and the log-likelihood :func:`pvae.measures.evaluate.evaluate` reports is the
    joint log p(x, y) = log p(x | y) − log(num_classes). Sampling with a chosen y draws that class.

    :param x_shape: shape of one datapoint.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the decoder.
    :param likelihood: a name from :data:`pvae.engine.likelihoods.LIKELIHOODS`.
    :param net: decoder family, a name from :data:`pvae.engine.nets.NETS`.
    :param num_classes: number of labels.
    """

    #: Every datapoint's label is observed, in training and evaluation alike.
    labels = "observed"
    #: What ``pvae train --model ...`` trains with unless told otherwise.
    default_guide = "conditional-gaussian"

    def __init__(
        self,
        x_shape: Sequence[int],
        z_dim: int = 20,
        hidden: Sequence[int] = (400,),
        likelihood: str = "bernoulli",
        net: str = "mlp",
        num_classes: int = 10,
    ):
        self.num_classes = num_classes  # read by code_dim while the decoder is built
        super().__init__(x_shape, z_dim, hidden, likelihood, net)
        self.register_buffer("label_logits", torch.zeros(num_classes), persistent=False)

    @property
    def code_dim(self) -> int:
        """z and the one-hot label."""
        return self.z_dim + self.num_classes

    def label_prior(self) -> dist.Distribution:
        """p(y): uniform over the classes."""
        return dist.Categorical(logits=self.label_logits)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
        """p(x | z, y); ``z`` ``(..., z_dim)`` and ``y`` ``(...)`` broadcast against each other."""
        if y is None:
            raise ValueError(f"{type(self).__name__} decodes a label and a code: pass y")
        onehot = F.one_hot(y, self.num_classes).to(z.dtype)  # (..., num_classes)
        batch = torch.broadcast_shapes(z.shape[:-1], onehot.shape[:-1])  # enumerated labels broadcast here
        code = torch.cat([z.expand(batch + z.shape[-1:]), onehot.expand(batch + onehot.shape[-1:])], dim=-1)
        return self.likelihood(self.decoder(code))

    def label(self, y: torch.Tensor | None) -> torch.Tensor:
        """Observe ``"y"`` under the uniform p(y); the labels are required."""
        if y is None:
            raise ValueError(f"{type(self).__name__} observes the label of every datapoint: pass y")
        return pyro.sample(Y, self.label_prior(), obs=y)
