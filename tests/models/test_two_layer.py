"""The two-layer pair z2 → z1 → x: its log-weights, beta and particle broadcasting against the
joint density written out by hand, and a short training run on the digits."""

import math

import matplotlib.pyplot as plt
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pvae import data
from pvae.base.sites import PARTICLES, Z1, X, Z
from pvae.engine.config import PairConfig, build_pair
from pvae.engine.estimators import make_elbo
from pvae.engine.nets import stage_sizes
from pvae.engine.objectives import loss_module
from pvae.engine.train import TrainConfig, fit
from pvae.guides.two_layer import TwoLayerGuide
from pvae.measures.diagnostics import latent_usage
from pvae.measures.evaluate import bounds, evaluate, log_weights, site_log_probs
from pvae.models.two_layer import TwoLayerVAE
from pvae.plots.run import TRAVERSAL_POINTS, run_figures
from tests.conftest import derived_seed

X_SHAPE = (1, 8, 8)


def _pair():
    """A small pair with z1 of a size other than the default, so that every shape is distinct."""
    model = TwoLayerVAE(X_SHAPE, z_dim=2, hidden=(16,), z1_dim=3)
    guide = TwoLayerGuide(X_SHAPE, z_dim=2, hidden=(16,), z1_dim=3)
    return model, guide


def _guide_draw(guide, x, num_samples, seed):
    """z1 and z2 as the guide draws them under a particles plate after ``pyro.set_rng_seed(derived_seed(seed))``."""
    pyro.set_rng_seed(derived_seed(seed))
    with pyro.plate(PARTICLES, num_samples, dim=-2):
        trace = poutine.trace(guide).get_trace(x)
    return trace.nodes[Z1]["value"], trace.nodes[Z]["value"]  # (K, batch, 3), (K, batch, 2)


@torch.no_grad()
def _by_hand(model, guide, x, z1, z):
    """Each term of log p(x, z1, z2) − log q(z1, z2 | x), per datapoint, from torch.distributions."""
    normal = torch.distributions.Normal

    def diagonal(out, value):  # out holds [loc, log_scale]
        loc, log_scale = out.chunk(2, dim=-1)
        return normal(loc, log_scale.exp()).log_prob(value).sum(-1)

    logits = model.decoder(z1).reshape(z1.shape[:-1] + X_SHAPE)
    return {
        "log p(x|z1)": torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((-3, -2, -1)),
        "log p(z1|z2)": diagonal(model.upper(z), z1),
        "log p(z2)": normal(0.0, 1.0).log_prob(z).sum(-1),
        "log q(z1|x)": diagonal(guide.encoder(x), z1),
        "log q(z2|z1)": diagonal(guide.upper(z1), z),
    }


def test_sizes_follow_burda_and_the_guide_mirrors_the_model():
    # Burda et al.'s 2-layer numbers: z2 of 50, z1 of 100, 200-unit layers below z1 and 100 above.
    assert stage_sizes(50, (200, 200)) == (100, (100, 100))
    assert stage_sizes(4, (64,), z1_dim=5) == (5, (32,))
    model, guide = build_pair(PairConfig(model="two-layer", guide="two-layer", z_dim=4, hidden=(64,)), X_SHAPE)
    assert (type(model), type(guide)) == (TwoLayerVAE, TwoLayerGuide)
    assert model.z1_dim == guide.z1_dim == 8
    assert model.latent_sites == (Z, Z1)
    widths = [(m.in_features, m.out_features) for m in model.upper if isinstance(m, torch.nn.Linear)]
    assert widths == [(4, 32), (32, 16)]  # z2 → 32 → loc and log-scale of z1
    widths = [(m.in_features, m.out_features) for m in guide.upper if isinstance(m, torch.nn.Linear)]
    assert widths == [(8, 32), (32, 8)]  # z1 → 32 → loc and log-scale of z2


def test_log_weights_and_bounds_are_the_joint_density_written_out():
    model, guide = _pair()
    x = torch.bernoulli(torch.rand(5, *X_SHAPE))
    k = 4
    z1, z = _guide_draw(guide, x, k, seed=11)
    terms = _by_hand(model, guide, x, z1, z)
    log_w = (
        terms["log p(x|z1)"] + terms["log p(z1|z2)"] + terms["log p(z2)"] - terms["log q(z1|x)"] - terms["log q(z2|z1)"]
    )  # (K, batch)
    pyro.set_rng_seed(derived_seed(11))  # the engine traces the guide first: it draws the same z1 and z2
    with torch.no_grad():
        parts = log_weights(model, guide, x, num_samples=k)
    assert parts["log_w"].shape == (k, 5)
    assert torch.allclose(parts["log_w"], log_w, atol=1e-5)
    assert torch.allclose(parts["log_px_given_z"], terms["log p(x|z1)"], atol=1e-5)
    assert torch.allclose(parts["log_pz"], terms["log p(z1|z2)"] + terms["log p(z2)"], atol=1e-5)
    assert torch.allclose(parts["log_qz"], terms["log q(z1|x)"] + terms["log q(z2|z1)"], atol=1e-5)

    pyro.set_rng_seed(derived_seed(11))
    out = bounds(model, guide, x, num_samples=k)
    assert torch.allclose(out["elbo"], log_w.mean(0), atol=1e-5)
    assert torch.allclose(out["log_px"], log_w.logsumexp(0) - math.log(k), atol=1e-5)
    assert torch.allclose(out["reconstruction"], terms["log p(x|z1)"].mean(0), atol=1e-5)
    assert torch.allclose(out["kl"], (terms["log p(x|z1)"] - log_w).mean(0), atol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.4, 3.0])
