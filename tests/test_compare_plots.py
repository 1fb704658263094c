"""The comparison figures draw the numbers they are given: positions, error bars, scales, colours."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba

from pvae.plots.comparison import (
    estimator_color,
    plot_bound_values,
    plot_gradient_snr,
    plot_step_cost,
    plot_training_results,
)

KS = [1, 5, 50]


def fields(name: str, k: int, alpha: float | None = None) -> dict:
    """What :meth:`pvae.measures.compare.Estimator.as_dict` gives."""
    setting = f"{name}{f' α={alpha:g}' if alpha is not None else ''}"
    return {"estimator": name, "particles": k, "alpha": alpha, "setting": setting, "label": f"{setting} K={k}"}


def value_rows(ks=KS) -> list[dict]:
    rows = []
    for i, k in enumerate(ks):
        rows.append({**fields("trace", k), "mean": -110.0 + 0.1 * i, "se": 0.5, "sd": 5.0, "repeats": 100})
        rows.append({**fields("iwae", k), "mean": -105.0 + i, "se": 0.1 * (i + 1), "sd": 1.0, "repeats": 100})
        rows.append({**fields("renyi", k, 0.5), "mean": -107.0 + i, "se": 0.2, "sd": 2.0, "repeats": 100})
    return rows


def grad_rows(ks=KS) -> list[dict]:
    def group(snr, var):
        return {"snr_mean": snr, "snr_median": snr, "variance": var, "mean_norm": 1.0, "parameters": 10, "repeats": 50}

    rows = []
    for k in ks:
        # encoder and decoder numbers differ by orders of magnitude, so a swap cannot pass unseen
        rows.append({**fields("iwae", k), "encoder": group(1.0 / k, 10.0 / k), "decoder": group(100.0 * k, 1e-3 * k)})
        rows.append({**fields("dreg", k), "encoder": group(2.0 * k, 1.0), "decoder": group(300.0 * k, 2e-3)})
    return rows


def cost_rows(ks=KS) -> list[dict]:
    rows = []
    for k in ks:
        s = 0.01 * k
        cost = {"seconds": s, "seconds_iqr": (0.8 * s, 1.5 * s), "peak_mib": 2.0 * k, "steps": 20}
        rows.append({**fields("iwae", k), **cost})
    return rows


def training_rows(budgets=("epochs", "seconds")) -> list[dict]:
    rows = []
    for budget in budgets:
        for i, (name, k, alpha) in enumerate([("trace", 1, None), ("iwae", 5, None), ("renyi", 5, 0.5)]):
            rows.append(
                {
                    **fields(name, k, alpha),
                    "budget": budget,
                    "epochs": 10.0 if budget == "epochs" else 20.0 - 4.5 * i,
                    "train_seconds": 3.0 + i,
                    "elbo": -100.0 - i,
                    "log_px": -97.0 - 2.0 * i - (0.5 if budget == "seconds" else 0.0),
                    "log_px_se": 0.1 * (i + 1),
                    "iwae_samples": 1000,
                }
            )
    return rows


def line(ax, label: str):
    """The one line of ``ax`` with this legend label (for error bars, the container holds the label)."""
    lines = [ln for ln in ax.get_lines() if ln.get_label() == label]
    lines += [c.lines[0] for c in ax.containers if c.get_label() == label and hasattr(c, "has_xerr")]
    (found,) = lines
    return found


def xdata(ax, label: str) -> np.ndarray:
    """x values of the line labelled ``label``, as floats (error-bar lines hold objects)."""
    return np.asarray(line(ax, label).get_xdata(), dtype=float)


def ydata(ax, label: str) -> np.ndarray:
    """y values of the line labelled ``label``, as floats."""
    return np.asarray(line(ax, label).get_ydata(), dtype=float)


def errorbar(ax, label: str):
    """The error-bar container of ``ax`` with this legend label."""
    (found,) = [c for c in ax.containers if c.get_label() == label]
    return found


def bar_extents(container) -> np.ndarray:
    """Per bar of an error-bar container: ``(lower, upper)`` ends of its vertical or horizontal segment."""
    segments = container.lines[2][0].get_segments()
    axis = [1 if s[0, 0] == s[1, 0] else 0 for s in segments]  # vertical bars vary in y, horizontal in x
    return np.array([[s[:, a].min(), s[:, a].max()] for s, a in zip(segments, axis, strict=True)])


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_bound_values_lines_error_bars_and_exact():
    rows = value_rows()
    fig = plot_bound_values(rows, exact_log_px=-100.0)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_title() == "bounds at fixed parameters"
    assert "nats" in ax.get_ylabel() and "K" in ax.get_xlabel()
    np.testing.assert_allclose(ax.get_xticks(), KS)  # ticked at exactly the K values
    iwae = [r for r in rows if r["estimator"] == "iwae"]
    np.testing.assert_allclose(xdata(ax, "iwae"), KS)
    np.testing.assert_allclose(ydata(ax, "iwae"), [r["mean"] for r in iwae])
    ends = bar_extents(errorbar(ax, "iwae"))
    np.testing.assert_allclose((ends[:, 1] - ends[:, 0]) / 2, [2 * r["se"] for r in iwae])
    np.testing.assert_allclose(ends.mean(1), [r["mean"] for r in iwae])
    trace = [r for r in rows if r["estimator"] == "trace"]
    np.testing.assert_allclose(ydata(ax, "trace"), [r["mean"] for r in trace])
    np.testing.assert_allclose(
        ydata(ax, "renyi α=0.5"),  # alpha in the legend label
        [r["mean"] for r in rows if r["estimator"] == "renyi"],
    )
    exact = line(ax, "exact log p(x)")
    np.testing.assert_allclose(exact.get_ydata(), [-100.0, -100.0])
    assert exact.get_linestyle() == "--"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"trace", "iwae", "renyi α=0.5", "exact log p(x)"} <= set(legend)
    plt.close(fig)


def test_bound_values_without_exact_and_one_k_and_unsorted_rows():
    rows = value_rows(ks=[5])
    fig = plot_bound_values(rows)
    (ax,) = fig.axes
    assert all(ln.get_label() != "exact log p(x)" for ln in ax.get_lines())
    np.testing.assert_allclose(xdata(ax, "iwae"), [5])
    np.testing.assert_allclose(ydata(ax, "iwae"), [-105.0])
    fig.canvas.draw()  # a single point on a log axis lays out without warnings
    plt.close(fig)
    shuffled = list(reversed(value_rows()))  # rows in any order: each line still runs in increasing K
    fig = plot_bound_values(shuffled)
    np.testing.assert_allclose(xdata(fig.axes[0], "iwae"), KS)
    np.testing.assert_allclose(ydata(fig.axes[0], "iwae"), [-105.0, -104.0, -103.0])
    plt.close(fig)


def test_gradient_snr_panels_encoder_decoder_not_swapped():
    rows = grad_rows()
    fig = plot_gradient_snr(rows)
    assert len(fig.axes) == 4
    (enc, dec), (enc_var, dec_var) = np.array(fig.axes).reshape(2, 2)
    assert enc.get_title() == "encoder (guide) parameters" and dec.get_title() == "decoder (model) parameters"
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "SNR = |mean| / std" in fig._suptitle.get_text() and "50 repeats" in fig._suptitle.get_text()
    for ax, group, key in [(enc, "encoder", "snr_mean"), (dec, "decoder", "snr_mean")] + [
        (enc_var, "encoder", "variance"),
        (dec_var, "decoder", "variance"),
    ]:
        for name in ("iwae", "dreg"):
            mine = [r for r in rows if r["estimator"] == name]
            np.testing.assert_allclose(xdata(ax, name), KS)
            np.testing.assert_allclose(ydata(ax, name), [r[group][key] for r in mine])
    plt.close(fig)


def test_gradient_snr_gaps_for_undefined_snr():
    rows = grad_rows(ks=[1])
    rows[0]["encoder"]["snr_mean"] = float("nan")  # no noisy parameter: no SNR
    rows[1]["decoder"]["variance"] = 0.0  # cannot sit on a log axis
    fig = plot_gradient_snr(rows)
    enc, dec, _, dec_var = fig.axes
    assert np.isnan(ydata(enc, "iwae")).all()
    assert np.isnan(ydata(dec_var, "dreg")).all()
    np.testing.assert_allclose(ydata(dec, "iwae"), [100.0])
    fig.canvas.draw()
    plt.close(fig)


def test_colour_per_estimator_same_in_every_figure():
    values = plot_bound_values(value_rows())
    grads = plot_gradient_snr(grad_rows())
    costs = plot_step_cost(cost_rows())
    training = plot_training_results(training_rows())
    iwae = to_rgba(estimator_color("iwae"))
    assert iwae != to_rgba(estimator_color("dreg")) != to_rgba(estimator_color("renyi"))
    assert to_rgba(line(values.axes[0], "iwae").get_color()) == iwae
    for ax in grads.axes:
        assert to_rgba(line(ax, "iwae").get_color()) == iwae
        assert to_rgba(line(ax, "dreg").get_color()) == to_rgba(estimator_color("dreg"))
    for ax in costs.axes:
        assert to_rgba(line(ax, "iwae").get_color()) == iwae
    for ax in training.axes:
        bars = ax.containers[0] if hasattr(ax.containers[0], "patches") else ax.containers[1]
        assert to_rgba(bars.patches[1].get_facecolor())[:3] == iwae[:3]  # second row is iwae
    names = ["trace", "meanfield", "graph", "iwae", "renyi", "dreg", "enum", "tcvae"]
    assert len({to_rgba(estimator_color(n)) for n in names}) == 8
    for fig in (values, grads, costs, training):
        plt.close(fig)


def test_step_cost_medians_iqr_and_memory():
    rows = cost_rows()
    fig = plot_step_cost(rows)
    time_ax, memory_ax = fig.axes
    assert time_ax.get_xscale() == "log" and memory_ax.get_xscale() == "log"
    assert "seconds" in time_ax.get_ylabel() and "MiB" in memory_ax.get_ylabel()
    np.testing.assert_allclose(xdata(time_ax, "iwae"), KS)
    np.testing.assert_allclose(ydata(time_ax, "iwae"), [r["seconds"] for r in rows])
    np.testing.assert_allclose(bar_extents(errorbar(time_ax, "iwae")), [r["seconds_iqr"] for r in rows])
    np.testing.assert_allclose(ydata(memory_ax, "iwae"), [r["peak_mib"] for r in rows])
    plt.close(fig)


def test_training_results_bars_annotations_and_limits():
    rows = training_rows()
    fig = plot_training_results(rows)
    assert len(fig.axes) == 2
    for ax, budget, title in zip(fig.axes, ("epochs", "seconds"), ("same epochs", "same wall-clock time"), strict=True):
        mine = [r for r in rows if r["budget"] == budget]
        assert ax.get_title() == title and ax.get_xlabel() == "test log p(x), nats per datapoint"
        patches = [p for p in ax.patches if p.get_height() > 0]
        assert len(patches) == 3
        ends = [p.get_x() + p.get_width() for p in sorted(patches, key=lambda p: p.get_y())]
        np.testing.assert_allclose(ends, [r["log_px"] for r in mine])  # each bar ends at its log p(x)
        assert [t.get_text() for t in ax.get_yticklabels()] == [r["label"] for r in mine]
        (bars,) = [c for c in ax.containers if hasattr(c, "has_xerr")]
        ends = bar_extents(bars)
        np.testing.assert_allclose((ends[:, 1] - ends[:, 0]) / 2, [r["log_px_se"] for r in mine])
        texts = [t.get_text() for t in ax.texts]
        assert len(texts) == 3
        for text, r in zip(texts, mine, strict=True):
            assert text.startswith(f"{r['epochs']:.1f} ep")
        # limits around the data, not from 0: a few nats fill most of the axis
        low, high = ax.get_xlim()
        assert low < min(r["log_px"] - r["log_px_se"] for r in mine) and high > max(r["log_px"] for r in mine)
        assert high < 0 and high - low < 20
    assert "10.0 ep" in fig.axes[0].texts[0].get_text() and "20.0 ep" in fig.axes[1].texts[0].get_text()
    plt.close(fig)


def test_training_results_missing_budget_and_empty():
    fig = plot_training_results(training_rows(budgets=("epochs",)))
    (ax,) = fig.axes
    assert ax.get_title() == "same epochs"
    fig.canvas.draw()
    plt.close(fig)
    fig = plot_training_results(training_rows(budgets=("seconds",)))
    assert [ax.get_title() for ax in fig.axes] == ["same wall-clock time"]
    plt.close(fig)
    fig = plot_training_results([])
    assert "no training results" in fig.axes[0].texts[0].get_text()
    plt.close(fig)


def test_training_results_with_paired_differences_draw_the_differences():
    rows = training_rows()
    for r in rows:
        first = next(f for f in rows if f["budget"] == r["budget"])
        r["log_px_diff"] = r["log_px"] - first["log_px"]
        r["log_px_diff_se"] = 0.02
    fig = plot_training_results(rows)
    for ax, budget in zip(fig.axes, ("epochs", "seconds"), strict=True):
        mine = [r for r in rows if r["budget"] == budget]
        patches = sorted((p for p in ax.patches if p.get_height() > 0), key=lambda p: p.get_y())
        # bars start at 0 and end at the difference from the first row
        np.testing.assert_allclose([p.get_x() for p in patches], 0.0, atol=1e-12)
        np.testing.assert_allclose([p.get_width() for p in patches], [r["log_px_diff"] for r in mine])
        (bars,) = [c for c in ax.containers if hasattr(c, "has_xerr")]
        ends = bar_extents(bars)
        np.testing.assert_allclose((ends[:, 1] - ends[:, 0]) / 2, 0.04)  # ±2 paired standard errors
        assert [t.get_text() for t in ax.texts] == [f"{r['log_px']:.2f}, {r['epochs']:.1f} ep" for r in mine]
        assert "minus trace K=1's" in ax.get_xlabel()
