"""Network bodies shared by models and guides, and the registry ``--net`` chooses from.

Models and guides build their networks through :func:`encoder` and :func:`decoder`, so one
option switches every body of a pair between families:

* an *encoder* maps datapoints ``(..., *x_shape)`` to features ``(..., out_dim)``;
* a *decoder* maps codes ``(..., in_dim)`` to ``(..., prod(x_shape) * per_pixel)``, the flat
  parameters a likelihood in :mod:`pvae.engine.likelihoods` reads.

Leading dimensions (particles, enumerated labels) pass through both. With several parameters
per pixel the flat output is parameter-major: it reshapes to ``(..., per_pixel, *x_shape)``.

Families: ``"mlp"`` (fully connected, any ``x_shape``), ``"conv"`` (3×3 strided convolutions, images
``(C, H, W)`` only) and ``"burgess"`` (the 4×4 convolutions of Burgess et al., 2018, as tabulated by
Locatello et al., 2019, Table 1: images whose height and width are multiples of 16, such as dSprites' 64×64).
"""

import math
from collections.abc import Callable, Sequence

import pyro.distributions as dist
import torch
from torch import nn

from pvae.base.registry import lookup


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

    #: read counts on a log1p scale (as scVI's encoder does): raw counts in the thousands saturate the first
    #: layer. A plain attribute, set by :func:`pvae.engine.config.fit_to_data` for count data; not in the state_dict.
    log1p_input = False

    def __init__(self, x_shape: Sequence[int], hidden: Sequence[int], out_dim: int):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.net = MLP(math.prod(self.x_shape), hidden, out_dim)

    def forward(self, x):
        x = torch.log1p(x) if self.log1p_input else x
        return self.net(x.reshape(x.shape[: x.dim() - len(self.x_shape)] + (-1,)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before encoders were wrapped name the MLP's layers directly
        # (``encoder.0.weight``); read them as ``encoder.net.0.weight``.
        for key in [k for k in state_dict if k.startswith(prefix) and k[len(prefix) :].split(".")[0].isdigit()]:
            state_dict[f"{prefix}net.{key[len(prefix) :]}"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def mlp_decoder(in_dim: int, hidden: Sequence[int], x_shape: Sequence[int], per_pixel: int = 1) -> nn.Module:
    """An :class:`MLP` decoder ``(..., in_dim)`` → ``(..., prod(x_shape) * per_pixel)``.

    :param in_dim: width of the input's last dimension.
    :param hidden: hidden widths.
    :param x_shape: shape of one datapoint.
    :param per_pixel: parameters per pixel the likelihood reads.
    """
    return MLP(in_dim, hidden, math.prod(x_shape) * per_pixel)


#: Output channels of the convolutions of :class:`ConvEncoder`, in order; :class:`ConvDecoder`
#: mirrors them. Each 3×3 convolution has stride 2, so two of them shrink 28×28 to 7×7 and 8×8 to 2×2.
CONV_CHANNELS = (32, 64)


def _image_shape(x_shape: Sequence[int]) -> tuple[int, int, int]:
    """``x_shape`` as ``(C, H, W)``, or a ValueError naming the fix."""
    x_shape = tuple(x_shape)
    if len(x_shape) != 3:
        raise ValueError(
            f"the conv net needs images of shape (C, H, W), but x_shape is {x_shape}; "
            "use the 'mlp' net for data that are not images, or give grey images one channel, e.g. (1, 28, 28)"
        )
    return x_shape  # type: ignore[return-value]


def _halved(size: int, layers: int, kernel: int = 3) -> list[int]:
    """Spatial sizes after each of ``layers`` stride-2 convolutions with padding 1: ``ceil(size / 2)``
    each for a 3×3 kernel, ``floor(size / 2)`` for a 4×4 one."""
    sizes = [size]
    for _ in range(layers):
        sizes.append((sizes[-1] + 2 - kernel) // 2 + 1)
    return sizes


class ConvEncoder(nn.Module):
    """Strided convolutions, then an :class:`MLP` head: images ``(..., C, H, W)`` → ``(..., out_dim)``.

    Each entry of ``channels`` is a ``Conv2d`` (``kernel``×``kernel``, stride 2, padding 1) followed by
    ``ReLU``; the feature map is flattened and the head maps it to ``out_dim``.

    :param x_shape: ``(C, H, W)``.
    :param hidden: widths of the fully connected layers between the flattened feature map and
        ``out_dim``; ``()`` maps the features to the output with one ``Linear``.
    :param out_dim: output width.
    :param channels: output channels of the convolutions.
    :param kernel: side of the square kernels, 3 or 4.
    :raises ValueError: when ``x_shape`` is not ``(C, H, W)``.
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        hidden: Sequence[int],
        out_dim: int,
        channels: Sequence[int] = CONV_CHANNELS,
        kernel: int = 3,
    ):
        super().__init__()
        self.x_shape = _image_shape(x_shape)
        c, h, w = self.x_shape
        layers: list[nn.Module] = []
        for width in channels:
            layers += [nn.Conv2d(c, width, kernel, stride=2, padding=1), nn.ReLU()]
            c = width
        self.convs = nn.Sequential(*layers)
        size = _halved(h, len(channels), kernel)[-1] * _halved(w, len(channels), kernel)[-1]
        self.head = MLP(c * size, hidden, out_dim)

    #: as :attr:`MLPEncoder.log1p_input`.
    log1p_input = False

    def forward(self, x):
        x = torch.log1p(x) if self.log1p_input else x
        batch = x.shape[:-3]  # leading dims: particles, enumerated labels, data
        features = self.convs(x.reshape((-1,) + self.x_shape))  # (prod(batch), channels[-1], h, w)
        return self.head(features.flatten(1)).reshape(batch + (-1,))


class ConvDecoder(nn.Module):
    """An :class:`MLP` to a feature map, then transposed convolutions: ``(..., in_dim)`` →
    ``(..., prod(x_shape) * per_pixel)``, the mirror image of :class:`ConvEncoder`.

    The MLP ends in ``ReLU`` and is reshaped to ``(channels[-1], h, w)``, the encoder's last
    feature map; each transposed convolution (``kernel``×``kernel``, stride 2, padding 1) doubles the
    size, with an ``output_padding`` of 0 or 1 chosen so that the output is exactly ``H × W`` whether
    the encoder's halving rounded or not. The last one has ``per_pixel * C`` channels
    and no activation; its output ``(per_pixel * C, H, W)`` is flattened in that order, so with
    ``per_pixel=1`` the flat vector reshapes to ``(C, H, W)`` pixel for pixel.

    :param in_dim: width of the input's last dimension.
    :param hidden: widths of the fully connected layers between the input and the feature map.
    :param x_shape: ``(C, H, W)``.
    :param per_pixel: parameters per pixel the likelihood reads.
    :param channels: the encoder's convolution channels; used in reverse.
    :param kernel: side of the square kernels, 3 or 4.
    :raises ValueError: when ``x_shape`` is not ``(C, H, W)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        x_shape: Sequence[int],
        per_pixel: int = 1,
        channels: Sequence[int] = CONV_CHANNELS,
        kernel: int = 3,
    ):
        super().__init__()
        self.x_shape = _image_shape(x_shape)
        c, h, w = self.x_shape
        heights, widths = _halved(h, len(channels), kernel), _halved(w, len(channels), kernel)
        self.feature_shape = (channels[-1], heights[-1], widths[-1])
        self.head = nn.Sequential(MLP(in_dim, hidden, math.prod(self.feature_shape)), nn.ReLU())
        outs = list(reversed(channels[:-1])) + [per_pixel * c]
        layers: list[nn.Module] = []
        for i, width in enumerate(outs):
            size_in, size_out = (heights[-1 - i], widths[-1 - i]), (heights[-2 - i], widths[-2 - i])
            # A k×k stride-2 transposed conv with padding 1 gives 2 * size + k - 4 + output_padding.
            padding = tuple(o - (2 * n + kernel - 4) for n, o in zip(size_in, size_out, strict=True))
            layers.append(
                nn.ConvTranspose2d(channels[-1 - i], width, kernel, stride=2, padding=1, output_padding=padding)
            )
            layers.append(nn.ReLU())
        self.deconvs = nn.Sequential(*layers[:-1])  # no activation on the likelihood's parameters

    def forward(self, z):
        batch = z.shape[:-1]
        features = self.head(z).reshape((-1,) + self.feature_shape)  # (prod(batch), channels[-1], h, w)
        return self.deconvs(features).reshape(batch + (-1,))  # flattens (per_pixel * C, H, W)


#: Output channels of the four 4×4 convolutions of the ``"burgess"`` family (Burgess et al., 2018;
#: Locatello et al., 2019, Table 1): 64×64 → 32 → 16 → 8 → 4, a 4×4×64 feature map of 1024 numbers.
BURGESS_CHANNELS = (32, 32, 64, 64)


def _burgess_shape(x_shape: Sequence[int]) -> tuple[int, int, int]:
    """``x_shape`` as ``(C, H, W)`` with H and W multiples of 16, or a ValueError naming the fix."""
    c, h, w = _image_shape(x_shape)
    if h % 16 or w % 16:
        raise ValueError(
            f"the burgess net halves images four times exactly, so height and width must be multiples of 16, "
            f"but x_shape is {tuple(x_shape)}; use 64×64 images such as dSprites' (1, 64, 64), or --net conv "
            "for images of other sizes"
        )
    return c, h, w


def burgess_encoder(x_shape: Sequence[int], hidden: Sequence[int], out_dim: int) -> ConvEncoder:
    """The encoder of Burgess et al. (2018) as Locatello et al. (2019, Table 1) give it: four 4×4
    stride-2 convolutions of 32, 32, 64 and 64 channels (ReLU), flatten, the dense layers ``hidden``
    (ReLU; the paper's is ``(256,)``), then a dense output layer of ``out_dim``.

    :param x_shape: ``(C, H, W)``, H and W multiples of 16 (the paper's: 64×64).
    :param hidden: widths of the dense layers after the convolutions.
    :param out_dim: output width (2·z for a Gaussian guide's loc and log-scale).
    :raises ValueError: when ``x_shape`` is not ``(C, H, W)`` with H and W multiples of 16.
    """
    return ConvEncoder(_burgess_shape(x_shape), hidden, out_dim, BURGESS_CHANNELS, kernel=4)


def burgess_decoder(in_dim: int, hidden: Sequence[int], x_shape: Sequence[int], per_pixel: int = 1) -> ConvDecoder:
    """The decoder of Burgess et al. (2018), the mirror of :func:`burgess_encoder`: the dense layers
    ``hidden`` (ReLU; the paper's is ``(256,)``), a dense layer to the 4×4×64 feature map (ReLU), then
    four 4×4 stride-2 transposed convolutions of 64, 32, 32 and ``C * per_pixel`` channels, ReLU
    between them and none after the last.

    :param in_dim: width of the input's last dimension.
    :param hidden: widths of the dense layers before the feature map.
    :param x_shape: ``(C, H, W)``, H and W multiples of 16.
    :param per_pixel: parameters per pixel the likelihood reads.
    :raises ValueError: when ``x_shape`` is not ``(C, H, W)`` with H and W multiples of 16.
    """
    return ConvDecoder(in_dim, hidden, _burgess_shape(x_shape), per_pixel, BURGESS_CHANNELS, kernel=4)


#: Net family → (encoder factory, decoder factory); ``--net`` chooses from these.
NETS: dict[str, tuple[Callable[..., nn.Module], Callable[..., nn.Module]]] = {
    "mlp": (MLPEncoder, mlp_decoder),
    "conv": (ConvEncoder, ConvDecoder),
    "burgess": (burgess_encoder, burgess_decoder),
}


def encoder(net: str, x_shape: Sequence[int], hidden: Sequence[int], out_dim: int) -> nn.Module:
    """An encoder ``(..., *x_shape)`` → ``(..., out_dim)`` of family ``net``.

    :param net: a key of :data:`NETS`, or ``"module:Name"``.
    :param x_shape: shape of one datapoint.
    :param hidden: widths of the fully connected layers (for ``"conv"`` and ``"burgess"``: those after the
        convolutions).
    :param out_dim: output width.
    :raises ValueError: for an unknown ``net``, or an ``x_shape`` the family cannot take.
    """
    return lookup(NETS, net, "net")[0](x_shape, hidden, out_dim)


def decoder(net: str, in_dim: int, hidden: Sequence[int], x_shape: Sequence[int], per_pixel: int = 1) -> nn.Module:
    """A decoder ``(..., in_dim)`` → ``(..., prod(x_shape) * per_pixel)`` of family ``net``.

    :param net: a key of :data:`NETS`, or ``"module:Name"``.
    :param in_dim: width of the input's last dimension.
    :param hidden: widths of the fully connected layers (for ``"conv"`` and ``"burgess"``: those before the
        transposed convolutions).
    :param x_shape: shape of one datapoint.
    :param per_pixel: parameters per pixel the likelihood reads.
    :raises ValueError: for an unknown ``net``, or an ``x_shape`` the family cannot take.
    """
    return lookup(NETS, net, "net")[1](in_dim, hidden, x_shape, per_pixel)


# --------------------------------------------------------------------------------------------
# Shared by the two-layer model and its guide.


def stage_sizes(z_dim: int, hidden: Sequence[int], z1_dim: int | None = None) -> tuple[int, tuple[int, ...]]:
    """The sizes model and guide share: z1's dimension and the hidden widths between z1 and z2.

    :param z_dim: dimension of the top latent z2.
    :param hidden: hidden widths of the networks between x and z1.
    :param z1_dim: dimension of z1; ``None`` takes ``2 * z_dim`` (Burda's 100 for a z2 of 50).
    :returns: ``(z1_dim, upper_hidden)``, where ``upper_hidden`` halves each width in ``hidden`` (at least 1).
    """
    return (2 * z_dim if z1_dim is None else z1_dim), tuple(max(1, width // 2) for width in hidden)


def diagonal_normal(out: torch.Tensor) -> dist.Distribution:
    """N(loc, diag scale^2) from a network output ``(..., 2 * dim)`` holding loc and log-scale.

    :param out: the two halves ``[loc, log_scale]`` along the last dimension.
    :returns: a distribution with event shape ``(dim,)`` and batch shape ``out.shape[:-1]``.
    """
    loc, log_scale = out.chunk(2, dim=-1)
    return dist.Normal(loc, log_scale.exp()).to_event(1)
