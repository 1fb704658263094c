"""Latent usage (active units, I(x; z), the aggregate posterior) against linear-Gaussian models whose
answers are closed forms, and what :func:`pvae.measures.diagnostics.diagnose` says does not apply to a pair.

For probabilistic PCA, z ~ N(0, I), x | z ~ N(W z + b, σ² I), the posterior is
p(z | x) = N(M⁻¹ Wᵀ (x − b), σ² M⁻¹) with M = Wᵀ W + σ² I, the same covariance for every x.
"""

import math

import pytest
import torch

from pvae.guides.conditional_gaussian import ConditionalGaussianGuide
from pvae.guides.delta import DeltaGuide
from pvae.guides.fullrank import FullRankGuide
from pvae.guides.gaussian import GaussianGuide
from pvae.guides.iaf import IAFGuide
from pvae.guides.m2 import M2Guide
from pvae.measures.diagnostics import DiagnoseConfig, diagnose, latent_usage
from pvae.models.cvae import CVAE
from pvae.models.linear import LinearGaussian
from pvae.models.m2 import M2
from pvae.models.vae import VAE
from tests.conftest import derived_seed
from tests.guides.test_fullrank import _correlated_ppca, _fit_guide, _one_thread, _set_to_posterior

#: Lengths of the decoder's columns for latent dimensions 0-3: dimensions 1 and 3 are unused.
COLUMN_NORMS = torch.tensor([2.0, 0.0, 1.0, 0.0])
SIGMA = 0.5


@pytest.fixture(autouse=True)
def one_thread():
    with _one_thread():
        yield


