"""The ArviZ wrapper: k̂ against weights of known tail index, R-hat against a hand computation,
ESS of independent draws, and the NetCDF file of the NUTS and guide draws."""

import os

import numpy as np
import pytest
from scipy import stats

from pvae.base import az
from tests.conftest import derived_seed

K = 4000


def _k_hats(log_weights: np.ndarray) -> np.ndarray:
    k_hat, _ = az.pareto_k(log_weights)
    assert k_hat.shape == (len(log_weights),)
    return k_hat


@pytest.mark.parametrize("alpha", [2.0, 1.25, 5.0])
@pytest.mark.statistical
def test_pareto_k_recovers_the_tail_index_of_pareto_weights(alpha):
    """w ~ Pareto(scale 1, α) has P(w > t) = t^(−α), a generalized Pareto tail of shape k = 1/α:
    0.5, 0.8 and 0.2. Its log is exponential with rate α.

    One row of K = 4000 fits the largest 3 √K = 190 weights, whose k̂ has standard deviation
    0.08-0.12 (measured over 400 rows): ±0.1 would hold for one row only two times in three. The
    mean of 100 rows has standard error ≤ 0.012, and ArviZ's weakly informative prior pulls each
    k̂ towards 0.5 by 10 / (190 + 10) of the distance (+0.015 at k = 0.2, −0.015 at k = 0.8);
    measured means of 40 rows lie within 0.04 of k.
    """
    rng = np.random.default_rng(derived_seed(0))
    k_hat = _k_hats(rng.exponential(1 / alpha, size=(100, K)))
    assert k_hat.mean() == pytest.approx(1 / alpha, abs=0.06)


@pytest.mark.statistical
def test_pareto_k_orders_rows_by_their_tails_in_one_call():
    """Each row is fitted on its own: rows with k = 0.2, 0.5, 0.8 get increasing k̂ and smoothed
    weights that are normalized in every row."""
    rng = np.random.default_rng(derived_seed(1))
    log_w = np.concatenate([rng.exponential(1 / alpha, size=(20, K)) for alpha in (5.0, 2.0, 1.25)])
    k_hat, smoothed = az.pareto_k(log_w)
    means = k_hat.reshape(3, 20).mean(1)
    assert means[0] < means[1] < means[2], means
    np.testing.assert_allclose(np.exp(smoothed).sum(1), 1.0, rtol=1e-10)


def test_pareto_smoothing_only_replaces_the_tail():
    """PSIS replaces the largest M ≈ 3 √K weights by quantiles of the fitted Pareto and leaves the
    others as they are: below the tail, smoothed − raw normalized log-weights is one constant per
    row (the change of the normalizer). The smoothed weights never exceed the largest raw one."""
    rng = np.random.default_rng(derived_seed(2))
    log_w = rng.exponential(1 / 1.25, size=(3, K))
    _, smoothed = az.pareto_k(log_w)
    raw = log_w - np.logaddexp.reduce(log_w, axis=1, keepdims=True)
    body = np.argsort(log_w, axis=1)[:, : K - 300]  # well below the largest 190
    shift = np.take_along_axis(smoothed - raw, body, axis=1)
    np.testing.assert_allclose(shift, shift[:, :1].repeat(shift.shape[1], 1), atol=1e-10)
    assert np.all(smoothed.max(1) <= raw.max(1) + shift[:, 0] + 1e-10)


def test_pareto_k_of_equal_weights_is_minus_infinity_with_uniform_weights():
    """A proposal equal to the target gives K equal log-weights: no tail to fit, so k̂ = −∞ and
    every smoothed weight is 1/K, whatever the common value; other rows are fitted as usual."""
    rng = np.random.default_rng(derived_seed(3))
    log_w = np.stack([np.full(K, -12.5), rng.exponential(0.5, size=K)])
    k_hat, smoothed = az.pareto_k(log_w)
    assert k_hat[0] == -np.inf
    np.testing.assert_array_equal(smoothed[0], np.full(K, -np.log(K)))
    assert np.isfinite(k_hat[1]) and abs(k_hat[1] - 0.5) < 0.4


def test_pareto_k_of_weights_equal_up_to_float32_rounding_is_minus_infinity():
    """The exact posterior as proposal gives log-weights equal up to the rounding of float32
    densities (a range of 10-50 ulps): no tail, k̂ = −∞, not a Pareto fit to rounding noise (which
    gave +∞ or > 0.7). A spread well above rounding (a few 1e-3 relative) is fitted as usual."""
    rng = np.random.default_rng(derived_seed(4))
    base = np.float32(-8.3)
    rounding = (base + rng.integers(-20, 21, size=(2, K)) * np.spacing(base)).astype(np.float64)
    spread = -8.3 + 1e-2 * rng.exponential(0.5, size=(1, K))
    k_hat, smoothed = az.pareto_k(np.concatenate([rounding, spread]))
    assert np.all(k_hat[:2] == -np.inf)
    np.testing.assert_array_equal(smoothed[:2], np.full((2, K), -np.log(K)))
    assert np.isfinite(k_hat[2]) and k_hat[2] < 0.5  # log w = 0.01 Exp(rate 2): P(w > t) = t^−200, k = 0.005


