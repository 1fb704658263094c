"""The evaluation bounds against probabilistic PCA, whose log p(x) and posterior are exact."""

import math

import pyro
import pytest
import torch
from pyro import poutine

from pvae.engine.config import PairConfig, build_pair
from pvae.engine.likelihoods import LIKELIHOODS, get_likelihood
from pvae.engine.train import TrainConfig, fit
from pvae.guides.gaussian import GaussianGuide
from pvae.measures.evaluate import bounds, evaluate, log_weights, project_2d, traversal_order, traverse
from pvae.models.linear import LinearGaussian
from tests.conftest import derived_seed, device_of_tests, make_dataset, on_test_device


def _orthogonal_ppca(sigma=0.5):
    """A pPCA with orthogonal columns in W, so that its exact posterior is a diagonal Gaussian."""
    model = LinearGaussian((5,), z_dim=2)
    q, _ = torch.linalg.qr(torch.randn(5, 2))
    with torch.no_grad():
        model.decoder[0].weight.copy_(q * torch.tensor([2.0, 0.8]))
        model.decoder[0].bias.copy_(torch.randn(5))
        model.likelihood.log_scale.fill_(math.log(sigma))
    return model


def _guide_at(model, scale_factor=1.0, shift=0.0):
    """A linear Gaussian guide set to the model's exact posterior, its scale multiplied by ``scale_factor``."""
    weight, bias, sigma = model._affine()
    m_inv = torch.linalg.inv(weight.T @ weight + sigma**2 * torch.eye(2))
    guide = GaussianGuide((5,), z_dim=2, hidden=())
    a = m_inv @ weight.T  # posterior mean = a (x - b)
    std = (sigma**2 * torch.diagonal(m_inv)).sqrt() * scale_factor
    with torch.no_grad():
        layer = guide.encoder.net[0]
        layer.weight.zero_()
        layer.weight[:2] = a
        layer.bias[:2] = -a @ bias + shift
        layer.bias[2:] = std.log()
    return guide


def test_exact_posterior_guide_makes_every_bound_equal_log_px():
    model = _orthogonal_ppca()
    model, guide = on_test_device(model, _guide_at(model))
    x = model.marginal().sample((50,))  # on the model's device
    exact = model.log_marginal(x)
    out = bounds(model, guide, x, num_samples=64)
    # log w = log p(x) for every z when q is the posterior: no Monte Carlo error at all.
    for key in ("elbo", "log_px"):
        assert torch.allclose(out[key], exact, atol=1e-4), key


@torch.no_grad()
@pytest.mark.statistical
def test_elbo_gap_is_the_kl_to_the_posterior_and_log_px_tightens_with_k():
    model = _orthogonal_ppca()
    guide = _guide_at(model, scale_factor=1.6, shift=0.3)
    x = model.marginal().sample((200,))
    exact = model.log_marginal(x)
    q = pyro.distributions.Normal(*guide.encode(x)).to_event(1)
    post = model.posterior(x)
    kl = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(q.mean, scale_tril=torch.diag_embed(q.base_dist.scale)), post
    )
    out = bounds(model, guide, x, num_samples=2000)
    # ELBO = log p(x) - KL(q || p(z|x)), datapoint by datapoint, within Monte Carlo error
    # (the standard deviation of log w is about 2.7 nats here: 0.06 per datapoint at K=2000, and
    # 0.25 is four of those; the mean over 200 datapoints has a standard error of 0.004).
    assert torch.allclose(out["elbo"], exact - kl, atol=0.25)
    assert abs(float((out["elbo"] - (exact - kl)).mean())) < 0.015
    assert abs(float((exact - out["log_px"]).mean())) < 0.01
    # The KL term is KL(q(z|x) || p(z)), here in closed form for a diagonal Gaussian against N(0, I).
    loc, scale = guide.encode(x)
    kl_prior = 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum(-1)
    assert abs(float((out["kl"] - kl_prior).mean())) < 0.02
    # The IS estimate rises with K in expectation; from K = 100 on the rise (about 0.001 nats
    # here) is below the noise of a mean over 200 datapoints, and K = 1000 came out below K = 100
    # under some seeds: it is held to log p(x) instead. From 1 to 10 to 100 it rises by 1.5 and
    # 0.13 nats, against standard errors under 0.04.
    means = [float(bounds(model, guide, x, num_samples=k)["log_px"].mean()) for k in (1, 10, 100, 1000)]
    assert means[:3] == sorted(means[:3]), means
    assert abs(means[3] - float(exact.mean())) < 0.02, means
    assert means[0] < float(exact.mean()) - 0.5 * float(kl.mean())  # K=1 is the ELBO, far below


