"""Statistical checks of the ELBO estimators against closed forms on linear-Gaussian models.

For probabilistic PCA with an affine Gaussian guide the ELBO is analytic, and with one latent
dimension the IWAE-K objective is a K-dimensional Gaussian integral that tensor-product
Gauss–Hermite quadrature evaluates to ~1e-7: both are written here in torch and differentiated
by autograd, which gives exact values and gradients to test the Monte Carlo estimators against.
Every Monte Carlo comparison is a z-score against the standard error estimated from the repeats.
"""

import copy
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pvae.engine.estimators import make_elbo

# ------------------------------------------------------------------------------------------
from pvae.engine.objectives import TracedLoss, backward, loss_module
from pvae.guides.gaussian import GaussianGuide
from pvae.measures.compare import Estimator, bound_values, ordering
from pvae.models.linear import LinearGaussian
from tests.conftest import derived_seed

# Exact objectives


def closed_form_elbo(model: LinearGaussian, guide: GaussianGuide, x: torch.Tensor) -> torch.Tensor:
    """ELBO per datapoint, E_q[log N(x; Wz + b, σ²I)] − KL(q ‖ N(0, I)), for q = N(m, diag s²):

    E_q‖x − Wz − b‖² = ‖x − Wm − b‖² + Σⱼ sⱼ² ‖W₋ⱼ‖², and KL = ½ Σⱼ (mⱼ² + sⱼ² − 1 − 2 log sⱼ).
    """
    layer = model.decoder[0]
    weight, bias, log_sigma = layer.weight, layer.bias, model.likelihood.log_scale
    loc, scale = guide.encode(x)
    d = x.shape[-1]
    sq = (x - loc @ weight.T - bias).pow(2).sum(-1) + (scale.pow(2) * weight.pow(2).sum(0)).sum(-1)
    expected_log_lik = -0.5 * d * math.log(2 * math.pi) - d * log_sigma - 0.5 * sq / (2 * log_sigma).exp()
    kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1 - 2 * scale.log()).sum(-1)
    return expected_log_lik - kl


def quadrature_iwae(
    model: LinearGaussian, guide: GaussianGuide, x: torch.Tensor, k: int, nodes: int = 40
) -> torch.Tensor:
    """IWAE-K per datapoint, E[log (1/K) Σₖ w(μ + σεₖ)] over εₖ ~ N(0, 1) iid, for z_dim = 1, by
    tensor-product Gauss–Hermite quadrature (nodes^K points); differentiable in every parameter.
    """
    if guide.z_dim != 1:
        raise ValueError("the quadrature is over one latent dimension")
    t, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-t²/2): normalise to N(0, 1)
    dtype = x.dtype
    t = torch.as_tensor(t, dtype=dtype)
    w = torch.as_tensor(w / math.sqrt(2 * math.pi), dtype=dtype)
    loc, scale = guide.encode(x)  # (B, 1)
    z = loc + scale * t[:, None, None]  # (n, B, 1)
    q = dist.Normal(loc, scale).to_event(1)
    log_w = model.decode(z).log_prob(x) + model.prior(z.shape[:2]).log_prob(z) - q.log_prob(z)  # (n, B)
    grid = torch.cartesian_prod(*[torch.arange(nodes)] * k).reshape(-1, k)  # (n^K, K) node indices
    bound = torch.logsumexp(log_w[grid], dim=1) - math.log(k)  # (n^K, B)
    return (w[grid].prod(1)[:, None] * bound).sum(0)


def exact_value(model, guide, x, objective) -> float:
    """Σ objective(x) over the batch, in float64."""
    with torch.no_grad():
        return float(objective(copy.deepcopy(model).double(), copy.deepcopy(guide).double(), x.double()).sum())


def exact_gradient(model, guide, x, objective) -> torch.Tensor:
    """Gradient of −Σ objective(x) (the loss) over guide then model parameters, in float64."""
    model64, guide64 = copy.deepcopy(model).double(), copy.deepcopy(guide).double()
    loss = -objective(model64, guide64, x.double()).sum()
    params = [p for _, p in _named(model64, guide64)]
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


# ------------------------------------------------------------------------------------------
# Fixtures: a pPCA with z_dim = 1, D = 3, and a guide that is close to, but not, the posterior


def _named(model, guide):
    return list(guide.named_parameters(prefix="guide")) + list(model.named_parameters(prefix="model"))