@pytest.mark.parametrize("shape", [(K,), (2, 3, K), (5, 1)])
def test_pareto_k_wants_rows_of_at_least_two_samples(shape):
    with pytest.raises(ValueError, match="at least 2 samples"):
        az.pareto_k(np.zeros(shape))


def _gaussian_log_weights(c: float, rows: int, seed: int) -> np.ndarray:
    """log N(z; 0, 1) − log N(z; 0, c²) at z ~ N(0, c²): with z = c u, u ~ N(0, 1), it is
    u² (1 − c²) / 2 + log c."""
    z = c * np.random.default_rng(derived_seed(seed)).standard_normal((rows, K))
    return stats.norm.logpdf(z) - stats.norm.logpdf(z, scale=c)


@pytest.mark.statistical
def test_pareto_k_of_a_narrow_gaussian_proposal():
    """Proposal N(0, c²), target N(0, 1), c < 1: log w = (1 − c²) χ²₁ / 2 + log c, and
    P(w > t) = P(χ²₁ > 2 log(t/c) / (1 − c²)) ≈ (t/c)^(−1/(1−c²)) / √(π log(t/c)/(1−c²)):
    tail index 1/(1 − c²), k = 1 − c² = 0.75 for c = 0.5.

    The √log factor varies slowly, so the local index at a finite threshold u is larger,
    1/(1 − c²) + 1/(2 log(u/c)), and k̂ approaches 0.75 from below as K grows: measured means
    0.677 ± 0.008 at K = 4000, 0.691 at 16000, 0.715 at 64000. One row has standard deviation
    0.12, so the mean of 200 rows (standard error 0.008) is asserted within 0.1 below k and not
    above it beyond noise.
    """
    k_hat = _k_hats(_gaussian_log_weights(0.5, rows=200, seed=0))
    assert 0.75 - 0.1 < k_hat.mean() < 0.75 + 0.03
    assert (k_hat > 0.5).mean() > 0.8  # the usual verdict: a narrow proposal is unreliable


@pytest.mark.statistical
def test_pareto_k_of_a_wide_gaussian_proposal_is_negative():
    """c = 2 > 1: log w = (1 − c²) χ²₁ / 2 + log c ≤ log 2, so the weights are bounded and their
    tail is short (k < 0). Measured k̂ from −1.80 to −1.41 over 400 rows, standard deviation 0.12."""
    k_hat = _k_hats(_gaussian_log_weights(2.0, rows=50, seed=0))
    assert np.all(k_hat < 0)
    assert np.all(k_hat < -1.0)


# --------------------------------------------------------------------------------------------
# Convergence.


def _split_rhat(draws: np.ndarray) -> float:
    """Gelman et al.'s R-hat of (chains, draws) after splitting each chain in two halves."""
    half = draws.shape[1] // 2
    split = np.concatenate([draws[:, :half], draws[:, -half:]])
    n = split.shape[1]
    within = split.var(1, ddof=1).mean()
    between = n * split.mean(1).var(ddof=1)
    return float(np.sqrt(((n - 1) / n * within + between / n) / within))


def _rank_normalized(draws: np.ndarray) -> np.ndarray:
    """Φ⁻¹((r − 3/8) / (S + 1/4)) of the pooled ranks r (Vehtari et al., 2021, eq. 14)."""
    ranks = stats.rankdata(draws, method="average").reshape(draws.shape)
    return stats.norm.ppf((ranks - 0.375) / (draws.size + 0.25))


def _rank_rhat(draws: np.ndarray) -> float:
    """Vehtari et al.'s R-hat: the larger of the rank-normalized split R-hat of the draws (bulk)
    and of their distances to the median (tails)."""
    folded = np.abs(draws - np.median(draws))
    return max(_split_rhat(_rank_normalized(draws)), _split_rhat(_rank_normalized(folded)))


