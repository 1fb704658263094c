"""Network bodies shared by models and guides."""

from collections.abc import Sequence

from torch import nn


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