def _half_used_ppca() -> LinearGaussian:
    """A frozen pPCA, z in R⁴, x in R⁶, whose W has orthogonal columns of lengths 2, 0, 1, 0.

    Then M = Wᵀ W + σ² I is diagonal and the posterior factorizes: dimension j has variance
    v_j = σ² / (|w_j|² + σ²) for every x. A diagonal Gaussian guide contains it exactly, and for
    the unused dimensions (|w_j| = 0) it is the prior N(0, 1).
    """
    model = LinearGaussian((6,), z_dim=4)
    basis, _ = torch.linalg.qr(torch.randn(6, 4, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        model.decoder[0].weight.copy_(basis * COLUMN_NORMS)
        model.decoder[0].bias.copy_(torch.linspace(-1.0, 1.0, 6))
        model.likelihood.log_scale.fill_(math.log(SIGMA))
    return model.requires_grad_(False)


def test_active_units_are_the_dimensions_the_decoder_reads():
    """Active units and the KL per dimension of a fitted diagonal guide, against closed forms.

    With x ~ p(x) the law of total variance gives Var_x E[z_j | x] = Var z_j − E_x Var(z_j | x)
    = 1 − v_j = |w_j|² / (|w_j|² + σ²): 16/17 = 0.941 and 4/5 = 0.8 for the used dimensions, 0 for
    the unused ones. The KL of each marginal, averaged over x, is
    E_x ½ (v_j + m_j(x)² − 1 − log v_j) = ½ (v_j + (1 − v_j) − 1 − log v_j) = ½ log(1 + |w_j|²/σ²):
    ½ log 17 = 1.417 and ½ log 5 = 0.805 nats; they add up to I(x; z) = 2.221 nats.
    """
    model = _half_used_ppca()
    x = model.marginal().sample((1000,))
    guide = _fit_guide(model, GaussianGuide((6,), z_dim=4, hidden=()), x, particles=8)
    out = latent_usage(model, guide, x)

    norms2 = COLUMN_NORMS**2
    activity = norms2 / (norms2 + SIGMA**2)
    kl_per_dim = 0.5 * torch.log1p(norms2 / SIGMA**2)
    assert out["active"] == [0, 2]
    # The guide learns zero weights from x to the unused means: both measured 1e-7 to 1e-6 over
    # seeds 0-7 (data, initial encoder and fitting noise).
    assert float(out["activity"][[1, 3]].max()) < 1e-3
    assert float(out["kl_per_dim"][[1, 3]].max()) < 1e-3
    # Sample variances over N = 1000 points: standard error (1 − v_j) √(2/N) = 0.042 and 0.036;
    # measured errors 0.002-0.099 over seeds 0-7.
    assert torch.allclose(out["activity"][[0, 2]], activity[[0, 2]], atol=0.15)
    # The per-point KL has standard deviation (1 − v_j)/√2 = 0.67 and 0.57, so the averages have
    # standard errors 0.021 and 0.018; measured errors 0.001-0.044.
    assert torch.allclose(out["kl_per_dim"][[0, 2]], kl_per_dim[[0, 2]], atol=0.07)
    # Measured 2.12-2.18 over seeds 0-7, biased low; see the next test for the estimator.
    assert out["mutual_information"] == pytest.approx(float(kl_per_dim.sum()), abs=0.15)
    assert out["kl"] == pytest.approx(float(out["kl_per_dim"].sum()), rel=1e-5)  # a diagonal q: the KL adds up


def _exact_ppca_guide(model) -> FullRankGuide:
    return _set_to_posterior(FullRankGuide((5,), z_dim=2, hidden=()), model)


@pytest.fixture
def correlated():
    """The correlated pPCA of ``test_fullrank``, 1000 draws from its p(x), and the exact-posterior guide."""
    model = _correlated_ppca()
    x = model.marginal().sample((1000,)).reshape(1000, 5)
    return model, x, _exact_ppca_guide(model)


def _analytic_mutual_information(model) -> float:
    """I(x; z) = H(z) − E_x H(z | x) = ½ log det I − ½ log det(σ² M⁻¹) = ½ log det(I + Wᵀ W / σ²).

    For ``_correlated_ppca``, Wᵀ W = [[4, 3.6], [3.6, 4]] and σ = 0.5: ½ log det [[17, 14.4], [14.4, 17]]
    = ½ log 81.64 = 2.2012 nats.
    """
    weight, _, sigma = model._affine()
    return float(0.5 * torch.logdet(torch.eye(2) + weight.T @ weight / sigma**2))


@pytest.mark.statistical
def test_mutual_information_of_the_exact_posterior_on_ppca(correlated):
    """I(x; z) and the aggregate posterior when q(z|x) is the exact posterior and x ~ p(x).

    Then q(z) = E_x p(z | x) = p(z), so KL(q(z) ‖ p(z)) = 0, prior holes are at their nominal 1%,
    and E_x KL(q(z|x) ‖ p(z)) = I(x; z) + KL(q(z) ‖ p(z)) = I(x; z).
    """
    model, x, guide = correlated
    exact = _analytic_mutual_information(model)
    assert exact == pytest.approx(0.5 * math.log(17**2 - 14.4**2), rel=1e-5)
    out = latent_usage(model, guide, x)

    # The estimator E[log q(z|x) − log (1/N) Σ_n q(z|x_n)], one draw per point, is the InfoNCE
    # bound with the true critic: at most log N = 6.9 and biased low. Measured over data seeds
    # 0-7: 2.135-2.208 (mean 2.172, spread 0.03), so 0.12 is about three spreads from the bias.
    assert out["log_n"] == pytest.approx(math.log(1000))
    assert out["mutual_information"] == pytest.approx(exact, abs=0.12)
    # The KL term is closed form: exactly the mean of KL(p(z|x) ‖ N(0, I)) over these x, and that
    # mean estimates I(x; z) with standard error 0.03 (measured 2.17-2.23 over seeds 0-7).
    posterior = model.posterior(x)
    prior = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    direct = float(torch.distributions.kl_divergence(posterior, prior).mean())
    assert out["kl"] == pytest.approx(direct, rel=1e-4)
    assert out["kl"] == pytest.approx(exact, abs=0.1)
    # KL(q(z) ‖ p(z)) is 0; its estimate counts each draw's own component, biased up by about
    # 0.01 (measured 0.009-0.016), as is the reverse KL (0.011-0.026).
    assert abs(out["marginal_kl"]) < 0.05
    assert abs(out["reverse_marginal_kl"]) < 0.05
    # q(z) = p(z): 1% of prior draws fall below q's own 1% quantile; measured 0.008-0.016.
    assert 0.002 < out["prior_holes"] < 0.03
    # The posterior means' variance is 1 − Var(z_j | x) = 1 − 0.208 = 0.79 in each dimension.
    assert torch.allclose(out["activity"], 1 - posterior.covariance_matrix[0].diagonal(), atol=0.1)
    assert out["active"] == [0, 1]


@pytest.mark.statistical
def test_a_shifted_aggregate_posterior_leaves_holes_in_the_prior(correlated):
    """The exact posterior moved by +3 along z_0 for every x: q(z) = N((3, 0), I) instead of p(z).

    KL(q(z) ‖ p(z)) = KL(p(z) ‖ q(z)) = ½ · 3² = 4.5 nats. q(z)'s own draws lie below its 1%
    density quantile outside the circle |z − (3, 0)|² = χ²₂(0.99) = 9.21, and a prior draw lands
    there with probability P(χ²₂(λ = 9) > 9.21) = 0.553 (noncentral χ²): about half the prior is a
    hole. The shift leaves I(x; z) unchanged and adds exactly 3 E[m_0] + 4.5 to E_x KL(q(z|x) ‖ p(z)).
    """
    model, x, guide = correlated
    exact = latent_usage(model, guide, x)
    shifted = _exact_ppca_guide(model)
    with torch.no_grad():
        shifted.encoder.net[0].bias[0] += 3.0  # the mean of z_0
    out = latent_usage(model, shifted, x)

    # Measured 0.38-0.59 over data seeds 0-7: the floor is the 1% quantile of 1000 mixture
    # densities, and the mixture of 1000 Gaussians is lumpy in its tails.
    assert out["prior_holes"] > 0.3
    # Measured 4.42-4.66 over seeds 0-7.
    assert out["marginal_kl"] == pytest.approx(4.5, abs=0.3)
    # Prior draws far from every component make the mixture underestimate q(z) there, so the
    # reverse KL is biased up: measured 4.7-8.7, against 0.01-0.03 for the exact guide.
    assert out["reverse_marginal_kl"] > 4.0
    assert out["reverse_marginal_kl"] > 50 * max(exact["reverse_marginal_kl"], 0.01)
    # KL(N(m + δ, Σ) ‖ N(0, I)) − KL(N(m, Σ) ‖ N(0, I)) = δᵀ m + ½ |δ|², both terms in closed form.
    m0 = float(model.posterior(x).mean[:, 0].mean())
    assert out["kl"] - exact["kl"] == pytest.approx(3 * m0 + 4.5, abs=1e-3)
    assert out["mutual_information"] == pytest.approx(exact["mutual_information"], abs=0.1)
    assert torch.allclose(out["activity"], exact["activity"], rtol=1e-4)  # a constant shift of the means


def test_a_collapsed_guide_uses_no_dimension():
    """q(z|x) = N(0, I) = p(z) for every x: nothing depends on x, so every statistic is exactly 0
    (up to float rounding: the mixture of N equal densities is that density)."""
    model = _half_used_ppca()
    x = model.marginal().sample((500,))
    guide = GaussianGuide((6,), z_dim=4, hidden=())
    with torch.no_grad():
        guide.encoder.net[0].weight.zero_()
        guide.encoder.net[0].bias.zero_()
    out = latent_usage(model, guide, x)

    assert out["active"] == []
    assert float(out["activity"].abs().max()) == 0.0
    assert float(out["kl_per_dim"].abs().max()) == 0.0
    assert out["kl"] == 0.0
    assert abs(out["mutual_information"]) < 1e-4
    assert abs(out["marginal_kl"]) < 1e-4
    assert abs(out["reverse_marginal_kl"]) < 1e-4
    # q(z) = p(z): the fraction of 10000 prior draws below the 1% quantile of 500 draws from
    # the same law is 0.01 ± 0.005.
    assert 0.002 < out["prior_holes"] < 0.025


# --------------------------------------------------------------------------------------------
# What diagnose says does not apply.


def _tiny_config() -> DiagnoseConfig:
    return DiagnoseConfig(
        points=8,
        khat_samples=100,
        nuts_points=2,
        chains=2,
        nuts_warmup=20,
        nuts_draws=20,
        samples=50,
        elbo_samples=20,
        local_steps=100,
        latent_points=30,
    )


@pytest.fixture
def binary():
    """30 random binary 8×8 images and labels in 0..9."""
    generator = torch.Generator().manual_seed(derived_seed(0))
    x = torch.bernoulli(torch.full((30, 1, 8, 8), 0.3), generator=generator)
    y = torch.randint(0, 10, (30,), generator=generator)
    return x, y


SHAPE, SMALL = (1, 8, 8), {"z_dim": 3, "hidden": (16,)}


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"points": 0}, "--points must be a positive number, not 0"),
        ({"elbo_samples": 0}, "--elbo-samples must be a positive number"),
        ({"latent_points": 0}, "--latent-points must be a positive number"),
        ({"khat_samples": 20}, "--khat-samples must be at least 100"),
        ({"latent_points": 1}, "--latent-points must be at least 2"),
        ({"chains": 1}, "--chains must be at least 2"),
        ({"nuts_points": -1}, "--nuts-points must be a non-negative number"),
        ({"coverage": 1.0}, "--coverage must be a mass in"),
        ({"min_ess": float("nan")}, "--min-ess must be a positive number, not nan"),
        ({"split": "tset"}, "--split 'tset' is not one of train, val, test"),
    ],
)
def test_diagnose_config_rejects_settings_that_cannot_work(settings, message):
    """k̂ needs a tail of draws per point, R-hat two chains, a variance two points, a central interval
    a mass strictly inside (0, 1)."""
    with pytest.raises(ValueError, match=message):
        DiagnoseConfig(**settings)