@pytest.mark.statistical
def test_independent_chains_converge():
    """Four chains of 1000 independent N(0, 1) draws: R-hat ≈ 1 and ESS ≈ 4000 draws.

    Over data seeds 0-9 and 6 scalars each: R-hat at most 1.002; bulk ESS 3503-4343 and tail ESS
    3220-4147 (the tail ESS is the smaller of two quantiles' ESS, so it is low and noisier).
    """
    draws = np.random.default_rng(derived_seed(0)).standard_normal((4, 1000, 2, 3))
    diag = az.convergence(draws)
    for key in ("r_hat", "ess_bulk", "ess_tail"):
        assert diag[key].shape == (2, 3), key
    assert np.all(diag["r_hat"] < 1.01)
    np.testing.assert_allclose(diag["ess_bulk"], 4000, rtol=0.15)
    assert np.all((diag["ess_tail"] > 0.75 * 4000) & (diag["ess_tail"] < 1.15 * 4000))
    for i in range(2):
        for j in range(3):
            assert diag["r_hat"][i, j] == pytest.approx(_rank_rhat(draws[:, :, i, j]), rel=1e-10)


@pytest.mark.statistical
def test_a_chain_elsewhere_does_not_converge():
    """Chains at means 0, 0, 0, 3: only the scalar whose fourth chain is shifted fails.

    Without ranks, split R-hat is √((n−1)/n + B/(nW)) with B/n the variance of the 8 half-chain
    means (six at 0, two at 3): 13.5/7 = 1.93, so R-hat ≈ √(1 + 1.93) = 1.71. Rank normalization
    squeezes the pooled mixture towards a normal: measured 1.47-1.49 over seeds 0-9, and equal to
    the hand computation of Vehtari et al.'s definition.
    """
    draws = np.random.default_rng(derived_seed(0)).standard_normal((4, 1000, 2))
    draws[3, :, 1] += 3.0
    diag = az.convergence(draws)
    assert diag["r_hat"][0] < 1.01 and diag["r_hat"][1] > 1.4
    assert diag["r_hat"][1] == pytest.approx(_rank_rhat(draws[:, :, 1]), rel=1e-10)
    assert _split_rhat(draws[:, :, 1]) == pytest.approx(1.71, abs=0.05)
    assert diag["ess_bulk"][1] < 50  # the chains disagree: hardly any independent draws


@pytest.mark.parametrize("shape", [(1, 1000), (1, 1000, 3), (1000,)])
def test_convergence_needs_two_chains(shape):
    with pytest.raises(ValueError, match="at least 2 chains"):
        az.convergence(np.zeros(shape))


# --------------------------------------------------------------------------------------------
# InferenceData and its file.


@pytest.fixture
def idata_parts():
    rng = np.random.default_rng(derived_seed(0))
    return {
        "nuts": {"z": rng.standard_normal((2, 5, 3, 4))},  # (chains, draws, datapoint, z_dim)
        "guide": {"z": rng.standard_normal((1, 10, 3, 4))},  # (1, draws, datapoint, z_dim)
        "sample_stats": {"diverging": np.array([[False, True, False, False, False]] * 2)},
        "observed": {"x": rng.standard_normal((3, 6))},
        "dims": {"z": ["datapoint", "z_dim"]},
    }


def test_inference_data_round_trips_through_netcdf(tmp_path, idata_parts):
    """Both groups, their values and dimension names survive the file; nothing else is left beside it."""
    path = tmp_path / "reference.nc"
    az.save_netcdf(az.inference_data(**idata_parts), path)
    assert sorted(os.listdir(tmp_path)) == ["reference.nc"]

    back = az.load_netcdf(path)
    assert {az.NUTS_GROUP, az.GUIDE_GROUP, "sample_stats", "observed_data"} <= set(back.groups())
    nuts, guide = back[az.NUTS_GROUP]["z"], back[az.GUIDE_GROUP]["z"]
    assert nuts.dims == guide.dims == ("chain", "draw", "datapoint", "z_dim")
    np.testing.assert_array_equal(nuts.values, idata_parts["nuts"]["z"])
    np.testing.assert_array_equal(guide.values, idata_parts["guide"]["z"])
    np.testing.assert_array_equal(back.sample_stats["diverging"].values, idata_parts["sample_stats"]["diverging"])
    np.testing.assert_array_equal(back.observed_data["x"].values, idata_parts["observed"]["x"])


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path, idata_parts, monkeypatch):
    path = tmp_path / "reference.nc"
    az.save_netcdf(az.inference_data(**idata_parts), path)
    before = path.read_bytes()

    other = az.inference_data(nuts={"z": np.zeros((2, 5, 3, 4))}, guide={"z": np.zeros((1, 10, 3, 4))})

    def fail(filename, *args, **kwargs):
        with open(filename, "wb") as handle:  # a partial file, then the error
            handle.write(b"CDF\x01 half")
        raise OSError("disk full")

    monkeypatch.setattr(other, "to_netcdf", fail)
    with pytest.raises(OSError, match="disk full"):
        az.save_netcdf(other, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["reference.nc"]
    np.testing.assert_array_equal(az.load_netcdf(path)[az.GUIDE_GROUP]["z"].values, idata_parts["guide"]["z"])
