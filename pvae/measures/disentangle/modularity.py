"""Modularity and explicitness (Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings with the
F-Statistic Loss", Sec. 3), as disentanglement_lib.

Modularity asks whether each code dimension depends on at most one factor. From the mutual information
m_jk = I(z_j; v_k) (20-bin discretization, :mod:`pvae.measures.disentangle.mutual_information`) on 10,000 grid points,
with θ_j = max_k m_jk:

    δ_j = Σ_{k ≠ argmax} m_jk² / (θ_j² (K − 1)),    modularity = 1/d Σ_j (1 − δ_j),

a dimension with θ_j = 0 (knowing nothing) counting 0. It scores the shape of each row of the matrix, not how
much the codes know: pure noise is not 0, since its small plug-in informations are larger for factors with more
values.

Explicitness asks whether the factors can be read off the codes linearly: for each factor, a logistic
regression (one-vs-rest, C = 1, as disentanglement_lib ran it) on all dimensions, trained on 10,000 points;
the mean one-vs-rest ROC AUC of its class probabilities over the factor's values, averaged over factors, on
the training points and on 5,000 fresh ones. Chance is 0.5.
"""

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from pvae.measures.disentangle._common import (
    Represent,
    check_sizes,
    logistic_regression,
    quiet_convergence,
    sample_codes,
    scored_factors,
    settings,
    sklearn_seed,
)
from pvae.measures.disentangle.ground_truth import GroundTruth
from pvae.measures.disentangle.mutual_information import mutual_information_matrix

#: The least of each size that leaves the score something to measure: option → (least, why).
MINIMUM = {
    "num_train": (2, "a mutual information over one point is 0"),
    "num_test": (2, "a ROC AUC over one point is 0.5 whatever the codes"),
    "bins": (2, "one bin holds no information"),
}


def compute_modularity(
    ground_truth: GroundTruth,
    represent: Represent,
    rng: np.random.Generator,
    *,
    factors: Sequence[int | str] | None = None,
    num_train: int = 10_000,
    num_test: int = 5_000,
    bins: int = 20,
) -> dict:
    """Modularity and explicitness of a representation.

    :param ground_truth: the factors and their observations.
    :param represent: images ``(n, C, H, W)`` → codes ``(n, d)``.
    :param rng: the source of randomness.
    :param factors: the factors scored, by index or name; the others vary.
    :param num_train: points the mutual information and the classifiers are computed on.
    :param num_test: points the test explicitness is measured on.
    :param bins: histogram bins per code dimension for the mutual information.
    :returns: ``modularity``, ``explicitness_train``, ``explicitness_test`` and ``settings``.
    """
    check_sizes("modularity", MINIMUM, num_train=num_train, num_test=num_test, bins=bins)
    chosen = scored_factors(ground_truth, factors)
    train_codes, train_factors = sample_codes(ground_truth, represent, num_train, rng)
    test_codes, test_factors = sample_codes(ground_truth, represent, num_test, rng)
    train_factors, test_factors = train_factors[:, list(chosen)], test_factors[:, list(chosen)]
    scores = {"modularity": _modularity(mutual_information_matrix(train_codes, train_factors, bins).T)}
    scores.update(_explicitness(train_codes, train_factors, test_codes, test_factors, sklearn_seed(rng)))
    scores["settings"] = settings(ground_truth, chosen, num_train=num_train, num_test=num_test, bins=bins)
    return scores


def _modularity(information: np.ndarray) -> float:
    """Modularity of a mutual-information matrix ``(d, K)`` (codes × factors)."""
    squared = information**2
    top = squared.max(axis=1)
    if squared.shape[1] < 2:
        return float(np.mean(top > 0))  # one factor: every informative dimension is modular
    delta = np.divide(squared.sum(axis=1) - top, top * (squared.shape[1] - 1), out=np.ones_like(top), where=top > 0)
    return float(np.mean(np.where(top > 0, 1 - delta, 0.0)))


def _mean_auc(model, codes: np.ndarray, labels: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC of the class probabilities over the classes both present and absent in ``labels``."""
    probabilities = model.predict_proba(codes)
    aucs = [
        roc_auc_score(labels == c, probabilities[:, i])
        for i, c in enumerate(model.classes_)
        if 0 < np.sum(labels == c) < len(labels)
    ]
    return float(np.mean(aucs)) if aucs else 0.5


def _explicitness(
    train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, test_factors: np.ndarray, seed: int = 0
) -> dict:
    """Mean train and test one-vs-rest AUC of a logistic regression per factor, from codes ``(n, d)``."""
    train, test = [], []
    for k in range(train_factors.shape[1]):
        if len(np.unique(train_factors[:, k])) < 2:
            train.append(0.5)
            test.append(0.5)
            continue
        with quiet_convergence():
            model = logistic_regression(seed).fit(train_codes, train_factors[:, k])
        train.append(_mean_auc(model, train_codes, train_factors[:, k]))
        test.append(_mean_auc(model, test_codes, test_factors[:, k]))
    return {"explicitness_train": float(np.mean(train)), "explicitness_test": float(np.mean(test))}
