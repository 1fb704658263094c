"""Figures of one trained run, for the person who trained it: images, reconstructions, learning
curves, the latent space, latent traversals and class-conditional samples (``pvae train``, ``pvae plot``,
``pvae sample``).
"""

import math

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from pvae import evaluate as ev
from pvae.data import Dataset
from pvae.diagnostics import NotApplicable, diagonal_prior, latent_usage
from pvae.pair import traits


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


#: Up to this many epochs, the learning curves mark each epoch with a dot.
_FEW_EPOCHS = 20


def plot_curves(metrics: list[dict]) -> Figure:
    """Per epoch, in nats per datapoint: the training objective (−loss), the same objective on
    validation (reconstruction − beta·KL) and, where the guide has a density, the validation ELBO;
    each epoch marked with a dot when there are few (a single epoch is a dot, not an empty plot).

    :param metrics: the rows of ``metrics.jsonl`` (:func:`pvae.train.fit`).
    :returns: the figure, titled "learning curves".
    """
    epochs = [m["epoch"] for m in metrics]
    # a line needs two points: a run of one epoch (or a few) would show nothing, or hide where its epochs are
    dots = {"marker": "o", "markersize": 4} if len(epochs) <= _FEW_EPOCHS else {}
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [-m["train_loss"] for m in metrics], label="train objective (−loss)", **dots)
    if all(m.get("val_objective") is not None for m in metrics):
        ax.plot(epochs, [m["val_objective"] for m in metrics], label="validation objective", **dots)
    if all(m.get("val_elbo") is not None for m in metrics):
        ax.plot(epochs, [m["val_elbo"] for m in metrics], "--", label="validation ELBO", **dots)
    ax.set_title("learning curves")
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


def plot_traversals(
    images: torch.Tensor,
    dims: list[int],
    scores: list[float],
    span: float = 3.0,
    score_name: str = "KL",
    unit: str = "prior standard deviations from the prior mean",
    title: str = "latent traversals",
) -> Figure:
    """Latent traversals (:func:`pvae.evaluate.traverse`): one row per latent dimension, labelled with
    its score (its KL in nats, or its activity), one column per value, from −``span`` to +``span``.

    :param images: decoder means ``(len(dims), steps, C, H, W)`` in [0, 1].
    :param dims: the latent dimension of each row.
    :param scores: each row's KL(q(z_j|x) ‖ p(z_j)) in nats (or activity, see ``score_name``).
    :param span: the columns run from −span to +span units.
    :param score_name: ``"KL"`` (labels read "KL 2.31 nats") or another score's name.
    :param unit: what the columns' numbers count, for the x-axis label.
    :param title: the figure's title.
    :raises ValueError: when ``dims``, ``scores`` and the rows of ``images`` differ in number.
    """
    rows, steps = images.shape[:2]
    if not rows == len(dims) == len(scores):
        raise ValueError(f"{rows} rows of images for {len(dims)} dimensions and {len(scores)} scores: give one each")
    h, w = images.shape[-2] + 1, images.shape[-1] + 1
    grid = _grid(images.detach().cpu().reshape(rows * steps, *images.shape[2:]), steps)
    fig, ax = plt.subplots(figsize=(steps * 0.7 + 1.8, rows * 0.7 + 0.9))
    ax.imshow(grid.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    suffix = " nats" if score_name == "KL" else ""
    labels = [f"z{d}: {score_name} {s:.2f}{suffix}" for d, s in zip(dims, scores, strict=True)]
    ax.set_yticks([h * i + h / 2 - 1 for i in range(rows)], labels)
    offsets = torch.linspace(-span, span, steps).tolist()
    ax.set_xticks([w * j + w / 2 - 1 for j in range(steps)], [f"{t:+.1f}".replace("+0.0", "0") for t in offsets])
    ax.set_xlabel(f"value of the dimension: {unit}")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def traversal_figure(
    model,
    guide,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    seed_index: int = 0,
    steps: int = 9,
    span: float = 3.0,
    usage: dict | None = None,
) -> Figure:
    """Latent traversals of one datapoint of ``x``: its posterior mean, with each active dimension in
    turn set from −``span`` to +``span`` prior standard deviations around the prior's mean, the
    dimensions ordered by their KL (:func:`pvae.evaluate.traversal_order`, from
    :func:`pvae.diagnostics.latent_usage` on ``x``).

    Where the prior standard deviation means nothing for the codes (a point-mass guide, such as the
    autoencoder's, or a prior that is not a diagonal Gaussian), each dimension sweeps ±``span``
    standard deviations of the codes' own spread over ``x`` around their mean.

    :param x: datapoints (at least 2): activity and KL are measured on them; ``x[seed_index]`` is the seed.
    :param y: their labels (read by models whose decoder or guide reads one).
    :param seed_index: which datapoint's code the traversal starts from.
    :param steps: values per dimension.
    :param span: the sweep runs from −span to +span standard deviations.
    :param usage: :func:`pvae.diagnostics.latent_usage` of the pair on ``x``, where the caller has it.
    """
    pair = traits(model, guide)
    if usage is None:
        usage = latent_usage(model, guide, x, y, prior_draws=1000)  # the prior draws only measure holes
    dims, scores, score_name = ev.traversal_order(usage)
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
    images, _ = ev.traverse(model, z, dims, loc, scale, steps, span, None if seed_y is None else seed_y[0])
    title = f"latent traversals of datapoint {seed_index}: active dimensions by {score_name}"
    if not usage["active"]:
        title = f"latent traversals of datapoint {seed_index}: no dimension active, the largest {score_name} shown"
    return plot_traversals(images, dims, scores, span, score_name, unit, title)


def run_figures(model, guide, dataset: Dataset, metrics: list[dict], n: int = 100, seed: int = 0) -> dict[str, Figure]:
    """The standard figures of a trained pair on ``dataset``'s test split, by file stem.

    ``curves`` (when there are metrics), ``reconstructions``, ``samples`` (decoder means at
    prior draws; for a model whose decoder reads a label, one row per class), ``interpolation``
    (between the first test images of two classes; unconditional models), ``latent``
    (posterior means coloured by label; PCA when z has more than two dimensions) and ``traversals``
    (:func:`traversal_figure` of the first test image; activity and KL measured on the first 1000 test
    images).
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
    x, y = test.images(slice(n)), test.y[:n]
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
    z = ev.posterior_mean(guide, test.images(slice(2000)), test.y[:2000] if labelled else None)
    points, how = ev.project_2d(z)
    figures["latent"] = plot_latent(points, test.y[:2000], f"{how}, {len(points)} test images")
    figures["traversals"] = traversal_figure(model, guide, test.images(slice(1000)), test.y[:1000])
    return figures
