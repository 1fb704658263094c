"""Posterior diagnostics against probabilistic PCA, whose posterior and log p(x) are exact.

The model is the correlated pPCA of ``test_fullrank.py``: z ∈ R², x ∈ R⁵, and every posterior
p(z|x) is a Gaussian with correlation −0.847 that a full-rank guide can represent exactly and a
diagonal one cannot.
"""

import math

import numpy as np
import pytest
import torch

from pvae.base.sites import Z
from pvae.guides.fullrank import FullRankGuide
from pvae.guides.gaussian import GaussianGuide
from pvae.measures.diagnostics import (
    DiagnoseConfig,
    NotApplicable,
    compare_to_reference,
    diagnose,
    gap_decomposition,
    importance_diagnostics,
    nuts_reference,
    reference_check,
)
from tests.conftest import derived_seed
from tests.guides.test_fullrank import _correlated_ppca, _min_diagonal_gap, _one_thread, _set_to_posterior


@pytest.fixture(autouse=True)
def one_thread():
    with _one_thread():
        yield


def _exact_guide(model, narrow: float = 1.0) -> FullRankGuide:
    """The affine full-rank guide set to p(z|x), its Cholesky factor multiplied by ``narrow``."""
    guide = _set_to_posterior(FullRankGuide((5,), z_dim=2, hidden=()), model)
    with torch.no_grad():
        layer = guide.encoder.net[0]
        layer.bias[2:4] += math.log(narrow)
        layer.bias[4:] *= narrow
    return guide.requires_grad_(False)


@pytest.fixture(scope="module")
def ppca():
    torch.manual_seed(derived_seed(3))
    model = _correlated_ppca()
    return model, model.marginal().sample((20,))


@pytest.fixture(scope="module")
def nuts(ppca):
    """NUTS on the first three datapoints: 2 chains of 500 draws after 300 warm-up steps.

    300 warm-up steps give Pyro's mass-matrix adaptation windows of 25, 50 and 100 draws; with 200
    (one window of 75) a chain now and then mixed twice as slowly (tail ESS 131 of 600 draws
    instead of about 290).
    """
    model, x = ppca
    with _one_thread():
        return nuts_reference(model, x[:3], chains=2, warmup=300, draws=500, seed=derived_seed(0))


def test_nuts_says_each_chain_as_it_starts(ppca):
    """A long NUTS run shows it goes on: one line per chain, before it, with its steps."""
    model, x = ppca
    said = []
    draws, stats = nuts_reference(model, x[:2], chains=2, warmup=5, draws=4, seed=derived_seed(1), progress=said.append)
    assert said == [f"nuts chain {c} of 2 (5 warm-up steps, 4 draws)" for c in (1, 2)]
    assert draws["z"].shape[:3] == (2, 4, 2) and stats["diverging"].shape == (2, 4)


@pytest.mark.statistical
def test_nuts_recovers_the_exact_posterior(ppca, nuts):
    """Means, standard deviations and correlations of the draws against the exact posterior,
    within 4.5 Monte Carlo standard errors computed from the run's own effective sample sizes,
    and the convergence check passes at thresholds sized for 2 chains of 500 draws.

    Standard errors: a mean sd/√ESS (bulk ESS); a standard deviation sd/√(2 ESS) and the
    correlation (1 − ρ²)/√ESS, with the tail ESS (the second moments mix like the tails, measured
    over seeds: sd errors up to 2.5 of these). 4.5 of them, for 6 means, 6 sds and 3 correlations,
    leave the range with probability 15 × 6.8e-6 = 1e-4.

    Convergence: the 4 half-chains of 250 draws give split-R̂ − 1 ≈ (r χ²₃/3 − 1) / 500 with
    r = draws per chain / ESS per chain ≈ 2 (measured bulk ESS 470 of 1000); the 1e-3/12 quantile of
    χ²₃/3 (6 scalars, bulk and tails) is 7.2, hence R̂ ≤ 1.03, where Vehtari et al.'s 1.01 needs about
    4 chains of 1000 draws. ESS ≥ 100 for bulk and tails: measured 440-470, and a chain stuck
    apart gives R̂ ≫ 1.1 (the third test)."""
    model, x = ppca
    draws, stats = nuts
    z = draws[Z]  # (chains, draws, 3, 2)
    assert z.shape == (2, 500, 3, 2)
    converged, check = reference_check(draws, stats, DiagnoseConfig(max_r_hat=1.03, min_ess=100))
    assert converged, check
    exact = model.posterior(x[:3])
    pooled = z.reshape(-1, 3, 2)
    sd = exact.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt().numpy()
    bulk, tail = check["min_ess_bulk"], check["min_ess_tail"]
    error = (pooled.mean(0) - exact.loc.numpy()) / (sd / math.sqrt(bulk))
    assert np.abs(error).max() < 4.5
    np.testing.assert_allclose(pooled.std(0), sd, rtol=4.5 / math.sqrt(2 * tail))
    for n in range(3):
        rho = -0.847
        assert np.corrcoef(pooled[:, n].T)[0, 1] == pytest.approx(rho, abs=4.5 * (1 - rho**2) / math.sqrt(tail))