def perturbed_pair(weight: torch.Tensor, bias: torch.Tensor, sigma: float, shift: float, widen: float):
    """The model with these parameters, and the affine guide set to its exact posterior, then moved:
    its mean ``shift`` posterior sds off (plus a tilt in x), its sd ``widen`` times too large.

    A guide wider than the posterior keeps the importance weights bounded, so every moment the
    tests estimate is finite; not being the posterior keeps IWAE's gradient noisy.
    """
    d_x, d_z = weight.shape
    model = LinearGaussian((d_x,), z_dim=d_z)
    guide = GaussianGuide((d_x,), z_dim=d_z, hidden=())
    with torch.no_grad():
        model.decoder[0].weight.copy_(weight)
        model.decoder[0].bias.copy_(bias)
        model.likelihood.log_scale.fill_(math.log(sigma))
        m_inv = torch.linalg.inv(weight.T @ weight + sigma**2 * torch.eye(d_z))
        gain = m_inv @ weight.T  # posterior mean = gain (x − b)
        post_sd = sigma * m_inv.diagonal().sqrt()
        v = torch.linspace(-1.0, 1.5, d_x)
        v = (v / v.norm()).expand(d_z, d_x)
        layer = guide.encoder.net[0]
        layer.weight.copy_(torch.cat([gain + 0.3 * post_sd[:, None] * v, 0.05 * v]))
        layer.bias.copy_(torch.cat([-gain @ bias + shift * post_sd, (widen * post_sd).log()]))
    return model, guide


@pytest.fixture
def small_pair():
    """z_dim = 1, D = 3, three datapoints: 15 parameters in all."""
    weight = torch.tensor([[1.0], [-0.5], [0.8]])
    model, guide = perturbed_pair(weight, torch.tensor([0.2, -0.1, 0.3]), sigma=0.7, shift=1.0, widen=1.5)
    x = torch.tensor([[1.0, -0.3, 0.9], [-0.8, 0.6, -0.4], [0.3, 0.1, 0.7]])
    return model, guide, x


@pytest.fixture
def ppca_pair(ppca_data):
    """The generating pPCA (D = 5, z_dim = 2), a perturbed guide and 64 of its datapoints."""
    x, (w, b, sigma) = ppca_data
    model, guide = perturbed_pair(w, b, sigma, shift=1.0, widen=1.5)
    return model, guide, x[:64]


def gradient_draws(
    model, guide, x, name: str, k: int = 1, draws: int = 200, copies: int = 20, beta: float = 1.0
) -> torch.Tensor:
    """``draws`` independent estimates of the gradient of the loss on ``x`` (guide, then model
    parameters, flattened), each the average of ``copies`` independent ones: x stacked ``copies``
    times gets independent particles per row, and its loss is the sum over rows."""
    loss_fn = loss_module(model, guide, make_elbo(name, k, vectorize_particles=k > 1), beta=beta)
    stacked = x.repeat(copies, 1)
    loss_fn.estimate(stacked)
    params = [p for _, p in _named(model, guide)]
    out = torch.empty(draws, sum(p.numel() for p in params), dtype=torch.float64)
    for i in range(draws):
        for p in loss_fn.parameters():
            p.grad = None
        backward(loss_fn, stacked, scale=1.0 / copies)
        out[i] = torch.cat([p.grad.reshape(-1) for p in params]).double()
    return out