def test_chunking_bounds_memory_without_changing_the_answer(monkeypatch):
    import pvae.engine.bounds as ev

    model = _orthogonal_ppca()
    guide = _guide_at(model, scale_factor=1.3)
    x = model.marginal().sample((20,))
    sizes = []
    original = ev.log_weights
    monkeypatch.setattr(ev, "log_weights", lambda *a: sizes.append(a[-1]) or original(*a))
    chunked = bounds(model, guide, x, num_samples=500, max_elements=5 * 20 * 7)
    assert sizes == [7] * 71 + [3]  # 500 samples, at most 7 x 20 datapoints x 5 pixels at a time
    with torch.no_grad():
        assert torch.allclose(chunked["log_px"], model.log_marginal(x), atol=0.1)


def test_log_weights_are_per_datapoint():
    model = _orthogonal_ppca()
    guide = _guide_at(model)
    x = model.marginal().sample((3,))
    log_w = log_weights(model, guide, x, num_samples=4)["log_w"]
    assert log_w.shape == (4, 3)
    assert torch.allclose(log_w, model.log_marginal(x).expand(4, 3), atol=1e-4)


def _ppca_mle_log_likelihood(x, d):
    """The maximum of the pPCA log-likelihood (Tipping & Bishop, 1999), per datapoint."""
    n, dim = x.shape
    cov = torch.cov(x.T, correction=0)
    eig = torch.linalg.eigvalsh(cov).flip(0)
    sigma2 = eig[d:].mean()
    log_det = eig[:d].log().sum() + (dim - d) * sigma2.log()
    return float(-0.5 * (dim * math.log(2 * math.pi) + log_det + dim))


@pytest.mark.statistical
def test_trained_linear_vae_reaches_the_ppca_likelihood(ppca_data):
    x, _ = ppca_data
    dataset = make_dataset(x)
    model, guide = on_test_device(LinearGaussian((5,), z_dim=2), GaussianGuide((5,), z_dim=2, hidden=()))
    fit(
        model,
        guide,
        dataset,
        TrainConfig(seed=derived_seed(0), elbo="meanfield", epochs=120, batch_size=100, lr=0.03),
        progress=False,
    )
    # Adam's last iterate wanders by about lr per step: at 0.03 the guide's scales ended 10-24% off
    # the posterior's under some seeds. Ten more epochs at a tenth of the rate settle it.
    config = TrainConfig(elbo="meanfield", epochs=10, batch_size=100, lr=0.003, seed=derived_seed(1))
    fit(model, guide, dataset, config, progress=False)
    test = dataset.test.images().to(device_of_tests())
    with torch.no_grad():
        exact = model.log_marginal(test)
        train_exact = float(model.log_marginal(dataset.train.images().to(device_of_tests())).mean())
        per_point = bounds(model, guide, test, num_samples=1000)
    result = evaluate(model, guide, test, num_samples=1000)
    # The importance-sampled estimate lands on the exact log p(x) of the trained model ...
    assert abs(result["log_px"] - float(exact.mean())) < 0.02
    # ... the ELBO stays below it (the gap, a KL ≥ 0, is not negative beyond 3.5 standard errors) ...
    gap = exact - per_point["elbo"]
    assert float(gap.mean()) > -3.5 * float(gap.std()) / len(gap) ** 0.5
    assert result["elbo"] <= result["log_px"]
    # ... training found the maximum-likelihood pPCA (the MLE fitted on the training split): after
    # 120 epochs within 0.001 nats under seeds 0-7 and 0.0075 under seed 13, which 60 epochs left
    # 0.07 short ...
    assert train_exact == pytest.approx(_ppca_mle_log_likelihood(dataset.train.images(), 2), abs=0.02)
    # ... and the diagonal guide recovered the exact posterior of the trained model: training
    # rotated W until p(z|x) is (nearly) diagonal, and the guide's mean is off by 0.15 posterior
    # standard deviations (root mean square), its scale by a few percent (root mean square of the
    # log ratio over the test points: the guide's log-scale is affine in x, so the last Adam steps'
    # noise in its weights moves the scales of outlying points most; one point of 500 was 24% off
    # under some seeds at lr 0.03 without the ten epochs at 0.003). Measured over seeds 0-9: mean
    # errors 0.01-0.16 (bound 0.25), log scale ratios 0.011-0.047 (bound 0.1, 7 sd of their spread).
    with torch.no_grad():
        post = model.posterior(test)
        loc, scale = guide.encode(test)
    cov = post.covariance_matrix[0]
    assert abs(float(cov[0, 1] / (cov[0, 0] * cov[1, 1]).sqrt())) < 0.05
    post_sd = cov.diagonal().sqrt()
    z_err = (loc - post.mean) / post_sd
    assert bool((z_err.pow(2).mean(0).sqrt() < 0.25).all())
    log_ratio = (scale / post_sd).log()
    assert bool((log_ratio.pow(2).mean(0).sqrt() < 0.1).all())


