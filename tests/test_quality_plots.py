"""The figures of ``pvae quality``: what they draw, and what they refuse."""

import numpy as np
import pytest
import torch

from pvae.plots.quality import plot_likelihood_draws, plot_spectra


def test_spectra_draw_one_line_per_set_on_a_log_scale_without_zeros():
    freq = np.array([0.1, 0.2, 0.3, 0.4])
    fig = plot_spectra(
        {"data": (freq, np.array([0.4, 0.3, 0.2, 0.1])), "prior": (freq, np.array([0.7, 0.3, 0, 0]))}, 0.25
    )
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert set(lines) == {"data", "prior"}
    assert list(lines["prior"].get_xdata()) == [0.1, 0.2]  # zero power has no place on a log scale
    assert any(line.get_xdata()[0] == 0.25 for line in ax.get_lines())  # the cutoff


def test_spectra_refuse_frequencies_and_powers_of_different_lengths():
    with pytest.raises(ValueError, match="one power per frequency"):
        plot_spectra({"data": (np.arange(3), np.arange(4))})


def test_likelihood_draws_stack_data_means_and_draws_in_three_labelled_rows():
    data, means = torch.zeros(10, 1, 4, 4), torch.full((10, 1, 4, 4), 0.5)
    draws = torch.ones(10, 1, 4, 4)
    fig = plot_likelihood_draws(data, means, draws)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["data", "mean", "draw"]
    grid = ax.get_images()[0].get_array()
    assert grid[1, 1] == 0 and grid[6, 1] == 0.5 and grid[11, 1] == 1  # row by row, 4 pixels and a 1-pixel gap


def test_likelihood_draws_refuse_a_draw_count_that_is_not_one_per_mean():
    with pytest.raises(ValueError, match="one draw per mean"):
        plot_likelihood_draws(torch.zeros(10, 1, 4, 4), torch.zeros(10, 1, 4, 4), torch.zeros(9, 1, 4, 4))
    with pytest.raises(ValueError, match="need 10 images"):
        plot_likelihood_draws(torch.zeros(3, 1, 4, 4), torch.zeros(3, 1, 4, 4), torch.zeros(3, 1, 4, 4))
