"""The diagnosis figures draw the numbers they are given: histogram counts, thresholds, sorted
gap and KL bars, colours, the grid of marginals and which figures apply."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from pvae.base import az
from pvae.plots.diagnostics import (
    diagnostic_figures,
    plot_gaps,
    plot_khat,
    plot_kl_per_dim,
    plot_marginals,
    plot_worst_points,
)
from tests.conftest import derived_seed

K_HAT = [0.1, -math.inf, 0.45, 0.62, 0.8, 1.3, 0.3, None]  # None: missing, left out
APPROXIMATION = [1.0, 0.2, 3.0, 0.5, 2.0]
AMORTIZATION = [0.5, 0.1, 0.4, 2.0, 0.0]
KL = [0.01, 2.5, 0.002, 1.2, 0.4, 0.0]
ACTIVITY = [0.001, 0.9, 0.0005, 0.4, 0.05, 0.0001]
ACTIVE = [1, 3, 4]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def results(parts=("importance", "nuts", "gaps", "latent")) -> dict:
    """A fake but consistent :func:`pvae.measures.diagnostics.diagnose` result."""
    out: dict = {"settings": {"active_threshold": 0.01}, "not_applicable": {}}
    if "importance" in parts:
        k = [-math.inf if v is None else v for v in K_HAT]
        out["importance"] = {
            "fraction_k_above_0.7": 2 / len(k),
            "worst": [int(i) for i in np.argsort(k)[::-1]],
            "per_datapoint": {"k_hat": k, "ess": [0.5] * len(k), "ess_raw": [0.4] * len(k)},
        }
    if "gaps" in parts:
        out["gaps"] = {
            "per_datapoint": {"approximation_gap": APPROXIMATION, "amortization_gap": AMORTIZATION},
            "optimization": {},
        }
    if "latent" in parts:
        out["latent"] = {"activity": ACTIVITY, "active": ACTIVE, "kl_per_dim": KL, "kl": sum(KL)}
    return out


def idata(points=3, dims=4):
    rng = np.random.default_rng(derived_seed(0))
    scales = np.array([0.1, 2.0, 0.5, 1.0])[:dims]  # NUTS variance order: dims 1, 3, 2, 0
    nuts = rng.normal(size=(2, 50, points, dims)) * scales
    guide = rng.normal(size=(1, 100, points, dims))
    return az.inference_data(nuts={"z": nuts}, guide={"z": guide}, dims={"z": ["datapoint", "z_dim"]})


def vertical_lines(ax) -> list[float]:
    return sorted(float(line.get_xdata()[0]) for line in ax.lines if len(set(line.get_xdata())) == 1)


def test_khat_histogram_counts_every_datapoint_and_marks_the_thresholds():
    fig = plot_khat(K_HAT)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == 7  # the −inf clipped into the leftmost bin, the None left out
    assert heights[0] >= 1  # the −inf is in the leftmost bin
    left = min(p.get_x() for p in ax.patches)
    right = max(p.get_x() + p.get_width() for p in ax.patches)
    assert left == pytest.approx(0.0) and right == pytest.approx(1.3)
    assert vertical_lines(ax) == [0.5, 0.7]
    assert "28.6%" in ax.get_title()  # 2 of 7 above 0.7
    assert ax.get_xlabel() == "Pareto k̂ of the importance weights"
    assert ax.get_ylabel() == "datapoints"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["good < 0.5", "0.7: unreliable above"]


def test_khat_accepts_a_tensor_and_negative_values():
    fig = plot_khat(torch.tensor([-0.4, 0.2, 0.9, float("-inf")]))
    ax = fig.axes[0]
    assert sum(p.get_height() for p in ax.patches) == 4
    assert min(p.get_x() for p in ax.patches) == pytest.approx(-0.4)
    assert "25.0%" in ax.get_title()


def test_worst_points_shows_data_above_reconstructions_titled_with_k_hat():
    x = torch.rand(3, 1, 5, 5)
    rec = torch.rand(3, 1, 5, 5)
    fig = plot_worst_points(x, rec, [1.234, 0.9, 0.456])
    axes = fig.axes
    assert len(axes) == 6
    assert [ax.get_title() for ax in axes[:3]] == ["1.23", "0.90", "0.46"]
    for i in range(3):
        np.testing.assert_allclose(axes[i].images[0].get_array(), x[i, 0].double().numpy())
        np.testing.assert_allclose(axes[3 + i].images[0].get_array(), rec[i, 0].double().numpy())
    with pytest.raises(ValueError):
        plot_worst_points(x, rec[:2], [1.0, 0.9, 0.4])


def test_marginals_grid_picks_the_dimensions_with_the_largest_nuts_variance():
    fig = plot_marginals(idata(), points=3, dims=2)
    axes = fig.axes
    assert len(axes) == 3 * 2
    assert [ax.get_title() for ax in axes] == [f"x[{n}], z{j}" for n in range(3) for j in (1, 3)]
    for ax in axes:
        assert len(ax.lines) >= 2  # NUTS and the guide
    legends = [ax for ax in axes if ax.get_legend() is not None]
    assert legends == [axes[0]]
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["NUTS", "guide q(z|x)"]


def test_marginals_are_capped_at_what_there_is():
    fig = plot_marginals(idata(points=2, dims=3), points=5, dims=10)
    assert len(fig.axes) == 2 * 3


def test_gap_bars_are_stacked_and_sorted_by_total():
    fig = plot_gaps(results()["gaps"])
    ax = fig.axes[0]
    approximation, amortization = ax.containers
    order = np.argsort(np.add(APPROXIMATION, AMORTIZATION), kind="stable")
    np.testing.assert_allclose([p.get_height() for p in approximation], np.array(APPROXIMATION)[order])
    np.testing.assert_allclose([p.get_height() for p in amortization], np.array(AMORTIZATION)[order])
    np.testing.assert_allclose([p.get_y() for p in amortization], np.array(APPROXIMATION)[order])
    totals = [a.get_height() + b.get_height() for a, b in zip(approximation, amortization, strict=True)]
    assert totals == sorted(totals)
    assert ax.get_ylabel() == "nats"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["approximation gap log p(x) − ELBO(q*)", "amortization gap ELBO(q*) − ELBO(q_φ)"]
    assert "approximation 1.34, amortization 0.6 nats" in ax.get_title()  # the two means


def test_kl_bars_are_sorted_descending_and_inactive_ones_grey():
    fig = plot_kl_per_dim(results()["latent"])
    kl_ax, activity_ax = fig.axes
    heights = [p.get_height() for p in kl_ax.patches]
    assert heights == sorted(KL, reverse=True)
    order = np.argsort(-np.array(KL), kind="stable")
    assert [t.get_text() for t in kl_ax.get_xticklabels()] == [str(j) for j in order]
    for patch, j in zip(kl_ax.patches, order, strict=True):
        expected = to_rgba("tab:blue") if j in ACTIVE else to_rgba("grey")
        assert patch.get_facecolor() == expected
    np.testing.assert_allclose([p.get_height() for p in activity_ax.patches], np.array(ACTIVITY)[order])
    assert activity_ax.get_yscale() == "log"
    assert [float(line.get_ydata()[0]) for line in activity_ax.lines] == [0.01]


def test_kl_per_dim_without_kl_draws_only_the_activity_sorted():
    latent = {"activity": ACTIVITY, "active": ACTIVE}
    fig = plot_kl_per_dim(latent, threshold=0.02)
    (ax,) = fig.axes
    heights = [p.get_height() for p in ax.patches]
    assert heights == sorted(ACTIVITY, reverse=True)
    assert ax.get_yscale() == "log"
    assert [float(line.get_ydata()[0]) for line in ax.lines] == [0.02]
    grey = [p.get_facecolor() == to_rgba("grey") for p in ax.patches]
    assert grey == [False, False, False, True, True, True]


def test_diagnostic_figures_returns_exactly_what_applies():
    figures = diagnostic_figures(results())
    assert set(figures) == {"khat", "gaps", "kl-per-dim"}
    worst = (torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4), [1.1, 0.8])
    figures = diagnostic_figures(results(), idata(), worst)
    assert set(figures) == {"khat", "worst", "marginals", "gaps", "kl-per-dim"}
    assert len(figures["marginals"].axes) == 3 * 4
    assert set(diagnostic_figures(results(parts=("importance", "latent")))) == {"khat", "kl-per-dim"}
    assert set(diagnostic_figures(results(parts=("gaps",)))) == {"gaps"}
    assert diagnostic_figures(results(parts=())) == {}
    # the k̂ figure draws the importance part's numbers
    k_ax = figures["khat"].axes[0]
    assert sum(p.get_height() for p in k_ax.patches) == len(K_HAT)


def test_khat_histogram_ticks_whole_counts():
    fig = plot_khat([0.1, 0.6, 0.8])  # one datapoint per bin: matplotlib alone would tick 0.25, 0.5, ...
    ticks = fig.axes[0].get_yticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def nuts_part(converged: bool) -> dict:
    check = {"max_r_hat": 1.05, "min_ess_bulk": 40.0, "min_ess_tail": 35.0, "divergences": 0}
    if not converged:
        check["reasons"] = ["R-hat 1.050 > 1.01", "bulk ESS 40 < 100"]
    return {"datapoints": 3, "converged": converged, "convergence": check}


def test_marginals_of_unconverged_nuts_say_so_in_the_title():
    figures = diagnostic_figures({**results(parts=()), "nuts": nuts_part(converged=False)}, idata())
    title = figures["marginals"]._suptitle
    assert (
        title.get_text()
        == "NUTS did not converge (R-hat 1.050 > 1.01; bulk ESS 40 < 100): its draws are not the posterior of z"
    )
    assert to_rgba(title.get_color()) == to_rgba("tab:red")
    figures = diagnostic_figures({**results(parts=()), "nuts": nuts_part(converged=True)}, idata())
    assert figures["marginals"]._suptitle.get_text() == "posterior marginals of z: NUTS against the guide"
