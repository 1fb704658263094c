import math

import pytest
import torch

from pvae.config import PairConfig, build_pair
from pvae.data import DataConfig, load
from pvae.likelihoods import LIKELIHOODS, ContinuousBernoulli, Gaussian, GaussianPerPixel, get_likelihood
from pvae.pair import check_compatible, traits
from pvae.train import TrainConfig, fit
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
