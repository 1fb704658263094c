"""Mutual Information Gap (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs", Sec. 5).

For each factor v_k, the gap between the two code dimensions that know most about it, as a fraction of
what there is to know:

    MIG = 1/K Σ_k (I(v_k; z_{j(1)}) − I(v_k; z_{j(2)})) / H(v_k),

where j(1), j(2) are the dimensions with the largest and second largest I(v_k; z_j). As in
disentanglement_lib, I is estimated on 10,000 points, each code dimension discretized into 20 equal-width
bins over its observed range and the factors taken by index (:mod:`pvae.measures.disentangle.mutual_information`).
A factor with more values than bins cannot be fully known through one binned dimension: the identity
representation of a 40-valued uniform factor scores log 20 / log 40 ≈ 0.812 for that factor, not 1, and of
dSprites' five factors (3, 6, 40, 32, 32 values) 0.902 at most (about 0.007 less at 10,000 points: plug-in bias).
"""

from collections.abc import Sequence

import numpy as np

from pvae.measures.disentangle._common import Represent, check_sizes, sample_codes, scored_factors, settings
from pvae.measures.disentangle.ground_truth import GroundTruth
from pvae.measures.disentangle.mutual_information import factor_entropies, mutual_information_matrix

#: The least of each size that leaves the score something to measure: option → (least, why).
MINIMUM = {
    "num_train": (2, "a mutual information over one point is 0"),
    "bins": (2, "one bin holds no information"),
}


def compute_mig(
    ground_truth: GroundTruth,
    represent: Represent,
    rng: np.random.Generator,
    *,
    factors: Sequence[int | str] | None = None,
    num_train: int = 10_000,
    bins: int = 20,
) -> dict:
    """MIG of a representation on ``num_train`` uniform grid points.

    :param ground_truth: the factors and their observations.
    :param represent: images ``(n, C, H, W)`` → codes ``(n, d)`` (the encoder's means, or sampled codes).
    :param rng: the source of randomness.
    :param factors: the factors scored, by index or name (None: all); the others still vary.
    :param num_train: points the mutual information is estimated on.
    :param bins: histogram bins per code dimension.
    :returns: ``discrete_mig``, ``mig_<factor>`` for each factor scored, and ``settings``.
    """
    check_sizes("mig", MINIMUM, num_train=num_train, bins=bins)
    chosen = scored_factors(ground_truth, factors)
    codes, indices = sample_codes(ground_truth, represent, num_train, rng)
    gaps = _compute_mig(codes, indices[:, list(chosen)], bins)
    scores = {"discrete_mig": float(gaps.mean())}
    scores.update({f"mig_{ground_truth.factor_names[k]}": float(gap) for k, gap in zip(chosen, gaps, strict=True)})
    scores["settings"] = settings(ground_truth, chosen, num_train=num_train, bins=bins)
    return scores


def _compute_mig(codes: np.ndarray, factor_indices: np.ndarray, bins: int = 20) -> np.ndarray:
    """The normalized gap of each factor, ``(F,)``, from codes ``(n, d)`` and factor indices ``(n, F)``.

    A factor that does not vary in the sample (zero entropy) scores 0; with one code dimension the
    second best is taken as knowing nothing.
    """
    information = mutual_information_matrix(codes, factor_indices, bins)  # (F, d)
    ranked = -np.sort(-information, axis=1)
    second = ranked[:, 1] if information.shape[1] > 1 else np.zeros(len(information))
    entropy = factor_entropies(factor_indices)
    return np.divide(ranked[:, 0] - second, entropy, out=np.zeros_like(entropy), where=entropy > 0)
