"""Figures of one trained run (:mod:`pvae.plots.run`)."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

from pvae import data
from pvae.guides.gaussian import GaussianGuide
from pvae.measures import evaluate as ev
from pvae.measures.diagnostics import latent_usage
from pvae.models.vae import VAE
from pvae.plots.run import TRAVERSAL_POINTS, plot_curves, plot_traversals, run_figures, traversal_figure
from tests.conftest import derived_seed


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_curves_are_titled_and_draw_each_series_it_has():
    rows = [
        {"epoch": 1, "train_loss": 50.0, "val_objective": -48.0, "val_elbo": -49.0},
        {"epoch": 2, "train_loss": 40.0, "val_objective": -41.0, "val_elbo": -42.0},
    ]
    ax = plot_curves(rows).axes[0]
    assert ax.get_title() == "learning curves"
    assert [list(line.get_ydata()) for line in ax.lines] == [[-50.0, -40.0], [-48.0, -41.0], [-49.0, -42.0]]
    # a point-mass guide has no ELBO: its line is left out
    ax = plot_curves([{**r, "val_elbo": None} for r in rows]).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train objective (−loss)", "validation objective"]


def test_curves_of_few_epochs_mark_each_epoch():
    """One epoch is one point: drawn as a dot, where a bare line would show nothing; long runs stay lines."""
    row = {"epoch": 1, "train_loss": 50.0, "val_objective": -48.0, "val_elbo": -49.0}
    ax = plot_curves([row]).axes[0]
    assert [(line.get_marker(), list(line.get_ydata())) for line in ax.lines] == [
        ("o", [-50.0]), ("o", [-48.0]), ("o", [-49.0])
    ]  # fmt: skip
    many = [{**row, "epoch": e} for e in range(1, 101)]
    assert {line.get_marker() for line in plot_curves(many).axes[0].lines} == {"None"}


def test_traversals_label_each_row_with_its_dimension_and_kl_and_each_column_with_its_value():
    images = torch.rand(2, 5, 1, 8, 8)
    fig = plot_traversals(images, [3, 1], [2.345, 0.5], span=2.0, title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["z3: KL 2.35 nats", "z1: KL 0.50 nats"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-2.0", "-1.0", "0", "+1.0", "+2.0"]
    grid = ax.get_images()[0].get_array()
    assert grid.shape == (2 * 9 - 1, 5 * 9 - 1)  # 8×8 images with 1-pixel gaps
    assert grid[9 + 2, 9 * 4 + 5] == pytest.approx(float(images[1, 4, 0, 2, 5]))  # row 1, column 4, pixel (2, 5)
    with pytest.raises(ValueError, match="2 rows of images for 1 dimensions"):
        plot_traversals(images, [3], [1.0])


def test_traversal_rows_are_the_active_dimensions_by_the_kl_the_guide_was_set_to():
    """q(z_j | x) = N(a_j x_j, 0.5²) and p(z_j) = N(0, 1): KL_j = ½ (a_j² E[x_j²] + 0.25 − 1 − 2 log 0.5)."""
    torch.manual_seed(derived_seed(30))
    x = torch.randn(300, 1, 2, 2)
    a = torch.tensor([1.0, 0.0, 3.0, 2.0])  # z_1 ignores x: inactive
    model = VAE((1, 2, 2), z_dim=4, hidden=(), likelihood="gaussian")
    guide = GaussianGuide((1, 2, 2), z_dim=4, hidden=())
    with torch.no_grad():
        layer = guide.encoder.net[0]  # (8, 4): loc rows, then log-scale rows
        layer.weight.zero_()
        layer.weight[:4] = torch.diag(a)
        layer.bias.zero_()
        layer.bias[4:] = math.log(0.5)
    second_moment = x.flatten(1).pow(2).mean(0)
    kl = 0.5 * (a**2 * second_moment + 0.25 - 1 - 2 * math.log(0.5))
    usage = latent_usage(model, guide, x, prior_draws=10)
    ax = traversal_figure(model, guide, x, steps=5, usage=usage).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"z{j}: KL {float(kl[j]):.2f} nats" for j in (2, 3, 0)]
    assert ax.get_title() == "latent traversals of datapoint 0: active dimensions by KL"
    assert "prior standard deviations" in ax.get_xlabel()


def test_traversals_draw_the_usage_they_are_given():
    """The figure ranks the dimensions by the usage passed in, not by one of its own: z0 (KL 5) above z2 (KL 1)."""
    torch.manual_seed(derived_seed(31))
    x = torch.rand(20, 1, 2, 2)
    model = VAE((1, 2, 2), z_dim=4, hidden=())
    guide = GaussianGuide((1, 2, 2), z_dim=4, hidden=())
    usage = {"activity": torch.zeros(4), "active": [0, 2], "kl_per_dim": torch.tensor([5.0, 0.0, 1.0, 0.0])}
    ax = traversal_figure(model, guide, x, steps=3, usage=usage).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["z0: KL 5.00 nats", "z2: KL 1.00 nats"]


def test_run_figures_draw_traversals_by_the_callers_usage_and_none_without_it():
    """The traversals rank the dimensions by the usage the caller measured on the first TRAVERSAL_POINTS test
    datapoints (the figure computes none itself); without a usage there is no traversal figure."""
    digits = data.load(data.DataConfig("digits"))
    torch.manual_seed(derived_seed(32))
    model, guide = VAE((1, 8, 8), z_dim=3, hidden=(16,)), GaussianGuide((1, 8, 8), z_dim=3, hidden=(16,))
    test = digits.test
    x, y = test.images(slice(TRAVERSAL_POINTS)), test.y[:TRAVERSAL_POINTS]
    assert len(x) == 360  # digits' whole test split
    usage = latent_usage(model, guide, x, y, prior_draws=50)
    given = run_figures(model, guide, digits, [], n=20, usage=usage)["traversals"].axes[0]
    dims, scores, _ = ev.traversal_order(usage)
    assert [t.get_text() for t in given.get_yticklabels()] == [
        f"z{d}: KL {s:.2f} nats" for d, s in zip(dims, scores, strict=True)
    ]
    assert "traversals" not in run_figures(model, guide, digits, [], n=20)


def test_curves_draw_each_validation_number_over_the_epochs_that_have_it():
    from pvae.plots.run import plot_curves

    rows = [
        {"epoch": 1, "train_loss": 30.0, "val_elbo": -29.0, "val_objective": -29.0},
        {"epoch": 2, "train_loss": 25.0, "val_objective": -26.0},  # a row without val_elbo (a point-mass guide)
        {"epoch": 3, "train_loss": 24.0, "val_elbo": -24.5, "val_objective": -24.5},
    ]
    lines = {line.get_label(): line for line in plot_curves(rows).axes[0].get_lines()}
    assert list(lines["validation ELBO"].get_xdata()) == [1, 3]
    assert list(lines["validation ELBO"].get_ydata()) == [-29.0, -24.5]
    assert list(lines["validation objective"].get_ydata()) == [-29.0, -26.0, -24.5]
    assert list(lines["train objective (−loss)"].get_ydata()) == [-30.0, -25.0, -24.0]
