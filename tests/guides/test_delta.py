"""The autoencoder: the VAE's model, a Delta guide and beta=0 leave reconstruction alone."""

import pytest
import torch
import torch.nn.functional as F

from pvae import data
from pvae.engine.estimators import make_elbo
from pvae.engine.objectives import loss_module
from pvae.engine.train import TrainConfig, fit
from pvae.guides.delta import DeltaGuide
from pvae.measures.evaluate import evaluate
from pvae.models.vae import VAE
from tests.conftest import derived_seed


@pytest.mark.parametrize("estimator", ["trace", "meanfield"])
def test_autoencoder_loss_is_the_reconstruction_error_by_hand(estimator):
    model, guide = VAE((1, 8, 8), z_dim=3, hidden=(16,)), DeltaGuide((1, 8, 8), z_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.full((7, 1, 8, 8), 0.3))
    loss = loss_module(model, guide, make_elbo(estimator), beta=0.0)(x)
    logits = model.decoder(guide.encoder(x))  # (7, 64): no noise anywhere
    by_hand = F.binary_cross_entropy_with_logits(logits, x.reshape(7, -1), reduction="sum")
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    # the gradient reaches the encoder through the code, as an autoencoder's does
    loss.backward()
    assert guide.encoder.net[0].weight.grad.abs().sum() > 0


def test_with_beta_the_delta_guide_adds_the_log_prior_of_the_code():
    model, guide = VAE((1, 8, 8), z_dim=3, hidden=(16,)), DeltaGuide((1, 8, 8), z_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.5))
    z = guide.encoder(x)
    reconstruction = -F.binary_cross_entropy_with_logits(model.decoder(z), x.reshape(5, -1), reduction="sum")
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
    loss = loss_module(model, guide, make_elbo("trace"), beta=0.5)(x)
    assert loss.item() == pytest.approx(-(reconstruction + 0.5 * log_prior).item(), rel=1e-6)


@pytest.mark.statistical
def test_autoencoder_trains_and_reports_reconstruction_only():
    dataset = data.load(data.DataConfig("digits"))
    model, guide = VAE(dataset.x_shape, z_dim=8, hidden=(64,)), DeltaGuide(dataset.x_shape, z_dim=8, hidden=(64,))
    history = fit(model, guide, dataset, TrainConfig(seed=derived_seed(0), beta=0.0, epochs=8, lr=3e-3), progress=False)
    assert all(m["val_elbo"] is None and m["beta"] == 0.0 for m in history)
    # the objective is reconstruction alone: −train loss and the validation objective improve together
    assert history[-1]["val_objective"] > history[0]["val_objective"] + 5
    result = evaluate(model, guide, dataset.test.images(), num_samples=10)
    assert result["elbo"] is None and result["log_px"] is None and result["kl"] is None
    assert result["reconstruction"] == pytest.approx(history[-1]["val_objective"], abs=2.0)


def test_delta_guide_with_beta_trains_and_reports_no_objective_it_cannot_compute():
    dataset = data.load(data.DataConfig("digits"))
    model, guide = VAE(dataset.x_shape, z_dim=4, hidden=(32,)), DeltaGuide(dataset.x_shape, z_dim=4, hidden=(32,))
    history = fit(model, guide, dataset, TrainConfig(seed=derived_seed(0), beta=0.5, epochs=2), progress=False)
    # MAP-style: reconstruction + 0.5·log p(z); the validation ELBO and beta·KL are undefined
    assert all(m["val_objective"] is None and m["val_elbo"] is None for m in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