def z_scores(samples: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """(mean − expected) / standard error, componentwise."""
    se = samples.std(0) / math.sqrt(len(samples))
    return (samples.mean(0) - expected) / se


# ------------------------------------------------------------------------------------------
# 1-3. Values


@pytest.mark.statistical
def test_elbo_estimators_agree_with_the_closed_form(ppca_pair):
    model, guide, x = ppca_pair
    with torch.no_grad():
        exact = float(closed_form_elbo(model, guide, x).mean())
    rows = bound_values(model, guide, x, [Estimator(n) for n in ("trace", "meanfield", "graph")], repeats=200)
    for row in rows:
        # 4 standard errors of the mean over 200 repeats
        assert abs(row["mean"] - exact) < 4 * row["se"], (row["label"], row["mean"], row["se"], exact)
    for a in rows:
        for b in rows:
            assert abs(a["mean"] - b["mean"]) < 4 * math.hypot(a["se"], b["se"]), (a, b)


def test_one_particle_bounds_are_the_elbo_draw_for_draw(small_pair):
    model, guide, x = small_pair
    values, grads = {}, {}
    for name in ("trace", "graph", "iwae", "dreg"):
        loss_fn = loss_module(model, guide, make_elbo(name, 1))
        pyro.set_rng_seed(derived_seed(3))
        values[name] = loss_fn.estimate(x)
        pyro.set_rng_seed(derived_seed(3))
        for p in loss_fn.parameters():
            p.grad = None
        backward(loss_fn, x)
        grads[name] = torch.cat([p.grad.reshape(-1) for _, p in _named(model, guide)])
    # the same z; the sums differ only in float32 rounding
    assert values["graph"] == pytest.approx(values["trace"], rel=1e-6)
    assert values["iwae"] == pytest.approx(values["trace"], rel=1e-6)
    assert values["dreg"] == pytest.approx(values["trace"], rel=1e-6)
    # IWAE with one particle gives it normalised weight 1: the ELBO's gradient, exactly
    assert torch.allclose(grads["iwae"], grads["trace"], rtol=1e-5, atol=1e-6)
    # DReG with one particle drops the score term: same model gradient, another guide gradient
    n_guide = sum(p.numel() for p in guide.parameters())
    assert torch.allclose(grads["dreg"][n_guide:], grads["trace"][n_guide:], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(grads["dreg"][:n_guide], grads["trace"][:n_guide], rtol=1e-3)


@pytest.mark.statistical
def test_iwae_tightens_with_k_below_the_exact_likelihood(ppca_pair):
    model, guide, x = ppca_pair
    with torch.no_grad():
        exact = float(model.log_marginal(x).mean())
        elbo = float(closed_form_elbo(model, guide, x).mean())
    ests = [Estimator("iwae", k) for k in (1, 5, 50)] + [Estimator("renyi", 5, alpha=0.5), Estimator("trace", 5)]
    rows = bound_values(model, guide, x, ests, repeats=40)
    iwae = {r["particles"]: r for r in rows if r["estimator"] == "iwae"}
    # IWAE-1 is the ELBO
    assert abs(iwae[1]["mean"] - elbo) < 4 * iwae[1]["se"]
    for lo, hi in ((1, 5), (5, 50)):
        gap = iwae[hi]["mean"] - iwae[lo]["mean"]
        assert gap > 3 * math.hypot(iwae[hi]["se"], iwae[lo]["se"]), (lo, hi, gap)
    assert iwae[50]["mean"] <= exact + 3 * iwae[50]["se"]
    result = ordering([r for r in rows if r["estimator"] != "renyi"], exact)
    assert result["holds"], result["violations"]
    assert [label.split(" ")[0] for label, *_ in result["chain"]] == ["ELBO", "IWAE-1", "IWAE-5", "IWAE-50", "log"]
    # Rényi-α at the same K lies between the ELBO (α → 1) and IWAE (α = 0)
    renyi = next(r for r in rows if r["estimator"] == "renyi")
    elbo_k = next(r for r in rows if r["estimator"] == "trace")
    assert renyi["mean"] - elbo_k["mean"] > 3 * math.hypot(elbo_k["se"], renyi["se"])
    assert iwae[5]["mean"] - renyi["mean"] > 3 * math.hypot(renyi["se"], iwae[5]["se"])


def test_renyi_lies_between_elbo_and_iwae_draw_for_draw(small_pair):
    """With the same draws, the log of the power mean of the weights falls as alpha rises: the
    ordering holds for every estimate, not only on average."""
    model, guide, x = small_pair
    for seed in range(5):
        values = {}
        for name in ("trace", "renyi", "iwae"):
            loss_fn = loss_module(model, guide, make_elbo(name, 4, vectorize_particles=True))
            pyro.set_rng_seed(derived_seed(seed))
            values[name] = -loss_fn.estimate(x)
        assert values["trace"] < values["renyi"] < values["iwae"], values


# ------------------------------------------------------------------------------------------
# 4. Gradients


def test_quadrature_is_exact_where_it_can_be_checked(small_pair):
    model, guide, x = small_pair
    model, guide, x = model.double(), guide.double(), x.double()
    elbo = closed_form_elbo(model, guide, x)
    # K = 1 is the ELBO, whose integrand is a quadratic in ε: exact for any rule of ≥ 2 nodes
    assert torch.allclose(quadrature_iwae(model, guide, x, 1), elbo, rtol=0, atol=1e-10)
    g_elbo = exact_gradient(model, guide, x, closed_form_elbo)
    g_quad = exact_gradient(model, guide, x, lambda m, g, x: quadrature_iwae(m, g, x, 1))
    assert torch.allclose(g_quad, g_elbo, rtol=0, atol=1e-9)
    # K = 3: log-sum-exp has complex poles, so the error falls only algebraically with the nodes,
    # but at 40 it is ~1e-7, five orders below the Monte Carlo standard errors it is tested against
    iwae3 = quadrature_iwae(model, guide, x, 3)
    assert torch.allclose(iwae3, quadrature_iwae(model, guide, x, 3, nodes=60), rtol=0, atol=1e-6)
    log_px = model.log_marginal(x)
    assert torch.all(elbo + 0.01 < iwae3) and torch.all(iwae3 < log_px - 0.01), (elbo, iwae3, log_px)


@pytest.mark.parametrize("name", ["trace", "meanfield", "graph", "dreg"])
@pytest.mark.statistical
def test_elbo_gradient_is_unbiased(small_pair, name):
    """Every K = 1 estimator (DReG's is "sticking the landing") averages to the gradient of the
    closed-form ELBO, for all 15 model and guide parameters."""
    model, guide, x = small_pair
    exact = exact_gradient(model, guide, x, closed_form_elbo)
    draws = gradient_draws(model, guide, x, name, k=1)
    z = z_scores(draws, exact)
    # 15 components at 4.5 standard errors: a false alarm has odds of about 1e-4
    assert z.abs().max() < 4.5, (name, z)


@pytest.mark.statistical
def test_iwae_and_dreg_gradients_match_quadrature(small_pair):
    """The IWAE-3 gradient of both estimators averages to the autograd gradient of the
    quadrature; DReG's guide gradient does so with less variance (Tucker et al., 2018)."""
    model, guide, x = small_pair
    k = 3
    exact = exact_gradient(model, guide, x, lambda m, g, x: quadrature_iwae(m, g, x, k))
    elbo_grad = exact_gradient(model, guide, x, closed_form_elbo)
    n_guide = sum(p.numel() for p in guide.parameters())
    variances = {}
    for name in ("iwae", "dreg"):
        draws = gradient_draws(model, guide, x, name, k=k)
        z = z_scores(draws, exact)
        assert z.abs().max() < 4.5, (name, z)
        # and not the ELBO's gradient: the test can tell the two objectives apart
        assert z_scores(draws, elbo_grad).abs().max() > 10, name
        variances[name] = draws[:, :n_guide].var(0)
    # about 0.1 in every guide component at this setting
    ratio = variances["dreg"] / variances["iwae"]
    assert torch.all(ratio < 0.5), ratio


@pytest.mark.parametrize("beta", [0.0, 0.5])
@pytest.mark.statistical
def test_dreg_is_unbiased_for_the_beta_scaled_bound(small_pair, beta):
    """With beta on the latent site, log w holds beta·log q and the score term DReG removes is
    beta times smaller: its weights become w̃(1 − beta + beta·w̃). Its mean gradient is still
    IWAE's, for the guide and the model (w̃² regardless of beta is off by hundreds of standard
    errors at beta = 0)."""
    model, guide, x = small_pair
    iwae = gradient_draws(model, guide, x, "iwae", k=3, beta=beta)
    dreg = gradient_draws(model, guide, x, "dreg", k=3, beta=beta)
    se = (iwae.var(0) / len(iwae) + dreg.var(0) / len(dreg)).sqrt()
    z = (dreg.mean(0) - iwae.mean(0)) / se
    assert z.abs().max() < 4.5, z


# ------------------------------------------------------------------------------------------
# 5. DReG's value and its refusals


@pytest.mark.parametrize("name", ["iwae", "dreg"])
@pytest.mark.statistical
def test_looped_and_vectorized_particles_estimate_the_same_bound(small_pair, name):
    """Both estimate the IWAE-3 bound of the quadrature within 4.5 standard errors of 100 repeats.

    The log of a mean of 3 weights is skewed, and the standard error comes from the same 100
    repeats: 4 of them were exceeded under one seed of 20 (4.1), 4.5 leave room for both (a normal
    mean leaves them with probability 7e-6, 4 lines of them 3e-5)."""
    model, guide, x = small_pair
    k, copies, repeats = 3, 20, 100
    exact = exact_value(model, guide, x, lambda m, g, x: quadrature_iwae(m, g, x, k))
    stacked = x.repeat(copies, 1)
    stats = []
    for vectorize in (False, True):
        loss_fn = loss_module(model, guide, make_elbo(name, k, vectorize_particles=vectorize))
        values = torch.tensor([-loss_fn.estimate(stacked) / copies for _ in range(repeats)], dtype=torch.float64)
        mean, se = float(values.mean()), float(values.std()) / math.sqrt(repeats)
        assert abs(mean - exact) < 4.5 * se, (vectorize, mean, se, exact)
        stats.append((mean, se))
    (m0, s0), (m1, s1) = stats
    assert abs(m0 - m1) < 4.5 * math.hypot(s0, s1)


class _CoinModel(torch.nn.Module):
    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)


class _CoinGuide(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.logit = torch.nn.Parameter(torch.tensor(0.3))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(logits=self.logit.expand(x.shape[0])))


@pytest.mark.parametrize("vectorize", [False, True])
def test_dreg_refuses_a_guide_it_cannot_reparameterize(vectorize):
    x = torch.tensor([0.2, 1.1, -0.4])
    loss_fn = loss_module(_CoinModel(), _CoinGuide(), make_elbo("dreg", 2, vectorize_particles=vectorize))
    with pytest.raises(ValueError, match=r"reparameterized guide, but site 'z'.*--elbo iwae"):
        loss_fn.estimate(x)
    # the same pair is fine for an estimator that takes score-function gradients
    assert math.isfinite(loss_module(_CoinModel(), _CoinGuide(), make_elbo("trace")).estimate(x))


# ------------------------------------------------------------------------------------------
# 6. Options that make no sense are refused


def test_alpha_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="alpha=1 is the ELBO"):
        make_elbo("renyi", alpha=1.0)
    with pytest.raises(ValueError, match="only renyi take it, not trace"):
        make_elbo("trace", alpha=0.5)


