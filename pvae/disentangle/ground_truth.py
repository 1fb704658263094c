"""The ground truth of a dataset whose images are rendered from known factors of variation."""

from typing import Protocol

import numpy as np
import torch


class GroundTruth(Protocol):
    """A dataset generated from independent discrete factors (dSprites: shape, scale, orientation, x, y).

    :ivar factor_names: one name per factor.
    :ivar factor_sizes: how many values each factor takes.
    :ivar factor_values: the value grid of each factor.
    """

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    factor_values: tuple[np.ndarray, ...]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` factor combinations drawn uniformly, as indices ``(n, F)`` int64."""
        ...

    def observations(self, factors: np.ndarray) -> torch.Tensor:
        """The images of factor indices ``(n, F)``: ``(n, C, H, W)`` float32 in [0, 1]."""
        ...