@pytest.mark.statistical
def test_the_exact_guide_matches_nuts_and_a_narrow_one_does_not(ppca, nuts):
    """Against NUTS, the exact posterior has mean errors near 0, sd ratios near 1 and 90% intervals
    that cover 90% of the draws; a guide 0.3 times as wide has sd ratios 0.3 and covers about
    P(|N(0,1)| < 0.3 · 1.645) = 0.38 of them.

    With the NUTS draws' ESS of about 450 (first test) and 4000 guide draws: a mean error has sd
    √(1/450 + 1/4000) = 0.05 (bound 0.25: 5 sd); an sd ratio relative sd 1/√(2 · 450) = 0.033
    (bound 15%: 4.5 sd); a coverage sd √(0.38 · 0.62 / 450) = 0.023 at most (bound 0.1: 4.3 sd).
    """
    model, x = ppca
    draws, _ = nuts
    for narrow, sd_ratio, coverage in ((1.0, 1.0, 0.9), (0.3, 0.3, 0.38)):
        guide = _exact_guide(model, narrow)
        c = compare_to_reference(draws, {Z: _guide_draws(guide, x[:3], 4000)}, coverage=0.9)[Z]
        assert np.abs(c["mean_error"]).max() < 0.25
        np.testing.assert_allclose(c["sd_ratio"], sd_ratio, rtol=0.15)
        np.testing.assert_allclose(c["coverage"], coverage, atol=0.1)


def _guide_draws(guide, x, n):
    from pvae.measures.diagnostics.joint import guide_draws as draws

    return draws(guide, guide, x, None, n, [Z])[Z].numpy()


@pytest.mark.statistical
def test_unconverged_chains_are_refused():
    """Chains stuck at different places give R-hat ≫ 1.01, and the check names it."""
    rng = np.random.default_rng(derived_seed(0))
    stuck = rng.standard_normal((4, 200, 3, 2)) + np.arange(4)[:, None, None, None]
    converged, check = reference_check({Z: stuck}, {"diverging": np.zeros((4, 200), bool)}, DiagnoseConfig())
    assert not converged
    assert check["max_r_hat"] > 1.5
    assert any(reason.startswith("R-hat") for reason in check["reasons"])
    mixed = rng.standard_normal((4, 500, 3, 2))
    diverging = np.zeros((4, 500), bool)
    assert reference_check({Z: mixed}, {"diverging": diverging}, DiagnoseConfig())[0]
    diverging[1, 7] = True
    converged, check = reference_check({Z: mixed}, {"diverging": diverging}, DiagnoseConfig())
    assert not converged and check["reasons"] == ["1 divergent transitions"]


@pytest.mark.statistical
def test_k_hat_is_small_for_the_exact_posterior_and_large_for_a_narrow_guide(ppca):
    """For a proposal N(m, c² Σ) of the target N(m, Σ), the weights' tail has shape k = 1 − c²
    (log w is (1 − c²) χ²/2 plus a constant): the exact posterior gives constant weights (equal up
    to float32 rounding: k̂ = −∞, no tail), c = 0.3 gives k = 0.91 > 0.7, and c = 1.5 bounded
    weights (k < 0).

    c = 0.3, K = 10⁴: k̂ rests on the largest 3√K = 300 weights and approaches k from below
    (measured over 800 datapoints of 40 seeds: mean 0.899, sd 0.102, 2.2% below 0.7). The mean of
    60 datapoints then has sd 0.013, and 0.91 ± 0.06 holds beyond 3.7 sd (p < 1e-4); at most 15%
    of 60 below 0.7 where 2.2% are expected fails with p ≈ 1e-5 (Poisson, mean 1.3). c = 1.5: the
    largest k̂ of 20 datapoints was −0.62 at worst over 40 seeds (mean −0.71, sd 0.04).
    """
    model, x = ppca
    exact = importance_diagnostics(model, _exact_guide(model), x, num_samples=2000)
    assert (exact["k_hat"] == -math.inf).all()
    assert exact["ess"].min() > 0.99
    torch.testing.assert_close(exact["log_px"], model.log_marginal(x).double(), atol=1e-4, rtol=0)
    torch.manual_seed(derived_seed(4))
    more = torch.cat([x, model.marginal().sample((40,))])
    narrow = importance_diagnostics(model, _exact_guide(model, 0.3), more, num_samples=10000)
    assert float((narrow["k_hat"] > 0.7).double().mean()) >= 0.85
    assert float(narrow["k_hat"].mean()) == pytest.approx(1 - 0.3**2, abs=0.06)
    assert narrow["ess"].max() < 0.2
    wide = importance_diagnostics(model, _exact_guide(model, 1.5), x, num_samples=2000)
    assert (wide["k_hat"] < 0).all()