@pytest.mark.parametrize("name", ["iwae", "dreg"])
def test_jit_is_refused_for_losses_a_trace_cannot_hold(small_pair, name):
    model, guide, _ = small_pair
    with pytest.raises(ValueError, match="use --jit auto or --jit off"):
        TracedLoss(loss_module(model, guide, make_elbo(name, 3)))


@pytest.mark.parametrize(
    "pair",
    [
        {"model": "two-layer", "guide": "two-layer"},  # z1 drawn before z2, from x alone
        {"guide": "iaf", "flows": 2},
        {"guide": "fullrank"},
    ],
)
@pytest.mark.parametrize("vectorize", [False, True])
def test_dreg_scores_every_continuous_guide_as_iwae_does(pair, vectorize):
    """DReG's value is the IWAE bound: with the same draws the two agree, for guides with
    several latents (a site replayed over the particles must be broadcast like a sampled one),
    flows and full covariances; and its gradient reaches every parameter."""
    from pvae.engine.config import PairConfig, build_pair

    model, guide = build_pair(PairConfig(z_dim=3, hidden=(16,), **pair), (1, 4, 4))
    x = torch.bernoulli(torch.rand(5, 1, 4, 4))
    values = {}
    for name in ("iwae", "dreg"):
        loss_fn = loss_module(model, guide, make_elbo(name, 3, vectorize))
        pyro.set_rng_seed(derived_seed(2))
        values[name] = loss_fn.estimate(x)
    assert values["dreg"] == pytest.approx(values["iwae"], rel=1e-5)
    loss_fn = loss_module(model, guide, make_elbo("dreg", 3, vectorize))
    backward(loss_fn, x)
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in guide.parameters())


