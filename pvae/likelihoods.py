"""Observation models p(x | decoder output), one small ``nn.Module`` each, and their registry.

A likelihood turns the decoder's flat output ``(..., prod(x_shape) * params_per_pixel)`` into a
distribution whose event shape is ``x_shape``, so ``log_prob`` sums over pixels and returns one
number per datapoint. With several parameters per pixel the flat output is parameter-major: it
reshapes to ``(..., params_per_pixel, *x_shape)`` (see :mod:`pvae.nets`).
"""

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn

from pvae.registry import lookup


class Bernoulli(nn.Module):
    """Bernoulli pixels with logits from the decoder: for binary data only.

    :param x_shape: shape of one datapoint, e.g. ``(1, 28, 28)``.
    """

    #: Data must be exactly 0 or 1 (binarize grey levels first).
    requires_binary = True
    params_per_pixel = 1
    #: The per-pixel distribution, parametrised by ``logits``.
    pixel = dist.Bernoulli

    def __init__(self, x_shape: Sequence[int]):
        super().__init__()
        self.x_shape = tuple(x_shape)

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        logits = out.reshape(out.shape[:-1] + self.x_shape)
        return self.pixel(logits=logits).to_event(len(self.x_shape))


class Gaussian(nn.Module):
    """Gaussian pixels with the decoder's output as mean and a learned scale.

    :param x_shape: shape of one datapoint.
    :param per_pixel: one learned scale per pixel instead of a single global one.
    :param init_scale: initial standard deviation.
    """

    requires_binary = False
    params_per_pixel = 1

    def __init__(self, x_shape: Sequence[int], per_pixel: bool = False, init_scale: float = 1.0):
        super().__init__()
        self.x_shape = tuple(x_shape)
        shape = self.x_shape if per_pixel else ()
        self.log_scale = nn.Parameter(torch.full(shape, math.log(init_scale)))

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        loc = out.reshape(out.shape[:-1] + self.x_shape)
        return dist.Normal(loc, self.log_scale.exp().expand(loc.shape)).to_event(len(self.x_shape))


class GaussianPerPixel(Gaussian):
    """A :class:`Gaussian` with one learned scale per pixel, so ``log_scale`` has shape ``x_shape``.

    Registered as ``"gaussian-per-pixel"``; ``"gaussian"`` keeps one global scale.

    :param x_shape: shape of one datapoint.
    :param init_scale: initial standard deviation of every pixel.
    """

    def __init__(self, x_shape: Sequence[int], init_scale: float = 1.0):
        super().__init__(x_shape, per_pixel=True, init_scale=init_scale)


class ContinuousBernoulli(Bernoulli):
    """Continuous Bernoulli pixels (Loaiza-Ganem & Cunningham, 2019) with logits from the decoder.

    The density on [0, 1] is p(x | λ) = C(λ) λ^x (1 − λ)^(1 − x), with the normalising constant
    C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ) (and C(1/2) = 2). It is the likelihood for grey levels in
    [0, 1] kept as they are (``binarize="none"``): the popular examples that feed grey levels to a
    :class:`Bernoulli` drop C(λ), so their "ELBO" bounds the likelihood of no distribution. Its
    densities may exceed one, so the ELBO can be positive; its mean is not λ but
    λ / (2λ − 1) + 1 / (2 artanh(1 − 2λ)), which is what ``decode(z).mean`` returns.

    :param x_shape: shape of one datapoint, e.g. ``(1, 28, 28)``.
    """

    requires_binary = False
    #: On pixels of exactly 0 or 1, C(λ) → ∞ as λ → 0 or 1: the density has no maximum.
    requires_grey = True
    pixel = dist.ContinuousBernoulli


#: Name → likelihood class; ``--likelihood`` chooses from these.
LIKELIHOODS: dict[str, type[nn.Module]] = {
    "bernoulli": Bernoulli,
    "continuous-bernoulli": ContinuousBernoulli,
    "gaussian": Gaussian,
    "gaussian-per-pixel": GaussianPerPixel,
}


def get_likelihood(name: str) -> type[nn.Module]:
    """Look a likelihood up by name.

    :param name: a key of :data:`LIKELIHOODS`, or ``"module:ClassName"``.
    :raises ValueError: naming the valid choices when ``name`` is unknown.
    """
    return lookup(LIKELIHOODS, name, "likelihood")
