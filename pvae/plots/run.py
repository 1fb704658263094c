"""Figures of one trained run, for the person who trained it: images, reconstructions, learning
curves, the latent space, latent traversals and class-conditional samples (``pvae train``, ``pvae plot``,
``pvae sample``).

Images ``(N, C, H, W)`` are drawn as grids (grey, or in colour for RGB): the built-in datasets' grey images
as ink on paper (1 dark, MNIST's convention), the user's own as they are (0 black; :func:`grey_map`). Vector
data ``(N, D)`` (a table, a count matrix) are drawn feature by feature, in the units of the data as given:
real-valued features are unstandardized (:meth:`pvae.data.Dataset.unstandardize`), counts are shown on a
log1p scale (:class:`FeatureView`).
"""

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import FuncNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator

from pvae.data import Dataset
from pvae.engine.pair import traits
from pvae.measures import evaluate as ev
from pvae.measures.diagnostics import NotApplicable, diagonal_prior

#: Image channels drawn in colour: RGB and RGBA; any other number is averaged to grey.
_COLOUR_CHANNELS = (3, 4)
#: Grey images as ink on paper (1 dark): the built-in datasets' convention (MNIST's ink is 1).
INK = "gray_r"
#: Grey images as they are (0 black, 1 white): the user's photographs and micrographs.
AS_GIVEN = "gray"
#: The value of the light grey gaps between images, under each grey map.
_GAPS = {INK: 0.25, AS_GIVEN: 0.75}


def grey_map(dataset: Dataset | None) -> str:
    """The colour map of ``dataset``'s grey images: :data:`AS_GIVEN` for the user's own data
    (:attr:`pvae.data.Dataset.is_user_data`), :data:`INK` for the built-in datasets (and where none is known).

    :param dataset: the data the images are of, or None.
    """
    return AS_GIVEN if dataset is not None and dataset.is_user_data else INK


