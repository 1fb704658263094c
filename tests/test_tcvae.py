"""beta-TCVAE (``--elbo tcvae``): the ELBO at beta = 1 draw for draw, the ELBO plus (beta − 1)·TC
otherwise, with the minibatch-weighted estimate of the TC computed here by hand from the same draws."""

import json
import math

import pyro
import pytest
import torch
from pyro import poutine

from pvae.cli import main
from pvae.engine.estimators import ESTIMATORS, make_elbo
from pvae.engine.objectives import loss_module
from pvae.engine.tcvae import TCVAE_ELBO, mws_log_densities
from pvae.guides.fullrank import FullRankGuide
from pvae.guides.gaussian import GaussianGuide
from pvae.models.vae import VAE
from tests.conftest import derived_seed

N = 1000  # the dataset size the estimates of q(z) average over
M, D = 5, 3  # batch, z_dim


@pytest.fixture
def pair():
    torch.manual_seed(derived_seed(0))
    x = torch.bernoulli(torch.full((M, 1, 8, 8), 0.4))
    return VAE((1, 8, 8), z_dim=D, hidden=(16,)), GaussianGuide((1, 8, 8), z_dim=D, hidden=(16,)), x


def _loss(model, guide, x, elbo, beta=1.0, scheduled=False, seed=None) -> torch.Tensor:
    """The loss summed over the batch, differentiable, from the draws of ``seed`` (default: stream 1)."""
    pyro.set_rng_seed(derived_seed(1) if seed is None else seed)
    return loss_module(model, guide, elbo, beta=beta, scheduled=scheduled)(x)


def _value(*args, **kwargs) -> float:
    return float(_loss(*args, **kwargs).detach())


def _normal_log_pdf(z: float, loc: float, scale: float) -> float:
    return -0.5 * math.log(2 * math.pi) - math.log(scale) - 0.5 * ((z - loc) / scale) ** 2


def _log_sum_exp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _tc_by_hand(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, n: int) -> float:
    """Σᵢ [log q(zᵢ) − Σⱼ log q(zᵢⱼ)] with log q(zᵢ) = log Σₖ Πⱼ q(zᵢⱼ|xₖ) − log(NM), one number at a time."""
    z, loc, scale = z.double().tolist(), loc.double().tolist(), scale.double().tolist()
    m, d = len(z), len(z[0])
    total = 0.0
    for i in range(m):
        pdf = [[_normal_log_pdf(z[i][j], loc[k][j], scale[k][j]) for j in range(d)] for k in range(m)]
        log_qz = _log_sum_exp([sum(pdf[k]) for k in range(m)]) - math.log(n * m)
        log_qzj = [_log_sum_exp([pdf[k][j] for k in range(m)]) - math.log(n * m) for j in range(d)]
        total += log_qz - sum(log_qzj)
    return total


def test_tcvae_is_registered_and_takes_the_dataset_size():
    assert ESTIMATORS["tcvae"] is TCVAE_ELBO
    assert make_elbo("tcvae", dataset_size=N).dataset_size == N
    assert make_elbo("trace", dataset_size=N).__class__.__name__ == "Trace_ELBO"  # others ignore it
    with pytest.raises(ValueError, match="dataset_size.*at least 1"):
        make_elbo("tcvae", dataset_size=0)


@pytest.mark.parametrize("scheduled", [False, True])
def test_at_beta_one_the_loss_is_the_elbo_draw_for_draw(pair, scheduled):
    """The decomposition telescopes whatever log q(z) is estimated as: at beta = 1, with the handler
    (a tensor scale, TC weight 0) or without it, tcvae's loss is Trace_ELBO's on the same draws."""
    model, guide, x = pair
    elbo = _value(model, guide, x, make_elbo("trace"))
    tcvae = _value(model, guide, x, make_elbo("tcvae", dataset_size=N if scheduled else None), scheduled=scheduled)
    assert tcvae == pytest.approx(elbo, rel=1e-6)
    assert abs(elbo) > 10  # a real loss, not two zeros


@pytest.mark.parametrize("beta", [0.0, 4.0])
@pytest.mark.parametrize(("particles", "vectorize"), [(1, False), (3, True)])
def test_beta_weights_the_total_correlation_alone(pair, beta, particles, vectorize):
    """loss(beta) − ELBO loss = (beta − 1)·TĈ on the same draws: beta's scale on z does not reach the
    ELBO's own KL term, and TĈ is the minibatch-weighted estimate, averaged over the particles."""
    model, guide, x = pair
    seed = derived_seed(2)
    pyro.set_rng_seed(seed)
    if vectorize:  # the draws the estimator's particle plate makes, (K, M, D)
        with pyro.plate("particles", particles, dim=-2):
            z = poutine.trace(guide).get_trace(x).nodes["z"]["value"].detach()
    else:
        z = poutine.trace(guide).get_trace(x).nodes["z"]["value"].detach()[None]
    loc, scale = (t.detach() for t in guide.encode(x))
    tc = sum(_tc_by_hand(draw, loc, scale, N) for draw in z) / particles
    elbo = _value(model, guide, x, make_elbo("trace", particles, vectorize), seed=seed)
    tcvae = _value(model, guide, x, make_elbo("tcvae", particles, vectorize, dataset_size=N), beta=beta, seed=seed)
    assert tcvae - elbo == pytest.approx((beta - 1) * tc, abs=2e-3)
    assert abs(tc) > 1  # a term the check sees: (d − 1)·log(NM) per datapoint, plus the draws' own part


