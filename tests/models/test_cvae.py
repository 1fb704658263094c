"""The conditional VAE: it observes the label, and draws the class it is asked for."""

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from pvae import data
from pvae.engine.config import PairConfig, build_pair
from pvae.engine.train import TrainConfig, fit
from pvae.measures.evaluate import log_weights, sample_prior
from tests.conftest import derived_seed


def test_cvae_log_weight_is_the_joint_with_a_uniform_label_by_hand():
    # log w = log p(x | z, y) + log p(y) + log p(z) − log q(z | x, y), each term by hand
    model, guide = build_pair(PairConfig("cvae", "conditional-gaussian", z_dim=3, hidden=(16,)), (1, 8, 8))
    x = torch.bernoulli(torch.full((6, 1, 8, 8), 0.4))
    y = torch.tensor([0, 1, 2, 3, 9, 9])
    torch.manual_seed(derived_seed(3))
    parts = log_weights(model, guide, x, y, num_samples=4)
    torch.manual_seed(derived_seed(3))  # the same draw of z, by hand
    loc, scale = guide.encode(x, y)
    z = loc + scale * torch.randn(4, 6, 3)
    code = torch.cat([z, F.one_hot(y, 10).float().expand(4, 6, 10)], -1)
    logits = model.decoder(code)
    log_px_z = -F.binary_cross_entropy_with_logits(logits, x.reshape(6, -1).expand(4, 6, 64), reduction="none").sum(-1)
    assert torch.allclose(parts["log_px_given_z"], log_px_z, atol=1e-4)
    assert torch.allclose(parts["log_py"], torch.full((4, 6), -math.log(10)))  # the uniform p(y)
    assert torch.allclose(parts["log_pz"], torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1), atol=1e-4)


def test_cvae_needs_labels_everywhere():
    model, guide = build_pair(PairConfig("cvae", "conditional-gaussian", z_dim=3, hidden=(16,)), (1, 8, 8))
    with pytest.raises(ValueError, match="pass y"):
        model(torch.zeros(2, 1, 8, 8))
    assert sample_prior(model, 3).shape == (3, 1, 8, 8)  # without labels, classes drawn from p(y)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        sample_prior(model, 2, torch.tensor([3, 10]))
    partial = data.load(data.DataConfig("digits", labels=50))
    with pytest.raises(ValueError, match="--model m2"):
        fit(model, guide, partial, TrainConfig(seed=derived_seed(0), epochs=1), progress=False)


@pytest.mark.statistical
def test_cvae_on_digits_draws_the_class_it_is_asked_for():
    dataset = data.load(data.DataConfig("digits"))
    flat = lambda x: x.reshape(len(x), -1).numpy()  # noqa: E731
    # a classifier of real digits: the training split's grey levels
    classifier = LogisticRegression(max_iter=5000).fit(flat(dataset.train.images()), dataset.train.y.numpy())
    model, guide = build_pair(PairConfig("cvae", "conditional-gaussian", z_dim=8, hidden=(128,)), dataset.x_shape)
    fit(model, guide, dataset, TrainConfig(seed=derived_seed(0), epochs=50), progress=False)
    y = torch.arange(10).repeat_interleave(100)
    images = sample_prior(model, len(y), y)  # decoder means, grey levels like the classifier's data
    accuracy = float((torch.from_numpy(classifier.predict(flat(images))) == y).float().mean())
    print(f"CVAE conditional accuracy on digits: {accuracy:.1%} of 1000 samples")
    assert accuracy >= 0.90  # measured 98.9%
