"""Data with known generative factors: the contract the disentanglement metrics sample from.

A ground truth is a full factorial grid of factors (dSprites: shape × scale × orientation × x × y). The
metrics draw factor indices, render them as observations, and compare the codes a model gives them with the
factors. :class:`Grid` is a small implementation whose observations are any function of the factor indices:
the tests render the factors themselves, a rotation of them, noise, ... and know the answer.
"""

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class GroundTruth(Protocol):
    """A full factorial grid of generative factors and the observation of each grid point.

    :ivar factor_names: one name per factor, e.g. ``("shape", "scale", "orientation", "x", "y")``.
    :ivar factor_sizes: the number of values of each factor, e.g. ``(3, 6, 40, 32, 32)``.
    :ivar factor_values: the value grid of each factor (shape: ``1., 2., 3.``).
    """

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    factor_values: tuple[np.ndarray, ...]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` grid points drawn uniformly: ``(n, F)`` int64 factor indices.

        :param n: how many points.
        :param rng: the source of randomness.
        """
        ...

    def observations(self, factors: np.ndarray) -> torch.Tensor:
        """The observations of the grid points ``factors`` (``(n, F)`` indices): ``(n, C, H, W)`` float32 in [0, 1].

        :param factors: factor indices, one row per point.
        """
        ...


def _factor_images(factors: np.ndarray, sizes: tuple[int, ...]) -> torch.Tensor:
    """Each factor index scaled to [0, 1], as a 1×1 image with one channel per factor: ``(n, F, 1, 1)``."""
    scale = np.maximum(np.asarray(sizes) - 1, 1)
    return torch.from_numpy((factors / scale).astype(np.float32))[:, :, None, None]


class Grid:
    """A full factorial grid of factors whose observations are a function of the factor indices.

    Factors are independent and uniform over their values, as in dSprites.

    :param factor_sizes: the number of values of each factor.
    :param observe: ``(n, F)`` int64 indices → ``(n, C, H, W)`` float32 tensor; by default each factor
        index scaled to [0, 1] as one channel of a 1×1 image.
    :param factor_names: one name per factor (default ``factor0``, ``factor1``, ...).
    :param factor_values: the value grid of each factor (default the indices as floats).
    """

    def __init__(
        self,
        factor_sizes: Sequence[int],
        observe: Callable[[np.ndarray], torch.Tensor] | None = None,
        factor_names: Sequence[str] | None = None,
        factor_values: Sequence[np.ndarray] | None = None,
    ):
        sizes = tuple(int(size) for size in factor_sizes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"Grid: factor_sizes must be one or more positive integers, got {tuple(factor_sizes)}")
        names = tuple(factor_names) if factor_names is not None else tuple(f"factor{i}" for i in range(len(sizes)))
        values = (
            tuple(np.asarray(v, dtype=np.float64) for v in factor_values)
            if factor_values is not None
            else tuple(np.arange(size, dtype=np.float64) for size in sizes)
        )
        if len(names) != len(sizes) or [len(v) for v in values] != list(sizes):
            raise ValueError(
                f"Grid: {len(sizes)} factor sizes {sizes} need as many names (got {len(names)}) and value grids of "
                f"those lengths (got {[len(v) for v in values]})"
            )
        self.factor_sizes = sizes
        self.factor_names = names
        self.factor_values = values
        self._observe = observe if observe is not None else (lambda factors: _factor_images(factors, sizes))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` grid points drawn uniformly: ``(n, F)`` int64 factor indices.

        :param n: how many points.
        :param rng: the source of randomness.
        """
        return np.stack([rng.integers(0, size, n) for size in self.factor_sizes], axis=1).astype(np.int64)

    def observations(self, factors: np.ndarray) -> torch.Tensor:
        """The observations of the grid points ``factors``: ``(n, C, H, W)`` float32.

        :param factors: ``(n, F)`` int64 factor indices.
        """
        return self._observe(np.asarray(factors, dtype=np.int64))
