import math

import pytest
import torch

from pvae.config import PairConfig, build_pair
from pvae.data import DataConfig, load
from pvae.evaluate import evaluate
from pvae.nets import ConvDecoder, decoder, encoder
from pvae.train import TrainConfig, fit
from tests.conftest import derived_seed


@pytest.fixture(scope="module")
def digits():
    return load(DataConfig("digits"))


def _independent_pixels_log_likelihood(dataset) -> float:
    """Validation log-likelihood (nats per digit) of independent Bernoulli pixels at the training means:
    what a VAE that ignores z can reach at best."""
    p = dataset.train.images().mean(0).clamp(1e-4, 1 - 1e-4)
    x = dataset.val.images()
    return float((x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean())


@pytest.mark.parametrize("net", ["mlp", "conv"])
@pytest.mark.parametrize("x_shape", [(1, 8, 8), (1, 28, 28), (3, 7, 9)])
def test_leading_dimensions_pass_through_like_a_loop_over_slices(net, x_shape):
    enc = encoder(net, x_shape, (32,), 6)
    dec = decoder(net, 5, (32,), x_shape, per_pixel=2)
    x = torch.rand(3, 2, *x_shape)  # (particles, batch, C, H, W)
    z = torch.randn(3, 2, 5)
    features, out = enc(x), dec(z)
    assert features.shape == (3, 2, 6)
    assert out.shape == (3, 2, 2 * math.prod(x_shape))
    for i in range(3):
        torch.testing.assert_close(enc(x[i]), features[i], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(dec(z[i]), out[i], rtol=1e-5, atol=1e-6)
        for j in range(2):
            torch.testing.assert_close(enc(x[i, j]), features[i, j], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(dec(z[i, j]), out[i, j], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("x_shape, per_pixel", [((2, 28, 28), 1), ((1, 28, 28), 2)])
def test_conv_decoder_output_keeps_pixel_positions(x_shape, per_pixel):
    dec = ConvDecoder(4, (), x_shape, per_pixel)
    assert dec.feature_shape == (64, 7, 7)
    # Positive weights keep every ReLU open, so a change travels along every path of the stencil.
    with torch.no_grad():
        for layer in dec.deconvs[::2]:
            layer.weight.fill_(0.01)
            layer.bias.fill_(0.01)
        dec.deconvs[-1].weight[:, 1] = 0.0  # the second output plane (channel 1, or parameter 1) ignores its input
        linear = dec.head[0][-1]
        linear.weight.zero_()
        linear.bias.fill_(1.0)
    base = dec(torch.zeros(4))
    with torch.no_grad():
        linear.bias[5 * 49 + 1 * 7 + 4] += 1.0  # feature map cell (channel 5, row 1, column 4)
    change = (dec(torch.zeros(4)) - base).reshape(2, 28, 28)
    # Two 3×3 stride-2 transposed convs spread cell (1, 4) of the 7×7 map over rows 4·1−3 … 4·1+3
    # and columns 4·4−3 … 4·4+3 of the image; a transposed or channel-last flatten would move it.
    window = torch.zeros(2, 28, 28, dtype=torch.bool)
    window[0, 1:8, 13:20] = True
    assert (change[window] > 0).all()
    assert (change[~window] == 0).all()


@pytest.mark.parametrize("x_shape", [(64,), (28, 28), (1, 1, 28, 28)])
def test_conv_nets_refuse_data_that_are_not_images(x_shape):
    with pytest.raises(ValueError, match=r"needs images of shape \(C, H, W\).*'mlp' net"):
        encoder("conv", x_shape, (32,), 4)
    with pytest.raises(ValueError, match=r"needs images of shape \(C, H, W\).*'mlp' net"):
        decoder("conv", 4, (32,), x_shape)


@pytest.mark.statistical
def test_a_conv_vae_trains_on_digits(digits):
    torch.manual_seed(derived_seed(0))
    model, guide = build_pair(PairConfig(net="conv", z_dim=8, hidden=(128,)), digits.x_shape)
    untrained = evaluate(model, guide, digits.val.images(), num_samples=1)["elbo"]
    history = fit(model, guide, digits, TrainConfig(seed=derived_seed(0), epochs=5, batch_size=64), progress=False)
    last = history[-1]["val_elbo"]
    # Untrained, the decoder says p = ½ per pixel or so: about 64 log ½ = −44.4 nats. Measured over
    # seeds 0-2: −27.4 to −27.2 after the fifth epoch, next to the −27.0 of independent pixels
    # (binarized 8×8 digits are that noisy); the first epoch alone reached −36.1 to −31.7.
    assert last > untrained + 10, (untrained, last)
    assert last > _independent_pixels_log_likelihood(digits) - 1, last


@pytest.mark.slow
@pytest.mark.statistical
def test_a_conv_vae_beats_independent_pixels_on_digits(digits):
    torch.manual_seed(derived_seed(0))
    model, guide = build_pair(PairConfig(net="conv", z_dim=8, hidden=(128,)), digits.x_shape)
    fit(model, guide, digits, TrainConfig(seed=derived_seed(0), epochs=30, batch_size=64, lr=3e-3), progress=False)
    result = evaluate(model, guide, digits.val.images(), num_samples=1)
    # Measured over seeds 0-2: ELBO -24.3 to -24.2 (KL 2.5 to 2.7 nats) against -27.0 for independent pixels.
    assert result["elbo"] > _independent_pixels_log_likelihood(digits) + 1.5, result
    assert result["kl"] > 1, result
