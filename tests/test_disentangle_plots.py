"""Figures of a disentanglement study (:mod:`pvae.plots.disentangle`)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from pvae.plots.disentangle import plot_mutual_information


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


MATRIX = np.array([[0.2, 1.1, 0.0], [0.9, 0.05, 0.3]])  # (factors, dims), nats


def test_mutual_information_cells_hold_and_show_the_values_in_nats():
    ax = plot_mutual_information(MATRIX, ["shape", "scale"], dims=[4, 0, 7]).axes[0]
    np.testing.assert_allclose(ax.get_images()[0].get_array(), MATRIX)
    texts = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert ((1, 0), "1.10") in texts and ((0, 1), "0.90") in texts and ((1, 1), "0.05") in texts
    assert len(ax.texts) == 6
    assert [t.get_text() for t in ax.get_xticklabels()] == ["z4", "z0", "z7"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["shape", "scale"]


def test_mutual_information_divided_by_the_factor_entropies_reads_as_fractions():
    entropies = np.array([np.log(3), np.log(6)])  # shape and scale of dSprites, uniform: log 3, log 6 nats
    fig = plot_mutual_information(MATRIX, ["shape", "scale"], entropies)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.get_images()[0].get_array(), MATRIX / entropies[:, None])
    texts = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert ((1, 0), "1.00") in texts and ((0, 1), "0.50") in texts  # 1.1 / log 3 = 1.001, 0.9 / log 6 = 0.502
    assert ax.get_images()[0].get_clim() == (0, 1.0)
    assert fig.axes[1].get_ylabel() == "I(factor; z_j) / H(factor)"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(factor_names=["shape"]), "1 factor names for 2 rows"),
        (dict(entropies=np.array([1.0, 0.0])), "entropies must be 2 positive numbers"),
        (dict(dims=[0, 1]), "2 dimension labels for 3 columns"),
        (dict(matrix=np.zeros(3)), "must be \\(factors, dims\\)"),
    ],
)
def test_mutual_information_refuses_labels_that_do_not_fit_the_matrix(kwargs, message):
    args = dict(matrix=MATRIX, factor_names=["shape", "scale"]) | kwargs
    with pytest.raises(ValueError, match=message):
        plot_mutual_information(**args)
