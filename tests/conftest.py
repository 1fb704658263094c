"""Every test starts from the same seeds with Pyro's validation on."""

import pyro
import pytest
import torch

from pvae.data import Dataset, Split

# The test models are small: one thread avoids thread-pool overhead that made them 10-30 times
# slower on a loaded 2-core machine (and keeps floating-point reductions in one fixed order).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def seeded():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    with pyro.validation_enabled(True):
        yield


def make_dataset(x: torch.Tensor, y: torch.Tensor | None = None, val: int = 200, test: int = 500, binarize="none"):
    """Wrap tensors ``(N, ...)`` as a :class:`Dataset`: the first ``test`` rows test, the next ``val`` validation."""
    y = torch.zeros(len(x), dtype=torch.long) if y is None else y
    parts = [Split(x[a:b], y[a:b]) for a, b in ((test + val, None), (test, test + val), (0, test))]
    return Dataset("synthetic", *parts, binarize=binarize, num_classes=int(y.max()) + 1)


@pytest.fixture
def ppca_data():
    """Draws from a known probabilistic PCA: 5-D data on a noisy 2-D plane, and the generating parameters."""
    generator = torch.Generator().manual_seed(1)
    w = torch.randn(5, 2, generator=generator) * torch.tensor([2.0, 1.0])
    b = torch.randn(5, generator=generator)
    sigma = 0.5
    z = torch.randn(4000, 2, generator=generator)
    x = z @ w.T + b + sigma * torch.randn(4000, 5, generator=generator)
    return x, (w, b, sigma)
