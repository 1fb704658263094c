"""The measurements of the estimator comparison: signal-to-noise, cost, training, tables."""

import math

import pytest
import torch

from pvae import data
from pvae.engine.config import PairConfig, build_pair
from pvae.engine.train import TrainConfig
from pvae.measures.compare import (
    Estimator,
    bound_values,
    estimator_grid,
    gradient_stats,
    ordering,
    ordering_markdown,
    results_markdown,
    step_cost,
    train_each,
)
from pvae.measures.compare.measure import _snr_summary
from tests.conftest import derived_seed


@pytest.fixture(scope="module")
def digits():
    return data.load(data.DataConfig("digits"))


def _pair(dataset, seed=0):
    torch.manual_seed(derived_seed(seed))
    return build_pair(PairConfig(z_dim=4, hidden=(64,)), dataset.x_shape)


def test_snr_summary_is_mean_over_std_per_parameter():
    draws = torch.tensor([[1.0, 0.0, 5.0], [3.0, 2.0, 5.0], [2.0, -2.0, 5.0]], dtype=torch.float64)
    stats = _snr_summary(draws.sum(0), (draws**2).sum(0), len(draws))
    # column 0: mean 2, sd 1 → 2; column 1: mean 0 → 0; column 2 has no noise and no SNR
    assert stats["snr_mean"] == pytest.approx(1.0)
    assert stats["snr_median"] == 0.0  # torch's median of two values is the lower
    assert stats["variance"] == pytest.approx((1.0 + 4.0 + 0.0) / 3)
    assert stats["mean_norm"] == pytest.approx(math.hypot(2.0, 0.0, 5.0))


def test_a_constant_gradient_has_no_noise_and_no_snr():
    """A large gradient that never changes: shifted sums give a variance of exactly 0, where
    Σg² − n·mean² would leave rounding error and an SNR of about 1e8."""
    draws = torch.tensor([[1e4 + 0.1, 3.0], [1e4 + 0.1, 1.0], [1e4 + 0.1, 2.0]], dtype=torch.float64)
    shift = draws[0]
    stats = _snr_summary((draws - shift).sum(0), ((draws - shift) ** 2).sum(0), 3, shift)
    assert stats["snr_mean"] == pytest.approx(2.0)  # the second parameter only: mean 2, sd 1
    assert stats["mean_norm"] == pytest.approx(math.hypot(1e4 + 0.1, 2.0))


@pytest.mark.statistical
def test_averaging_k_particles_divides_the_gradient_variance_by_k(digits):
    model, guide = _pair(digits)
    x = digits.training_batch(digits.test.images(slice(8)))
    one = gradient_stats(model, guide, x, Estimator("trace", 1), repeats=300)
    eight = gradient_stats(model, guide, x, Estimator("trace", 8), repeats=300)
    for part in ("encoder", "decoder"):
        ratio = one[part]["variance"] / eight[part]["variance"]
        # K iid particles: variance / K exactly in expectation; 300 repeats leave about ±10%
        assert 6.5 < ratio < 9.5, (part, ratio)
        # SNR grows as sqrt(K) for the averaged ELBO (Rainforth et al., 2018)
        assert eight[part]["snr_mean"] > 2 * one[part]["snr_mean"]
    assert one["encoder"]["parameters"] == sum(p.numel() for p in guide.parameters())
    assert one["decoder"]["parameters"] == sum(p.numel() for p in model.parameters())