def _grid(images: torch.Tensor, ncol: int, cmap: str = INK) -> torch.Tensor:
    """Tile ``(N, C, H, W)`` images into one image with 1-pixel gaps: ``(rows·(H+1)−1, ncol·(W+1)−1)`` grey
    levels, or ``(rows·(H+1)−1, ncol·(W+1)−1, C)`` colours for RGB(A) images; gaps light grey under ``cmap``."""
    n, c, h, w = images.shape
    rows = math.ceil(n / ncol)
    colour = c in _COLOUR_CHANNELS
    size = (rows * (h + 1) - 1, ncol * (w + 1) - 1)
    canvas = torch.full((*size, c), 0.75) if colour else torch.full(size, _GAPS[cmap])
    for i, image in enumerate(images):
        r, col = divmod(i, ncol)
        cell = image.permute(1, 2, 0) if colour else image.mean(0)  # (H, W, C) or (H, W)
        canvas[r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = cell
    return canvas


def _show_grid(ax, grid: torch.Tensor, cmap: str = INK) -> None:
    """Draw a :func:`_grid`: grey levels in [0, 1] under ``cmap`` (:func:`grey_map`), colours as they are
    (clipped to [0, 1])."""
    if grid.dim() == 3:
        ax.imshow(grid.clamp(0, 1).numpy(), interpolation="nearest")
    else:
        ax.imshow(grid.numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")


def plot_images(
    images: torch.Tensor, ncol: int = 10, title: str = "", row_labels: list[str] | None = None, cmap: str = INK
) -> Figure:
    """A grid of images ``(N, C, H, W)`` in [0, 1], ``ncol`` per row: grey, or in colour when C is 3 (RGB) or 4.

    :param images: the images.
    :param ncol: images per row.
    :param title: the figure's title.
    :param row_labels: a label for each row of the grid, or None.
    :param cmap: grey images' colour map: :data:`INK` (1 dark, the built-in datasets) or :data:`AS_GIVEN`
        (0 black, the user's own images); :func:`grey_map` picks it for a dataset.
    """
    grid = _grid(images.detach().cpu(), ncol, cmap)
    rows = math.ceil(images.shape[0] / ncol)
    fig, ax = plt.subplots(figsize=(ncol * 0.6 + 0.8, rows * 0.6 + 0.6))
    _show_grid(ax, grid, cmap)
    ax.set_xticks([])
    ax.set_yticks([])
    if row_labels:
        h = images.shape[-2] + 1
        ax.set_yticks([h * i + h / 2 - 1 for i in range(len(row_labels))], row_labels)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_reconstructions(x: torch.Tensor, x_rec: torch.Tensor, ncol: int = 10, cmap: str = INK) -> Figure:
    """Test images (odd rows) above their reconstructions (even rows).

    :param x: images ``(N, C, H, W)`` in [0, 1].
    :param x_rec: their reconstructions, the same shape.
    :param ncol: images per row (at most N); the last ``N mod ncol`` images are left out.
    :param cmap: grey images' colour map (:func:`plot_images`).
    """
    ncol = min(ncol, x.shape[0])  # a small test split still shows its images
    n = (x.shape[0] // ncol) * ncol
    pairs = torch.stack([x[:n].view(-1, ncol, *x.shape[1:]), x_rec[:n].view(-1, ncol, *x.shape[1:])], 1)
    labels = ["data", "recon."] * (n // ncol)
    return plot_images(pairs.reshape(-1, *x.shape[1:]), ncol, "test images and their reconstructions", labels, cmap)


#: Up to this many epochs, the learning curves mark each epoch with a dot.
_FEW_EPOCHS = 20


def plot_curves(metrics: list[dict]) -> Figure:
    """Per epoch, in nats per datapoint: the training objective (−loss), the same objective on
    validation (reconstruction − beta·KL) and, where the guide has a density, the validation ELBO;
    each epoch marked with a dot when there are few (a single epoch is a dot, not an empty plot).

    :param metrics: the rows of ``metrics.jsonl`` (:func:`pvae.engine.train.fit`).
    :returns: the figure, titled "learning curves".
    """
    epochs = [m["epoch"] for m in metrics]
    # a line needs two points: a run of one epoch (or a few) would show nothing, or hide where its epochs are
    dots = {"marker": "o", "markersize": 4} if len(epochs) <= _FEW_EPOCHS else {}
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [-m["train_loss"] for m in metrics], label="train objective (−loss)", **dots)
    for key, style, label in (("val_objective", "-", "validation objective"), ("val_elbo", "--", "validation ELBO")):
        points = [(m["epoch"], m[key]) for m in metrics if m.get(key) is not None]  # the epochs that have it
        if points:
            ax.plot(*zip(*points, strict=True), style, label=label, **dots)
    ax.set_title("learning curves")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per datapoint")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


#: Up to this many classes the latent plot names each in a legend; beyond, a colour bar of label numbers.
_LEGEND_CLASSES = 20


def plot_latent(
    points: torch.Tensor,
    labels: torch.Tensor | None = None,
    title: str = "latent space",
    classes: tuple[str, ...] | None = None,
) -> Figure:
    """2-D latent points, coloured by class label with a legend of the classes, or all in one colour.

    :param points: ``(N, 2)``, e.g. :func:`pvae.measures.evaluate.project_2d` of posterior means.
    :param labels: integer labels ``(N,)`` (negative: the label was dropped, drawn grey), or None for
        unlabelled data: one colour, no legend.
    :param title: the figure's title.
    :param classes: the name of each label (``classes[k]`` for label k), or None: the numbers themselves.
    """
    points = points.detach().cpu()
    fig, ax = plt.subplots(figsize=(6, 5))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], color="C0", s=6, alpha=0.8)
    elif int(labels.max()) + 1 > _LEGEND_CLASSES:
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels.cpu(), cmap="turbo", s=6, alpha=0.8)
        fig.colorbar(scatter, ax=ax, label="label")
    else:
        labels = labels.cpu()
        palette = plt.get_cmap("tab10" if int(labels.max()) < 10 else "tab20")
        for k in labels.unique().tolist():
            where = labels == k
            name, colour = ("no label", "0.6") if k < 0 else (_class_name(k, classes), palette(k))
            ax.scatter(points[where, 0], points[where, 1], color=colour, s=6, alpha=0.8, label=name)
        ax.legend(title="label", markerscale=2.5, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _class_name(label: int, classes: tuple[str, ...] | None) -> str:
    return str(label) if classes is None else str(classes[label])


def plot_class_samples(model, per_class: int = 10, num_classes: int | None = None, cmap: str = INK) -> Figure:
    """Decoder means at prior draws of z, one row per class, for a model whose decoder reads a label.

    :param model: a model whose decoder reads a label, of image data.
    :param per_class: images per class (per row).
    :param num_classes: the classes drawn (default: the model's ``num_classes``).
    :param cmap: grey images' colour map (:func:`plot_images`).
    """
    num_classes = num_classes or model.num_classes
    y = torch.arange(num_classes).repeat_interleave(per_class)
    images = ev.sample_prior(model, len(y), y)
    rows = [str(c) for c in range(num_classes)]
    return plot_images(images, per_class, "samples given the class (one row per label)", rows, cmap)


def _traversal_labels(dims: list[int], scores: list[float], score_name: str) -> list[str]:
    """Each traversed dimension with its score: ``z3: KL 2.31 nats`` (or ``z3: activity 0.52``)."""
    suffix = " nats" if score_name == "KL" else ""
    return [f"z{d}: {score_name} {s:.2f}{suffix}" for d, s in zip(dims, scores, strict=True)]


def _offset_labels(span: float, steps: int) -> list[str]:
    """The values of a sweep from −span to +span in ``steps``, as tick labels (``-3.0`` … ``0`` … ``+3.0``)."""
    return [f"{t:+.1f}".replace("+0.0", "0") for t in torch.linspace(-span, span, steps).tolist()]


def _check_traversal_rows(rows: int, dims: list[int], scores: list[float], what: str) -> None:
    if not rows == len(dims) == len(scores):
        raise ValueError(f"{rows} rows of {what} for {len(dims)} dimensions and {len(scores)} scores: give one each")


#: The most latent dimensions a traversal figure shows: the first of those given (:func:`traversal_figure`
#: gives the most active first), so that a run with many active dimensions keeps a figure of a readable size.
TRAVERSAL_DIMS = 10
#: The most inches a traversal figure takes on either side.
_MOST_INCHES = 16.0


def _first_rows(values: torch.Tensor, dims: list[int], scores: list[float], title: str):
    """At most :data:`TRAVERSAL_DIMS` traversals, the first ones, the title saying how many were left out."""
    if len(dims) <= TRAVERSAL_DIMS:
        return values, dims, scores, title
    kept = TRAVERSAL_DIMS
    title = f"{title} (the first {kept} of {len(dims)} dimensions shown)"
    return values[:kept], dims[:kept], scores[:kept], title


def plot_traversals(
    images: torch.Tensor,
    dims: list[int],
    scores: list[float],
    span: float = 3.0,
    score_name: str = "KL",
    unit: str = "prior standard deviations from the prior mean",
    title: str = "latent traversals",
    cmap: str = INK,
) -> Figure:
    """Latent traversals (:func:`pvae.measures.evaluate.traverse`): one row per latent dimension, labelled with
    its score (its KL in nats, or its activity), one column per value, from −``span`` to +``span``; the
    first :data:`TRAVERSAL_DIMS` dimensions at most (the title says so when there are more), in a figure of
    at most 16 inches a side.

    :param images: decoder means ``(len(dims), steps, C, H, W)`` in [0, 1].
    :param dims: the latent dimension of each row.
    :param scores: each row's KL(q(z_j|x) ‖ p(z_j)) in nats (or activity, see ``score_name``).
    :param span: the columns run from −span to +span units.
    :param score_name: ``"KL"`` (labels read "KL 2.31 nats") or another score's name.
    :param unit: what the columns' numbers count, for the x-axis label.
    :param title: the figure's title.
    :param cmap: grey images' colour map (:func:`plot_images`).
    :raises ValueError: when ``dims``, ``scores`` and the rows of ``images`` differ in number.
    """
    _check_traversal_rows(images.shape[0], dims, scores, "images")
    images, dims, scores, title = _first_rows(images, dims, scores, title)
    rows, steps = images.shape[:2]
    h, w = images.shape[-2] + 1, images.shape[-1] + 1
    grid = _grid(images.detach().cpu().reshape(rows * steps, *images.shape[2:]), steps, cmap)
    cell = min(0.7, (_MOST_INCHES - 1.8) / steps, (_MOST_INCHES - 0.9) / rows)  # inches an image
    fig, ax = plt.subplots(figsize=(steps * cell + 1.8, rows * cell + 0.9))
    _show_grid(ax, grid, cmap)
    ax.set_yticks([h * i + h / 2 - 1 for i in range(rows)], _traversal_labels(dims, scores, score_name))
    ax.set_xticks([w * j + w / 2 - 1 for j in range(steps)], _offset_labels(span, steps))
    ax.set_xlabel(f"value of the dimension: {unit}")
    ax.set_title(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Vector data (N, D): features on one axis, in the units of the data as given.

#: Up to this many features, their names label the feature axis; beyond, their numbers.
_NAMED_FEATURES = 40
#: Rows of a heat map of prior draws of vector data.
_HEAT_ROWS = 30
#: A standardized feature's heat-map colours run from its training mean − this many sd to its mean + as many.
_SDS = 2.0


def _log1p(v):
    # counts are >= 0; a tick a locator proposes below 0 is drawn at 0 (log1p of it would be NaN)
    return np.log1p(np.maximum(v, 0))


def _log1p_ticks(top: float) -> list[float]:
    """0 and the 1-2-5 steps up to ``top``: ticks spread evenly on a log1p scale."""
    ticks, step = [0.0], 1.0
    while step <= max(top, 1.0):
        ticks += [m * step for m in (1, 2, 5) if m * step <= max(top, 1.0)]
        step *= 10
    return ticks


class _PerFeatureNorm(Normalize):
    """Colours each column (feature) of a heat map on its own scale: its training mean ± :data:`_SDS` sd
    onto [0, 1], so that features of any magnitude show their variation while the values stay in the data's
    units. It reads the whole ``(rows, D)`` array at once, which ``interpolation_stage="rgba"`` guarantees."""

    def __init__(self, centre: np.ndarray, spread: np.ndarray):
        super().__init__(-_SDS, _SDS)  # in sd from the mean: what the colour bar shows
        self.centre, self.spread = centre, spread

    def __call__(self, value, clip=None):
        value = np.ma.asarray(value, dtype=np.float64)
        if value.shape[-1:] != self.centre.shape:  # a lone value (a cursor's read-out): no column to scale it by
            return np.ma.masked_all(value.shape)
        return ((value - self.centre) / self.spread - self.vmin) / (self.vmax - self.vmin)

    def autoscale_None(self, A):
        """Nothing to fit: the scales are the features' own, not the values shown."""


@dataclass(frozen=True)
class FeatureView:
    """How the features of vector data are drawn: their names, and the scale their values are shown on.

    Values are always in the units of the data as given. Counts are drawn on a log1p scale (axis and colour).
    Real-valued features are drawn on a log axis where every value shown is positive, else on an asinh axis
    (linear near 0, logarithmic far from it), so that features of different magnitudes share a panel; in heat
    maps each is coloured on its own scale, its training mean ± 2 sd, where those are known. Binary data and
    levels are drawn on [0, 1].

    :param names: the features' names, or None: their numbers.
    :param kind: the data's kind (:data:`pvae.data.userdata.KINDS`): ``binary``, ``counts``, ``levels`` or ``real``.
    :param centre: each feature's training mean ``(D,)`` (real-valued data, standardized), or None.
    :param spread: each feature's training sd ``(D,)``, or None.
    """

    names: tuple[str, ...] | None = None
    kind: str = "real"
    centre: torch.Tensor | None = None
    spread: torch.Tensor | None = None

    @classmethod
    def of(cls, dataset: Dataset) -> "FeatureView":
        """The view of a vector dataset: its features' names, its kind and its standardization.

        :param dataset: vector data ``(N, D)``.
        """
        train = dataset.train
        names = None if dataset.features is None else tuple(str(name) for name in dataset.features)
        return cls(names, dataset.kind, train.loc, train.scale)

    def scale_values(self, ax, values: torch.Tensor) -> None:
        """Put the y-axis of ``ax`` on the kind's scale for ``values`` (any shape, in the data's units)."""
        if self.kind == "counts":
            ax.set_yscale("function", functions=(_log1p, np.expm1))
            ax.yaxis.set_major_locator(FixedLocator(_log1p_ticks(float(values.max()))))
        elif self.kind == "real":
            ax.set_yscale("log" if bool((values > 0).all()) else "asinh")

    def colours(self, values: torch.Tensor) -> tuple[Normalize, str, ScalarMappable | None, str]:
        """How a heat map of ``values`` ``(..., D)`` in the data's units is coloured.

        :returns: ``(norm, colour map, colour bar or None (the image's own), colour bar label)``.
        """
        if self.kind == "counts":
            top = max(1.0, float(values.max()))
            return FuncNorm((_log1p, np.expm1), vmin=0, vmax=top), "viridis", None, "count (log1p colour scale)"
        if self.centre is not None:
            norm = _PerFeatureNorm(self.centre.double().numpy(), self.spread.double().numpy())
            bar = ScalarMappable(Normalize(-_SDS, _SDS), "RdBu_r")
            return norm, "RdBu_r", bar, "sd from the feature's training mean"
        if self.kind in ("binary", "levels"):
            return Normalize(0, 1), "viridis", None, "value"
        return Normalize(float(values.min()), float(values.max())), "viridis", None, "value"

    def label_features(self, ax, d: int) -> None:
        """Name the ``d`` features along the x-axis of ``ax`` when there are few enough, else number them."""
        if self.names is not None and d <= _NAMED_FEATURES:
            ax.set_xticks(range(d), self.names, rotation=90, fontsize=7)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("feature")


def _heat_map(ax, values: torch.Tensor, view: FeatureView, colours: tuple) -> None:
    """``values`` ``(rows, D)`` in the data's units as one image, features along x."""
    norm, cmap, _, _ = colours
    ax.imshow(
        values.double().numpy(),
        aspect="auto",
        interpolation="nearest",
        interpolation_stage="rgba",  # colours from the values themselves, never from resampled ones
        cmap=cmap,
        norm=norm,
    )
    view.label_features(ax, values.shape[-1])


def _colour_bar(fig, axes: list, colours: tuple, view: FeatureView) -> None:
    """One colour bar beside ``axes``, for heat maps drawn with ``colours`` (:meth:`FeatureView.colours`)."""
    norm, _, bar, label = colours
    mappable = bar if bar is not None else axes[0].get_images()[0]
    colour_bar = fig.colorbar(mappable, ax=axes, label=label, shrink=0.9)
    if view.kind == "counts":
        colour_bar.set_ticks([t for t in _log1p_ticks(norm.vmax) if t <= norm.vmax])


def plot_feature_rows(
    values: torch.Tensor,
    view: FeatureView = FeatureView(),
    title: str = "",
    row_labels: list[str] | None = None,
    row_name: str = "row",
) -> Figure:
    """Rows of vector data as a heat map: one row per datapoint (or draw), one column per feature, in the
    data's units (coloured as :meth:`FeatureView.colours` says: counts on a log1p scale).

    :param values: ``(rows, D)`` in the data's units.
    :param view: the features' names and scale.
    :param title: the figure's title.
    :param row_labels: a label for each row, or None: the rows are numbered.
    :param row_name: what a row is, for the axis label (``"prior draw"``).
    """
    values = values.detach().cpu()
    rows, d = values.shape
    named = view.names is not None and d <= _NAMED_FEATURES
    width = min(14.0, max(6.0, 0.22 * d)) + 1.5
    fig, ax = plt.subplots(figsize=(width, 0.22 * rows + (2.6 if named else 1.6)), layout="constrained")
    colours = view.colours(values)
    _heat_map(ax, values, view, colours)
    if row_labels is not None:
        ax.set_yticks(range(rows), row_labels, fontsize=7)
    ax.set_ylabel(row_name)
    _colour_bar(fig, [ax], colours, view)
    ax.set_title(title, fontsize=10)
    return fig


def plot_feature_reconstructions(
    x: torch.Tensor, x_rec: torch.Tensor, view: FeatureView = FeatureView(), titles: list[str] | None = None
) -> Figure:
    """Rows of vector data beside their reconstructions, one small panel a row: each feature's value as a
    dot, the decoder's mean as a dash at the same feature, a thin line between them; values in the data's
    units on the scale :meth:`FeatureView.scale_values` sets (counts on log1p), shared by the panels.

    :param x: the datapoints ``(n, D)`` in the data's units.
    :param x_rec: their reconstructions ``(n, D)``, in the same units.
    :param view: the features' names and scale.
    :param titles: a title for each panel, or None: ``row i``.
    :raises ValueError: when ``x`` and ``x_rec`` differ in shape.
    """
    if x.shape != x_rec.shape:
        raise ValueError(f"{tuple(x.shape)} datapoints and {tuple(x_rec.shape)} reconstructions: give one each")
    x, x_rec = x.detach().cpu().double(), x_rec.detach().cpu().double()
    n, d = x.shape
    ncol = min(3, n)
    nrow = math.ceil(n / ncol)
    named = view.names is not None and d <= _NAMED_FEATURES
    width = min(6.0, max(3.0, 0.18 * d))
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(ncol * width, nrow * 2.4 + (1.2 if named else 0.4)),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    position = np.arange(d)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        ax.vlines(position, x[i], x_rec[i], color="0.7", linewidth=0.8)
        ax.plot(position, x[i], "o", color="C0", markersize=3.5, label="data")
        ax.plot(position, x_rec[i], "_", color="C3", markersize=8, markeredgewidth=1.5, label="reconstruction")
        ax.set_title(titles[i] if titles else f"row {i}", fontsize=9)
        ax.grid(alpha=0.3)
    view.scale_values(axes[0, 0], torch.cat([x, x_rec]))  # the panels share their y-axis
    for ax in axes[-1]:
        view.label_features(ax, d)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("datapoints (dots) and their reconstructions (dashes), in the data's units")
    return fig


def plot_feature_traversals(
    means: torch.Tensor,
    dims: list[int],
    scores: list[float],
    view: FeatureView = FeatureView(),
    span: float = 3.0,
    score_name: str = "KL",
    unit: str = "prior standard deviations from the prior mean",
    title: str = "latent traversals",
) -> Figure:
    """Latent traversals of vector data (:func:`pvae.measures.evaluate.traverse`): one heat map per latent dimension,
    labelled with its score, whose rows are the dimension's values from −``span`` to +``span`` and whose
    columns are the features' decoder means there, in the data's units, on one colour scale for all
    (:meth:`FeatureView.colours`: counts on log1p).

    :param means: decoder means ``(len(dims), steps, D)`` in the data's units.
    :param dims: the latent dimension of each heat map.
    :param scores: each one's KL(q(z_j|x) ‖ p(z_j)) in nats (or activity, see ``score_name``).
    :param view: the features' names and scale.
    :param span: the rows run from −span to +span units.
    :param score_name: ``"KL"`` (labels read "KL 2.31 nats") or another score's name.
    :param unit: what the rows' numbers count, for the axis label.
    :param title: the figure's title.
    :raises ValueError: when ``dims``, ``scores`` and the traversals of ``means`` differ in number.

    The first :data:`TRAVERSAL_DIMS` dimensions at most are drawn (the title says so when there are more),
    in a figure of at most 16 inches tall.
    """
    means = means.detach().cpu()
    _check_traversal_rows(means.shape[0], dims, scores, "feature means")
    means, dims, scores, title = _first_rows(means, dims, scores, title)
    rows, steps, d = means.shape
    named = view.names is not None and d <= _NAMED_FEATURES
    width = min(14.0, max(6.0, 0.22 * d)) + 2.5
    margin = 2.4 if named else 1.4  # the feature names, the title
    panel = min(0.1 * steps + 0.4, 1.6, (_MOST_INCHES - margin) / rows)  # inches a heat map
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(width, rows * panel + margin),
        sharex=True,
        squeeze=False,
        layout="constrained",
    )
    colours = view.colours(means)  # one colour scale for every dimension
    ends_and_middle = [0, steps // 2, steps - 1]
    offsets = _offset_labels(span, steps)
    for ax, values, label in zip(axes[:, 0], means, _traversal_labels(dims, scores, score_name), strict=True):
        _heat_map(ax, values, view, colours)
        ax.set_yticks(ends_and_middle, [offsets[i] for i in ends_and_middle])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    for ax in axes[:-1, 0]:
        ax.set_xlabel("")
    _colour_bar(fig, axes[:, 0].tolist(), colours, view)
    fig.suptitle(f"{title}\n(rows: value of the dimension, {unit})", fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------
# Figures of a trained pair: what is drawn, from the model, the guide and the data.


def _row_title(split, index: int, dataset: Dataset, name: str) -> str:
    label = f": {_class_name(int(split.y[index]), dataset.classes)}" if dataset.has_labels else ""
    return f"{name} row {index}{label}"


def feature_reconstruction_figure(model, guide, dataset: Dataset, split: str = "test", rows: int = 6) -> Figure:
    """The first ``rows`` datapoints of a split of vector data beside their reconstructions
    (:func:`pvae.measures.evaluate.reconstruct`), both in the data's units (:func:`plot_feature_reconstructions`).

    :param model: the model.
    :param guide: the guide.
    :param dataset: vector data ``(N, D)``.
    :param split: ``train``, ``val`` or ``test``.
    :param rows: how many datapoints (one panel each).
    """
    part = dataset.split(split)
    index = slice(min(rows, len(part)))
    x, y = part.images(index), part.y[index]
    x_rec = dataset.unstandardize(ev.reconstruct(model, guide, x, y))
    titles = [_row_title(part, i, dataset, split) for i in range(len(x))]
    return plot_feature_reconstructions(part.raw(index), x_rec, FeatureView.of(dataset), titles)


def feature_samples_figure(model, dataset: Dataset, n: int = _HEAT_ROWS, y: torch.Tensor | None = None) -> Figure:
    """Decoder means at ``n`` prior draws of z (:func:`pvae.measures.evaluate.sample_prior`) for vector data, as a heat
    map in the data's units (:func:`plot_feature_rows`); draws from the caller's random stream.

    :param model: the model.
    :param dataset: vector data ``(N, D)``: its features' names, kind and standardization.
    :param n: how many draws (ignored when ``y`` is given).
    :param y: the class of each draw ``(n,)``, for a model whose decoder reads a label (each row is labelled
        with its class), or None.
    """
    n = n if y is None else len(y)
    means = dataset.unstandardize(ev.sample_prior(model, n, y))  # (n, D)
    labels = None if y is None else [_class_name(int(c), dataset.classes) for c in y]
    title = "decoder means at samples from the prior, in the data's units"
    return plot_feature_rows(means, FeatureView.of(dataset), title, labels, "prior draw" if y is None else "class")


def feature_interpolation_figure(model, guide, dataset: Dataset, first: int, second: int, steps: int = 10) -> Figure:
    """Two test datapoints of vector data (first and last rows) and the decoder means along the straight line
    between their posterior means (:func:`pvae.measures.evaluate.interpolate`), a heat map in the data's units.

    :param model: the model (unconditional).
    :param guide: the guide.
    :param dataset: vector data ``(N, D)``.
    :param first: the test row at one end.
    :param second: the test row at the other.
    :param steps: decoder means along the line, ends included.
    """
    test = dataset.test
    x = test.images(torch.tensor([first, second]))
    path = dataset.unstandardize(ev.interpolate(model, guide, x[0], x[1], steps))  # (steps, D)
    ends = test.raw(torch.tensor([first, second]))  # float64: the numbers as given
    values = torch.cat([ends[:1], path.to(ends.dtype), ends[1:]])
    t = [f"t = {v:.2f}" for v in torch.linspace(0, 1, steps).tolist()]
    labels = [_row_title(test, first, dataset, "test"), *t, _row_title(test, second, dataset, "test")]
    title = "two test rows (ends) and decoder means along the line between their latent means"
    return plot_feature_rows(values, FeatureView.of(dataset), title, labels, "")


def traversal_figure(
    model,
    guide,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    seed_index: int = 0,
    steps: int = 9,
    span: float = 3.0,
    *,
    usage: dict,
    dataset: Dataset | None = None,
) -> Figure:
    """Latent traversals of one datapoint of ``x``: its posterior mean, with each active dimension in
    turn set from −``span`` to +``span`` prior standard deviations around the prior's mean, the
    dimensions ordered by their KL (:func:`pvae.measures.evaluate.traversal_order`, from
    :func:`pvae.measures.diagnostics.latent_usage` on ``x``). Images are drawn as a grid (:func:`plot_traversals`),
    vectors as feature profiles in the data's units (:func:`plot_feature_traversals`).

    Where the prior standard deviation means nothing for the codes (a point-mass guide, such as the
    autoencoder's, or a prior that is not a diagonal Gaussian), each dimension sweeps ±``span``
    standard deviations of the codes' own spread over ``x`` around their mean.

    :param x: datapoints (at least 2) as the model sees them: activity and KL are measured on them;
        ``x[seed_index]`` is the seed.
    :param y: their labels (read by models whose decoder or guide reads one).
    :param seed_index: which datapoint's code the traversal starts from.
    :param steps: values per dimension.
    :param span: the sweep runs from −span to +span standard deviations.
    :param usage: :func:`pvae.measures.diagnostics.latent_usage` of the pair on ``x`` (``prior_draws=1000`` suffices:
        the prior's draws measure holes, which the figure does not show).
    :param dataset: the data ``x`` is from: for vectors, it gives the features' names, kind and units (None:
        the values as the model sees them, features numbered); for grey images, their colour map
        (:func:`grey_map`; None: the built-in datasets' ink on paper).

    At most :data:`TRAVERSAL_DIMS` dimensions are drawn, those with the largest score; the title says how many
    of how many when some are left out.
    """
    pair = traits(model, guide)
    dims, scores, score_name = ev.traversal_order(usage)
    ranked = len(dims)
    dims, scores = dims[:TRAVERSAL_DIMS], scores[:TRAVERSAL_DIMS]  # the most active: a figure of readable size
    cond_y = y if pair.decodes_labels else None
    try:
        if pair.point_estimate:
            raise NotApplicable("a point-mass guide's codes are not on the prior's scale")
        prior = diagonal_prior(model, x, y)
        loc, scale, unit = prior.loc, prior.scale, "prior standard deviations from the prior mean"
    except NotApplicable:
        codes = ev.posterior_mean(guide, x, cond_y)  # (N, z_dim)
        loc, scale, unit = codes.mean(0), codes.std(0), "standard deviations of the codes from their mean"
    seed_y = None if cond_y is None else cond_y[seed_index : seed_index + 1]
    z = ev.posterior_mean(guide, x[seed_index : seed_index + 1], seed_y)[0]  # (z_dim,)
    means, _ = ev.traverse(model, z, dims, loc, scale, steps, span, None if seed_y is None else seed_y[0])
    title = f"latent traversals of datapoint {seed_index}: active dimensions by {score_name}"
    if ranked > len(dims):
        title = (
            f"latent traversals of datapoint {seed_index}: the {len(dims)} of {ranked} active dimensions with the "
            f"largest {score_name}"
        )
    if not usage["active"]:
        title = f"latent traversals of datapoint {seed_index}: no dimension active, the largest {score_name} shown"
    if x.dim() == 2:  # vectors: means (len(dims), steps, D)
        view = FeatureView() if dataset is None else FeatureView.of(dataset)
        values = means if dataset is None else dataset.unstandardize(means)
        return plot_feature_traversals(values, dims, scores, view, span, score_name, unit, title)
    return plot_traversals(means, dims, scores, span, score_name, unit, title, grey_map(dataset))


#: The first test datapoints whose latent usage orders the dimensions of :func:`run_figures`' traversals.
TRAVERSAL_POINTS = 1000


def run_figures(
    model, guide, dataset: Dataset, metrics: list[dict], n: int = 100, seed: int = 0, usage: dict | None = None
) -> dict[str, Figure]:
    """The standard figures of a trained pair on ``dataset``'s test split, by file stem.

    ``curves`` (when there are metrics), ``reconstructions``, ``samples`` (decoder means at
    prior draws; for a model whose decoder reads a label, one row per class), ``interpolation``
    (between the first test datapoints of two classes; unconditional models), ``latent``
    (posterior means coloured by label, named by ``dataset.classes``; one colour for unlabelled data; PCA
    when z has more than two dimensions) and ``traversals`` (:func:`traversal_figure` of the first test
    datapoint, its dimensions ordered by ``usage``; left out without it).
    Images are drawn as images (in colour for RGB); vectors feature by feature in the data's units
    (:func:`feature_reconstruction_figure`, :func:`feature_samples_figure`, :func:`feature_interpolation_figure`).

    :param model: the model.
    :param guide: the guide.
    :param dataset: the data it was trained on.
    :param metrics: the rows of ``metrics.jsonl`` (none: no ``curves``).
    :param n: test images shown and prior draws of images (vectors: up to 30 draws).
    :param seed: seed of every draw; the caller's random streams are left as they were.
    :param usage: :func:`pvae.measures.diagnostics.latent_usage` of the pair on the first :data:`TRAVERSAL_POINTS` test
        datapoints and their labels; ``None``: no traversals (as for a test split of one datapoint, whose activity
        and KL, variances over datapoints, are not defined).
    """
    with torch.random.fork_rng():  # the caller's random stream is left as it was
        torch.manual_seed(seed)
        return _run_figures(model, guide, dataset, metrics, n, usage)


def _two_rows(y: torch.Tensor) -> tuple[int, int]:
    """The first datapoint and the first of another class (the second, where all share one; the first
    itself, where it is alone)."""
    others = torch.nonzero(y != y[0])
    return 0, int(others[0]) if len(others) else min(1, len(y) - 1)


def _image_figures(model, guide, dataset: Dataset, n: int) -> dict[str, Figure]:
    x, y = dataset.test.images(slice(n)), dataset.test.y[:n]
    cmap = grey_map(dataset)
    x_rec = ev.reconstruct(model, guide, x[:50], y[:50])
    figures = {"reconstructions": plot_reconstructions(x[:50], x_rec, cmap=cmap)}
    if ev.decodes_labels(model):
        figures["samples"] = plot_class_samples(model, 10, dataset.num_classes, cmap)
    else:
        samples = ev.sample_prior(model, n)
        figures["samples"] = plot_images(samples, 10, "decoder means at samples from the prior", cmap=cmap)
        first, second = _two_rows(y)
        path = ev.interpolate(model, guide, x[first], x[second], steps=10)
        figures["interpolation"] = plot_images(
            torch.cat([x[first : first + 1], path, x[second : second + 1]]),
            12,
            "two test images (ends) and decoder means along the line between their latent means",
            cmap=cmap,
        )
    return figures


def _vector_figures(model, guide, dataset: Dataset, n: int) -> dict[str, Figure]:
    figures = {"reconstructions": feature_reconstruction_figure(model, guide, dataset)}
    if ev.decodes_labels(model):
        per_class = max(1, _HEAT_ROWS // dataset.num_classes)
        y = torch.arange(dataset.num_classes).repeat_interleave(per_class)
        figures["samples"] = feature_samples_figure(model, dataset, y=y)
    else:
        figures["samples"] = feature_samples_figure(model, dataset, min(n, _HEAT_ROWS))
        first, second = _two_rows(dataset.test.y[:n])
        figures["interpolation"] = feature_interpolation_figure(model, guide, dataset, first, second)
    return figures


def _run_figures(model, guide, dataset: Dataset, metrics: list[dict], n: int, usage: dict | None) -> dict[str, Figure]:
    test = dataset.test
    figures = {}
    if metrics:
        figures["curves"] = plot_curves(metrics)
    draw = _image_figures if dataset.is_image else _vector_figures
    figures.update(draw(model, guide, dataset, n))
    labelled = ev.decodes_labels(model)
    z = ev.posterior_mean(guide, test.images(slice(2000)), test.y[:2000] if labelled else None)
    points, how = ev.project_2d(z)
    what = "test images" if dataset.is_image else "test rows"
    labels = test.y[:2000] if dataset.has_labels else None
    figures["latent"] = plot_latent(points, labels, f"{how}, {len(points)} {what}", dataset.classes)
    if usage is not None:
        x, y = test.images(slice(TRAVERSAL_POINTS)), test.y[:TRAVERSAL_POINTS]
        figures["traversals"] = traversal_figure(model, guide, x, y, usage=usage, dataset=dataset)
    return figures
