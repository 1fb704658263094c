"""The FactorVAE score (Kim & Mnih 2018, "Disentangling by Factorising", Sec. 4).

Each code dimension is first scaled by its standard deviation s_j over 10,000 uniform grid points;
dimensions with s_j < 0.05 count as collapsed to the prior and are pruned (disentanglement_lib's
``prune_dims.threshold = 0.05``, a threshold on the standard deviation). One vote is a batch of L = 64 points
sharing the value of one factor k (drawn uniformly among the factors scored), the others random: the dimension
with the smallest scaled variance in the batch, d* = argmin_j Var_batch(z_j) / s_j², votes for k. The
classifier maps each dimension to the factor it received most votes for (majority vote); the score is the
fraction of votes it gets right, on 10,000 training votes (``train_accuracy``) and 5,000 fresh ones
(``eval_accuracy``). With no active dimension both are 0; chance is about 1/K for K factors scored.
"""

from collections.abc import Sequence

import numpy as np

from pvae.measures.disentangle._common import (
    CHUNK,
    Represent,
    check_sizes,
    encode,
    sample_codes,
    scored_factors,
    settings,
)
from pvae.measures.disentangle.ground_truth import GroundTruth

#: The least of each size that leaves the score something to measure: option → (least, why).
MINIMUM = {
    "batch_size": (2, "a vote compares the variances within a batch: one point has none"),
    "num_train": (2, "its majority vote learns from two votes or more"),
    "num_eval": (2, "an accuracy over one vote is 0 or 1"),
    "num_variance_estimate": (2, "a variance needs two points"),
}


def compute_factor_vae(
    ground_truth: GroundTruth,
    represent: Represent,
    rng: np.random.Generator,
    *,
    factors: Sequence[int | str] | None = None,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
) -> dict:
    """The FactorVAE score of a representation.

    :param ground_truth: the factors and their observations.
    :param represent: images ``(n, C, H, W)`` → codes ``(n, d)``.
    :param rng: the source of randomness.
    :param factors: the factors scored, by index or name (the fixed factor is drawn among them); the others vary.
    :param batch_size: points sharing the fixed factor in one vote (L).
    :param num_train: votes the majority-vote classifier is built from.
    :param num_eval: votes it is scored on.
    :param num_variance_estimate: points the global variance of each dimension is estimated on.
    :param prune_threshold: dimensions whose global standard deviation is below it are ignored.
    :returns: ``train_accuracy``, ``eval_accuracy``, ``num_active_dims`` and ``settings``.
    """
    sizes = dict(batch_size=batch_size, num_train=num_train, num_eval=num_eval)
    check_sizes("factor_vae", MINIMUM, **sizes, num_variance_estimate=num_variance_estimate)
    chosen = scored_factors(ground_truth, factors)
    codes, _ = sample_codes(ground_truth, represent, num_variance_estimate, rng)
    global_variances = np.var(codes, axis=0, ddof=1)
    train = _votes(ground_truth, represent, rng, chosen, batch_size, num_train)
    evaluation = _votes(ground_truth, represent, rng, chosen, batch_size, num_eval)
    scores = _compute_factor_vae(global_variances, *train, *evaluation, len(chosen), prune_threshold)
    scores["settings"] = settings(
        ground_truth,
        chosen,
        batch_size=batch_size,
        num_train=num_train,
        num_eval=num_eval,
        num_variance_estimate=num_variance_estimate,
        prune_threshold=prune_threshold,
    )
    return scores


def _votes(
    ground_truth: GroundTruth,
    represent: Represent,
    rng: np.random.Generator,
    chosen: tuple[int, ...],
    batch_size: int,
    num: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``num`` votes: the within-batch variances ``(num, d)`` and the position in ``chosen`` of the fixed factor."""
    labels = rng.integers(0, len(chosen), num)
    variances = []
    per_call = max(1, CHUNK // batch_size)
    for start in range(0, num, per_call):
        fixed = np.asarray(chosen)[labels[start : start + per_call]]
        points = ground_truth.sample_factors(len(fixed) * batch_size, rng).reshape(len(fixed), batch_size, -1)
        # every point of a batch takes the fixed factor's value of the batch's first point
        points[np.arange(len(fixed)), :, fixed] = points[np.arange(len(fixed)), :1, fixed]
        codes = encode(ground_truth, represent, points.reshape(len(fixed) * batch_size, -1))
        variances.append(np.var(codes.reshape(len(fixed), batch_size, -1), axis=1, ddof=1))
    return np.concatenate(variances), labels


def _compute_factor_vae(
    global_variances: np.ndarray,
    train_variances: np.ndarray,
    train_labels: np.ndarray,
    eval_variances: np.ndarray,
    eval_labels: np.ndarray,
    num_factors: int,
    prune_threshold: float = 0.05,
) -> dict:
    """Majority-vote accuracies from global variances ``(d,)``, per-vote batch variances ``(n, d)`` and the fixed
    factor of each vote ``(n,)`` (in ``0..num_factors − 1``)."""
    active = np.sqrt(global_variances) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}

    def vote_counts(variances, labels):  # (d_active, num_factors)
        argmin = np.argmin(variances[:, active] / global_variances[active], axis=1)
        counts = np.zeros((int(active.sum()), num_factors), dtype=np.int64)
        np.add.at(counts, (argmin, labels), 1)
        return counts

    train, evaluation = vote_counts(train_variances, train_labels), vote_counts(eval_variances, eval_labels)
    majority = np.argmax(train, axis=1)  # the factor each active dimension stands for
    rows = np.arange(len(majority))
    return {
        "train_accuracy": float(train[rows, majority].sum() / train.sum()),
        "eval_accuracy": float(evaluation[rows, majority].sum() / evaluation.sum()),
        "num_active_dims": float(active.sum()),
    }