def test_project_2d_keeps_a_planar_cloud_whole():
    plane = torch.randn(300, 2) @ torch.randn(2, 6)
    points, how = project_2d(plane)
    assert "100%" in how
    # Distances between points survive the projection when the cloud is 2-D.
    exact = "donot_use_mm_for_euclid_dist"
    assert torch.allclose(
        torch.cdist(points, points, compute_mode=exact), torch.cdist(plane, plane, compute_mode=exact), atol=1e-3
    )


def test_a_traversal_of_a_linear_decoder_moves_each_output_by_its_column_times_the_step():
    torch.manual_seed(derived_seed(20))
    model = LinearGaussian((5,), z_dim=3)  # decoder mean W z + b
    weight, bias = model.decoder[0].weight.detach(), model.decoder[0].bias.detach()  # (5, 3), (5,)
    z = torch.tensor([0.3, -1.2, 0.7])
    loc, scale = torch.tensor([0.0, 0.5, -1.0]), torch.tensor([1.0, 2.0, 0.25])
    images, values = traverse(model, z, [2, 0], loc, scale, steps=7, span=3.0)
    assert images.shape == (2, 7, 5)
    t = torch.arange(-3.0, 3.5, 1.0)  # seven steps from -3 to +3: one unit apart
    torch.testing.assert_close(values, torch.stack([-1.0 + 0.25 * t, 0.0 + 1.0 * t]))
    # Row 0 sweeps z_2 from -1.75 to -0.25: each step moves x by W[:, 2] * 0.25, z_0 and z_1 kept.
    torch.testing.assert_close(images[0, 1:] - images[0, :-1], (0.25 * weight[:, 2]).expand(6, 5))
    torch.testing.assert_close(images[1, 1:] - images[1, :-1], (1.0 * weight[:, 0]).expand(6, 5))
    at_row0_start = weight @ torch.tensor([0.3, -1.2, -1.75]) + bias
    torch.testing.assert_close(images[0, 0], at_row0_start)
    at_row1_end = weight @ torch.tensor([3.0, -1.2, 0.7]) + bias
    torch.testing.assert_close(images[1, -1], at_row1_end)


@pytest.mark.parametrize("steps, span, dims", [(1, 3.0, [0]), (5, -1.0, [0]), (5, 3.0, [3])])
def test_a_traversal_refuses_settings_it_cannot_draw(steps, span, dims):
    model = LinearGaussian((5,), z_dim=3)
    with pytest.raises(ValueError, match="steps|dimensions must lie in 0..2"):
        traverse(model, torch.zeros(3), dims, torch.zeros(3), torch.ones(3), steps, span)


def test_traversal_order_takes_the_active_dimensions_by_kl_or_else_by_activity():
    usage = {"activity": torch.tensor([0.5, 0.001, 2.0, 0.3]), "active": [0, 2, 3]}
    assert traversal_order({**usage, "kl_per_dim": torch.tensor([1.5, 0.0, 0.2, 3.0])}) == (
        [3, 0, 2],
        [3.0, 1.5, pytest.approx(0.2)],
        "KL",
    )
    assert traversal_order(usage) == ([2, 0, 3], [2.0, 0.5, pytest.approx(0.3)], "activity")
    # a collapsed posterior: no dimension is active, the largest is shown alone
    assert traversal_order({**usage, "active": []})[0] == [2]