@pytest.mark.parametrize(
    ("name", "options"),
    [("dreg", {"num_particles": 3}), ("dreg", {"num_particles": 3, "vectorize_particles": True}), ("tcvae", {})],
)
def test_pvaes_estimators_step_and_score_through_their_surrogate(small_pair, name, options):
    """``loss_and_grads`` is backward on ``differentiable_loss`` and ``loss`` its value, bit for bit, from the
    same draws (beta 0.5 on z: DReG's reweighting under a scale, TC-VAE's weight on the TC)."""
    model, guide, x = small_pair
    if name == "tcvae":
        options = {"dataset_size": 100}
    loss_fn = loss_module(model, guide, make_elbo(name, **options), beta=0.5)
    programs = (loss_fn.elbo_loss.model, loss_fn.elbo_loss.guide)
    params = list(loss_fn.parameters())
    runs = []
    for step in ("loss_and_grads", "backward"):
        for p in params:
            p.grad = None
        pyro.set_rng_seed(derived_seed(40))
        if step == "loss_and_grads":
            value = loss_fn.elbo.loss_and_grads(*programs, x)
        else:
            loss = loss_fn.elbo.differentiable_loss(*programs, x)
            loss.backward()
            value = float(loss.detach())
        runs.append((value, [p.grad.clone() for p in params]))
    (stepped, stepped_grads), (value, grads) = runs
    assert stepped == value and all(torch.equal(a, b) for a, b in zip(stepped_grads, grads, strict=True))
    assert any(g.abs().sum() > 0 for g in grads)
    pyro.set_rng_seed(derived_seed(40))
    assert loss_fn.elbo.loss(*programs, x) == value
