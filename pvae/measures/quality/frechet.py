"""The Fréchet distance between two sets of features, each summarised by a Gaussian (Heusel et al. 2017, "GANs
Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", the FID, Sec. 3 / App. A).

The squared 2-Wasserstein (Fréchet) distance between N(m₁, C₁) and N(m₂, C₂) has the closed form (Dowson &
Landau 1982, "The Fréchet distance between multivariate normal distributions"; Olkin & Pukelsheim 1982)

    d² = ‖m₁ − m₂‖² + tr(C₁ + C₂ − 2 (C₁^½ C₂ C₁^½)^½).

It is computed in float64 from symmetric eigendecompositions only: the square roots C₁^½ = V diag(√λ) Vᵀ and
C₂^½ (tiny negative eigenvalues, rounding of a rank-deficient covariance, clipped to 0), then the trace term as the
sum of the singular values σᵢ of A = C₁^½ C₂^½ (C₁^½ C₂ C₁^½ = A Aᵀ), read off the eigenvalues ±σᵢ of the
symmetric [[0, A], [Aᵀ, 0]] (Jordan–Wielandt). They come to within eps·‖A‖, where the square roots of the
eigenvalues of C₁^½ C₂ C₁^½ would lose half the digits of those near 0: about 5·10⁻⁸ of d² for covariances
spanning 12 decades against 10⁻¹⁰, and more with many zero eigenvalues (fewer images than features). No general
matrix square root is taken: ``scipy.linalg.sqrtm`` of the non-symmetric C₁C₂ returns complex values with an
imaginary part of rounding size, which FID code then discards. Cost: eigendecompositions of two f × f matrices and
one 2f × 2f: milliseconds at 128 features, about 40 s at Inception's 2,048 on two busy CPU cores.

The estimate from samples is biased (Bińkowski et al. 2018, "Demystifying MMD GANs", App. D; Chong & Forsyth
2020, "Effectively Unbiased FID"): the mean term alone by + tr C₁/n₁ + tr C₂/n₂ (E‖m̂₁ − m̂₂‖² − ‖m₁ − m₂‖²), the
whole upwards in practice, by an amount that shrinks as 1/n. Compare distances computed from equally many images;
with more features than images a covariance is singular, which the formula handles.
"""

import numpy as np
import torch

from pvae.measures.quality._arrays import as_features, same_width

# an eigenvalue below -_NEGATIVE x the largest one is no rounding error: the matrix is no covariance (float32
# rounding of a singular 2048 x 2048 covariance reaches about 1e-6 of the largest)
_NEGATIVE = 1e-4


def gaussian_moments(features) -> tuple[np.ndarray, np.ndarray]:
    """The mean and unbiased covariance of a set of features, in float64.

    :param features: an array or tensor ``(n, f)``, n ≥ 2: one row of features per image.
    :returns: the mean ``(f,)`` and the covariance ``(f, f)`` (divided by n − 1).
    :raises ValueError: for another shape, fewer than 2 rows or non-finite values.
    """
    x = as_features(features, "features", min_points=2)
    mean = x.mean(axis=0)
    centered = x - mean
    covariance = centered.T @ centered / (len(x) - 1)
    return mean, (covariance + covariance.T) / 2


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
    """The Fréchet distance d² between the Gaussians N(mean1, cov1) and N(mean2, cov2) (module docstring).

    :param mean1: the first mean ``(f,)``.
    :param cov1: the first covariance ``(f, f)``, symmetric positive semi-definite.
    :param mean2: the second mean ``(f,)``.
    :param cov2: the second covariance ``(f, f)``.
    :returns: d² ≥ 0, in squared feature units (a value below 0 from rounding is returned as 0).
    :raises ValueError: for shapes that do not match, non-finite values, or a matrix that is not a covariance.
    """
    m1, c1 = _moments(mean1, cov1, "first")
    m2, c2 = _moments(mean2, cov2, "second")
    if len(m1) != len(m2):
        raise ValueError(
            f"the two Gaussians have {len(m1)} and {len(m2)} features: compute both moments from features of the "
            f"same network and layer"
        )
    return _compute_frechet(m1, c1, m2, c2)


def compute_frechet(real_features, fake_features) -> float:
    """The Fréchet distance between the Gaussians fitted to two sets of features (the FID in Inception features).

    :param real_features: ``(n, f)``, n ≥ 2: the features of real images.
    :param fake_features: ``(m, f)``, m ≥ 2: the features of generated images, from the same network.
    :returns: d² ≥ 0 between their Gaussians (:func:`gaussian_moments`).
    :raises ValueError: for widths that differ, fewer than 2 rows, or non-finite values.
    """
    real = as_features(real_features, "real features", min_points=2)
    fake = as_features(fake_features, "fake features", min_points=2)
    same_width(real, fake)
    return _compute_frechet(*gaussian_moments(real), *gaussian_moments(fake))


def _moments(mean, cov, which: str) -> tuple[np.ndarray, np.ndarray]:
    """A mean ``(f,)`` and covariance ``(f, f)`` as float64 arrays, checked."""
    m, c = (np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64) for x in (mean, cov))
    if m.ndim != 1 or c.shape != (len(m), len(m)):
        raise ValueError(
            f"the {which} Gaussian: mean must be (f,) and covariance (f, f), got {m.shape} and {c.shape}; "
            f"compute them with gaussian_moments(features)"
        )
    if not (np.isfinite(m).all() and np.isfinite(c).all()):
        raise ValueError(f"the {which} Gaussian has NaN or infinite moments; check the features they came from")
    scale = max(float(np.abs(c).max()), np.finfo(np.float64).tiny)
    if not np.allclose(c, c.T, rtol=0.0, atol=1e-5 * scale):  # float32 products are off by ~1e-7
        raise ValueError(
            f"the {which} covariance is not symmetric; pass a covariance matrix, e.g. from gaussian_moments(features)"
        )
    return m, (c + c.T) / 2


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix ``(f, f)``."""
    values, vectors = torch.linalg.eigh(matrix)
    _check_psd(values)
    return (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T


def _check_psd(values: torch.Tensor) -> None:
    """Refuse eigenvalues too negative to be rounding errors."""
    smallest, largest = values.min().item(), values.abs().max().item()
    if smallest < -_NEGATIVE * max(largest, np.finfo(np.float64).tiny):
        raise ValueError(
            f"a covariance has the eigenvalue {smallest:.3g} < 0 (its largest is {largest:.3g}): it is not positive "
            f"semi-definite; pass a covariance matrix, e.g. from gaussian_moments(features)"
        )


def _compute_frechet(m1: np.ndarray, c1: np.ndarray, m2: np.ndarray, c2: np.ndarray) -> float:
    """d² from float64 moments ``(f,)``, ``(f, f)`` that have been checked."""
    a = _sqrt_psd(torch.from_numpy(c1)) @ _sqrt_psd(torch.from_numpy(c2))  # (f, f)
    # tr (C1^½ C2 C1^½)^½ = Σ σ(A): the symmetric [[0, A], [Aᵀ, 0]] has the eigenvalues ±σ(A), to within eps·‖A‖
    # (faster than an SVD; the eigenvalues of A Aᵀ = C1^½ C2 C1^½ would lose half the digits of those near 0)
    f = len(a)
    block = a.new_zeros(2 * f, 2 * f)
    block[:f, f:] = a
    block[f:, :f] = a.T
    cross = torch.linalg.eigvalsh(block).abs().sum().item() / 2
    diff = m1 - m2
    distance = diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * cross
    return max(float(distance), 0.0)