def test_the_time_of_an_evaluation_is_estimated_from_its_first_chunk_and_leaves_the_draws(monkeypatch):
    from pvae.measures import evaluate as module

    model, guide = build_pair(PairConfig(z_dim=2, hidden=(8,)), (1, 8, 8))
    x = torch.rand(300, 1, 8, 8).bernoulli()
    assert module.estimate_seconds(model, guide, x, None, 1000) is None  # 300 × 1000: a few seconds, not estimated
    calls = []
    clock = iter(range(100))
    monkeypatch.setattr(module.time, "perf_counter", lambda: float(next(clock)))  # each timed pass: 1 second
    monkeypatch.setattr(module, "bounds", lambda m, g, xb, yb, k: calls.append((len(xb), k)))
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    seconds = module.estimate_seconds(model, guide, x, None, 100_000)
    # a batch of 100 datapoints; K = 100,000 in chunks of 2**24 / (100 × 64) = 2621: one chunk timed
    assert calls == [(100, 8), (100, 2621)]
    assert seconds == pytest.approx(1.0 * (100_000 / 2621) * (300 / 100))
    assert torch.equal(torch.random.get_rng_state(), state)


def _data_for(likelihood, shape):
    """Data of a kind the likelihood holds: binary where it can, grey levels (the continuous Bernoulli's) else."""
    if "binary" in likelihood.support:
        return torch.bernoulli(torch.full(shape, 0.3))
    return torch.rand(shape) * 0.98 + 0.01


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_every_likelihood_is_scored_as_its_distribution_scores_it(name, monkeypatch):
    """evaluate's log-density of the observation equals ``log_prob`` of the likelihood's distribution, value and
    gradient, at 7 draws of 3 datapoints with logits out to ±40: the Bernoulli's by its own formula (torch's
    ``log_prob`` never runs), every other likelihood by its ``log_prob``, bit for bit."""
    import pvae.engine.bounds as ev

    device = device_of_tests()
    x_shape = (1, 4, 5)
    likelihood = get_likelihood(name)(x_shape).to(device)
    out = torch.randn(7, 3, 20 * likelihood.params_per_pixel, device=device) * 3
    out[..., :4] = torch.tensor([40.0, -40.0, 17.0, -17.0])  # saturated pixels, where rounding would show
    out.requires_grad_()
    x = _data_for(likelihood, (3, *x_shape)).to(device)
    expected = likelihood(out).log_prob(x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), out)
    fn = likelihood(out)  # afresh: the first one's graph is spent

    base = fn.base_dist if isinstance(fn, pyro.distributions.Independent) else fn
    covered = type(base) in ev._LOG_PROBS
    assert covered == (name == "bernoulli")  # the fast path covers the Bernoulli, and only it
    calls = []
    original = type(base).log_prob
    monkeypatch.setattr(type(base), "log_prob", lambda self, value: calls.append(1) or original(self, value))
    fast = ev._log_prob(fn, x)
    (fast_grad,) = torch.autograd.grad(fast.sum(), out)
    assert fast.shape == expected.shape == (7, 3)
    if covered:
        assert not calls
        torch.testing.assert_close(fast, expected, rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(fast_grad, expected_grad, rtol=1e-6, atol=1e-6)
    else:
        assert calls
        torch.testing.assert_close(fast, expected, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(fast_grad, expected_grad, rtol=0, atol=0, equal_nan=True)


def test_the_bernoulli_formula_covers_torch_and_probs_and_falls_back_where_it_cannot():
    """torch's own Bernoulli, one made from probabilities, and two events nested are scored by the formula;
    data of another dtype, or with more dimensions than the logits, by ``log_prob``; under validation,
    grey levels are refused as ``log_prob`` refuses them."""
    import pvae.engine.bounds as ev

    logits = torch.randn(5, 3, 2, 4) * 4
    x = torch.bernoulli(torch.full((3, 2, 4), 0.4))
    cases = [
        torch.distributions.Independent(torch.distributions.Bernoulli(logits=logits), 2),
        pyro.distributions.Bernoulli(probs=torch.sigmoid(logits)).to_event(2),
        pyro.distributions.Bernoulli(logits=logits).to_event(1).to_event(1),
    ]
    for fn in cases:
        torch.testing.assert_close(ev._log_prob(fn, x), fn.log_prob(x), rtol=1e-6, atol=1e-5)
    fn = pyro.distributions.Bernoulli(logits=logits[0]).to_event(2)  # (3,) datapoints, x with 5 draws more
    assert ev._bernoulli_log_prob(fn.base_dist, x.expand(5, 3, 2, 4), 2) is None
    assert torch.equal(ev._log_prob(fn, x.expand(5, 3, 2, 4)), fn.log_prob(x.expand(5, 3, 2, 4)))
    assert ev._bernoulli_log_prob(fn.base_dist, x.double(), 2) is None
    with pytest.raises(ValueError, match="support"):
        ev._log_prob(pyro.distributions.Bernoulli(logits=logits).to_event(2), torch.full((3, 2, 4), 0.5))


def _log_weights_by_pyro(model, guide, x, num_samples):
    """log p(x, z) − log q(z|x) as Pyro's traces score them (``compute_log_prob``): the definition."""
    with pyro.plate("particles", num_samples, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    sites = [(s, sign) for t, sign in ((model_trace, 1), (guide_trace, -1)) for s in t.nodes.values()]
    return sum(sign * s["log_prob"] for s, sign in sites if s["type"] == "sample")


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "continuous-bernoulli"])
def test_log_weights_are_pyros_log_weights_for_models_the_formula_covers_and_those_it_does_not(likelihood):
    model, guide = on_test_device(*build_pair(PairConfig(z_dim=3, hidden=(16,), likelihood=likelihood), (1, 6, 6)))
    x = _data_for(model.likelihood, (10, 1, 6, 6)).to(device_of_tests())
    pyro.set_rng_seed(derived_seed(5))
    ours = log_weights(model, guide, x, num_samples=40)["log_w"]
    pyro.set_rng_seed(derived_seed(5))
    theirs = _log_weights_by_pyro(model, guide, x, 40)
    assert ours.shape == theirs.shape == (40, 10)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-4)


