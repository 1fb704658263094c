"""Observation models p(x | decoder output), one small ``nn.Module`` each, and their registry.

A likelihood turns the decoder's flat output ``(..., prod(x_shape) * params_per_pixel)`` into a
distribution whose event shape is ``x_shape``, so ``log_prob`` sums over pixels and returns one
number per datapoint.
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

    def __init__(self, x_shape: Sequence[int]):
        super().__init__()
        self.x_shape = tuple(x_shape)

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        logits = out.reshape(out.shape[:-1] + self.x_shape)
        return dist.Bernoulli(logits=logits).to_event(len(self.x_shape))


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


#: Name → likelihood class; ``--likelihood`` chooses from these.
LIKELIHOODS: dict[str, type[nn.Module]] = {"bernoulli": Bernoulli, "gaussian": Gaussian}


def get_likelihood(name: str) -> type[nn.Module]:
    """Look a likelihood up by name.

    :param name: a key of :data:`LIKELIHOODS`, or ``"module:ClassName"``.
    :raises ValueError: naming the valid choices when ``name`` is unknown.
    """
    return lookup(LIKELIHOODS, name, "likelihood")