def test_diagnose_m2_has_no_nuts_or_gaps_for_its_discrete_label(binary):
    """M2 samples the label y where it is unknown: NUTS cannot move a discrete latent, and the
    guide's latents are y and z, so there is no per-datapoint Gaussian to optimize."""
    x, y = binary
    results, idata = diagnose(M2(SHAPE, **SMALL), M2Guide(SHAPE, **SMALL), x, y, _tiny_config())

    skipped = results["not_applicable"]
    assert "nuts" in skipped and "'y'" in skipped["nuts"] and "discrete" in skipped["nuts"]
    assert "gaps" in skipped and "['y', 'z']" in skipped["gaps"]
    assert "nuts" not in results and "gaps" not in results and idata is None
    k_hat = torch.tensor(results["importance"]["per_datapoint"]["k_hat"])
    assert k_hat.shape == (8,) and bool(k_hat.isfinite().all())
    assert len(results["latent"]["activity"]) == 3


def test_diagnose_autoencoder_only_reports_latent_usage(binary):
    """A point mass has no density: only the posterior means (active units) are defined."""
    x, y = binary
    results, idata = diagnose(VAE(SHAPE, **SMALL), DeltaGuide(SHAPE, **SMALL), x, y, _tiny_config())

    skipped = results["not_applicable"]
    for part in ("importance", "nuts", "gaps"):
        assert "point mass" in skipped[part] and part not in results
    assert idata is None
    assert "active" in results["latent"] and len(results["latent"]["activity"]) == 3
    assert "kl" not in results["latent"] and "latent" in skipped  # no closed-form KL for a Delta


