"""Figures of a posterior diagnosis (the parts of :func:`pvae.measures.diagnostics.diagnose`, ``pvae diagnose``):
Pareto k̂, the worst datapoints, NUTS marginals against the guide, the gaps and the KL per dimension.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pvae.base import az  # ArviZ only through pvae.base.az
from pvae.plots.run import INK

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
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no fractional ticks
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_worst_points(
    x: torch.Tensor, reconstructions: torch.Tensor, k_hat: list[float] | torch.Tensor, cmap: str = INK
) -> Figure:
    """The datapoints with the largest k̂ (top row) above their reconstructions (bottom row).

    :param x: ``(n, C, H, W)`` datapoints in [0, 1], already sorted by decreasing k̂.
    :param reconstructions: ``(n, C, H, W)``: their reconstructions, in the same order.
    :param k_hat: the n k̂, in the same order; each column is titled with its k̂.
    :param cmap: the colour map of grey images (:func:`pvae.plots.run.grey_map` of the data).
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
            ax.imshow(image.numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
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


def plot_marginals(idata, site: str = "z", points: int = 3, dims: int = 4, unconverged: str | None = None) -> Figure:
    """1-D posterior marginals of the NUTS draws (pooled over chains) against the guide's draws.

    Rows are the first ``points`` datapoints; columns the ``dims`` latent dimensions with the
    highest NUTS posterior variance averaged over those datapoints, in decreasing order.

    :param idata: from :func:`pvae.base.az.inference_data`: groups ``posterior`` (NUTS,
        ``(chain, draw, datapoint, dim)``) and ``guide`` (``(1, draw, datapoint, dim)``).
    :param site: the latent site.
    :param points: how many datapoints (at most the number there are).
    :param dims: how many latent dimensions (at most the number there are).
    :param unconverged: why NUTS did not converge (None: it did); the title then says that the
        NUTS curves are not the posterior, in red.
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
            ax.set_title(f"x[{n}], {site}{int(j)}", fontsize="small")
            ax.set_yticks([])
            if not first and ax.get_legend() is not None:
                ax.get_legend().remove()
    axes[0, 0].legend(fontsize="small")
    if unconverged is None:
        fig.suptitle(f"posterior marginals of {site}: NUTS against the guide")
    else:
        fig.suptitle(
            f"NUTS did not converge ({unconverged}): its draws are not the posterior of {site}",
            color="tab:red",
        )
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


def diagnostic_figures(results: dict, idata=None, worst: tuple | None = None, cmap: str = INK) -> dict[str, Figure]:
    """The figures of a diagnosis (:func:`pvae.measures.diagnostics.diagnose`) that apply, by file stem.

    :param results: the results dict: ``khat`` when it has ``importance``, ``gaps`` when it has
        ``gaps``, ``kl-per-dim`` when it has ``latent``.
    :param idata: the ``InferenceData`` of the NUTS and guide draws: ``marginals`` (None: none),
        titled as unconverged when ``results["nuts"]`` says NUTS did not converge.
    :param worst: ``(x, reconstructions, k_hat)`` of the datapoints with the largest k̂, sorted:
        ``worst`` (None: none).
    :param cmap: the colour map of grey images (:func:`pvae.plots.run.grey_map` of the data).
    :returns: name → figure.
    """
    figures = {}
    if "importance" in results:
        figures["khat"] = plot_khat(results["importance"]["per_datapoint"]["k_hat"])
    if worst is not None:
        figures["worst"] = plot_worst_points(*worst, cmap=cmap)
    if idata is not None:
        nuts = results.get("nuts", {})
        reasons = None if nuts.get("converged", True) else "; ".join(nuts["convergence"].get("reasons", ["unknown"]))
        figures["marginals"] = plot_marginals(idata, unconverged=reasons)
    if "gaps" in results:
        figures["gaps"] = plot_gaps(results["gaps"])
    if "latent" in results:
        threshold = results.get("settings", {}).get("active_threshold", 0.01)
        figures["kl-per-dim"] = plot_kl_per_dim(results["latent"], threshold)
    return figures
