"""Pictures of what a VAE does. Each ``plot_*`` function takes data and returns a ``Figure``;
nothing here writes files (the CLI and the experiments do).
"""

import math

import matplotlib

matplotlib.use("Agg")  # no display needed; figures are saved by the caller

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pvae import az  # noqa: E402  (ArviZ only through pvae.az)
from pvae import evaluate as ev  # noqa: E402
from pvae.data import Dataset  # noqa: E402


def _grid(images: torch.Tensor, ncol: int) -> torch.Tensor:
    """Tile ``(N, C, H, W)`` images into one ``(rows·H, ncol·W)`` grey image with 1-pixel gaps."""
    n, _, h, w = images.shape
    rows = math.ceil(n / ncol)
    canvas = torch.full((rows * (h + 1) - 1, ncol * (w + 1) - 1), 0.25)  # light grey gaps
    for i, image in enumerate(images):
        r, c = divmod(i, ncol)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image.mean(0)
    return canvas


def plot_images(images: torch.Tensor, ncol: int = 10, title: str = "", row_labels: list[str] | None = None) -> Figure:
    """A grid of images ``(N, C, H, W)`` in [0, 1], ``ncol`` per row."""
    grid = _grid(images.detach().cpu(), ncol)
    rows = math.ceil(images.shape[0] / ncol)
    fig, ax = plt.subplots(figsize=(ncol * 0.6 + 0.8, rows * 0.6 + 0.6))
    ax.imshow(grid.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if row_labels:
        h = images.shape[-2] + 1
        ax.set_yticks([h * i + h / 2 - 1 for i in range(len(row_labels))], row_labels)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_reconstructions(x: torch.Tensor, x_rec: torch.Tensor, ncol: int = 10) -> Figure:
    """Test images (odd rows) above their reconstructions (even rows)."""
    n = (x.shape[0] // ncol) * ncol
    pairs = torch.stack([x[:n].view(-1, ncol, *x.shape[1:]), x_rec[:n].view(-1, ncol, *x.shape[1:])], 1)
    labels = ["data", "recon."] * (n // ncol)
    return plot_images(pairs.reshape(-1, *x.shape[1:]), ncol, "test images and their reconstructions", labels)


def plot_curves(metrics: list[dict]) -> Figure:
    """Per epoch, in nats per datapoint: the training objective (−loss), the same objective on
    validation (reconstruction − beta·KL) and, where the guide has a density, the validation ELBO."""
    epochs = [m["epoch"] for m in metrics]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [-m["train_loss"] for m in metrics], label="train objective (−loss)")
    if all(m.get("val_objective") is not None for m in metrics):
        ax.plot(epochs, [m["val_objective"] for m in metrics], label="validation objective")
    if all(m.get("val_elbo") is not None for m in metrics):
        ax.plot(epochs, [m["val_elbo"] for m in metrics], "--", label="validation ELBO")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per datapoint")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_latent(points: torch.Tensor, labels: torch.Tensor, title: str = "latent space") -> Figure:
    """2-D latent points coloured by class label."""
    fig, ax = plt.subplots(figsize=(6, 5))
    scatter = ax.scatter(points[:, 0].cpu(), points[:, 1].cpu(), c=labels.cpu(), cmap="tab10", s=6, alpha=0.8)
    fig.colorbar(scatter, ax=ax, label="label")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_class_samples(model, per_class: int = 10, num_classes: int | None = None) -> Figure:
    """Decoder means at prior draws of z, one row per class, for a model whose decoder reads a label."""
    num_classes = num_classes or model.num_classes
    y = torch.arange(num_classes).repeat_interleave(per_class)
    images = ev.sample_prior(model, len(y), y)
    rows = [str(c) for c in range(num_classes)]
    return plot_images(images, per_class, "samples given the class (one row per label)", rows)


def run_figures(model, guide, dataset: Dataset, metrics: list[dict], n: int = 100, seed: int = 0) -> dict[str, Figure]:
    """The standard figures of a trained pair on ``dataset``'s test split, by file stem.

    ``curves`` (when there are metrics), ``reconstructions``, ``samples`` (decoder means at
    prior draws; for a model whose decoder reads a label, one row per class), ``interpolation``
    (between the first test images of two classes; unconditional models) and ``latent``
    (posterior means coloured by label; PCA when z has more than two dimensions).
    """
    with torch.random.fork_rng():  # the caller's random stream is left as it was
        torch.manual_seed(seed)
        return _run_figures(model, guide, dataset, metrics, n)


def _run_figures(model, guide, dataset: Dataset, metrics: list[dict], n: int) -> dict[str, Figure]:
    test = dataset.test
    labelled = ev.decodes_labels(model)
    figures = {}
    if metrics:
        figures["curves"] = plot_curves(metrics)
    x, y = test.x[:n], test.y[:n]
    figures["reconstructions"] = plot_reconstructions(x[:50], ev.reconstruct(model, guide, x[:50], y[:50]))
    if labelled:
        figures["samples"] = plot_class_samples(model, 10, dataset.num_classes)
    else:
        figures["samples"] = plot_images(ev.sample_prior(model, n), 10, "decoder means at samples from the prior")
        others = torch.nonzero(y != y[0])
        first, second = 0, int(others[0]) if len(others) else 1  # of different classes where possible
        path = ev.interpolate(model, guide, x[first], x[second], steps=10)
        figures["interpolation"] = plot_images(
            torch.cat([x[first : first + 1], path, x[second : second + 1]]),
            12,
            "two test images (ends) and decoder means along the line between their latent means",
        )
    z = ev.posterior_mean(guide, test.x[:2000], test.y[:2000] if labelled else None)
    points, how = ev.project_2d(z)
    figures["latent"] = plot_latent(points, test.y[:2000], f"{how}, {len(points)} test images")
    return figures


# --------------------------------------------------------------------------------------------
# Comparing estimators (the rows of :mod:`pvae.compare`)

_ESTIMATOR_COLORS = {
    name: plt.get_cmap("tab10")(i)
    for i, name in enumerate(["trace", "meanfield", "graph", "iwae", "renyi", "dreg", "enum"])
}


def estimator_color(name: str) -> tuple:
    """The fixed colour of an estimator, the same in every comparison figure.

    :param name: an estimator name (``trace``, ``meanfield``, ``graph``, ``iwae``, ``renyi``,
        ``dreg``, ``enum``); any other name is grey.
    :returns: an RGBA tuple.
    """
    return _ESTIMATOR_COLORS.get(name, (0.5, 0.5, 0.5, 1.0))


def _series(rows: list[dict]) -> list[tuple[str, str, list[dict]]]:
    """Rows grouped by their ``setting`` (:attr:`pvae.compare.Estimator.setting`: the estimator,
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

    :param rows: the rows of :func:`pvae.compare.bound_values` (``estimator``, ``particles``,
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
        :func:`pvae.compare.gradient_stats` joined with the estimator's fields.
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

    :param rows: the rows of :func:`pvae.compare.step_cost` joined with the estimator's fields
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

    Rows with ``log_px_diff`` (from :func:`pvae.compare.train_each`) are drawn as differences
    from the first row of their budget, with ±2 paired standard errors: the spread of log p(x)
    over test points, which the paired differences cancel, would hide them. Otherwise the x axis
    spans the data, not 0, so that differences of a few nats show; each bar starts at the axis'
    left limit and ends at its ``log_px`` (longer is better), with error bars of ``log_px_se``.

    :param rows: the rows of :func:`pvae.compare.train_each` (``estimator``, ``label``,
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
    """The figures of an estimator comparison (:func:`pvae.compare.compare_estimators`), by file stem."""
    figures = {
        "bounds": plot_bound_values(results["values"], results.get("exact_log_px")),
        "gradient-snr": plot_gradient_snr(results["gradients"]),
        "cost": plot_step_cost(results["cost"]),
    }
    if results.get("training"):
        figures["training"] = plot_training_results(results["training"])
    return figures


# --------------------------------------------------------------------------------------------
# Posterior diagnostics (the parts of :func:`pvae.diagnostics.diagnose`)

_KHAT_GOOD, _KHAT_BAD = 0.5, 0.7
_APPROXIMATION_COLOR, _AMORTIZATION_COLOR = "tab:blue", "tab:orange"
_ACTIVE_COLOR, _INACTIVE_COLOR = "tab:blue", "grey"
_NUTS_COLOR, _GUIDE_COLOR = "black", "tab:orange"


def _floats(values) -> np.ndarray:
    """``values`` (a list, maybe with None, or a tensor) as a float64 array, None as NaN."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy().reshape(-1)
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def plot_khat(k_hat: list[float] | torch.Tensor) -> Figure:
    """Histogram of the per-datapoint Pareto k̂ of the importance weights, with the thresholds of
    Yao et al. (2018) dashed: below 0.5 good, above 0.7 unreliable.

    A k̂ of −∞ (all K weights equal: q(z|x) is the posterior exactly, no tail to fit) is clipped
    to the axis minimum, so it is counted in the leftmost bin; a missing k̂ (None or NaN) is left
    out.

    :param k_hat: k̂ per datapoint (``results["importance"]["per_datapoint"]["k_hat"]``).
    :returns: the figure; its title gives the fraction of datapoints with k̂ > 0.7.
    """
    values = _floats(k_hat)
    values = values[~np.isnan(values)]
    finite = values[np.isfinite(values)]
    low = min(float(finite.min()), 0.0) if finite.size else 0.0
    high = max(float(finite.max()), 1.0) if finite.size else 1.0
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(np.clip(values, low, high), bins=np.linspace(low, high, 31), color="tab:grey", alpha=0.8)
    ax.axvline(_KHAT_GOOD, linestyle="--", color="tab:green", label="good < 0.5")
    ax.axvline(_KHAT_BAD, linestyle="--", color="tab:red", label="0.7: unreliable above")
    above = float((values > _KHAT_BAD).mean()) if values.size else float("nan")
    ax.set_title(f"Pareto k̂ of {values.size} datapoints: {above:.1%} above 0.7")
    ax.set_xlabel("Pareto k̂ of the importance weights")
    ax.set_ylabel("datapoints")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_worst_points(x: torch.Tensor, reconstructions: torch.Tensor, k_hat: list[float] | torch.Tensor) -> Figure:
    """The datapoints with the largest k̂ (top row) above their reconstructions (bottom row).

    :param x: ``(n, C, H, W)`` datapoints in [0, 1], already sorted by decreasing k̂.
    :param reconstructions: ``(n, C, H, W)``: their reconstructions, in the same order.
    :param k_hat: the n k̂, in the same order; each column is titled with its k̂.
    :returns: the figure, ``2 × n`` image panels.
    """
    k = _floats(k_hat)
    n = x.shape[0]
    if reconstructions.shape[0] != n or len(k) != n:
        raise ValueError(f"{n} datapoints, {reconstructions.shape[0]} reconstructions and {len(k)} k̂ do not match")
    fig, axes = plt.subplots(2, n, figsize=(n * 0.9 + 0.8, 2.4), squeeze=False)
    for column in range(n):
        for row, images in enumerate((x, reconstructions)):
            ax = axes[row, column]
            image = images[column].detach().cpu().double().mean(0)
            ax.imshow(image.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, column].set_title(f"{k[column]:.2f}", fontsize="small")
    axes[0, 0].set_ylabel("data")
    axes[1, 0].set_ylabel("recon.")
    fig.suptitle("datapoints with the largest Pareto k̂ (column titles) and their reconstructions")
    fig.tight_layout()
    return fig


def _site_draws(idata, group: str, site: str) -> np.ndarray:
    """``(chain, draw, datapoint, dim)`` draws of ``site`` in ``group``, event dimensions flattened."""
    values = np.asarray(idata[group][site].values, dtype=np.float64)
    return values.reshape(*values.shape[:3], -1)


def plot_marginals(idata, site: str = "z", points: int = 3, dims: int = 4) -> Figure:
    """1-D posterior marginals of the NUTS draws (pooled over chains) against the guide's draws.

    Rows are the first ``points`` datapoints; columns the ``dims`` latent dimensions with the
    highest NUTS posterior variance averaged over those datapoints, in decreasing order.

    :param idata: from :func:`pvae.az.inference_data`: groups ``posterior`` (NUTS,
        ``(chain, draw, datapoint, dim)``) and ``guide`` (``(1, draw, datapoint, dim)``).
    :param site: the latent site.
    :param points: how many datapoints (at most the number there are).
    :param dims: how many latent dimensions (at most the number there are).
    :returns: the figure, a ``points × dims`` grid of density plots.
    """
    nuts = _site_draws(idata, az.NUTS_GROUP, site)
    guide = _site_draws(idata, az.GUIDE_GROUP, site)
    nuts = nuts.reshape(-1, *nuts.shape[2:])  # chains pooled: (draws, datapoint, dim)
    guide = guide.reshape(-1, *guide.shape[2:])
    points = min(points, nuts.shape[1])
    dims = min(dims, nuts.shape[2])
    chosen = np.argsort(-nuts[:, :points].var(0).mean(0), kind="stable")[:dims]
    fig, axes = plt.subplots(points, dims, figsize=(2.6 * dims, 2.1 * points + 0.6), squeeze=False)
    for n in range(points):
        for column, j in enumerate(chosen):
            ax = axes[n, column]
            first = n == 0 and column == 0
            az.plot_dist(nuts[:, n, j], ax=ax, color=_NUTS_COLOR, label="NUTS" if first else None)
            az.plot_dist(guide[:, n, j], ax=ax, color=_GUIDE_COLOR, label="guide q(z|x)" if first else None)
            ax.set_title(f"x[{n}], {site}_{int(j)}", fontsize="small")
            ax.set_yticks([])
            if not first and ax.get_legend() is not None:
                ax.get_legend().remove()
    axes[0, 0].legend(fontsize="small")
    fig.suptitle(f"posterior marginals of {site}: NUTS against the guide")
    fig.tight_layout()
    return fig


def plot_gaps(gaps: dict) -> Figure:
    """Per datapoint, the approximation gap (bottom) and the amortization gap (stacked on top),
    sorted by their total, log p(x) − ELBO(q_φ) (Cremer et al., 2018).

    :param gaps: ``results["gaps"]``; its ``per_datapoint`` holds ``approximation_gap`` and
        ``amortization_gap``, lists of N floats in nats.
    :returns: the figure; its title gives the two means.
    """
    per = gaps["per_datapoint"]
    approximation = _floats(per["approximation_gap"])
    amortization = _floats(per["amortization_gap"])
    order = np.argsort(approximation + amortization, kind="stable")
    positions = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(order) + 2), 4))
    ax.bar(
        positions,
        approximation[order],
        color=_APPROXIMATION_COLOR,
        label="approximation gap log p(x) − ELBO(q*)",
    )
    ax.bar(
        positions,
        amortization[order],
        bottom=approximation[order],
        color=_AMORTIZATION_COLOR,
        label="amortization gap ELBO(q*) − ELBO(q_φ)",
    )
    ax.axhline(0.0, color="black", linewidth=0.8)
    means = f"means: approximation {np.nanmean(approximation):.3g}, amortization {np.nanmean(amortization):.3g} nats"
    ax.set_xticks([])
    ax.set_xlabel(f"{len(order)} datapoints, sorted by total gap")
    ax.set_ylabel("nats")
    ax.set_title(f"inference gaps per datapoint\n{means}", fontsize="medium")
    ax.legend(fontsize="small", loc="upper left")  # the bars rise to the right
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_kl_per_dim(latent: dict, threshold: float = 0.01) -> Figure:
    """KL(q(z_j|x) ‖ p(z_j)) per latent dimension in decreasing order (left; inactive dimensions
    grey) and the activity Cov_x E_q[z_j|x] of the same dimensions, log scale (right).

    :param latent: ``results["latent"]``: ``activity`` and ``active`` and, where it applies,
        ``kl_per_dim``; without it only the activity panel is drawn (sorted by activity).
    :param threshold: the activity above which a dimension is active, drawn dashed.
    :returns: the figure.
    """
    activity = _floats(latent["activity"])
    active = set(latent.get("active", []))
    kl = latent.get("kl_per_dim")
    colors_of = [_ACTIVE_COLOR if j in active else _INACTIVE_COLOR for j in range(len(activity))]
    panels = 2 if kl is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(max(5.0, 0.25 * len(activity) + 2.5) * panels, 4), squeeze=False)
    axes = list(axes[0])
    if kl is not None:
        kl = _floats(kl)
        order = np.argsort(-kl, kind="stable")
    else:
        order = np.argsort(-activity, kind="stable")
    positions = np.arange(len(order))
    labels = [str(int(j)) for j in order]
    colors = [colors_of[j] for j in order]
    if kl is not None:
        ax = axes[0]
        ax.bar(positions, kl[order], color=colors)
        ax.set_xticks(positions, labels, fontsize="x-small")
        ax.set_xlabel("latent dimension (sorted by KL)")
        ax.set_ylabel("E_x KL(q(z_j|x) ‖ p(z_j)), nats")
        ax.set_title(f"KL per dimension: {len(active)} of {len(activity)} active")
        ax.grid(axis="y", alpha=0.3)
    ax = axes[-1]
    ax.bar(positions, activity[order], color=colors)
    ax.set_yscale("log")
    ax.axhline(threshold, linestyle="--", color="black", label=f"threshold {threshold:g}")
    ax.set_xticks(positions, labels, fontsize="x-small")
    ax.set_xlabel("latent dimension" + (" (same order)" if kl is not None else " (sorted by activity)"))
    ax.set_ylabel("activity Cov_x E_q[z_j|x]")
    ax.set_title("activity per dimension")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def diagnostic_figures(results: dict, idata=None, worst: tuple | None = None) -> dict[str, Figure]:
    """The figures of a diagnosis (:func:`pvae.diagnostics.diagnose`) that apply, by file stem.

    :param results: the results dict: ``khat`` when it has ``importance``, ``gaps`` when it has
        ``gaps``, ``kl-per-dim`` when it has ``latent``.
    :param idata: the ``InferenceData`` of the NUTS and guide draws: ``marginals`` (None: none).
    :param worst: ``(x, reconstructions, k_hat)`` of the datapoints with the largest k̂, sorted:
        ``worst`` (None: none).
    :returns: name → figure.
    """
    figures = {}
    if "importance" in results:
        figures["khat"] = plot_khat(results["importance"]["per_datapoint"]["k_hat"])
    if worst is not None:
        figures["worst"] = plot_worst_points(*worst)
    if idata is not None:
        figures["marginals"] = plot_marginals(idata)
    if "gaps" in results:
        figures["gaps"] = plot_gaps(results["gaps"])
    if "latent" in results:
        threshold = results.get("settings", {}).get("active_threshold", 0.01)
        figures["kl-per-dim"] = plot_kl_per_dim(results["latent"], threshold)
    return figures