def _perturbed(guide, model, x, kl: float = 0.4, stream: int = 0):
    """The guide with noise added to its encoder, scaled so that the mean KL(q_φ(z|x) ‖ p(z|x)) over
    ``x`` is ``kl``: an amortization error of known size to find, whatever the draw of the noise.

    KL is quadratic in a small perturbation: two rescalings of one random direction land within
    a few percent of ``kl`` (a fixed scale of 0.03 gave a mean KL anywhere from 0.08 to 1.5).
    """
    generator = torch.Generator().manual_seed(derived_seed(stream))
    start = [p.detach().clone() for p in guide.parameters()]
    direction = [torch.randn(p.shape, generator=generator) for p in start]
    scale = 0.03
    with torch.no_grad():
        for _ in range(3):
            for p, p0, d in zip(guide.parameters(), start, direction, strict=True):
                p.copy_(p0 + scale * d)
            scale *= math.sqrt(kl / float(_kl_to_posterior(guide, model, x).mean()))
    return guide.requires_grad_(False)


def _kl_to_posterior(guide, model, x) -> torch.Tensor:
    """KL(q(z|x) ‖ p(z|x)) per datapoint, in closed form: log p(x) − ELBO(q)."""
    from pyro import poutine

    q = poutine.trace(guide).get_trace(x).nodes[Z]["fn"]
    if not isinstance(q, torch.distributions.MultivariateNormal):
        q = torch.distributions.MultivariateNormal(q.mean, torch.diag_embed(q.variance))
    return torch.distributions.kl_divergence(q, model.posterior(x)).double()


SETTINGS = DiagnoseConfig(samples=2000, elbo_samples=2000, local_particles=16, local_steps=2000, seed=derived_seed(0))


@pytest.mark.statistical
def test_gaps_of_a_full_rank_guide(ppca):
    """The family holds the posterior: the approximation gap is 0 and the amortization gap is the
    whole of KL(q_φ(z|x) ‖ p(z|x)); log p(x) is the exact one.

    Every comparison is per datapoint, within 4.5 Monte Carlo standard errors (K = 2000): a normal
    estimate leaves them with probability 6.8e-6, 20 datapoints 1.4e-4 per line. The mixture
    proposal ½ q_φ + ½ p(z|x) bounds the weights of log p(x) by 2, so their relative sd is at most 1
    and its standard error at most 1/√2000 = 0.022."""
    model, x = ppca
    guide = _perturbed(_exact_guide(model), model, x)
    gaps = gap_decomposition(model, guide, x, config=SETTINGS)
    exact = model.log_marginal(x).double()
    se = gaps["log_px_se"]
    assert se.max() < 0.03  # the mixture weights 1 / (½ + ½ q_φ / p(z|x)) have a relative sd near 1, K = 2000
    assert ((gaps["log_px"] - exact).abs() < 4.5 * se).all()  # the estimate is within its error
    assert (exact - gaps["local_elbo"]).abs().max() < 1e-3  # the local optimum is the posterior
    assert (gaps["approximation_gap"].abs() < 4.5 * se + 1e-3).all()
    kl = _kl_to_posterior(guide, model, x)
    assert float(kl.mean()) == pytest.approx(0.4, rel=0.1)  # large enough to matter: see _perturbed
    assert ((gaps["amortization_gap"] - kl).abs() < 4.5 * gaps["amortized_elbo_se"] + 1e-3).all()
    torch.testing.assert_close(
        gaps["approximation_gap"] + gaps["amortization_gap"], gaps["log_px"] - gaps["amortized_elbo"]
    )