def test_minibatch_weighted_sampling_matches_a_direct_computation():
    """log q(zᵢ) = log (1/(NM)) Σₖ q(zᵢ|xₖ) and its marginals, from densities multiplied out directly."""
    torch.manual_seed(derived_seed(3))
    loc, scale = torch.randn(3, 2), torch.rand(3, 2) + 0.5
    z = torch.randn(3, 2)
    q = torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)
    log_qz, log_qzj = mws_log_densities(q, z, dataset_size=7)

    def pdf(v, m, s):
        return math.exp(-0.5 * ((v - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    zl, ml, sl = z.tolist(), loc.tolist(), scale.tolist()
    for i in range(3):
        joint = sum(pdf(zl[i][0], ml[k][0], sl[k][0]) * pdf(zl[i][1], ml[k][1], sl[k][1]) for k in range(3))
        assert float(log_qz[i]) == pytest.approx(math.log(joint / 21), abs=1e-5)
        for j in range(2):
            marginal = sum(pdf(zl[i][j], ml[k][j], sl[k][j]) for k in range(3))
            assert float(log_qzj[i, j]) == pytest.approx(math.log(marginal / 21), abs=1e-5)


def test_gradients_are_finite_and_the_tc_term_reaches_the_encoder(pair):
    model, guide, x = pair
    grads = {}
    for beta in (1.0, 4.0):
        for p in [*model.parameters(), *guide.parameters()]:
            p.grad = None
        _loss(model, guide, x, make_elbo("tcvae", dataset_size=N), beta=beta, seed=derived_seed(4)).backward()
        grads[beta] = [p.grad.clone() for p in guide.parameters()]
        assert all(torch.isfinite(p.grad).all() for p in [*model.parameters(), *guide.parameters()])
    # the TC term moves the encoder's gradient; 3·∇TĈ is the whole difference
    assert any(not torch.allclose(a, b) for a, b in zip(grads[1.0], grads[4.0], strict=True))


def test_the_estimator_refuses_what_it_cannot_score(pair):
    model, _, x = pair
    full = FullRankGuide((1, 8, 8), z_dim=D, hidden=(16,))
    with pytest.raises(ValueError, match=r"diagonal Normal.*MultivariateNormal.*--guide gaussian"):
        _loss(model, full, x, make_elbo("tcvae", dataset_size=N), beta=4.0)
    _, guide, _ = pair
    with pytest.raises(ValueError, match=r"needs its size N.*dataset_size=len\(dataset.train\)"):
        _loss(model, guide, x, make_elbo("tcvae"), beta=4.0)


@pytest.mark.statistical
def test_pvae_train_runs_beta_tcvae(tmp_path):
    out = tmp_path / "tcvae"
    argv = ["train", "--elbo", "tcvae", "--beta", "4", "--epochs", "4", "--z-dim", "4", "--hidden", "64"]
    argv += ["--samples", "10", "--seed", str(derived_seed(5)), "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["train"]["elbo"], config["train"]["beta"]) == ("tcvae", 4.0)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["val_elbo"]) for m in metrics)
    # four epochs of digits take a fresh VAE from about −44 to about −30 nats of validation ELBO
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"] - 3
    assert metrics[-1]["val_elbo"] > metrics[0]["val_elbo"] + 3


def test_jit_trace_gives_the_eager_values_and_follows_beta(pair):
    """tcvae returns its loss itself (no float frozen into the trace), so a traced loss gives the eager
    values on draws other than the tracing one, and a new beta reaches the trace through its tensor."""
    from pvae.engine.objectives import TracedLoss

    model, guide, x = pair
    eager = loss_module(model, guide, make_elbo("tcvae", dataset_size=N), beta=4.0)
    traced = TracedLoss(eager)
    traced(x)
    for beta in (4.0, 1.0):
        eager.set_beta(beta)
        values = []
        for fn in (eager, traced):
            pyro.set_rng_seed(derived_seed(6))
            values.append(float(fn(x).detach()))
        assert values[0] == pytest.approx(values[1], rel=1e-6)
    assert traced.compilations == 1


def test_the_dataset_size_moves_the_loss_by_a_constant_and_not_the_gradient(pair):
    """N enters TĈ as (d − 1)·log(NM) per datapoint: ten times the data moves the loss by
    (β − 1)·M·(d − 1)·log 10, and leaves every gradient as it was."""
    model, guide, x = pair
    params = [*model.parameters(), *guide.parameters()]
    losses, grads = [], []
    for n in (N, 10 * N):
        for p in params:
            p.grad = None
        loss = _loss(model, guide, x, make_elbo("tcvae", dataset_size=n), beta=3.0, seed=derived_seed(7))
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append([p.grad.clone() for p in params])
    assert losses[1] - losses[0] == pytest.approx(2.0 * M * (D - 1) * math.log(10), abs=1e-3)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads, strict=True))
