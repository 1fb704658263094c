"""Network bodies shared by models and guides, and the registry ``--net`` chooses from.

Models and guides build their networks through :func:`encoder` and :func:`decoder`, so one
option switches every body of a pair between families:

* an *encoder* maps datapoints ``(..., *x_shape)`` to features ``(..., out_dim)``;
* a *decoder* maps codes ``(..., in_dim)`` to ``(..., prod(x_shape) * per_pixel)``, the flat
  parameters a likelihood in :mod:`pvae.likelihoods` reads.

Leading dimensions (particles, enumerated labels) pass through both.
"""

import math
from collections.abc import Callable, Sequence

from torch import nn

from pvae.registry import lookup


class MLP(nn.Sequential):
    """A fully connected network: ``Linear → ReLU`` for each hidden width, then a last ``Linear``.

    Leading dimensions pass through, so a particle dimension left of the batch costs nothing.

    :param in_dim: width of the input's last dimension.
    :param hidden: widths of the hidden layers; ``()`` gives a single affine map.
    :param out_dim: width of the output's last dimension.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int):
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        layers.append(nn.Linear(in_dim, out_dim))
        super().__init__(*layers)


class MLPEncoder(nn.Module):
    """An :class:`MLP` over flattened datapoints ``(..., *x_shape)`` → ``(..., out_dim)``.

    :param x_shape: shape of one datapoint.
    :param hidden: hidden widths.
    :param out_dim: output width.
    """

    def __init__(self, x_shape: Sequence[int], hidden: Sequence[int], out_dim: int):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.net = MLP(math.prod(self.x_shape), hidden, out_dim)

    def forward(self, x):
        return self.net(x.reshape(x.shape[: x.dim() - len(self.x_shape)] + (-1,)))


def mlp_decoder(in_dim: int, hidden: Sequence[int], x_shape: Sequence[int], per_pixel: int = 1) -> nn.Module:
    """An :class:`MLP` decoder ``(..., in_dim)`` → ``(..., prod(x_shape) * per_pixel)``."""
    return MLP(in_dim, hidden, math.prod(x_shape) * per_pixel)


#: Net family → (encoder factory, decoder factory); ``--net`` chooses from these.
NETS: dict[str, tuple[Callable[..., nn.Module], Callable[..., nn.Module]]] = {
    "mlp": (MLPEncoder, mlp_decoder),
}


def encoder(net: str, x_shape: Sequence[int], hidden: Sequence[int], out_dim: int) -> nn.Module:
    """An encoder ``(..., *x_shape)`` → ``(..., out_dim)`` of family ``net`` (a key of :data:`NETS`)."""
    return lookup(NETS, net, "net")[0](x_shape, hidden, out_dim)


def decoder(net: str, in_dim: int, hidden: Sequence[int], x_shape: Sequence[int], per_pixel: int = 1) -> nn.Module:
    """A decoder ``(..., in_dim)`` → ``(..., prod(x_shape) * per_pixel)`` of family ``net``."""
    return lookup(NETS, net, "net")[1](in_dim, hidden, x_shape, per_pixel)