@pytest.mark.statistical
def test_iwae_encoder_snr_falls_with_k_and_dreg_repairs_it():
    """Rainforth et al. (2018): the importance-weighted bound's inference-network SNR decreases
    with K while the generative network's increases; DReG (Tucker et al., 2018) removes the
    decrease. Checked on a probabilistic PCA whose guide is not its posterior.

    The pPCA, its guide and the batch define the problem and are fixed (how far K = 100 is from
    the asymptotic regime depends on them: another draw gave an IWAE encoder SNR that rose with K);
    the 500 gradient draws follow the test seed. An SNR of s estimated from 500 draws has sd
    √((1 + s²/2) / 500) per parameter, and each line below averages 16-24 parameters: the encoder
    ratios have relative sd near 4%, the decoder ones near 1%, against margins of 30% or more."""
    from pvae.guides.gaussian import GaussianGuide
    from pvae.models.linear import LinearGaussian

    torch.manual_seed(0)
    model, guide = LinearGaussian((5,), z_dim=2), GaussianGuide((5,), z_dim=2, hidden=())
    x = torch.randn(8, 5)
    torch.manual_seed(derived_seed(1))
    snr = {}
    for est in estimator_grid(["iwae", "dreg"], [1, 100]):
        stats = gradient_stats(model, guide, x, est, repeats=500)
        snr[est.label] = {part: stats[part]["snr_mean"] for part in ("encoder", "decoder")}
    # measured: iwae encoder 0.63 → 0.30, decoder 1.6 → 9.3; dreg encoder 0.79 → 0.92
    assert snr["iwae K=100"]["encoder"] < 0.7 * snr["iwae K=1"]["encoder"]
    assert snr["iwae K=100"]["decoder"] > 3 * snr["iwae K=1"]["decoder"]
    assert snr["dreg K=100"]["encoder"] > 2.5 * snr["iwae K=100"]["encoder"]
    assert snr["dreg K=100"]["encoder"] > 0.9 * snr["dreg K=1"]["encoder"]
    # the model's gradient is the same estimator in both
    assert snr["dreg K=100"]["decoder"] == pytest.approx(snr["iwae K=100"]["decoder"], rel=0.1)