def test_diagnose_iaf_has_no_gaps_or_closed_forms_but_the_rest(binary):
    """A flow's q(z|x) is a TransformedDistribution: no local Gaussian family and no closed-form
    KL, but its draws serve importance sampling, NUTS comparison and the posterior means."""
    x, y = binary
    guide = IAFGuide(SHAPE, flows=2, **SMALL)
    results, idata = diagnose(VAE(SHAPE, **SMALL), guide, x, y, _tiny_config())

    skipped = results["not_applicable"]
    assert "TransformedDistribution" in skipped["gaps"] and "gaps" not in results
    assert "TransformedDistribution" in skipped["latent"]
    assert "active" in results["latent"] and "mutual_information" not in results["latent"]
    assert bool(torch.tensor(results["importance"]["per_datapoint"]["k_hat"]).isfinite().all())
    nuts = results["nuts"]
    assert nuts["datapoints"] == 2 and len(nuts["step_size"]) == 2
    # 20 draws of 2 chains cannot reach ESS 400: the comparison must be refused, and say why.
    assert nuts["converged"] is False
    assert nuts["comparison"] is None and "did not converge" in nuts["refused"]
    assert any("ESS" in reason for reason in nuts["convergence"]["reasons"])
    assert idata.posterior["z"].shape == (2, 20, 2, 3)  # (chains, draws, datapoints, z)
    assert idata.guide["z"].shape == (1, 40, 2, 3)


def test_diagnose_cvae_decomposes_the_gaps(binary):
    """Labels observed, a diagonal Gaussian q(z|x, y): every part applies. The local optimum starts
    at the encoder's output and climbs the ELBO, so the amortization gap is ≥ 0 up to the Monte
    Carlo error of 20 common draws (measured mean 0.19)."""
    x, y = binary
    model, guide = CVAE(SHAPE, **SMALL), ConditionalGaussianGuide(SHAPE, **SMALL)
    results, _ = diagnose(model, guide, x, y, _tiny_config())

    assert results["not_applicable"] == {}
    gaps = results["gaps"]
    for name in ("log_px", "local_elbo", "amortized_elbo", "approximation_gap", "amortization_gap"):
        assert math.isfinite(gaps[name]["mean"]), name
        assert len(gaps["per_datapoint"][name]) == 8
    assert gaps["amortization_gap"]["mean"] >= -0.5
    per = gaps["per_datapoint"]
    for n in range(8):  # the two gaps add up to log p(x) − amortized ELBO
        total = per["approximation_gap"][n] + per["amortization_gap"][n]
        assert total == pytest.approx(per["log_px"][n] - per["amortized_elbo"][n], abs=1e-6)
    assert "mutual_information" in results["latent"]
