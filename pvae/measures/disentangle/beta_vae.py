"""The beta-VAE score (Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a Constrained
Variational Framework", Sec. 3 and Appendix A.4).

One vote is a pair of batches of L = 64 grid points that share the value of one factor k, drawn uniformly
among the factors scored, and differ in every other factor at random. Its feature is the mean absolute
difference of their codes, ``z_diff = 1/L Σ_l |z(x_l) − z(x'_l)|`` ∈ R^d; a factor held fixed leaves the dimensions
that encode it still. A linear classifier (logistic regression, one-vs-rest, C = 1: the scikit-learn
defaults disentanglement_lib ran with) learns k from z_diff on 10,000 votes; the score is its accuracy on 5,000
fresh votes (``eval_accuracy``; ``train_accuracy`` on the training votes). Chance is 1/K for K factors scored.
"""

from collections.abc import Sequence

import numpy as np

from pvae.measures.disentangle._common import (
    CHUNK,
    Represent,
    check_sizes,
    encode,
    logistic_regression,
    quiet_convergence,
    scored_factors,
    settings,
    sklearn_seed,
)
from pvae.measures.disentangle.ground_truth import GroundTruth

#: The least of each size that leaves the score something to measure: option → (least, why).
MINIMUM = {
    "num_train": (2, "its classifier learns from two votes or more"),
    "num_eval": (2, "an accuracy over one vote is 0 or 1"),
}


def compute_beta_vae(
    ground_truth: GroundTruth,
    represent: Represent,
    rng: np.random.Generator,
    *,
    factors: Sequence[int | str] | None = None,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
) -> dict:
    """The beta-VAE score of a representation.

    :param ground_truth: the factors and their observations.
    :param represent: images ``(n, C, H, W)`` → codes ``(n, d)``.
    :param rng: the source of randomness.
    :param factors: the factors scored, by index or name (the fixed factor is drawn among them); the others vary.
    :param batch_size: pairs of points averaged in one vote (L).
    :param num_train: votes the classifier is trained on.
    :param num_eval: votes it is scored on.
    :returns: ``train_accuracy``, ``eval_accuracy`` and ``settings``.
    """
    check_sizes("beta_vae", MINIMUM, batch_size=batch_size, num_train=num_train, num_eval=num_eval)
    chosen = scored_factors(ground_truth, factors)
    train_x, train_y = _votes(ground_truth, represent, rng, chosen, batch_size, num_train)
    eval_x, eval_y = _votes(ground_truth, represent, rng, chosen, batch_size, num_eval)
    scores = _compute_beta_vae(train_x, train_y, eval_x, eval_y, sklearn_seed(rng), num_factors=len(chosen))
    scores["settings"] = settings(ground_truth, chosen, batch_size=batch_size, num_train=num_train, num_eval=num_eval)
    return scores


def _votes(
    ground_truth: GroundTruth,
    represent: Represent,
    rng: np.random.Generator,
    chosen: tuple[int, ...],
    batch_size: int,
    num: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``num`` votes: features ``(num, d)`` (mean |z − z'| over a batch) and the fixed factor of each ``(num,)``."""
    labels = rng.integers(0, len(chosen), num)
    features = []
    per_call = max(1, CHUNK // (2 * batch_size))
    for start in range(0, num, per_call):
        fixed = np.asarray(chosen)[labels[start : start + per_call]]
        first = ground_truth.sample_factors(len(fixed) * batch_size, rng)
        second = ground_truth.sample_factors(len(fixed) * batch_size, rng)
        rows = np.arange(len(first))
        column = np.repeat(fixed, batch_size)
        second[rows, column] = first[rows, column]
        codes = encode(ground_truth, represent, np.concatenate([first, second]))
        difference = np.abs(codes[: len(first)] - codes[len(first) :])  # (votes * batch_size, d)
        features.append(difference.reshape(len(fixed), batch_size, -1).mean(axis=1))
    return np.concatenate(features), labels


def _compute_beta_vae(
    train_x: np.ndarray,
    train_y: np.ndarray,
    eval_x: np.ndarray,
    eval_y: np.ndarray,
    seed: int = 0,
    num_factors: int | None = None,
) -> dict:
    """Train and evaluation accuracy of a logistic regression from vote features ``(n, d)`` to fixed factors
    (``num_factors`` of them scored; default: those ``train_y`` holds)."""
    if num_factors == 1 or (num_factors is None and len(np.unique(train_y)) < 2):
        # one factor scored: the fixed factor is known without looking
        return {"train_accuracy": 1.0, "eval_accuracy": 1.0}
    if len(np.unique(train_y)) < 2:
        # the training votes all fixed one factor (few votes): the classifier can only answer that one
        return {"train_accuracy": 1.0, "eval_accuracy": float(np.mean(eval_y == train_y[0]))}
    with quiet_convergence():
        model = logistic_regression(seed).fit(train_x, train_y)
    return {
        "train_accuracy": float(np.mean(model.predict(train_x) == train_y)),
        "eval_accuracy": float(np.mean(model.predict(eval_x) == eval_y)),
    }
