"""What every metric shares: the factors it scores, codes of sampled points, seeds for scikit-learn."""

import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from pvae.measures.disentangle.ground_truth import GroundTruth

Represent = Callable[[torch.Tensor], np.ndarray]

# observations rendered and encoded per call of ``represent``: bounds the memory of one call
CHUNK = 4096


def check_sizes(metric: str, minimum: dict[str, tuple[int, str]], **sizes: int) -> None:
    """Refuse a size below the least that leaves ``metric`` something to measure.

    :param metric: the metric's name, as :data:`pvae.measures.disentangle.METRICS` knows it.
    :param minimum: its option → ``(least value, why)`` (the metric module's ``MINIMUM``).
    :param sizes: the options given, by name.
    :raises ValueError: naming the option, the least value and why.
    """
    for option, value in sizes.items():
        least, why = minimum.get(option, (1, ""))
        if value < least:
            raise ValueError(f"{metric} needs {option} ≥ {least} ({why}), not {value}")


def scored_factors(ground_truth: GroundTruth, factors: Sequence[int | str] | None) -> tuple[int, ...]:
    """The indices of the factors a metric scores (all when ``None``), given by index or by name."""
    names = tuple(ground_truth.factor_names)
    if factors is None:
        return tuple(range(len(names)))
    chosen = tuple(names.index(k) if isinstance(k, str) and k in names else k for k in factors)
    if (
        not chosen
        or not all(isinstance(k, (int, np.integer)) and 0 <= k < len(names) for k in chosen)
        or len(set(chosen)) != len(chosen)
    ):
        raise ValueError(
            f"factors={tuple(factors)} must be distinct factor indices in 0..{len(names) - 1} or names "
            f"({', '.join(f'{k}: {name}' for k, name in enumerate(names))}); "
            f"e.g. without {names[0]}: {tuple(range(1, len(names)))}"
        )
    return tuple(int(k) for k in chosen)


def encode(ground_truth: GroundTruth, represent: Represent, factors: np.ndarray) -> np.ndarray:
    """Codes ``(n, d)`` of the grid points ``factors`` (``(n, F)``), rendered and encoded in chunks."""
    codes = []
    for start in range(0, len(factors), CHUNK):
        images = ground_truth.observations(factors[start : start + CHUNK])
        with torch.no_grad():
            code = represent(images)
        # an encoder may hand back a tensor, on any device
        code = np.asarray(code.cpu() if isinstance(code, torch.Tensor) else code, dtype=np.float64)
        if code.ndim != 2 or len(code) != len(images):
            raise ValueError(
                f"represent must map {len(images)} images to an array (n, d) of codes, got shape {code.shape}"
            )
        codes.append(code)
    return np.concatenate(codes)


def sample_codes(
    ground_truth: GroundTruth, represent: Represent, num_points: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``num_points`` uniform grid points: their codes ``(n, d)`` and factor indices ``(n, F)``."""
    factors = ground_truth.sample_factors(num_points, rng)
    return encode(ground_truth, represent, factors), factors


def sklearn_seed(rng: np.random.Generator) -> int:
    """A seed for a scikit-learn estimator's ``random_state``, drawn from ``rng``."""
    return int(rng.integers(2**31 - 1))


def settings(ground_truth: GroundTruth, factors: tuple[int, ...], **options) -> dict:
    """The settings a metric reports beside its scores: the factors scored (by name) and its options."""
    return {"factors": [ground_truth.factor_names[k] for k in factors], **options}


def logistic_regression(seed: int) -> OneVsRestClassifier:
    """disentanglement_lib's linear classifier: ``LogisticRegression()`` of the scikit-learn it was run with
    (before 0.22, whose defaults became lbfgs and multinomial): liblinear, one-vs-rest, C = 1, an intercept
    penalized like the weights, probabilities normalized over the classes."""
    return OneVsRestClassifier(LogisticRegression(solver="liblinear", random_state=seed))


@contextmanager
def quiet_convergence():
    """Silence scikit-learn's ConvergenceWarning: the metrics keep disentanglement_lib's iteration budgets
    (scikit-learn defaults), which the published numbers were computed with, converged or not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield
