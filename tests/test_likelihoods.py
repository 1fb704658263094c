import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from scipy import stats

from pvae.data import DataConfig, load
from pvae.engine.compatibility import check_compatible
from pvae.engine.config import PairConfig, build_pair
from pvae.engine.likelihoods import (
    KINDS,
    LIKELIHOODS,
    Bernoulli,
    Binomial,
    ContinuousBernoulli,
    Gaussian,
    GaussianPerPixel,
    NegativeBinomial,
    Poisson,
    Rescaled,
    ZeroInflatedNegativeBinomial,
    check_support,
    get_likelihood,
)
from pvae.engine.pair import traits
from pvae.engine.train import TrainConfig, fit
from pvae.models.vae import VAE
from tests.conftest import derived_seed, make_dataset

#: λ near 0 and 1, inside torch's Taylor window (0.499, 0.501) around 1/2, at 1/2, just outside it, and in between.
LAMBDAS = [1e-4, 0.01, 0.2, 0.4985, 0.4995, 0.49999, 0.5, 0.50003, 0.5008, 0.502, 0.7, 0.99, 1 - 1e-4]
XS = [0.0, 0.1, 0.5, 0.93, 1.0]


def _logit(lam: torch.Tensor) -> torch.Tensor:
    return torch.log(lam) - torch.log1p(-lam)


def _log_norm(lam: torch.Tensor) -> torch.Tensor:
    """log C(λ) = log(2 artanh(1 − 2λ) / (1 − 2λ)), log 2 at λ = 1/2, in float64."""
    t = 1 - 2 * lam
    safe = torch.where(t == 0, torch.ones_like(t), t)
    return torch.where(t == 0, torch.full_like(t, math.log(2)), torch.log(2 * torch.atanh(safe) / safe))


def _log_density(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """x log λ + (1 − x) log(1 − λ) + log C(λ), written out in float64."""
    return x * torch.log(lam) + (1 - x) * torch.log1p(-lam) + _log_norm(lam)


def _mean(lam: torch.Tensor) -> torch.Tensor:
    """λ / (2λ − 1) + 1 / (2 artanh(1 − 2λ)), 1/2 at λ = 1/2, in float64."""
    t = 1 - 2 * lam
    safe = torch.where(t == 0, torch.ones_like(t), t)
    return torch.where(t == 0, torch.full_like(t, 0.5), -lam / safe + 1 / (2 * torch.atanh(safe)))


def test_the_registry_names_the_grey_level_likelihoods():
    assert get_likelihood("continuous-bernoulli") is ContinuousBernoulli
    assert get_likelihood("gaussian-per-pixel") is GaussianPerPixel
    assert LIKELIHOODS["gaussian"] is Gaussian
    assert not ContinuousBernoulli.requires_binary and ContinuousBernoulli.params_per_pixel == 1


def test_continuous_bernoulli_log_density_is_the_closed_form_with_its_normaliser():
    lam = torch.tensor(LAMBDAS, dtype=torch.float64)
    x = torch.tensor(XS, dtype=torch.float64)
    lam_grid, x_grid = torch.meshgrid(lam, x, indexing="ij")  # (13, 5)
    expected = _log_density(x_grid, lam_grid)
    # One datapoint per (λ, x) pair, a single pixel each; float32 logits as a decoder gives them.
    likelihood = ContinuousBernoulli((1, 1, 1))
    got = likelihood(_logit(lam_grid).float().reshape(-1, 1)).log_prob(x_grid.float().reshape(-1, 1, 1, 1))
    torch.testing.assert_close(got.double(), expected.reshape(-1), rtol=1e-5, atol=2e-5)
    # The normaliser matters: at λ = 0.01 it is log C = log(2 artanh(0.98) / 0.98) = 1.5452, not 0.
    assert _log_norm(torch.tensor(0.01, dtype=torch.float64)).item() == pytest.approx(1.5452, abs=1e-4)
    assert _log_norm(torch.tensor(0.49999, dtype=torch.float64)).item() == pytest.approx(math.log(2), abs=1e-9)


def test_continuous_bernoulli_sums_log_densities_over_the_pixels_of_an_image():
    x_shape = (2, 3, 4)
    generator = torch.Generator().manual_seed(derived_seed(0))
    lam = torch.rand(5, *x_shape, generator=generator, dtype=torch.float64) * 0.998 + 0.001
    lam[0, 0, 0, :2] = 0.5  # the Taylor branch inside one image
    x = torch.rand(5, *x_shape, generator=generator, dtype=torch.float64)
    x[1, 1] = 1.0  # the ends of the support
    x[2, 0] = 0.0
    got = ContinuousBernoulli(x_shape)(_logit(lam).reshape(5, -1))  # flat decoder output (5, 24)
    assert got.batch_shape == (5,) and got.event_shape == x_shape
    torch.testing.assert_close(got.log_prob(x), _log_density(x, lam).sum((1, 2, 3)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("lam", [0.002, 0.1, 0.4995, 0.5, 0.8, 0.999])
def test_continuous_bernoulli_integrates_to_one_and_has_the_closed_form_mean(lam):
    lam = torch.tensor(lam, dtype=torch.float64)
    x = torch.linspace(0, 1, 20001, dtype=torch.float64)
    d = ContinuousBernoulli((1,))(_logit(lam).reshape(1))
    density = d.log_prob(x.unsqueeze(-1)).exp()
    assert torch.trapezoid(density, x).item() == pytest.approx(1.0, abs=1e-7)
    # Its mean is not λ: E[x] = λ / (2λ − 1) + 1 / (2 artanh(1 − 2λ)), here checked three ways.
    mean = d.mean.item()
    assert mean == pytest.approx(_mean(lam).item(), abs=1e-7)
    assert mean == pytest.approx(torch.trapezoid(x * density, x).item(), abs=1e-7)
    if lam != 0.5:
        assert abs(mean - lam.item()) > 1e-4


def test_continuous_bernoulli_mean_is_what_pictures_decode():
    model, _ = build_pair(PairConfig(likelihood="continuous-bernoulli", z_dim=3, hidden=(16,)), (1, 8, 8))
    z = 5 * torch.randn(4, 3)  # spreads λ away from 1/2, where mean and λ would nearly agree
    mean = model.decode(z).mean
    lam = torch.sigmoid(model.decoder(z).double()).reshape(4, 1, 8, 8)
    assert mean.shape == (4, 1, 8, 8)
    assert (mean.double() - lam).abs().max() > 0.05  # the mean is not λ
    # torch's float32 mean loses precision to cancellation just outside its Taylor window
    # (0.499, 0.501): at most 3.3e-3 at the window's edge, 7e-4 beyond 0.002 from ½ (measured on
    # 400,000 λ around ½), so a draw that lands near the edge needs 5e-3; below a grey level
    # (1/255), invisible in a picture. In float64 it is the closed form.
    torch.testing.assert_close(mean.double(), _mean(lam), rtol=0, atol=5e-3)
    model.double()
    lam = torch.sigmoid(model.decoder(z.double())).reshape(4, 1, 8, 8)
    torch.testing.assert_close(model.decode(z.double()).mean, _mean(lam), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name, scale_shape", [("gaussian", ()), ("gaussian-per-pixel", (1, 2, 3))])
def test_gaussian_log_density_is_the_normal_formula_summed_over_pixels(name, scale_shape):
    x_shape = (1, 2, 3)
    likelihood = get_likelihood(name)(x_shape)
    assert likelihood.log_scale.shape == scale_shape
    with torch.no_grad():
        likelihood.log_scale.copy_(torch.linspace(-1.0, 0.5, math.prod(scale_shape)).reshape(scale_shape))
    loc = torch.randn(4, 6)
    x = torch.randn(4, *x_shape)
    sigma = likelihood.log_scale.detach().exp()
    per_pixel = -0.5 * ((x - loc.reshape(4, *x_shape)) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(likelihood(loc).log_prob(x), per_pixel.sum((1, 2, 3)))


def test_grey_levels_suit_the_continuous_bernoulli_but_not_the_bernoulli():
    grey = make_dataset(torch.rand(800, 1, 4, 4), binarize="none")
    model, _ = build_pair(PairConfig(likelihood="continuous-bernoulli", z_dim=2, hidden=(8,)), grey.x_shape)
    check_compatible(traits(model), grey)
    model, _ = build_pair(PairConfig(likelihood="bernoulli", z_dim=2, hidden=(8,)), grey.x_shape)
    with pytest.raises(ValueError, match="needs binary pixels"):
        check_compatible(traits(model), grey)


@pytest.mark.statistical
def test_a_continuous_bernoulli_vae_trains_on_grey_digits():
    grey = load(DataConfig("digits", binarize="none"))
    model, guide = build_pair(PairConfig(likelihood="continuous-bernoulli", z_dim=4, hidden=(64,)), grey.x_shape)
    history = fit(model, guide, grey, TrainConfig(seed=derived_seed(0), epochs=10, lr=3e-3), progress=False)
    first, last = history[0]["val_elbo"], history[-1]["val_elbo"]
    # Measured over seeds 0-2: 10.6 to 12.8 nats after the first epoch, 61.6 to 64.6 after the
    # tenth (densities on [0, 1] exceed one, so the ELBO is positive).
    assert last > first + 40, (first, last)
    assert last > 55, last


# --------------------------------------------------------------------------------------------
# Likelihoods for counts and real-valued tables, on images and vectors alike.

#: A vector and an image: every likelihood takes both.
X_SHAPES = [(5,), (1, 2, 3)]
F64 = torch.float64


def _grid(lo: float, hi: float, x_shape: tuple[int, ...], rows: int = 3) -> torch.Tensor:
    """Fixed values from ``lo`` to ``hi``, ``(rows, *x_shape)`` in float64."""
    return torch.linspace(lo, hi, rows * math.prod(x_shape), dtype=F64).reshape(rows, *x_shape)


def _counts(x_shape: tuple[int, ...], top: int = 12, rows: int = 3) -> torch.Tensor:
    """Fixed counts 0 … ``top`` in a scattered order, zeros among them, ``(rows, *x_shape)`` in float64."""
    return (torch.arange(rows * math.prod(x_shape)) * 5 % (top + 1)).to(F64).reshape(rows, *x_shape)


def _flat(t: torch.Tensor) -> torch.Tensor:
    """``(rows, *x_shape)`` → the decoder's flat ``(rows, prod(x_shape))``."""
    return t.reshape(len(t), -1)


def _per_datapoint(a: np.ndarray) -> torch.Tensor:
    """Per-feature log-densities ``(rows, *x_shape)`` summed to one per datapoint ``(rows,)``."""
    return torch.from_numpy(a.reshape(len(a), -1).sum(1))


def _per_feature(values: torch.Tensor, x_shape: tuple[int, ...]) -> torch.Tensor:
    """One value per feature, ``x_shape``."""
    return values.to(F64).reshape(x_shape)


@pytest.mark.parametrize("x_shape", X_SHAPES)
def test_poisson_log_prob_is_scipys_log_pmf_summed_over_features(x_shape):
    log_rate = _grid(-3.0, 3.5, x_shape)  # rates 0.05 to 33
    x = _counts(x_shape)
    d = Poisson(x_shape)(_flat(log_rate))
    expected = stats.poisson.logpmf(x.numpy(), mu=log_rate.exp().numpy())
    torch.testing.assert_close(d.log_prob(x), _per_datapoint(expected), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(d.mean, log_rate.exp())
    torch.testing.assert_close(d.variance, log_rate.exp())


@pytest.mark.parametrize("x_shape", X_SHAPES)
@pytest.mark.parametrize("theta", [0.3, 1.0, 7.5])
def test_negative_binomial_is_scipys_nbinom_with_n_theta_and_p_theta_over_theta_plus_mu(x_shape, theta):
    likelihood = NegativeBinomial(x_shape).double()
    assert likelihood.log_theta.shape == x_shape and not likelihood.log_theta.detach().any()  # θ = 1 at first
    if theta != 1.0:  # θ = 1 tests the initial value; the others spread θ from θ/2 to 2θ over the features
        spread = torch.linspace(-math.log(2), math.log(2), math.prod(x_shape))
        with torch.no_grad():
            likelihood.log_theta.copy_(_per_feature(math.log(theta) + spread, x_shape))
    th = likelihood.log_theta.detach().exp()  # x_shape
    log_mu = _grid(-2.5, 3.7, x_shape)  # μ from 0.08 to 40
    mu = log_mu.exp()
    x = _counts(x_shape, top=30)
    d = likelihood(_flat(log_mu))
    n, p = th.expand_as(mu).numpy(), (th / (th + mu)).numpy()
    expected = stats.nbinom.logpmf(x.numpy(), n=n, p=p)
    torch.testing.assert_close(d.log_prob(x), _per_datapoint(expected), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(d.mean, mu)
    torch.testing.assert_close(d.variance, mu + mu**2 / th)
    # scipy agrees on the moments of the same parameters.
    torch.testing.assert_close(d.mean, torch.from_numpy(stats.nbinom.mean(n, p)))
    torch.testing.assert_close(d.variance, torch.from_numpy(stats.nbinom.var(n, p)))


@pytest.mark.parametrize("x_shape", X_SHAPES)
def test_zinb_is_a_gate_of_zeros_mixed_with_the_negative_binomial(x_shape):
    likelihood = ZeroInflatedNegativeBinomial(x_shape).double()
    assert likelihood.params_per_pixel == 2
    with torch.no_grad():
        likelihood.log_theta.copy_(_per_feature(torch.linspace(-1.0, 1.5, math.prod(x_shape)), x_shape))
    th = likelihood.log_theta.detach().exp()
    log_mu = _grid(-2.0, 3.0, x_shape)
    gate_logits = _grid(-3.0, 2.0, x_shape).flip(0)  # another pairing of gates with means
    x = _counts(x_shape)
    assert (x == 0).any() and (x > 0).any()
    d = likelihood(torch.cat([_flat(log_mu), _flat(gate_logits)], -1))  # parameter-major: all log μ, then all gates
    mu, pi = log_mu.exp().numpy(), torch.sigmoid(gate_logits).numpy()
    n = th.expand_as(log_mu).numpy()
    nb = stats.nbinom.pmf(x.numpy(), n=n, p=n / (n + mu))
    expected = np.log(pi * (x.numpy() == 0) + (1 - pi) * nb)
    torch.testing.assert_close(d.log_prob(x), _per_datapoint(expected), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(d.mean, torch.from_numpy((1 - pi) * mu))


@pytest.mark.parametrize("x_shape", X_SHAPES)
def test_binomial_is_scipys_binom_out_of_the_known_trials(x_shape):
    likelihood = Binomial(x_shape, trials=16)  # sklearn's digits: counts out of 16
    logits = _grid(-4.0, 4.0, x_shape)
    p = torch.sigmoid(logits)
    x = _counts(x_shape, top=16)
    d = likelihood(_flat(logits))
    expected = stats.binom.logpmf(x.numpy(), 16, p.numpy())
    torch.testing.assert_close(d.log_prob(x), _per_datapoint(expected), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(d.mean, 16 * p)
    likelihood.set_trials(4)
    d = likelihood(_flat(logits))
    small = x.clamp(max=4)
    expected = stats.binom.logpmf(small.numpy(), 4, p.numpy())
    torch.testing.assert_close(d.log_prob(small), _per_datapoint(expected), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(d.mean, 4 * p)
    with pytest.raises(ValueError, match="support"):  # counts above the trials, refused by validation
        d.log_prob(x)
    for bad in (0, -3, 2.5, True, "16"):
        with pytest.raises(ValueError, match="binomial trials"):
            likelihood.set_trials(bad)
    assert likelihood.trials == 4
    with pytest.raises(ValueError, match="binomial trials"):
        Binomial(x_shape, trials=0)


def test_one_binomial_trial_is_the_bernoulli():
    logits = _grid(-3.0, 3.0, (5,))
    x = (_counts((5,)) % 2).to(F64)
    torch.testing.assert_close(Binomial((5,))(_flat(logits)).log_prob(x), Bernoulli((5,))(_flat(logits)).log_prob(x))


def _standardized_gaussian(x_shape):
    """A per-pixel Gaussian with fixed scales σ, the data's mean m and sd s, raw data and decoder means."""
    d = math.prod(x_shape)
    likelihood = GaussianPerPixel(x_shape).double()
    with torch.no_grad():
        likelihood.log_scale.copy_(_per_feature(torch.linspace(-0.7, 0.4, d), x_shape))
    m = _per_feature(torch.linspace(-3.0, 5.0, d), x_shape)
    s = _per_feature(torch.linspace(0.2, 30.0, d), x_shape)
    x_raw = _grid(-10.0, 40.0, x_shape)
    loc = _grid(1.5, -1.5, x_shape)
    return likelihood, m, s, x_raw, loc


@pytest.mark.parametrize("x_shape", X_SHAPES)
def test_rescaled_gaussian_scores_the_raw_data_in_their_own_nats(x_shape):
    likelihood, m, s, x_raw, loc = _standardized_gaussian(x_shape)
    sigma = likelihood.log_scale.detach().exp()
    x_std = (x_raw - m) / s
    standardized = likelihood(_flat(loc)).log_prob(x_std)
    likelihood.set_data_scale(s.log())
    d = likelihood(_flat(loc))
    assert isinstance(d, Rescaled)
    # The identity that matters: N(x_std; μ, σ) with the Jacobian is N(x_raw; m + s μ, s σ).
    expected = stats.norm.logpdf(x_raw.numpy(), loc=(m + s * loc).numpy(), scale=(s * sigma).numpy())
    torch.testing.assert_close(d.log_prob(x_std), _per_datapoint(expected), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(d.log_prob(x_std), standardized - s.log().sum())
    entropy = stats.norm.entropy(scale=(s * sigma).expand_as(loc).numpy())
    torch.testing.assert_close(d.entropy(), _per_datapoint(entropy))
    # Draws and moments stay in standardized units.
    torch.testing.assert_close(d.mean, loc)
    torch.testing.assert_close(d.variance, (sigma**2).expand_as(loc))
    assert d.batch_shape == (3,) and d.event_shape == x_shape and d.has_rsample
    assert d.rsample((2,)).shape == (2, 3, *x_shape) and d.sample().shape == (3, *x_shape)
    wide = d.expand((4, 3))
    assert isinstance(wide, Rescaled) and wide.batch_shape == (4, 3)
    torch.testing.assert_close(wide.log_prob(x_std), _per_datapoint(expected).expand(4, 3))
    likelihood.set_data_scale(None)
    assert not isinstance(likelihood(_flat(loc)), Rescaled)
    torch.testing.assert_close(likelihood(_flat(loc)).log_prob(x_std), standardized, rtol=0, atol=0)


def test_a_shared_log_scale_counts_once_per_feature_and_a_bad_one_is_refused():
    x_shape = (1, 2, 3)
    likelihood = Gaussian(x_shape).double()
    loc, x = _grid(-1.0, 1.0, x_shape), _grid(2.0, -2.0, x_shape)
    plain = likelihood(_flat(loc)).log_prob(x)
    likelihood.set_data_scale(torch.tensor(math.log(2.0)))  # one s = 2 for all six features
    torch.testing.assert_close(likelihood(_flat(loc)).log_prob(x), plain - 6 * math.log(2.0))
    likelihood.set_data_scale(torch.full((3,), math.log(2.0)))  # broadcast over the channel and the rows
    torch.testing.assert_close(likelihood(_flat(loc)).log_prob(x), plain - 6 * math.log(2.0))
    with pytest.raises(ValueError, match="must broadcast to the datapoint's shape"):
        likelihood.set_data_scale(torch.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        likelihood.set_data_scale(torch.tensor([0.0, -math.inf, 0.0]))
    with pytest.raises(ValueError, match="does not broadcast to the event shape"):
        Rescaled(likelihood(_flat(loc)), torch.zeros(2, 1, 2, 3))


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_the_data_scale_is_not_in_the_state_dict(name):
    likelihood = get_likelihood(name)((5,))
    before = likelihood.state_dict()
    likelihood.set_data_scale(torch.zeros(5))
    assert likelihood.state_dict().keys() == before.keys()
    likelihood.load_state_dict(before)  # a checkpoint written before the scale existed loads, strictly
    assert likelihood.data_log_scale is not None


@pytest.mark.parametrize("x_shape", X_SHAPES)
@pytest.mark.parametrize("particles", [1, 3])
def test_the_jacobian_shifts_the_elbo_loss_by_n_sum_log_s_under_scale_and_mask(x_shape, particles):
    n, d = 4, math.prod(x_shape)
    likelihood, _, s, _, _ = _standardized_gaussian(x_shape)
    log_s = s.log()
    w, b = torch.linspace(-1.0, 1.0, d, dtype=F64), torch.linspace(0.5, -0.5, d, dtype=F64)
    x = _grid(-2.0, 2.0, x_shape, rows=n)

    def model(x, scale, mask):
        with pyro.plate("data", n), poutine.scale(scale=scale):
            z = pyro.sample("z", dist.Normal(torch.zeros(n, 1, dtype=F64), 1.0).to_event(1))
            with poutine.mask(mask=mask):
                pyro.sample("x", likelihood(z * w + b), obs=x)  # decoder output (particles?, n, d)

    def guide(x, scale, mask):
        with pyro.plate("data", n), poutine.scale(scale=scale):
            pyro.sample("z", dist.Normal(torch.full((n, 1), 0.3, dtype=F64), 0.5).to_event(1))

    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)

    def loss(scale, mask):
        pyro.set_rng_seed(derived_seed(0))  # the same draws of z with and without the Jacobian
        return elbo.differentiable_loss(model, guide, x, scale, mask)

    keep = torch.tensor([True, False, True, True])
    for scale, mask, kept in ((1.0, True, n), (0.25, True, n), (1.0, keep, 3)):
        likelihood.set_data_scale(None)
        standardized = loss(scale, mask)
        likelihood.set_data_scale(log_s)
        raw = loss(scale, mask)
        # The loss is −ELBO: log p(x_raw) = log p(x_std) − Σ log s lowers the ELBO by scale · kept · Σ log s.
        torch.testing.assert_close(raw - standardized, scale * kept * log_s.sum(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("x_shape", X_SHAPES)
@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_every_likelihood_sums_its_features_into_one_log_density_per_datapoint(name, x_shape):
    model = VAE(x_shape, z_dim=2, hidden=(4,), likelihood=name)
    traits(model)  # the pair contract reads the likelihood without a near-miss name
    d = model.decode(torch.randn(3, 4, 2))  # (particles, batch, z_dim)
    assert d.batch_shape == (3, 4) and d.event_shape == x_shape
    held = model.likelihood.support
    x = torch.full(x_shape, 0.25) if held == ("levels",) else (_counts(x_shape, rows=1)[0] % 2).float()
    per_feature = d.base_dist.log_prob(x)  # (3, 4, *x_shape)
    torch.testing.assert_close(d.log_prob(x), per_feature.reshape(3, 4, -1).sum(-1))
    assert d.mean.shape == (3, 4, *x_shape) and torch.isfinite(d.mean).all()


def test_each_likelihood_declares_the_kinds_it_holds():
    assert Bernoulli.support == ("binary",)
    assert ContinuousBernoulli.support == ("levels",) and ContinuousBernoulli.requires_grey
    assert Gaussian.support == GaussianPerPixel.support == ("binary", "levels", "counts", "real")
    for cls in (Poisson, NegativeBinomial, ZeroInflatedNegativeBinomial, Binomial):
        assert cls.support == ("binary", "counts") and not cls.requires_binary and not cls.requires_grey
    assert Bernoulli.requires_binary and not Gaussian.requires_binary
    assert get_likelihood("poisson") is Poisson and get_likelihood("negative-binomial") is NegativeBinomial
    assert get_likelihood("zinb") is ZeroInflatedNegativeBinomial and get_likelihood("binomial") is Binomial


REFUSED = [("bernoulli", "counts"), ("poisson", "real"), ("continuous-bernoulli", "counts"), ("bernoulli", "levels")]


@pytest.mark.parametrize("name, kind", REFUSED)
def test_check_support_refuses_a_likelihood_that_cannot_hold_the_kind(name, kind):
    with pytest.raises(ValueError) as info:
        check_support(get_likelihood(name), kind, name)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"--likelihood {name} holds ")
    assert f"these data are {kind} ({KINDS[kind]})" in message
    offered = message.rpartition(": use ")[2].replace(" or ", ", ").split(", ")
    assert sorted(offered) == sorted(n for n, cls in LIKELIHOODS.items() if kind in cls.support)
    for other in offered:
        check_support(get_likelihood(other), kind, other)


def test_check_support_names_the_kind_the_likelihood_holds():
    with pytest.raises(ValueError, match=r"^--likelihood poisson holds binary data or counts, but these data are real"):
        check_support(Poisson, "real", "poisson")
    with pytest.raises(ValueError, match="holds levels in \\[0, 1\\], but these data are binary"):
        check_support(ContinuousBernoulli((5,)), "binary", "continuous-bernoulli")  # an instance, too
    with pytest.raises(ValueError, match="unknown data kind 'integers'"):
        check_support(Gaussian, "integers", "gaussian")


def test_gaussian_holds_every_kind():
    for kind in KINDS:
        check_support(Gaussian, kind, "gaussian")
        check_support(GaussianPerPixel((1, 2, 3)), kind, "gaussian-per-pixel")


def test_an_observed_library_size_makes_the_mean_proportions_times_the_row_total():
    """scVI's p(x | z, l): μ = softmax(decoder) · l, with l the row's observed total; a prior draw without
    data uses the training rows' mean total."""
    import numpy as np
    from scipy import stats

    from pvae.engine.likelihoods import NegativeBinomial

    lik = NegativeBinomial((4,))
    lik.use_library()
    with torch.no_grad():
        lik.log_theta.copy_(torch.tensor([0.0, 0.5, -0.3, 1.2]))
    out = torch.tensor([[0.1, -0.4, 1.3, 0.0], [2.0, 0.2, -1.0, 0.5]], dtype=torch.float64)
    x = torch.tensor([[3.0, 0.0, 9.0, 2.0], [20.0, 1.0, 0.0, 4.0]], dtype=torch.float64)
    lik.library = x.sum(-1, keepdim=True).float()
    theta = lik.log_theta.detach().double().exp().numpy()
    mu = torch.softmax(out, -1).numpy() * x.sum(-1, keepdim=True).numpy()
    expected = stats.nbinom.logpmf(x.numpy(), n=theta, p=theta / (theta + mu)).sum(-1)
    assert np.allclose(lik(out.float()).log_prob(x.float()).detach().numpy(), expected, atol=1e-4)
    assert torch.allclose(lik(out.float()).mean.sum(-1), x.sum(-1).float())  # the means add up to the total
    lik.library = None
    with pytest.raises(ValueError, match="the library size is observed"):
        lik(out.float())
    lik.mean_library = torch.tensor(10.0)
    assert torch.allclose(lik(out.float()).mean.sum(-1), torch.full((2,), 10.0))
    with pytest.raises(ValueError, match="has no mean to scale by a library size"):
        from pvae.engine.likelihoods import Binomial

        Binomial((4,)).use_library()


def test_the_vae_with_an_observed_library_scores_each_row_given_its_total():
    import pyro
    from pyro import poutine

    from pvae.engine.config import PairConfig, build_pair

    model, guide = build_pair(PairConfig(z_dim=2, hidden=(8,), likelihood="poisson", library="observed"), (6,))
    x = torch.tensor([[1.0, 0.0, 3.0, 2.0, 0.0, 4.0], [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
    trace = poutine.trace(model).get_trace(x)
    rate = trace.nodes["x"]["fn"].base_dist.rate
    assert torch.allclose(rate.sum(-1), x.sum(-1))  # each row's rates add up to its own total
    assert model.likelihood.library is None  # read during the call only
    pyro.clear_param_store()
