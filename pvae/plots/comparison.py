"""Figures comparing ELBO estimators (the rows of :mod:`pvae.measures.compare`, ``pvae compare-elbos``): bound
values, gradient signal-to-noise, step cost and the training results; one fixed colour per estimator.
"""

import math

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

# tab10's eighth colour is grey, the colour of names not listed: tcvae takes the ninth
_ESTIMATOR_COLORS = {
    name: plt.get_cmap("tab10")(i)
    for i, name in zip(
        (0, 1, 2, 3, 4, 5, 6, 8), ("trace", "meanfield", "graph", "iwae", "renyi", "dreg", "enum", "tcvae"), strict=True
    )
}


def estimator_color(name: str) -> tuple:
    """The fixed colour of an estimator, the same in every comparison figure.

    :param name: an estimator name (``trace``, ``meanfield``, ``graph``, ``iwae``, ``renyi``,
        ``dreg``, ``enum``, ``tcvae``); any other name is grey.
    :returns: an RGBA tuple.
    """
    return _ESTIMATOR_COLORS.get(name, (0.5, 0.5, 0.5, 1.0))


def _series(rows: list[dict]) -> list[tuple[str, str, list[dict]]]:
    """Rows grouped by their ``setting`` (:attr:`pvae.measures.compare.Estimator.setting`: the estimator,
    renyi's alpha, ``--jit``) in order of first appearance, each group sorted by K:
    ``[(estimator, legend label, rows), ...]``."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["setting"], []).append(row)
    return [
        (group[0]["estimator"], setting, sorted(group, key=lambda r: r["particles"]))
        for setting, group in groups.items()
    ]


def _k_axis(ax, rows: list[dict]) -> None:
    """A log-scaled x axis of K, ticked at the distinct K values of ``rows``."""
    ks = sorted({r["particles"] for r in rows})
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("K (samples of z per datapoint)")
    ax.grid(alpha=0.3)


def _positive(value) -> float:
    """``value`` as a float where it can sit on a log axis, else NaN (a gap in the line)."""
    return float(value) if value is not None and value > 0 and math.isfinite(value) else float("nan")


def _legend(ax, **kwargs) -> None:
    """A legend, only where something is labelled (an empty legend warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def plot_bound_values(rows: list[dict], exact_log_px: float | None = None) -> Figure:
    """Each estimator's bound at fixed parameters against K, with error bars of 2 standard errors.

    :param rows: the rows of :func:`pvae.measures.compare.bound_values` (``estimator``, ``particles``,
        ``alpha``, ``mean``, ``se``).
    :param exact_log_px: the exact log p(x) in nats per datapoint, drawn as a dashed line
        (None: not drawn).
    :returns: the figure; one line per estimator (and alpha).
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, label, group in _series(rows):
        ax.errorbar(
            [r["particles"] for r in group],
            [r["mean"] for r in group],
            yerr=[2 * r["se"] for r in group],
            marker="o",
            capsize=3,
            color=estimator_color(name),
            label=label,
        )
    if exact_log_px is not None:
        ax.axhline(exact_log_px, linestyle="--", color="black", linewidth=1, label="exact log p(x)")
    _k_axis(ax, rows)
    ax.set_ylabel("bound (nats per datapoint), ±2 s.e.")
    ax.set_title("bounds at fixed parameters")
    _legend(ax, fontsize="small")
    fig.tight_layout()
    return fig


def plot_gradient_snr(rows: list[dict]) -> Figure:
    """Gradient signal-to-noise ratio (top) and gradient variance (bottom) against K, log-log,
    for the guide's (encoder, left) and the model's (decoder, right) parameters.

    :param rows: gradient rows (``estimator``, ``particles``, ``alpha`` and ``encoder`` and
        ``decoder``, each a dict with ``snr_mean`` and ``variance``), as from
        :func:`pvae.measures.compare.gradient_stats` joined with the estimator's fields.
    :returns: the figure; one line per estimator (and alpha), one colour per estimator in all panels.
    """
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), squeeze=False)
    panels = [("encoder", "encoder (guide) parameters"), ("decoder", "decoder (model) parameters")]
    for column, (group_key, title) in enumerate(panels):
        snr_ax, var_ax = axes[0, column], axes[1, column]
        for name, label, group in _series(rows):
            ks = [r["particles"] for r in group]
            style = {"marker": "o", "color": estimator_color(name), "label": label}
            snr_ax.plot(ks, [_positive(r[group_key]["snr_mean"]) for r in group], **style)
            var_ax.plot(ks, [_positive(r[group_key]["variance"]) for r in group], **style)
        for ax in (snr_ax, var_ax):
            _k_axis(ax, rows)
            ax.set_yscale("log")
        snr_ax.set_title(title)
        snr_ax.set_ylabel("SNR (mean over parameters)")
        var_ax.set_ylabel("gradient variance (mean over parameters)")
    _legend(axes[0, 0], fontsize="small")
    repeats = {r[g].get("repeats") for r in rows for g in ("encoder", "decoder")}
    over = f"over {repeats.pop()} repeats" if len(repeats) == 1 and None not in repeats else "over repeats"
    fig.suptitle(f"gradient signal-to-noise ratio: SNR = |mean| / std of each parameter's gradient {over}")
    fig.tight_layout()
    return fig


def plot_step_cost(rows: list[dict]) -> Figure:
    """Cost of one training step against K: median seconds (error bars: interquartile range)
    and peak memory.

    :param rows: the rows of :func:`pvae.measures.compare.step_cost` joined with the estimator's fields
        (``estimator``, ``particles``, ``alpha``, ``seconds``, ``seconds_iqr``, ``peak_mib``).
    :returns: the figure; one line per estimator (and alpha) in each of the two panels.
    """
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, label, group in _series(rows):
        ks = [r["particles"] for r in group]
        seconds = [r["seconds"] for r in group]
        below = [s - r["seconds_iqr"][0] for s, r in zip(seconds, group, strict=True)]
        above = [r["seconds_iqr"][1] - s for s, r in zip(seconds, group, strict=True)]
        color = estimator_color(name)
        style = "--" if label.endswith("--jit") else "-"  # a compiled loss: the estimator's colour, dashed
        time_ax.errorbar(
            ks, seconds, yerr=[below, above], marker="o", capsize=3, color=color, linestyle=style, label=label
        )
        peak = [float("nan") if r.get("peak_mib") is None else r["peak_mib"] for r in group]
        memory_ax.plot(ks, peak, marker="o", color=color, linestyle=style, label=label)
    for ax in (time_ax, memory_ax):
        _k_axis(ax, rows)
    time_ax.set_ylabel("seconds per training step (median, IQR)")
    time_ax.set_title("time per step")
    memory_ax.set_ylabel("peak memory of one step (MiB)")
    memory_ax.set_title("memory per step")
    _legend(time_ax, fontsize="small")
    fig.tight_layout()
    return fig


_BUDGET_TITLES = {"epochs": "same epochs", "seconds": "same wall-clock time"}


def plot_training_results(rows: list[dict]) -> Figure:
    """Test log p(x) after training with each estimator: one panel per budget present (same
    epochs, same wall-clock time), one horizontal bar per estimator setting, each annotated with
    the epochs it trained.

    Rows with ``log_px_diff`` (from :func:`pvae.measures.compare.train_each`) are drawn as differences
    from the first row of their budget, with ±2 paired standard errors: the spread of log p(x)
    over test points, which the paired differences cancel, would hide them. Otherwise the x axis
    spans the data, not 0, so that differences of a few nats show; each bar starts at the axis'
    left limit and ends at its ``log_px`` (longer is better), with error bars of ``log_px_se``.

    :param rows: the rows of :func:`pvae.measures.compare.train_each` (``estimator``, ``label``,
        ``budget``, ``epochs``, ``train_seconds``, ``log_px``, ``log_px_se``).
    :returns: the figure.
    """
    budgets = [b for b in _BUDGET_TITLES if any(r["budget"] == b for r in rows)]
    budgets += sorted({r["budget"] for r in rows} - set(budgets))
    longest = max([sum(r["budget"] == b for r in rows) for b in budgets], default=1)
    panels = max(len(budgets), 1)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 0.45 * longest + 1.8), squeeze=False)
    axes = list(axes[0])
    if not budgets:
        axes[0].text(0.5, 0.5, "no training results", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    for ax, budget in zip(axes[: len(budgets)], budgets, strict=True):
        group = [r for r in rows if r["budget"] == budget]
        if all(r.get("log_px_diff") is not None for r in group):
            _paired_bars(ax, group)
            ax.set_title(_BUDGET_TITLES.get(budget, f"budget: {budget}"))
            continue
        values = [r["log_px"] for r in group]
        errors = [r.get("log_px_se") or 0.0 for r in group]
        low = min(v - e for v, e in zip(values, errors, strict=True))
        high = max(v + e for v, e in zip(values, errors, strict=True))
        span = high - low if high > low else max(abs(high), 1.0) * 0.1
        left, right = low - 0.15 * span, high + 0.45 * span  # room for the annotations on the right
        positions = list(range(len(group)))
        ax.barh(
            positions,
            [v - left for v in values],
            left=left,
            xerr=errors,
            capsize=3,
            color=[estimator_color(r["estimator"]) for r in group],
            alpha=0.85,
        )
        for y, r, v, e in zip(positions, group, values, errors, strict=True):
            text = f"{r['epochs']:.1f} ep"
            if r.get("train_seconds") is not None:
                text += f", {r['train_seconds']:.3g} s"
            ax.annotate(text, (v + e, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize="small")
        ax.set_yticks(positions, [r["label"] for r in group])
        ax.invert_yaxis()
        ax.set_xlim(left, right)
        ax.set_xlabel("test log p(x), nats per datapoint")
        ax.set_title(_BUDGET_TITLES.get(budget, f"budget: {budget}"))
        ax.grid(axis="x", alpha=0.3)
    samples = {r.get("iwae_samples") for r in rows}
    if len(samples) == 1 and None not in samples:
        title = f"test log p(x) (importance sampling, {samples.pop()} samples); bars annotated with epochs trained"
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _paired_bars(ax, group: list[dict]) -> None:
    """Bars of each row's ``log_px_diff`` from 0, ±2 paired standard errors, annotated with
    its test log p(x) and the epochs it trained."""
    positions = list(range(len(group)))
    values = [r["log_px_diff"] for r in group]
    errors = [2 * (r.get("log_px_diff_se") or 0.0) for r in group]
    ax.barh(
        positions,
        values,
        xerr=errors,
        capsize=3,
        color=[estimator_color(r["estimator"]) for r in group],
        alpha=0.85,
    )
    ax.axvline(0.0, color="black", linewidth=0.8)
    for y, r, v, e in zip(positions, group, values, errors, strict=True):
        text = f"{r['log_px']:.2f}, {r['epochs']:.1f} ep"
        ax.annotate(
            text, (max(v, 0.0) + e, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize="small"
        )
    low = min(min(v - e for v, e in zip(values, errors, strict=True)), 0.0)
    high = max(max(v + e for v, e in zip(values, errors, strict=True)), 0.0)
    span = max(high - low, 0.1)
    ax.set_xlim(low - 0.1 * span, high + 0.6 * span)  # room for the annotations on the right
    ax.set_yticks(positions, [r["label"] for r in group])
    ax.invert_yaxis()
    ax.set_xlabel(f"test log p(x) minus {group[0]['label']}'s (nats per datapoint), ±2 paired s.e.")
    ax.grid(axis="x", alpha=0.3)


def comparison_figures(results: dict) -> dict[str, Figure]:
    """The figures of an estimator comparison (:func:`pvae.measures.compare.compare_estimators`), by file stem."""
    figures = {
        "bounds": plot_bound_values(results["values"], results.get("exact_log_px")),
        "gradient-snr": plot_gradient_snr(results["gradients"]),
        "cost": plot_step_cost(results["cost"]),
    }
    if results.get("training"):
        figures["training"] = plot_training_results(results["training"])
    return figures