@pytest.mark.statistical
def test_gaps_of_a_diagonal_guide(ppca):
    """The best diagonal Gaussian of a correlated posterior is KL-distance
    ½(log det Σ + Σ_i log Λ_ii) away from it (Λ = Σ⁻¹), for every datapoint: that is the
    approximation gap; the amortization gap is what the encoder adds, ≥ 0.

    Per-datapoint comparisons are within 4.5 Monte Carlo standard errors (K = 2000; 20 datapoints
    leave them with probability 1.4e-4 per line if the estimates are normal)."""
    model, x = ppca
    torch.manual_seed(derived_seed(0))
    guide = GaussianGuide((5,), z_dim=2, hidden=()).requires_grad_(False)
    gaps = gap_decomposition(model, guide, x, config=SETTINGS)
    best = _min_diagonal_gap(model.posterior(x[:1]).covariance_matrix[0])
    assert best > 0.5
    exact = model.log_marginal(x).double()
    # the local optimum is the best diagonal Gaussian: exact log p(x) − its ELBO is the closed form
    assert ((exact - gaps["local_elbo"] - best).abs() < 4.5 * gaps["local_elbo_se"] + 0.01).all()
    # the decomposition's importance-sampled log p(x) (a narrow proposal: its error is larger)
    assert ((gaps["log_px"] - exact).abs() < 4.5 * gaps["log_px_se"]).all()
    assert float(gaps["approximation_gap"].mean()) == pytest.approx(best, abs=0.05)
    kl = _kl_to_posterior(guide, model, x)
    error = gaps["amortized_elbo_se"] + gaps["local_elbo_se"]
    assert ((gaps["amortization_gap"] - (kl - best)).abs() < 4.5 * error).all()
    assert (gaps["amortization_gap"] > -4.5 * error).all()


def test_gaps_do_not_apply_to_a_flow():
    from pvae.guides.iaf import IAFGuide
    from pvae.models.vae import VAE

    model, guide = VAE((5,), z_dim=2, hidden=(8,), likelihood="gaussian"), IAFGuide((5,), z_dim=2, hidden=(8,))
    with pytest.raises(NotApplicable, match="TransformedDistribution"):
        gap_decomposition(model, guide, torch.randn(3, 5), config=SETTINGS)


@pytest.mark.statistical
def test_diagnose_reports_every_part_on_ppca(ppca):
    """The whole report on the exact guide: k̂ −∞ (constant weights), NUTS converged and agreeing,
    gaps 0. The accuracy of NUTS is the first test's; here its thresholds are sized for 2 chains of
    200 draws (after 300 warm-up steps: with 150 a chain at times mixed 4 times slower): split-R̂ − 1
    ≈ (r χ²₃/3 − 1) / 200 with r ≈ 2 stays below 0.07 but with probability 1e-3 (4 scalars, bulk and
    tails); ESS ≥ 50 where about 180 are expected; the median sd ratio has sd about 0.05 (bound 0.25)."""
    model, x = ppca
    config = DiagnoseConfig(
        points=10,
        khat_samples=500,
        nuts_points=2,
        chains=2,
        nuts_warmup=300,
        nuts_draws=200,
        min_ess=50,
        max_r_hat=1.07,
        samples=500,
        elbo_samples=500,
        local_steps=300,
        latent_points=20,
        seed=derived_seed(0),
    )
    results, idata = diagnose(model, _exact_guide(model), x, config=config)
    assert results["not_applicable"] == {}
    assert results["importance"]["k_hat"]["max"] == -math.inf
    assert results["importance"]["fraction_k_above_0.7"] == 0
    assert results["nuts"]["converged"], results["nuts"]["convergence"]
    assert results["nuts"]["comparison"][Z]["median_sd_ratio"] == pytest.approx(1, abs=0.25)
    assert results["gaps"]["approximation_gap"]["max"] < 4 * results["gaps"]["log_px_se"]["max"] + 1e-3
    assert abs(results["gaps"]["amortization_gap"]["mean"]) < 0.01
    assert results["latent"]["active"] == [0, 1]
    assert set(idata.groups()) >= {"posterior", "guide", "sample_stats", "observed_data"}
    assert idata.posterior[Z].shape == (2, 200, 2, 2)
    assert idata.guide[Z].shape == (1, 400, 2, 2)
