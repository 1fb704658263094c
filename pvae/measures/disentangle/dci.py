"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams 2018, "A Framework for the
Quantitative Evaluation of Disentangled Representations", Sec. 2), with gradient-boosted trees as
disentanglement_lib.

For each factor v_k a classifier of scikit-learn's ``GradientBoostingClassifier`` (its defaults: 100 stages of
depth-3 trees) predicts the factor's index from the codes of 10,000 grid points; the impurity importances of
the d code dimensions fill column k of the importance matrix R (d × K, R_jk ≥ 0). With
P_jk = R_jk / Σ_k' R_jk' and P̃_jk = R_jk / Σ_j' R_j'k:

- disentanglement D = Σ_j ρ_j (1 − H_K(P_j·)), ρ_j = Σ_k R_jk / Σ R (a dimension's share of importance),
- completeness C = Σ_k ρ̃_k (1 − H_d(P̃_·k)), ρ̃_k = Σ_j R_jk / Σ R,
- informativeness: the classifiers' mean accuracy on the training points and on 5,000 fresh points,

where H_n is the entropy in base n (so each term lies in [0, 1]).

Cost: one tree per class per stage, so a factor with 40 values grows 4,000 trees. On dSprites' grid (113
classes in all) with 10 code dimensions the defaults take about 6 minutes on two busy CPU cores, the other
metrics together under 5 seconds. ``num_train=2000, num_test=1000, n_estimators=20`` takes about 9 seconds;
on a 10-dimensional random mixture of dSprites' factors it gave disentanglement 0.231 and completeness 0.186
against the defaults' 0.239 and 0.192, but a lower test informativeness (0.39 against 0.49): a quick look,
not a number to compare with published ones.
"""

from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

from pvae.measures.disentangle._common import (
    Represent,
    check_sizes,
    sample_codes,
    scored_factors,
    settings,
    sklearn_seed,
)
from pvae.measures.disentangle.ground_truth import GroundTruth

#: The least of each size that leaves the score something to measure: option → (least, why).
MINIMUM = {
    "num_train": (2, "a factor seen at one point does not vary: nothing is learnt of it"),
    "num_test": (2, "an accuracy over one point is 0 or 1"),
}


def compute_dci(
    ground_truth: GroundTruth,
    represent: Represent,
    rng: np.random.Generator,
    *,
    factors: Sequence[int | str] | None = None,
    num_train: int = 10_000,
    num_test: int = 5_000,
    n_estimators: int = 100,
) -> dict:
    """DCI disentanglement, completeness and informativeness of a representation.

    :param ground_truth: the factors and their observations.
    :param represent: images ``(n, C, H, W)`` → codes ``(n, d)``.
    :param rng: the source of randomness.
    :param factors: the factors scored, by index or name (one classifier each); the others vary.
    :param num_train: points the classifiers are trained on.
    :param num_test: points their test accuracy is measured on.
    :param n_estimators: boosting stages of each classifier (scikit-learn's and disentanglement_lib's 100).
    :returns: ``disentanglement``, ``completeness``, ``informativeness_train``, ``informativeness_test`` and
        ``settings``.
    """
    check_sizes("dci", MINIMUM, num_train=num_train, num_test=num_test, n_estimators=n_estimators)
    chosen = scored_factors(ground_truth, factors)
    train_codes, train_factors = sample_codes(ground_truth, represent, num_train, rng)
    test_codes, test_factors = sample_codes(ground_truth, represent, num_test, rng)
    importance, train_accuracy, test_accuracy = _importance_matrix(
        train_codes, train_factors[:, list(chosen)], test_codes, test_factors[:, list(chosen)], n_estimators, rng
    )
    scores = _compute_dci(importance)
    scores.update(informativeness_train=train_accuracy, informativeness_test=test_accuracy)
    scores["settings"] = settings(
        ground_truth, chosen, num_train=num_train, num_test=num_test, n_estimators=n_estimators
    )
    return scores


def _importance_matrix(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    n_estimators: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float, float]:
    """The importance matrix ``(d, K)`` of boosted trees predicting each factor, and their mean train and test
    accuracies."""
    importance = np.zeros((train_codes.shape[1], train_factors.shape[1]))
    train_accuracy, test_accuracy = [], []
    # The trees break ties between equally good splits by the order of the dimensions; presenting them in an
    # order fixed by their values (the first point's, then the second's, ...) makes the scores independent of
    # how the dimensions are numbered.
    order = np.lexsort(train_codes[::-1])
    train_codes, test_codes = train_codes[:, order], test_codes[:, order]
    for k in range(train_factors.shape[1]):
        if len(np.unique(train_factors[:, k])) < 2:
            # a factor that does not vary is predicted without any code: no importance, perfect accuracy
            train_accuracy.append(1.0)
            test_accuracy.append(1.0)
            continue
        model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=sklearn_seed(rng))
        model.fit(train_codes, train_factors[:, k])
        importance[order, k] = np.abs(model.feature_importances_)
        train_accuracy.append(np.mean(model.predict(train_codes) == train_factors[:, k]))
        test_accuracy.append(np.mean(model.predict(test_codes) == test_factors[:, k]))
    return importance, float(np.mean(train_accuracy)), float(np.mean(test_accuracy))


def _normalized_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """Entropy of the distributions ``p`` along ``axis`` (each normalized to sum 1), in base ``p.shape[axis]``."""
    p = p / p.sum(axis=axis, keepdims=True)
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=axis) / np.log(p.shape[axis])


def _compute_dci(importance: np.ndarray) -> dict:
    """Disentanglement and completeness of an importance matrix ``(d, K)`` (codes × factors).

    As disentanglement_lib, 1e-11 is added to every entry before the entropies (so a row or column of zeros is
    uniform), and an all-zero matrix weighs every dimension and factor equally.
    """
    d, k = importance.shape
    smoothed = importance + 1e-11
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    # one factor (or one dimension) leaves nothing to be spread over: that side is trivially 1
    per_code = 1 - _normalized_entropy(smoothed, axis=1) if k > 1 else np.ones(d)
    per_factor = 1 - _normalized_entropy(smoothed, axis=0) if d > 1 else np.ones(k)
    # rounding leaves about -1e-16 where every entry is equal: the scores lie in [0, 1]
    return {
        "disentanglement": float(np.clip(np.sum(per_code * weights.sum(axis=1) / weights.sum()), 0, 1)),
        "completeness": float(np.clip(np.sum(per_factor * weights.sum(axis=0) / weights.sum()), 0, 1)),
    }