def test_step_cost_leaves_the_pair_alone_and_memory_grows_with_k(digits):
    model, guide = _pair(digits)
    before = [p.clone() for p in model.parameters()]
    x = digits.training_batch(digits.train.images(slice(64)))
    small = step_cost(model, guide, x, Estimator("trace", 1), steps=3, warmup=1)
    large = step_cost(model, guide, x, Estimator("trace", 32), steps=3, warmup=1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert small["seconds"] > 0 and small["seconds_iqr"][0] <= small["seconds"] <= small["seconds_iqr"][1]
    # the decoder's activations (64·32 rows of 64 pixels and 64 hidden units) dominate a K=32 step
    assert large["peak_mib"] > 10 * small["peak_mib"]
    assert large["peak_mib"] > 64 * 32 * 64 * 4 / 2**20


def test_train_each_gives_every_estimator_the_same_start_and_budget(digits):
    test = digits.training_batch(digits.test.images(slice(50)))
    base = TrainConfig(batch_size=128, seed=derived_seed(4))
    rows = train_each(lambda: _pair(digits, 7), digits, test, [Estimator("trace"), Estimator("iwae", 3)], base, 2)
    assert [r["label"] for r in rows] == ["trace K=1", "iwae K=3"]
    assert all(r["budget"] == "epochs" and r["epochs"] == pytest.approx(2.0) for r in rows)
    assert all(r["elbo"] < r["log_px"] < 0 for r in rows)
    # paired differences against the first estimator: the same test points, so the same mean difference
    assert rows[0]["log_px_diff"] == 0.0
    assert rows[1]["log_px_diff"] == pytest.approx(rows[1]["log_px"] - rows[0]["log_px"], abs=1e-4)
    assert rows[1]["log_px_diff_se"] < rows[1]["log_px_se"]
    timed = train_each(lambda: _pair(digits, 7), digits, test, [Estimator("trace")], base, 50, seconds=0.0)
    steps_per_epoch = math.ceil(len(digits.train) / 128)
    assert timed[0]["budget"] == "seconds" and timed[0]["epochs"] == pytest.approx(1 / steps_per_epoch)


def test_results_markdown_has_one_row_per_estimator_and_a_column_per_k(digits):
    model, guide = _pair(digits)
    x = digits.training_batch(digits.test.images(slice(20)))
    grid = estimator_grid(["trace", "iwae", "renyi"], [1, 4], alpha=0.3)
    values = bound_values(model, guide, x, grid, repeats=3)
    stats = [{**e.as_dict(), **gradient_stats(model, guide, x[:4], e, repeats=3)} for e in grid]
    cost = [{**e.as_dict(), "seconds": 0.002, "seconds_iqr": (0.001, 0.003), "peak_mib": 1.5, "steps": 3} for e in grid]
    settings = {
        "points": 20,
        "repeats": 3,
        "grad_points": 4,
        "grad_repeats": 3,
        "cost_batch": 8,
        "cost_steps": 3,
    }
    results = {
        "settings": settings,
        "values": values,
        "exact_log_px": None,
        "ordering": ordering(values),
        "gradients": stats,
        "cost": cost,
        "training": [],
    }
    text = results_markdown(results, "test")
    assert "| estimator | K=1 | K=4 |" in text
    iwae = next(line for line in text.splitlines() if line.startswith("| iwae |"))
    expected = next(r for r in values if r["label"] == "iwae K=4")
    assert f"{expected['mean']:.3f} ± {expected['se']:.3f}" in iwae
    assert any(line.startswith("| renyi α=0.3 |") for line in text.splitlines())
    assert "2.0 ms · 1.5 MiB" in text


def test_compiled_losses_are_timed_as_their_own_rows(digits):
    model, guide = _pair(digits)
    x = digits.training_batch(digits.train.images(slice(64)))
    eager = step_cost(model, guide, x, Estimator("trace", 4), steps=3, warmup=1)
    traced = step_cost(model, guide, x, Estimator("trace", 4, jit=True), steps=3, warmup=1)
    assert Estimator("trace", 4, jit=True).label == "trace --jit K=4"
    # the same tensors are allocated, replayed by the trace: memory within a third of the eager step's
    assert traced["peak_mib"] == pytest.approx(eager["peak_mib"], rel=0.35)
    assert traced["seconds"] > 0


def test_plot_step_cost_draws_a_compiled_loss_dashed_in_its_estimators_colour():
    from pvae.plots.comparison import estimator_color, plot_step_cost

    rows = [
        {**Estimator("trace", k, jit=jit).as_dict(), "seconds": s, "seconds_iqr": (s, s), "peak_mib": 1.0, "steps": 3}
        for k, jit, s in [(1, False, 0.004), (5, False, 0.006), (1, True, 0.003), (5, True, 0.005)]
    ]
    fig = plot_step_cost(rows)
    lines = {line.get_label(): line for line in fig.axes[1].get_lines()}
    assert set(lines) == {"trace", "trace --jit"}
    assert lines["trace --jit"].get_linestyle() == "--" and lines["trace"].get_linestyle() == "-"
    assert lines["trace --jit"].get_color() == lines["trace"].get_color()
    assert tuple(lines["trace"].get_color()) == tuple(estimator_color("trace"))[: len(lines["trace"].get_color())]


def _bound(estimator: str, k: int, mean: float, se: float) -> dict:
    return {**Estimator(estimator, k).as_dict(), "mean": mean, "se": se}


def test_ordering_prints_only_true_inequalities_and_says_what_holds_within_noise():
    # the report that was wrong: the ELBO's estimate above IWAE-1's (the same bound), printed with ≤
    rows = [
        _bound("graph", 5, -23.648, 0.010),
        _bound("dreg", 1, -23.694, 0.020),
        _bound("iwae", 5, -23.100, 0.010),
    ]
    order = ordering(rows)
    assert order["holds"]
    assert [link["relation"] for link in order["links"]] == ["≈", "≤"]
    assert order["links"][0]["difference"] == pytest.approx(0.046)
    assert order["links"][0]["tolerance"] == pytest.approx(3 * math.hypot(0.010, 0.020))
    text = ordering_markdown(order)
    assert text == (
        "Ordering ELBO ≤ IWAE-K ≤ log p(x) holds within 3 standard errors: ELBO (graph K=5) -23.648 ≈ "
        "IWAE-1 (dreg K=1) -23.694 (lower by 0.046, within 3 SE = 0.067) ≤ IWAE-5 (iwae K=5) -23.100."
    )
    # every "a ≤ b" the sentence prints is true of the printed numbers
    chain = order["chain"]
    for link, (_, lower, _), (_, upper, _) in zip(order["links"], chain[:-1], chain[1:], strict=True):
        assert (link["relation"] == "≤") == (lower <= upper)


def test_ordering_in_order_holds_plainly_and_a_violation_is_named():
    rows = [_bound("trace", 1, -30.0, 0.1), _bound("iwae", 5, -29.0, 0.1)]
    assert ordering_markdown(ordering(rows, log_px=-28.5)) == (
        "Ordering ELBO ≤ IWAE-K ≤ log p(x) holds: ELBO (trace K=1) -30.000 ≤ IWAE-5 (iwae K=5) -29.000 "
        "≤ log p(x) -28.500."
    )
    order = ordering(rows, log_px=-29.5)  # IWAE-5 above log p(x) by 5 SE
    assert not order["holds"] and [link["relation"] for link in order["links"]] == ["≤", ">"]
    text = ordering_markdown(order)
    assert text.startswith("Ordering ELBO ≤ IWAE-K ≤ log p(x) is violated: IWAE-5 (iwae K=5) = -29.000 ± 0.100 exceeds")
    assert "-29.000 > log p(x) -29.500" in text
