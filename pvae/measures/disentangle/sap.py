"""SAP, the Separated Attribute Predictability score (Kumar et al. 2018, "Variational Inference of
Disentangled Latent Concepts from Unlabeled Observations", Sec. 3), as disentanglement_lib for discrete factors.

For each code dimension j and factor k, a linear SVM (scikit-learn's ``LinearSVC``, C = 0.01, balanced class
weights) predicts k's index from z_j alone, trained on 10,000 grid points; S_jk is its accuracy on 5,000 fresh
points. SAP is the mean over factors of the gap between the two most predictive dimensions:

    SAP = 1/K Σ_k (S_{j(1)k} − S_{j(2)k}).

An uninformative dimension predicts a uniform factor with K_k values at accuracy about 1/K_k, so the
identity on a binary factor scores 1 − 1/2 = 0.5 for it. One threshold-type linear classifier per class on one
dimension cannot pick out the middle values of a many-valued factor: SAP of even a perfect code shrinks as
factors get more values. C = 0.01 penalizes the weight and the intercept alike, so the score depends on the
codes' scale: codes of about unit variance (a VAE's means) are what the setting was chosen for.
"""

from collections.abc import Sequence

import numpy as np
from sklearn.svm import LinearSVC

from pvae.measures.disentangle._common import (
    Represent,
    check_sizes,
    quiet_convergence,
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


def compute_sap(
    ground_truth: GroundTruth,
    represent: Represent,
    rng: np.random.Generator,
    *,
    factors: Sequence[int | str] | None = None,
    num_train: int = 10_000,
    num_test: int = 5_000,
    C: float = 0.01,
) -> dict:
    """The SAP score of a representation.

    :param ground_truth: the factors and their observations.
    :param represent: images ``(n, C, H, W)`` → codes ``(n, d)``.
    :param rng: the source of randomness.
    :param factors: the factors scored, by index or name; the others vary.
    :param num_train: points each SVM is trained on.
    :param num_test: points its accuracy is measured on.
    :param C: the SVMs' inverse regularization strength.
    :returns: ``sap`` and ``settings``.
    """
    check_sizes("sap", MINIMUM, num_train=num_train, num_test=num_test)
    chosen = scored_factors(ground_truth, factors)
    train_codes, train_factors = sample_codes(ground_truth, represent, num_train, rng)
    test_codes, test_factors = sample_codes(ground_truth, represent, num_test, rng)
    scores = _compute_sap(
        train_codes, train_factors[:, list(chosen)], test_codes, test_factors[:, list(chosen)], C, sklearn_seed(rng)
    )
    scores["settings"] = settings(ground_truth, chosen, num_train=num_train, num_test=num_test, C=C)
    return scores


def _score_matrix(
    train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, test_factors: np.ndarray, C: float, seed
) -> np.ndarray:
    """S ``(d, K)``: test accuracy of a linear SVM predicting each factor from each code dimension alone."""
    scores = np.zeros((train_codes.shape[1], train_factors.shape[1]))
    for k in range(train_factors.shape[1]):
        if len(np.unique(train_factors[:, k])) < 2:
            continue  # a constant factor is predicted equally well by every dimension: gap 0
        for j in range(train_codes.shape[1]):
            model = LinearSVC(C=C, class_weight="balanced", random_state=seed)
            with quiet_convergence():
                model.fit(train_codes[:, j : j + 1], train_factors[:, k])
            scores[j, k] = np.mean(model.predict(test_codes[:, j : j + 1]) == test_factors[:, k])
    return scores


def _compute_sap(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    C: float = 0.01,
    seed: int = 0,
) -> dict:
    """SAP from codes ``(n, d)`` and factor indices ``(n, K)`` of training and test points."""
    scores = _score_matrix(train_codes, train_factors, test_codes, test_factors, C, seed)
    ranked = -np.sort(-scores, axis=0)
    second = ranked[1] if len(scores) > 1 else np.zeros(scores.shape[1])
    return {"sap": float(np.mean(ranked[0] - second))}
