"""Mutual information between codes and factors, by histogram discretization of the codes.

MIG and modularity both read the matrix of I(z_j; v_k) between each code dimension z_j, discretized into
equal-width bins over its observed range (disentanglement_lib's ``histogram_discretizer``, 20 bins), and each
factor v_k (its indices), estimated by plug-in from the empirical joint distribution, in nats.
"""

import numpy as np


def histogram_discretize(codes: np.ndarray, bins: int = 20) -> np.ndarray:
    """Each code dimension cut into ``bins`` equal-width bins between its observed minimum and maximum.

    A value falls in bin b (1..bins) when it lies in [e_{b-1}, e_b) (the last bin closed), as ``numpy.histogram``
    draws the edges e_0..e_bins; a constant dimension falls in one bin.

    :param codes: ``(n, d)`` codes.
    :param bins: the number of bins per dimension.
    :returns: ``(n, d)`` int64 bin indices in 1..bins.
    """
    codes = np.asarray(codes, dtype=np.float64)
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins)
        # numpy.digitize against the left edges counts the edges ≤ value: the last bin includes its right end
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def _entropy(counts: np.ndarray) -> float:
    """Plug-in entropy (nats) of the distribution with these counts."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _discrete_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in I(a; b) in nats of two integer label vectors of the same length."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.bincount(a * (b.max() + 1) + b, minlength=(a.max() + 1) * (b.max() + 1)).reshape(a.max() + 1, -1)
    return max(_entropy(joint.sum(1)) + _entropy(joint.sum(0)) - _entropy(joint.ravel()), 0.0)


def factor_entropies(factor_indices: np.ndarray) -> np.ndarray:
    """Plug-in entropy H(v_k) in nats of each factor in a sample (log K_k for a uniform factor with K_k values).

    :param factor_indices: ``(n, F)`` integer factor indices.
    :returns: ``(F,)`` entropies.
    """
    factor_indices = np.asarray(factor_indices)
    return np.array([_entropy(np.unique(column, return_counts=True)[1]) for column in factor_indices.T])


def mutual_information_matrix(codes: np.ndarray, factor_indices: np.ndarray, bins: int = 20) -> np.ndarray:
    """I(v_k; z_j) in nats between each factor and each code dimension discretized into ``bins`` bins.

    :param codes: ``(n, d)`` codes (encoder means, or sampled codes).
    :param factor_indices: ``(n, F)`` integer factor indices of the same points.
    :param bins: histogram bins per code dimension (disentanglement_lib: 20).
    :returns: ``(F, d)`` mutual informations, each between 0 and the factor's entropy.
    """
    codes = np.asarray(codes)
    factor_indices = np.asarray(factor_indices)
    if codes.ndim != 2 or factor_indices.ndim != 2 or len(codes) != len(factor_indices):
        raise ValueError(
            f"mutual_information_matrix: codes (n, d) and factor_indices (n, F) must be 2-D with the same n, "
            f"got {codes.shape} and {factor_indices.shape}"
        )
    discrete = histogram_discretize(codes, bins)
    return np.array(
        [[_discrete_mutual_information(discrete[:, j], v) for j in range(codes.shape[1])] for v in factor_indices.T]
    )
