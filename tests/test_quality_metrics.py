"""The sample-quality metrics on inputs whose answer is known.

Fréchet distances against closed forms (identical moments, commuting covariances, 1-D and 2-D by hand, scipy's
general square root); precision and recall on points computed by hand and on scikit-learn's digits (pixels as
features) split in halves, with noise added and classes dropped; sharpness on patterns whose spectrum is known
(a checkerboard, stripes, a cosine, ramps, white noise) and on digits blurred by Gaussians of increasing width.
Statistical tolerances are sized for a failure probability of about 1e-3 under any seed.
"""

import math
from itertools import pairwise

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.datasets import load_digits

from pvae.measures.quality import (
    compute_frechet,
    frechet_distance,
    gaussian_moments,
    gradient_magnitude,
    high_frequency_fraction,
    precision_recall,
    radial_spectrum,
    sharpness,
)
from tests.conftest import derived_seed


def random_covariance(rng: np.random.Generator, f: int, rank: int | None = None) -> np.ndarray:
    """A symmetric positive semi-definite ``(f, f)`` of the given rank (full by default)."""
    a = rng.normal(size=(f, rank or f))
    return a @ a.T / f


def rotation(rng: np.random.Generator, f: int) -> np.ndarray:
    """A random orthogonal ``(f, f)``."""
    q, r = np.linalg.qr(rng.normal(size=(f, f)))
    return q * np.sign(np.diag(r))


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as pixels in [0, 1] ``(n, 64)`` and their labels ``(n,)``."""
    x, y = load_digits(return_X_y=True)
    return x / 16.0, y


def digit_images(n: int = 300, scale: int = 4) -> torch.Tensor:
    """The first ``n`` digits upsampled ``scale`` times (nearest): ``(n, 1, 8·scale, 8·scale)`` with sharp edges."""
    x, _ = digits()
    images = torch.from_numpy(x[:n]).reshape(n, 1, 8, 8)
    return images.repeat_interleave(scale, 2).repeat_interleave(scale, 3)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """A periodic Gaussian blur of width ``sigma`` pixels: the transform multiplied by exp(−2π²σ²ρ²)."""
    h, w = images.shape[-2:]
    fy, fx = torch.fft.fftfreq(h, dtype=torch.float64), torch.fft.fftfreq(w, dtype=torch.float64)
    gain = torch.exp(-2 * math.pi**2 * sigma**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))  # (H, W)
    return torch.fft.ifft2(torch.fft.fft2(images) * gain).real


# --- Fréchet distance -------------------------------------------------------------------------------------------


def test_identical_moments_are_at_distance_zero():
    rng = np.random.default_rng(0)
    for f, rank in ((1, None), (16, None), (8, 3)):
        mean, cov = rng.normal(size=f), random_covariance(rng, f, rank)
        assert abs(frechet_distance(mean, cov, mean, cov)) < 1e-8, (f, rank)


def test_commuting_covariances_give_the_sum_of_squared_root_differences():
    rng = np.random.default_rng(1)
    a = np.array([4.0, 1.0, 0.25, 0.0, 1e-6, 1e6])
    b = np.array([1.0, 1.0, 1.0, 2.0, 1e-4, 4e6])
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + ((m1 - m2) ** 2).sum()
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # the same pair in another basis: commuting, no longer diagonal, with eigenvalues spanning 12 decades (5e-11
    # relative error measured over 5 bases; square roots of eigenvalues instead of singular values lose 5e-8)
    q = rotation(rng, 6)
    rotated = frechet_distance(q @ m1, q @ np.diag(a) @ q.T, q @ m2, q @ np.diag(b) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-8)


def test_one_dimension_by_hand():
    # N(1, 2²) against N(−0.5, 0.5²): (1 + 0.5)² + (2 − 0.5)²
    assert frechet_distance([1.0], [[4.0]], [-0.5], [[0.25]]) == pytest.approx(1.5**2 + 1.5**2, rel=1e-12)


def test_two_dimensions_by_hand():
    # in 2-D, tr √(C1^½ C2 C1^½) = √(λ1) + √(λ2) over the eigenvalues of C1 C2 = √(tr C1 C2 + 2 √(det C1 det C2))
    c1 = np.array([[2.0, 0.8], [0.8, 1.0]])
    c2 = np.array([[0.5, -0.3], [-0.3, 3.0]])
    m1, m2 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    cross = math.sqrt(np.trace(c1 @ c2) + 2 * math.sqrt(np.linalg.det(c1) * np.linalg.det(c2)))
    expected = 8.0 + np.trace(c1) + np.trace(c2) - 2 * cross
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(m2, c2, m1, c1) == pytest.approx(expected, rel=1e-12)


def test_general_case_matches_scipy_is_symmetric_and_rotation_invariant():
    rng = np.random.default_rng(2)
    f = 12
    m1, m2 = rng.normal(size=f), rng.normal(size=f)
    c1, c2 = random_covariance(rng, f), random_covariance(rng, f)
    # another way: the principal square root of the non-symmetric C1 C2 (real up to rounding here)
    other = ((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    distance = frechet_distance(m1, c1, m2, c2)
    assert distance > 1.0
    assert distance == pytest.approx(other, rel=1e-9)
    assert frechet_distance(m2, c2, m1, c1) == pytest.approx(distance, rel=1e-10)
    q = rotation(rng, f)
    assert frechet_distance(q @ m1, q @ c1 @ q.T, q @ m2, q @ c2 @ q.T) == pytest.approx(distance, rel=1e-10)


def test_singular_covariances():
    # rank 2 in 5-D against the identity: commuting after a rotation, so Σ(√a − √b)²
    rng = np.random.default_rng(3)
    q = rotation(rng, 5)
    a = np.array([3.0, 0.5, 0.0, 0.0, 0.0])
    expected = ((np.sqrt(a) - 1.0) ** 2).sum()
    assert frechet_distance(np.zeros(5), q @ np.diag(a) @ q.T, np.zeros(5), np.eye(5)) == pytest.approx(expected)


def test_float32_covariances_of_fewer_images_than_features_are_accepted():
    # torch.cov in float32 of 100 images × 512 features: rank 99, its zero eigenvalues rounded to about ±1e-6
    x = torch.randn(100, 512, generator=torch.Generator().manual_seed(0))
    mean, cov = x.mean(0), torch.cov(x.T)
    assert frechet_distance(mean, cov, mean, cov) == pytest.approx(0.0, abs=1e-6 * cov.trace().item())
    assert frechet_distance(mean, cov, mean + 1.0, cov) == pytest.approx(512.0, rel=1e-6)


def test_gaussian_moments_are_the_mean_and_unbiased_covariance():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 3)) + 2.0
    mean, cov = gaussian_moments(torch.from_numpy(x).float())
    assert mean.dtype == cov.dtype == np.float64
    x32 = x.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(mean, x32.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x32, rowvar=False, ddof=1), rtol=1e-10)


def test_frechet_of_features_shifted_by_a_constant_is_its_squared_norm():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 6))
    shift = np.array([1.0, -2.0, 0.0, 0.5, 0.0, 3.0])
    assert compute_frechet(x, x) == pytest.approx(0.0, abs=1e-8)
    assert compute_frechet(x, x + shift) == pytest.approx((shift**2).sum(), rel=1e-8)


@pytest.mark.statistical
def test_frechet_of_samples_approaches_the_closed_form():
    # d = 3 and n = 20,000 per set: the estimate's error has sd 0.092 about a true 9.04 (400 draws: mean -0.001,
    # largest 0.296); 0.4 is 4.3 sd
    rng = np.random.default_rng(derived_seed(6))
    fixed = np.random.default_rng(6)
    c1, c2 = random_covariance(fixed, 3) * 3 + 0.5 * np.eye(3), random_covariance(fixed, 3) * 3 + 0.5 * np.eye(3)
    m1 = fixed.normal(size=3)
    m2 = m1 + 0.3
    true = frechet_distance(m1, c1, m2, c2)
    estimate = compute_frechet(rng.multivariate_normal(m1, c1, 20_000), rng.multivariate_normal(m2, c2, 20_000))
    assert true > 3.0
    assert abs(estimate - true) < 0.4, (estimate, true)


# --- precision and recall ---------------------------------------------------------------------------------------


def test_precision_and_recall_by_hand():
    real = np.array([[0.0], [1.0], [3.0], [10.0]])
    fake = np.array([[0.5], [2.25], [5.5], [-1.5]])
    # k = 1: real radii 1, 1, 2, 7; fake radii 2, 1.75, 1.75, 3.25. −1.5 is 1.5 from 0 (radius 1): outside;
    # 5.5 is 4.5 from 10 (radius 7): inside. The real 10 is 4.5 from 5.5 (radius 3.25): outside.
    assert precision_recall(real, fake, k=1) == {"precision": 0.75, "recall": 0.75, "k": 1, "real": 4, "fake": 4}
    # k = 2: real radii 3, 2, 3, 9 take −1.5 in; fake radii 3.75, 2, 3.25, 5 take 10 in
    result = precision_recall(real, fake, k=2)
    assert (result["precision"], result["recall"]) == (1.0, 1.0)


def test_identical_sets_score_exactly_one_even_with_repeated_points():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 10))
    assert precision_recall(x, x.copy()) == {"precision": 1.0, "recall": 1.0, "k": 3, "real": 300, "fake": 300}
    # every point five times, far from the origin: the balls have radius 0, and rounding must not push a copy out
    repeated = np.repeat(x + 1e4, 5, axis=0)
    result = precision_recall(repeated, repeated[::-1].copy(), k=3)
    assert (result["precision"], result["recall"]) == (1.0, 1.0)


def test_blocks_and_input_types_do_not_change_the_answer():
    rng = np.random.default_rng(8)
    real, fake = rng.normal(size=(250, 5)), rng.normal(size=(180, 5)) + 0.5
    expected = precision_recall(real, fake)
    assert 0.0 < expected["precision"] < 1.0 and 0.0 < expected["recall"] < 1.0
    assert precision_recall(real, fake, batch_size=7) == expected
    assert precision_recall(torch.from_numpy(real), torch.from_numpy(fake), batch_size=64) == expected
    assert precision_recall(real, fake, k=np.int64(3), batch_size=np.int64(50)) == expected


def halves(stream: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
    """The digits split at random in two halves (indices ``a`` and ``b``), with the generator that split them."""
    rng = np.random.default_rng(derived_seed(stream))
    order = rng.permutation(len(digits()[0]))
    return order[:898], order[898:], digits()[1], rng


@pytest.mark.statistical
def test_a_sample_against_another_of_its_distribution_scores_near_one():
    # two halves of the digits: the smaller of the two 0.867-0.912 over seeds 0-39 (sd 0.011)
    x = digits()[0]
    a, b, _, rng = halves(9)
    result = precision_recall(x[a], x[b])
    assert result["precision"] > 0.82 and result["recall"] > 0.82, result
    # low dimensions: 1,000 points of a 2-D Gaussian against 1,000 more (0.961-0.985, sd 0.005)
    result = precision_recall(rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)))
    assert result["precision"] > 0.94 and result["recall"] > 0.94, result


@pytest.mark.statistical
def test_dropping_classes_lowers_recall_and_keeps_precision():
    # the fake half holds only the digits 0-4. Over seeds 0-39: recall 0.47-0.58 (sd 0.026), 0.32-0.44 below that
    # of all ten; precision 0.86-0.94 (sd 0.015), -0.013 to +0.028 from that of all ten (sd 0.011)
    x = digits()[0]
    a, b, y, _ = halves(10)
    full = precision_recall(x[a], x[b])
    dropped = precision_recall(x[a], x[b][y[b] < 5])
    assert dropped["recall"] < 0.68 and dropped["recall"] < full["recall"] - 0.2, (dropped, full)
    assert dropped["precision"] > full["precision"] - 0.04 and dropped["precision"] > 0.82, (dropped, full)


@pytest.mark.statistical
def test_noise_on_the_samples_lowers_precision():
    # Gaussian noise of sd 0, 0.1, 0.2 on the fake half's pixels: precision about 0.9, 0.5, 0.02; over seeds 0-39
    # the steps 0.36-0.43 and 0.45-0.53, the last 0.003-0.029
    x = digits()[0]
    a, b, _, rng = halves(11)
    precisions = [precision_recall(x[a], x[b] + sd * rng.normal(size=x[b].shape))["precision"] for sd in (0, 0.1, 0.2)]
    assert precisions[0] > precisions[1] + 0.2 > precisions[2] + 0.4, precisions
    assert precisions[2] < 0.15, precisions


@pytest.mark.statistical
def test_blur_raises_the_frechet_distance_and_costs_recall():
    # pixels as features: one half of the digits against the other blurred by 0, 0.5, 1, 2 pixels gives distances
    # about 0.07, 0.84, 3.15, 6.5 and recall about 0.9, then 0.02 (blur shrinks the samples' variety; precision
    # stays near 0.9 at 0.5 pixels). Over seeds 0-39: first distance 0.055-0.093, steps at least 0.745, recall
    # 0.872-0.919 and 0.012-0.036 (sds 0.008, 0.010, 0.011, 0.005)
    x = digits()[0]
    a, b, _, _ = halves(14)
    images = torch.from_numpy(x[b]).reshape(-1, 1, 8, 8)
    blurred = [gaussian_blur(images, sigma).flatten(1).numpy() for sigma in (0.0, 0.5, 1.0, 2.0)]
    distances = [compute_frechet(x[a], fake) for fake in blurred]
    assert distances[0] < 0.2, distances
    assert all(far > near + 0.5 for near, far in pairwise(distances)), distances
    recalls = [precision_recall(x[a], fake)["recall"] for fake in blurred[:2]]
    assert recalls[0] > 0.8 and recalls[1] < 0.15, recalls


# --- sharpness --------------------------------------------------------------------------------------------------


def test_a_checkerboard_puts_all_power_at_nyquist_along_both_axes():
    i = torch.arange(8)
    for h, w in ((8, 8), (8, 16)):
        board = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2).double()[None, None]  # (1, 1, H, W)
        frequencies, spectrum = radial_spectrum(board)
        assert spectrum[-1] == 1.0 and spectrum[:-1].sum() == 0.0, spectrum
        # the last ring, 1 / max(H, W) wide, holds the corner (0.5, 0.5); on a square grid the corner alone
        assert abs(frequencies[-1] - math.sqrt(0.5)) < 1 / (2 * max(h, w)), frequencies
        assert high_frequency_fraction(board, cutoff=0.49) == 1.0
    assert frequencies[-1] != pytest.approx(math.sqrt(0.5))
    assert radial_spectrum(board[..., :8])[0][-1] == pytest.approx(math.sqrt(0.5), rel=1e-12)
    # stripes along one axis: all power at ρ = 0.5 exactly (the ring about 0.5 holds it)
    stripes = (i[None, :] % 2).double().expand(8, 8)[None, None]
    frequencies, spectrum = radial_spectrum(stripes)
    assert spectrum.max() == 1.0 and abs(frequencies[spectrum.argmax()] - 0.5) < 1 / 16
    assert high_frequency_fraction(stripes, cutoff=0.49) == 1.0
    assert high_frequency_fraction(stripes, cutoff=0.4) == 1.0


def test_a_cosine_puts_its_power_at_its_frequency():
    # cos(2π j / 8) on 32 × 32: every coefficient but (0, ±4) is 0, and ρ = 0.125
    j = torch.arange(32, dtype=torch.float64)
    wave = (0.5 + 0.5 * torch.cos(2 * math.pi * j / 8)).expand(32, 32)[None, None]
    frequencies, spectrum = radial_spectrum(wave)
    assert spectrum.max() == pytest.approx(1.0, abs=1e-12)
    assert frequencies[spectrum.argmax()] == pytest.approx(0.125, abs=1 / 64)
    assert high_frequency_fraction(wave, cutoff=0.2) == pytest.approx(0.0, abs=1e-12)
    assert high_frequency_fraction(wave, cutoff=0.1) == pytest.approx(1.0, abs=1e-12)


def test_gradient_of_constants_and_ramps():
    assert gradient_magnitude(torch.full((3, 2, 8, 8), 0.3)) == 0.0
    i, j = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    assert gradient_magnitude((0.03 * j)[None, None]) == pytest.approx(0.03, rel=1e-6)
    assert gradient_magnitude((0.03 * i + 0.04 * j)[None, None]) == pytest.approx(0.05, rel=1e-6)


def test_constant_images_have_no_power():
    result = sharpness(torch.full((4, 1, 8, 8), 0.1))
    assert result["high_frequency_fraction"] == 0.0 and result["gradient_magnitude"] == 0.0
    assert set(result["spectrum"]) == {0.0}


@pytest.mark.statistical
def test_white_noise_has_a_flat_spectrum():
    # each frequency's power is exponential about the same mean (χ²₁ at the real-valued Nyquist frequencies): the
    # fraction above the cutoff is the share of frequencies above it (sd 0.0011 over 40 seeds), and each ring's
    # average is the same, its relative sd √(2 / (200 m)) for a ring of m frequencies (5 sd allowed)
    noise = torch.rand(200, 1, 32, 32, generator=torch.Generator().manual_seed(derived_seed(12)), dtype=torch.float64)
    fy = torch.fft.fftfreq(32, dtype=torch.float64)
    rho = torch.sqrt(fy[:, None] ** 2 + fy[None, :] ** 2)
    share = ((rho > 0.25).sum() / (32 * 32 - 1)).item()
    assert high_frequency_fraction(noise) == pytest.approx(share, abs=0.006)
    _, spectrum = radial_spectrum(noise)
    counts = torch.bincount(torch.round(rho * 32).long().flatten())[1:].numpy()  # frequencies per ring, (r,)
    assert len(counts) == len(spectrum)
    deviation = np.abs(spectrum * len(spectrum) - 1)
    assert (deviation < 5 * np.sqrt(2 / (200 * counts))).all(), (deviation, counts)


def test_blur_of_increasing_width_lowers_sharpness_monotonically():
    # digits upsampled to 32 × 32: high-frequency fraction 0.065, 0.020, 0.0012, 1e-7 and gradient 0.103, 0.100,
    # 0.085, 0.065 for blurs of 0, 0.5, 1, 2 pixels
    images = digit_images()
    scores = [sharpness(gaussian_blur(images, sigma)) for sigma in (0.0, 0.5, 1.0, 2.0)]
    fractions = [s["high_frequency_fraction"] for s in scores]
    gradients = [s["gradient_magnitude"] for s in scores]
    assert all(a > 2 * b for a, b in pairwise(fractions)), fractions
    assert all(a > b + 0.002 for a, b in pairwise(gradients)), gradients
    # the spectrum's high rings lose their share
    high = [sum(p for f, p in zip(s["frequencies"], s["spectrum"], strict=True) if f > 0.25) for s in scores]
    assert all(a > b for a, b in pairwise(high)), high


def test_sharpness_agrees_with_its_parts_and_ignores_brightness():
    images = digit_images(120, 2)
    result = sharpness(images, cutoff=0.3)
    frequencies, spectrum = radial_spectrum(images)
    assert result["high_frequency_fraction"] == high_frequency_fraction(images, cutoff=0.3)
    assert result["gradient_magnitude"] == gradient_magnitude(images)
    assert result["frequencies"] == frequencies.tolist() and result["spectrum"] == spectrum.tolist()
    assert result["cutoff"] == 0.3 and sum(result["spectrum"]) == pytest.approx(1.0)
    # the mean is removed and the power normalised: contrast and brightness leave the fraction; the gradient scales
    dimmer = 0.5 * images + 0.25
    assert high_frequency_fraction(dimmer, cutoff=0.3) == pytest.approx(result["high_frequency_fraction"], rel=1e-9)
    assert gradient_magnitude(dimmer) == pytest.approx(0.5 * result["gradient_magnitude"], rel=1e-9)


def test_chunks_do_not_change_the_answer():
    # 1,500 images take three chunks of 500; the same 500 three times must score as the 500 once
    images = digit_images(500, 2).float()
    once, thrice = sharpness(images), sharpness(images.repeat(3, 1, 1, 1))
    assert thrice["high_frequency_fraction"] == pytest.approx(once["high_frequency_fraction"], rel=1e-12)
    assert thrice["gradient_magnitude"] == pytest.approx(once["gradient_magnitude"], rel=1e-12)
    np.testing.assert_allclose(thrice["spectrum"], once["spectrum"], rtol=1e-12)


# --- bad inputs -------------------------------------------------------------------------------------------------

FEATURES = np.random.default_rng(13).normal(size=(20, 4))
NAN = FEATURES.copy()
NAN[3, 1] = np.nan


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: compute_frechet(FEATURES, FEATURES[:, :3]), ("4 columns", "3", "same network")),
        (lambda: precision_recall(FEATURES, FEATURES[:, :3]), ("4 columns", "3", "same network")),
        (lambda: precision_recall(FEATURES[:3], FEATURES), ("3 real points", "k=3", "at least k + 1 = 4")),
        (lambda: precision_recall(FEATURES, FEATURES[:2], k=2), ("2 fake points", "smaller k")),
        (lambda: precision_recall(FEATURES, FEATURES, k=0), ("k must be a positive integer",)),
        (lambda: precision_recall(FEATURES, FEATURES, batch_size=0), ("batch_size must be a positive integer",)),
        (lambda: precision_recall(FEATURES, FEATURES, k=2.5), ("k must be a positive integer",)),
        (lambda: compute_frechet(NAN, FEATURES), ("nan or infinite", "1 of its 20 rows", "drop those rows")),
        (lambda: precision_recall(FEATURES, NAN), ("nan or infinite", "drop those rows")),
        (lambda: compute_frechet(FEATURES[:, 0], FEATURES[:, 0]), ("2-d array", "reshape(-1, 1)")),
        (lambda: gaussian_moments(FEATURES[:1]), ("1 rows", "at least 2")),
        (lambda: frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2)), ("3 and 2 features",)),
        (lambda: frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3)), ("(f,)", "gaussian_moments")),
        (lambda: frechet_distance([0.0, 0.0], [[1, 1], [0, 1]], [0.0, 0.0], np.eye(2)), ("not symmetric",)),
        (lambda: frechet_distance([0.0, 0.0], np.eye(2), [0.0, 0.0], [[1, 2], [2, 1]]), ("-1", "semi-definite")),
        (lambda: sharpness(torch.rand(5, 8, 8)), ("4-d", "(5, 8, 8)", "unsqueeze(1)")),
        (lambda: gradient_magnitude(torch.rand(8, 8)), ("4-d", "images[none, none]")),
        (lambda: radial_spectrum(torch.rand(2, 1, 1, 8)), ("at least 2 × 2",)),
        (lambda: sharpness(torch.full((2, 1, 4, 4), float("nan"))), ("nan or infinite pixels",)),
        (lambda: sharpness(torch.zeros(2, 1, 4, 4, dtype=torch.uint8)), ("integer pixels", "/ 255")),
        (lambda: sharpness(torch.rand(2, 1, 4, 4), cutoff=0.5), ("between 0 and 0.5", "nyquist")),
        (lambda: high_frequency_fraction(torch.rand(2, 1, 4, 4), cutoff=0), ("between 0 and 0.5",)),
    ],
)
def test_bad_inputs_name_the_fix(call, words):
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value).lower()
    for word in words:
        assert word.lower() in message, (word, message)
