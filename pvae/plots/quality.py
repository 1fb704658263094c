"""Figures of a sample-quality study (``pvae quality``, ``experiments/ae_vs_vae.py``): where the blur of
a VAE's samples shows in their spectra, and what the likelihood draws that the decoder's mean averages.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from pvae.plots.run import INK, plot_images

#: Colours of the sets, so that one set looks the same in every figure.
_COLORS = {
    "data": "black",
    "reference (train)": "grey",
    "prior": "tab:blue",
    "fitted prior": "tab:cyan",
    "reconstructions": "tab:orange",
    "likelihood draws": "tab:green",
}


def plot_spectra(spectra: dict[str, tuple[np.ndarray, np.ndarray]], cutoff: float | None = None) -> Figure:
    """Radially averaged power spectra, each normalised to sum 1, on a log scale: a blurry set falls
    below the data at high frequencies.

    :param spectra: set name → ``(frequencies in cycles per pixel, power)``, e.g. from
        :func:`pvae.measures.quality.score.spectra`.
    :param cutoff: the frequency above which power counts as high, drawn as a line.
    :raises ValueError: for a set whose frequencies and power differ in length.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (freq, power) in spectra.items():
        freq, power = np.asarray(freq, dtype=float), np.asarray(power, dtype=float)
        if freq.shape != power.shape:
            raise ValueError(f"{name}: {len(freq)} frequencies for {len(power)} powers; give one power per frequency")
        keep = power > 0  # a log scale has no zero
        style = "--" if name == "likelihood draws" else "-"
        ax.plot(freq[keep], power[keep], style, label=name, color=_COLORS.get(name), lw=2 if name == "data" else 1.4)
    if cutoff is not None:
        ax.axvline(cutoff, color="grey", lw=0.8, ls=":")
        ax.text(cutoff, ax.get_ylim()[1], " high frequencies →", va="top", fontsize=8, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("spatial frequency (cycles per pixel; Nyquist 0.5, corners 0.71)")
    ax.set_ylabel("share of power")
    ax.set_title("radially averaged power spectra")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_likelihood_draws(
    data: torch.Tensor, means: torch.Tensor, draws: torch.Tensor, ncol: int = 10, cmap: str = INK
) -> Figure:
    """Real images, decoder means at prior draws, and one draw of p(x | z) at each of those z beneath
    its mean: the mean is the average of the draws the likelihood allows, hence its blur.

    :param data: real images ``(n, C, H, W)``.
    :param means: decoder means ``(n, C, H, W)``.
    :param draws: one likelihood draw per mean, in the same order.
    :param ncol: images per row (the first ``ncol`` of each are shown).
    :param cmap: the colour map of grey images (:func:`pvae.plots.run.grey_map` of the data).
    :raises ValueError: when the means and draws differ in shape or fewer than ``ncol`` are given.
    """
    if means.shape != draws.shape:
        raise ValueError(f"means {tuple(means.shape)} and draws {tuple(draws.shape)}: give one draw per mean")
    if min(len(data), len(means)) < ncol:
        raise ValueError(f"need {ncol} images of each kind, got {len(data)} real and {len(means)} generated")
    rows = torch.cat([data[:ncol], means[:ncol], draws[:ncol].clamp(0, 1)])
    return plot_images(
        rows, ncol, "decoder means and draws of p(x | z) at the same z", ["data", "mean", "draw"], cmap=cmap
    )


def plot_ppc(results: dict) -> Figure:
    """Posterior predictive checks (:func:`pvae.measures.quality.ppc.posterior_predictive_check`): for each statistic,
    the replicates' central interval per feature (grey bars) and the data's value (a dot, red where it falls
    outside), features sorted by the replicates' mean; a log scale where the values span decades.

    :param results: what :func:`pvae.measures.quality.ppc.posterior_predictive_check` returned.
    """
    stats = results["statistics"]
    fig, axes = plt.subplots(len(stats), 1, figsize=(7.0, 2.2 * len(stats)), layout="constrained", squeeze=False)
    for ax, (name, stat) in zip(axes[:, 0], stats.items(), strict=True):
        observed, centre = np.asarray(stat["observed"]), np.asarray(stat["replicated_mean"])
        low, high = np.asarray(stat["replicated_low"]), np.asarray(stat["replicated_high"])
        order = np.argsort(centre)
        position = np.arange(len(order))
        ax.vlines(position, low[order], high[order], color="grey", linewidth=3, alpha=0.6)
        inside = (observed >= low) & (observed <= high)
        ax.scatter(position, observed[order], s=10, c=np.where(inside[order], "black", "tab:red"), zorder=3)
        positive = np.concatenate([low, high, observed])
        if (positive > 0).all() and positive.max() / positive.min() > 100:
            ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.set_title(
            f"{name}: {stat['inside']:.0%} of {len(order)} inside the central {results['coverage']:.0%}",
            fontsize="small",
        )
    features = results.get("features")
    for ax, stat in zip(axes[:, 0], stats.values(), strict=True):
        order = np.argsort(np.asarray(stat["replicated_mean"]))
        if features and len(order) == len(features) and len(order) <= 40:  # per-feature statistics: their names
            ax.set_xticks(np.arange(len(order)), [features[i] for i in order], rotation=90, fontsize="x-small")
    axes[-1, 0].set_xlabel("feature (or pair), sorted by the replicates' mean")
    fig.suptitle(f"data (dots) against {results['replicates']} replicates from the model (bars)")
    return fig