def test_smaller_chunks_on_the_host_draw_the_same_z_and_give_the_same_bounds(monkeypatch):
    """On the CPU, bounds cuts K into chunks of at most HOST_CHUNK_ROWS draws × datapoints: 20 datapoints of
    64 pixels take 409 draws at a time, not all 1000 at once, and every number is the same (each chunk draws
    20 × 4 × 409 normal numbers, whole blocks of torch's 16)."""
    import pvae.engine.bounds as ev

    model, guide = build_pair(PairConfig(z_dim=4, hidden=(32,)), (1, 8, 8))
    x = torch.bernoulli(torch.full((20, 1, 8, 8), 0.3))
    sizes = []
    original = ev.log_weights
    monkeypatch.setattr(ev, "log_weights", lambda *a: sizes.append(a[-1]) or original(*a))
    pyro.set_rng_seed(derived_seed(6))
    host = bounds(model, guide, x, num_samples=1000)
    assert sizes == [409, 409, 182]
    monkeypatch.setattr(ev, "HOST_CHUNK_ELEMENTS", 1 << 62)
    monkeypatch.setattr(ev, "HOST_CHUNK_ROWS", 1 << 62)
    pyro.set_rng_seed(derived_seed(6))
    whole = bounds(model, guide, x, num_samples=1000)
    assert sizes[3:] == [1000]  # as on a GPU: max_elements alone
    for key in whole:
        torch.testing.assert_close(host[key], whole[key], rtol=1e-6, atol=1e-4)


def test_one_process_evaluates_its_datapoints_whole_seeded_or_not():
    """Without torchrun, ``evaluate`` with a seed is ``evaluate`` after seeding, to the last float; without one
    the draws go on from the current stream; the names found in :mod:`pvae.measures.evaluate` are
    :mod:`pvae.engine.bounds`'s."""
    import pvae.engine.bounds
    import pvae.measures.evaluate
    from pvae.engine.ranks import ONE

    model = _orthogonal_ppca()
    guide = _guide_at(model, scale_factor=1.5)
    x = torch.randn(7, 5)
    seed = derived_seed(4)
    seeded = evaluate(model, guide, x, num_samples=3, batch_size=3, ranks=ONE, seed=seed)
    pyro.set_rng_seed(seed)
    assert seeded == evaluate(model, guide, x, num_samples=3, batch_size=3)
    assert seeded["n"] == 7 and seeded["elbo"] < seeded["log_px"]  # Jensen: log mean exp ≥ mean, draw by draw
    going_on = evaluate(model, guide, x, num_samples=3, batch_size=3)  # the next draws: other numbers
    assert going_on["elbo"] != seeded["elbo"]
    for name in ("evaluate", "bounds", "log_weights", "pair_args", "sample_chunks", "summarize", "accuracy"):
        assert getattr(pvae.measures.evaluate, name) is getattr(pvae.engine.bounds, name)
