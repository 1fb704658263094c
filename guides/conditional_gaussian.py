"""The label-conditioned diagonal Gaussian guide q(z | x, y) of the CVAE and of M2."""

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

from pvae.base.sites import DATA, Z
from pvae.engine.nets import encoder


class ConditionalGaussianGuide(PyroModule):
    """q(z | x, y) = N(mu(x, y), diag sigma(x, y)^2).

    The label enters at the last hidden layer: h = relu(f(x) + W onehot(y)), then a linear map to
    the mean and log-scale. For an MLP this is the MLP of the concatenation [x, onehot(y)]; for a
    conv net it joins the image features. The label broadcasts, so an enumerated y of shape
    ``(num_classes, 1)`` gives one Gaussian per class and datapoint.

    :param x_shape: shape of one datapoint.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the encoder; ``()`` adds the label's embedding to an affine map.
    :param net: encoder family, a name from :data:`pvae.engine.nets.NETS`.
    :param num_classes: number of labels.
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        z_dim: int = 20,
        hidden: Sequence[int] = (400,),
        net: str = "mlp",
        num_classes: int = 10,
    ):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.z_dim = z_dim
        self.num_classes = num_classes
        hidden = tuple(hidden)
        width = hidden[-1] if hidden else 2 * z_dim
        self.encoder = encoder(net, self.x_shape, hidden[:-1], width)
        self.label_embedding = nn.Linear(num_classes, width, bias=False)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, 2 * z_dim)) if hidden else nn.Identity()

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z | x, y), each ``(..., batch, z_dim)``."""
        features = self.encoder(x) + self.label_embedding(F.one_hot(y, self.num_classes).to(x.dtype))
        loc, log_scale = self.head(features).chunk(2, dim=-1)
        return loc, log_scale.exp()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample ``"z"`` from q(z | x, y); the labels are required."""
        if y is None:
            raise ValueError("the conditional Gaussian guide q(z|x,y) needs the labels y")
        loc, scale = self.encode(x, y)
        with pyro.plate(DATA, x.shape[0]):
            return pyro.sample(Z, dist.Normal(loc, scale).to_event(1))
