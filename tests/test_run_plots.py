"""Figures of one trained run (:mod:`pvae.plots.run`)."""

import matplotlib.pyplot as plt
import pytest

from pvae.plots.run import plot_curves


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
