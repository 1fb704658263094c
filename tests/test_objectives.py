import pyro
import pyro.distributions as dist
import pytest
import torch

from pvae.engine.estimators import ESTIMATORS, make_elbo
from pvae.engine.objectives import BetaScale, log_mean_exp, loss_module
from pvae.guides.gaussian import GaussianGuide
from pvae.models.vae import VAE
from tests.conftest import derived_seed


def _by_hand(model, guide, x, beta, analytic_kl):
    """-(log p(x|z) + beta (log p(z) - log q(z|x))) with z drawn exactly as the guide draws it."""
    loc, scale = guide.encode(x)
    z = loc + scale * torch.randn_like(loc)  # Normal.rsample draws eps the same way
    q = dist.Normal(loc, scale).to_event(1)
    p = dist.Normal(torch.zeros_like(loc), 1.0).to_event(1)
    log_px_z = model.decode(z).log_prob(x)
    if analytic_kl:
        kl = 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum(-1)
    else:
        kl = q.log_prob(z) - p.log_prob(z)
    return -(log_px_z - beta * kl).sum()


@pytest.mark.parametrize("estimator,analytic", [("trace", False), ("meanfield", True)])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 4.0])
def test_beta_scales_exactly_the_kl_term(estimator, analytic, beta):
    x = torch.bernoulli(torch.rand(16, 1, 8, 8))
    model, guide = VAE((1, 8, 8), z_dim=3, hidden=(32,)), GaussianGuide((1, 8, 8), z_dim=3, hidden=(32,))
    loss_fn = loss_module(model, guide, make_elbo(estimator), beta=beta)
    pyro.set_rng_seed(derived_seed(7))
    loss = loss_fn(x)
    pyro.set_rng_seed(derived_seed(7))
    expected = _by_hand(model, guide, x, beta, analytic)
    assert torch.allclose(loss, expected, rtol=1e-5), (float(loss), float(expected))
    # The gradient flows through the scaled objective too.
    loss.backward()
    assert all(p.grad is not None for p in guide.parameters())


def test_beta_scale_leaves_other_sites_alone():
    def program():
        pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(0.3))

    with BetaScale(2.5, sites={"z"}):
        trace = pyro.poutine.trace(program).get_trace()
    assert trace.nodes["z"]["scale"] == 2.5
    assert trace.nodes["x"]["scale"] == 1.0


def test_unknown_estimator_lists_the_choices():
    with pytest.raises(ValueError, match="unknown estimator 'elbow'.*meanfield.*trace"):
        make_elbo("elbow")
    assert set(ESTIMATORS) >= {"trace", "meanfield"}


def test_negative_beta_is_refused():
    with pytest.raises(ValueError, match="beta must be non-negative"):
        loss_module(VAE((1, 8, 8)), GaussianGuide((1, 8, 8)), make_elbo("trace"), beta=-1.0)


def test_log_mean_exp_is_stable_and_exact():
    x = torch.tensor([[1000.0, 1000.0 + torch.log(torch.tensor(3.0))], [-5.0, -5.0]])
    assert torch.allclose(log_mean_exp(x, dim=1), torch.tensor([1000.0 + torch.log(torch.tensor(2.0)), -5.0]))


def test_beta_schedules_take_the_values_they_promise():
    from pvae.engine.objectives import BetaSchedule

    warm = BetaSchedule("linear-warmup", beta=2.0, epochs=20, warmup=4)
    assert [warm(e) for e in (0, 1, 2, 4, 10)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    cyc = BetaSchedule("cyclical", beta=1.0, epochs=8, cycles=2, ramp=0.5)  # cycles of 4 epochs, 2 rising
    assert [cyc(e) for e in (0, 1, 2, 3, 3.99, 4, 5, 6)] == pytest.approx([0, 0.5, 1, 1, 1, 0, 0.5, 1])
    assert BetaSchedule("constant", beta=3.0)(17) == 3.0
    with pytest.raises(ValueError, match="unknown beta schedule 'cosine'"):
        BetaSchedule("cosine")
    with pytest.raises(ValueError, match="0 < ramp ≤ 1"):
        BetaSchedule("cyclical", ramp=1.5)


@pytest.mark.parametrize("jit", [False, True])
def test_set_beta_moves_the_loss_eager_and_traced(jit):
    from pvae.engine.objectives import TracedLoss

    x = torch.bernoulli(torch.rand(16, 1, 8, 8))
    model, guide = VAE((1, 8, 8), z_dim=3, hidden=(32,)), GaussianGuide((1, 8, 8), z_dim=3, hidden=(32,))
    loss_fn = loss_module(model, guide, make_elbo("meanfield"), beta=1.0, scheduled=True)
    run = TracedLoss(loss_fn) if jit else loss_fn
    for seed, beta in enumerate((0.0, 0.3, 2.0)):
        loss_fn.set_beta(beta)
        pyro.set_rng_seed(derived_seed(seed))  # a draw other than the tracing one, too
        loss = run(x)
        pyro.set_rng_seed(derived_seed(seed))
        assert torch.allclose(loss, _by_hand(model, guide, x, beta, analytic_kl=True), rtol=1e-5), beta
    if jit:
        assert run.compilations == 1  # one trace served every beta
    with pytest.raises(ValueError, match="built without beta"):
        loss_module(model, guide, make_elbo("trace")).set_beta(0.5)


def test_full_rank_kl_to_a_diagonal_prior_is_the_closed_form():
    from pvae.engine.estimators import kl_mvn_diagonal  # noqa: F401  (registers it)

    torch.manual_seed(derived_seed(0))
    a = torch.randn(4, 3, 3)
    q = dist.MultivariateNormal(torch.randn(4, 3), scale_tril=torch.linalg.cholesky(a @ a.mT + 0.5 * torch.eye(3)))
    p = dist.Normal(torch.randn(3), torch.rand(3) + 0.5).to_event(1)
    exact = torch.distributions.kl_divergence(
        q, dist.MultivariateNormal(p.base_dist.loc, torch.diag(p.base_dist.scale**2))
    )
    assert torch.allclose(torch.distributions.kl_divergence(q, p.expand((4,))), exact, atol=1e-5)
    samples = q.sample((200_000,))
    log_ratio = q.log_prob(samples) - p.log_prob(samples)  # (200000, 4)
    standard_error = log_ratio.std(0) / len(samples) ** 0.5
    assert ((log_ratio.mean(0) - exact).abs() < 4 * standard_error).all()
