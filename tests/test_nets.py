import math

import pytest
import torch

from pvae.data import DataConfig, load
from pvae.engine.config import PairConfig, build_pair
from pvae.engine.nets import ConvDecoder, decoder, encoder
from pvae.engine.train import TrainConfig, fit, make_loss, step
from pvae.measures.evaluate import evaluate
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


# --------------------------------------------------------------------------------------------
# The "burgess" family: Burgess et al. (2018) as Locatello et al. (2019) tabulate it (Table 1).


def _squares(n: int, seed: int) -> torch.Tensor:
    """``n`` binary 64×64 images, each one filled square of side 8-24 at a random place."""
    g = torch.Generator().manual_seed(seed)
    side = torch.randint(8, 25, (n,), generator=g)
    top, left = (torch.rand(n, generator=g) * (64 - side)).long(), (torch.rand(n, generator=g) * (64 - side)).long()
    rows, cols = torch.arange(64).view(1, 64, 1), torch.arange(64).view(1, 1, 64)
    inside = lambda start, coord: (coord >= start.view(-1, 1, 1)) & (coord < (start + side).view(-1, 1, 1))  # noqa: E731
    return (inside(top, rows) & inside(left, cols)).float().unsqueeze(1)  # (n, 1, 64, 64)


def _layers(net: torch.nn.Module) -> list[tuple]:
    """Every layer with weights, in order: (kind, in, out, kernel, stride, padding) or (kind, in, out)."""
    rows = []
    for layer in net.modules():
        if isinstance(layer, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            kind = "conv" if isinstance(layer, torch.nn.Conv2d) else "upconv"
            rows.append((kind, layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding))
        elif isinstance(layer, torch.nn.Linear):
            rows.append(("dense", layer.in_features, layer.out_features))
    return rows


def test_burgess_nets_are_table_1_of_locatello_et_al_layer_for_layer():
    enc = encoder("burgess", (1, 64, 64), (256,), 20)  # z = 10: a mean and a log-scale each
    dec = decoder("burgess", 10, (256,), (1, 64, 64))
    four, two, one = (4, 4), (2, 2), (1, 1)
    assert _layers(enc) == [
        ("conv", 1, 32, four, two, one),  # 64×64 → 32×32
        ("conv", 32, 32, four, two, one),  # → 16×16
        ("conv", 32, 64, four, two, one),  # → 8×8
        ("conv", 64, 64, four, two, one),  # → 4×4: 64·4·4 = 1024 features
        ("dense", 1024, 256),
        ("dense", 256, 20),
    ]
    assert _layers(dec) == [
        ("dense", 10, 256),
        ("dense", 256, 1024),  # the 4×4×64 feature map
        ("upconv", 64, 64, four, two, one),  # → 8×8
        ("upconv", 64, 32, four, two, one),  # → 16×16
        ("upconv", 32, 32, four, two, one),  # → 32×32
        ("upconv", 32, 1, four, two, one),  # → 64×64 logits
    ]
    relus = lambda net: sum(isinstance(m, torch.nn.ReLU) for m in net.modules())  # noqa: E731
    assert relus(enc) == 5 and relus(dec) == 5  # after every layer but each net's last
    # By hand, weights + biases: encoder 1·32·16+32 = 544, 32·32·16+32 = 16,416, 32·64·16+64 = 32,832,
    # 64·64·16+64 = 65,600, 1024·256+256 = 262,400, 256·20+20 = 5,140: 382,932 in all. Decoder
    # 10·256+256 = 2,816, 256·1024+1024 = 263,168, 64·64·16+64 = 65,600, 64·32·16+32 = 32,800,
    # 32·32·16+32 = 16,416, 32·1·16+1 = 513: 381,313 in all.
    assert sum(p.numel() for p in enc.parameters()) == 382_932
    assert sum(p.numel() for p in dec.parameters()) == 381_313


@pytest.mark.parametrize("x_shape, per_pixel", [((1, 64, 64), 1), ((3, 32, 48), 2)])
def test_burgess_nets_pass_leading_dimensions_through(x_shape, per_pixel):
    enc = encoder("burgess", x_shape, (32,), 6)
    dec = decoder("burgess", 5, (32,), x_shape, per_pixel)
    x, z = torch.rand(3, 2, *x_shape), torch.randn(3, 2, 5)  # (particles, batch, ...)
    features, out = enc(x), dec(z)
    assert features.shape == (3, 2, 6) and out.shape == (3, 2, per_pixel * math.prod(x_shape))
    for i in range(3):
        for j in range(2):
            torch.testing.assert_close(enc(x[i, j]), features[i, j], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(dec(z[i, j]), out[i, j], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("x_shape", [(1, 28, 28), (1, 64, 60), (64, 64)])
def test_burgess_nets_refuse_images_they_cannot_halve_four_times(x_shape):
    message = r"multiples of 16.*--net conv" if len(x_shape) == 3 else r"needs images of shape \(C, H, W\)"
    with pytest.raises(ValueError, match=message):
        encoder("burgess", x_shape, (256,), 20)
    with pytest.raises(ValueError, match=message):
        decoder("burgess", 10, (256,), x_shape)


@pytest.mark.statistical
def test_one_step_on_a_burgess_pair_lowers_the_loss_of_its_batch():
    torch.manual_seed(derived_seed(40))
    model, guide = build_pair(PairConfig(net="burgess", z_dim=10, hidden=(256,)), (1, 64, 64))
    batch = _squares(16, derived_seed(41))
    loss_fn = make_loss(model, guide, TrainConfig(elbo="meanfield"))

    @torch.no_grad()
    def loss() -> float:
        torch.manual_seed(derived_seed(42))  # the same draws of z before and after the step
        return float(loss_fn(batch)) / len(batch)

    before = loss()
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-4)
    step(loss_fn, optimizer, batch)
    # A first Adam step moves every weight by lr against its gradient's sign, a descent direction:
    # at the same draws the loss falls. Measured over seeds 0-2: by 1.4 to 1.8 of 2,720 to 3,170 nats.
    assert loss() < before - 0.5, before


@pytest.mark.statistical
def test_a_burgess_pair_trains_on_64x64_images():
    torch.manual_seed(derived_seed(43))
    model, guide = build_pair(PairConfig(net="burgess", z_dim=10, hidden=(256,)), (1, 64, 64))
    x = _squares(64, derived_seed(44))
    untrained = evaluate(model, guide, x, num_samples=1)["elbo"]
    loss_fn = make_loss(model, guide, TrainConfig(elbo="meanfield"))
    loss_fn(x[:32])  # parameters exist before the optimizer is built
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)
    for i in range(30):
        step(loss_fn, optimizer, x[32 * (i % 2) : 32 * (i % 2) + 32])
    trained = evaluate(model, guide, x, num_samples=1)["elbo"]
    p = x.mean(0).clamp(1e-4, 1 - 1e-4)
    independent_pixels = float((x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean())
    # Untrained, the ELBO is about −2,560 to −2,700 nats (logits near 0: 4096 log ½ = −2,839); measured
    # over seeds 0-2, 30 steps reach −1,090 to −1,180, within 190 to 250 nats of independent pixels
    # at the images' own means (−900 to −930), what a decoder learns first.
    assert trained > untrained + 1000, (untrained, trained)
    assert trained > independent_pixels - 500, (independent_pixels, trained)
