"""Every test starts from the same seeds with Pyro's validation on.

The seed comes from the environment variable ``PVAE_TEST_SEED`` (default 0), so that the suite can
be run under other draws: ``PVAE_TEST_SEED=7 python -m pytest``. A statistical test must pass for
any seed (``tests/seed_sweep.py`` runs the suite under several); pytest's header names the seed.

The device the tests build on comes from ``PVAE_TEST_DEVICE`` (default ``cpu``; ``cuda``, ``cuda:N``,
``mps`` or ``auto``, as ``--device`` takes them): ``PVAE_TEST_DEVICE=cuda python -m pytest`` runs the
training, evaluation and command-line tests on a GPU. A device the machine lacks stops the session
before any test, with the message of ``--device``.
"""

import os

import pyro
import pytest
import torch

from pvae.base.device import resolve_device
from pvae.data import Dataset, Split

SEED = int(os.environ.get("PVAE_TEST_SEED", "0"))
#: ``--device`` of the tests, from ``PVAE_TEST_DEVICE``.
TEST_DEVICE = os.environ.get("PVAE_TEST_DEVICE", "cpu")


def derived_seed(stream: int) -> int:
    """A seed of its own for the draw number ``stream`` of a test, from :data:`SEED`.

    Seed 0 gives ``stream`` itself, the constant such a test used before seeds came from the
    environment; each other seed gives streams that do not collide for ``stream < 1000``.

    :param stream: which of a test's independent draws.
    """
    return 1000 * SEED + stream


def device_of_tests() -> torch.device:
    """The device the tests build on (:data:`TEST_DEVICE`, resolved)."""
    return resolve_device(TEST_DEVICE)


def on_test_device(*modules: torch.nn.Module):
    """``modules`` moved to the test device, as a tuple (one module: itself)."""
    moved = tuple(module.to(device_of_tests()) for module in modules)
    return moved[0] if len(moved) == 1 else moved


def with_test_device(argv: list[str]) -> list[str]:
    """A ``pvae`` command line with ``--device`` :data:`TEST_DEVICE` added, unless it names one."""
    return argv if "--device" in argv else [*argv, "--device", TEST_DEVICE]


def pytest_configure(config):
    try:
        resolve_device(TEST_DEVICE)
    except ValueError as error:  # fail fast: a GPU run that silently ran on the CPU would prove nothing
        raise pytest.UsageError(f"PVAE_TEST_DEVICE={TEST_DEVICE}: {error}") from None
    config.addinivalue_line(
        "markers", "statistical: asserts on random draws; sized to pass for any seed (tests/seed_sweep.py counts)"
    )


def pytest_report_header(config):
    return (
        f"PVAE_TEST_SEED={SEED} (torch, numpy and random seeded with it before every test), "
        f"PVAE_TEST_DEVICE={TEST_DEVICE} ({device_of_tests()})"
    )


# The test models are small: one thread avoids thread-pool overhead that made them 10-30 times
# slower on a loaded 2-core machine (and keeps floating-point reductions in one fixed order).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def seeded():
    pyro.set_rng_seed(SEED)
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
    """Draws from a known probabilistic PCA: 5-D data on a noisy 2-D plane, and the generating parameters.

    Fixed, not drawn from :data:`SEED`: the generating parameters define the problem whose exact
    answers the tests compare against; the tests' own draws (guide noise, minibatches) follow the seed.
    """
    generator = torch.Generator().manual_seed(1)
    w = torch.randn(5, 2, generator=generator) * torch.tensor([2.0, 1.0])
    b = torch.randn(5, generator=generator)
    sigma = 0.5
    z = torch.randn(4000, 2, generator=generator)
    x = z @ w.T + b + sigma * torch.randn(4000, 5, generator=generator)
    return x, (w, b, sigma)


@pytest.fixture(scope="session")
def _shared_data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pvae-data")


@pytest.fixture
def quality_data(_shared_data_dir, monkeypatch):
    """``$PVAE_DATA`` set to one folder for the whole session: the digits feature classifier of
    :mod:`pvae.measures.quality` is trained there once, never in the user's cache."""
    monkeypatch.setenv("PVAE_DATA", str(_shared_data_dir))
    return _shared_data_dir