def test_beta_scales_both_latent_sites_in_model_and_guide(beta):
    model, guide = _pair()
    x = torch.bernoulli(torch.rand(6, *X_SHAPE))
    z1, z = (v[0] for v in _guide_draw(guide, x, 1, seed=5))  # one particle: (batch, dim)
    t = _by_hand(model, guide, x, z1, z)
    latent_z1 = t["log p(z1|z2)"] - t["log q(z1|x)"]
    latent_z2 = t["log p(z2)"] - t["log q(z2|z1)"]

    pyro.set_rng_seed(derived_seed(5))
    loss = loss_module(model, guide, Trace_ELBO(max_plate_nesting=1), beta=beta, sites=model.latent_sites)(x)
    expected = -(t["log p(x|z1)"] + beta * (latent_z1 + latent_z2)).sum()
    assert torch.allclose(loss, expected, rtol=1e-5), (float(loss), float(expected))

    # Scaling "z" alone leaves z1's terms at weight 1: a different number unless beta is 1.
    pyro.set_rng_seed(derived_seed(5))
    top_only = loss_module(model, guide, Trace_ELBO(max_plate_nesting=1), beta=beta, sites=(Z,))(x)
    expected_top_only = -(t["log p(x|z1)"] + latent_z1 + beta * latent_z2).sum()
    assert torch.allclose(top_only, expected_top_only, rtol=1e-5)
    # the two differ by exactly (1 − beta) times z1's log-ratio, whatever its draw (it may be near 0)
    assert float((top_only - loss).detach()) == pytest.approx(-(1 - beta) * float(latent_z1.sum()), abs=1e-3)


def test_each_particle_row_is_a_single_sample_computation():
    model, guide = _pair()
    x = torch.bernoulli(torch.rand(4, *X_SHAPE))
    z1, z = _guide_draw(guide, x, 3, seed=2)
    pyro.set_rng_seed(derived_seed(2))
    with torch.no_grad():
        model_terms, guide_terms, observed = site_log_probs(model, guide, x, num_samples=3)
    assert observed == {X}
    assert set(model_terms) == {Z, Z1, X} and set(guide_terms) == {Z, Z1}
    assert all(t.shape == (3, 4) for t in [*model_terms.values(), *guide_terms.values()])
    # The three draws differ, so agreeing row by row is not agreeing with one repeated row.
    assert float((model_terms[X][0] - model_terms[X][1]).abs().min()) > 1e-3
    for k in range(3):
        # The k-th draw scored without any particles plate, one distribution at a time: (batch,) each.
        with torch.no_grad():
            single_model = {
                Z: model.prior().log_prob(z[k]),
                Z1: model.z1_given_z(z[k]).log_prob(z1[k]),
                X: model.x_given_z1(z1[k]).log_prob(x),
            }
            single_guide = {Z1: guide.z1_given_x(x).log_prob(z1[k]), Z: guide.z_given_z1(z1[k]).log_prob(z[k])}
        for name, single in single_model.items():
            assert torch.allclose(model_terms[name][k], single, atol=1e-5), (name, k)
        for name, single in single_guide.items():
            assert torch.allclose(guide_terms[name][k], single, atol=1e-5), (name, k)


@torch.no_grad()
def test_decode_shows_the_decoder_at_the_mean_of_z1():
    model, _ = _pair()
    z = torch.randn(7, 2)
    loc = model.upper(z)[..., :3]  # E[z1 | z2], (7, 3)
    expected = torch.sigmoid(model.decoder(loc)).reshape(7, *X_SHAPE)
    assert torch.allclose(model.decode(z).mean, expected, atol=1e-6)
    assert model.prior((7,)).batch_shape == (7,) and model.prior().event_shape == (2,)


def test_the_meanfield_estimator_warns_that_the_guide_is_not_mean_field():
    model, guide = _pair()
    loss_fn = loss_module(model, guide, make_elbo("meanfield"))
    with pytest.warns(UserWarning, match="mean field"):
        loss_fn(torch.bernoulli(torch.rand(3, *X_SHAPE)))


@pytest.fixture(scope="module")
def digits():
    return data.load(data.DataConfig("digits"))


@pytest.fixture
def one_thread():
    """Run on one intra-op thread: layers of 64 units gain nothing from more, and on a busy 2-core
    machine a second thread made a training epoch about ten times slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trained(digits, epochs):
    """The pair of ``PairConfig(z_dim=4, hidden=(64,))`` trained with ``Trace_ELBO``, and its metrics."""
    torch.manual_seed(derived_seed(0))
    model, guide = build_pair(PairConfig(model="two-layer", guide="two-layer", z_dim=4, hidden=(64,)), digits.x_shape)
    before = evaluate(model, guide, digits.val.images(), num_samples=1, batch_size=1000)["elbo"]
    config = TrainConfig(seed=derived_seed(0), elbo="trace", epochs=epochs, batch_size=64, lr=3e-3)
    history = fit(model, guide, digits, config, progress=False)
    return model, guide, before, history


def _mean_digit_log_likelihood(digits):
    """log p(x) per test digit of the model that ignores z: independent pixels at the training mean."""
    probs = digits.train.images().mean(0).clamp(1e-4, 1 - 1e-4)
    return float(torch.distributions.Bernoulli(probs=probs).log_prob(digits.test.images()).sum((1, 2, 3)).mean())


@pytest.mark.statistical
def test_training_on_digits_improves_the_elbo_and_draws_the_figures(digits, one_thread):
    model, guide, before, history = _trained(digits, epochs=5)
    after = history[-1]["val_elbo"]
    # Untrained, about -47 nats per digit on validation; after five epochs about -27.5, most of
    # it the decoder learning the mean digit (the next test checks that the latents are used).
    assert after > before + 15, (before, after)
    result = evaluate(model, guide, digits.test.images(), num_samples=100)
    assert result["elbo"] <= result["log_px"], result
    # Pixels as fair coins cost 64 log 2 = 44.4 nats per digit.
    assert result["log_px"] > -64 * math.log(2) + 15, result
    x, y = digits.test.images(slice(TRAVERSAL_POINTS)), digits.test.y[:TRAVERSAL_POINTS]
    figures = run_figures(model, guide, digits, history, usage=latent_usage(model, guide, x, y, prior_draws=10))
    try:
        assert set(figures) == {"curves", "reconstructions", "samples", "interpolation", "latent", "traversals"}
    finally:
        for figure in figures.values():
            plt.close(figure)


@pytest.mark.statistical
def test_longer_training_puts_information_in_the_latents(digits, one_thread):
    model, guide, _, history = _trained(digits, epochs=30)
    result = evaluate(model, guide, digits.test.images(), num_samples=100)
    # Measured: log p(x) -23.8 nats per test digit (K=100) against -27.1 for the mean digit, a KL
    # term of 3.2 nats and a gap of 0.5 between ELBO and log p(x), with seeds 0-3 within 0.1 nats
    # of these (0.4 for the KL); five epochs leave the KL at 0.35.
    assert result["elbo"] <= result["log_px"], result
    assert result["log_px"] > _mean_digit_log_likelihood(digits) + 2, result
    assert result["kl"] > 2, result
    assert history[-1]["val_elbo"] > -25.5, history[-1]


@pytest.mark.statistical
def test_posterior_mean_averages_over_the_lower_latent():
    from pvae.measures.evaluate import posterior_mean

    model, guide = build_pair(PairConfig("two-layer", "two-layer", z_dim=3, hidden=(16,)), (1, 8, 8))
    x = torch.bernoulli(torch.full((4, 1, 8, 8), 0.4))
    # E_q[z2 | x] = E_{q(z1|x)} [mean of q(z2 | z1)], by Monte Carlo with many draws of z1
    # posterior_mean averages 4000 draws of z2 itself: its standard error is the sd of q(z2|x)
    # over √4000 (about 0.016); 4.5 of them over 12 entries fail with probability 1e-4.
    z1 = guide.z1_given_x(x).sample((20000,))  # (20000, 4, z1_dim)
    q = guide.z_given_z1(z1)
    expected = q.mean.mean(0)
    se = (q.sample().var(0) / 4000 + q.mean.var(0) / 20000).sqrt()
    torch.manual_seed(derived_seed(0))
    first = posterior_mean(guide, x, num_samples=4000)
    assert ((first - expected).abs() < 4.5 * se).all(), (first - expected) / se
    # not one random draw: two calls differ by their Monte Carlo error, not by the sd of q (≈ 1)
    assert ((posterior_mean(guide, x, num_samples=4000) - first).abs() < 4.5 * math.sqrt(2) * se).all()
