"""Figures of a run on vector data ``(N, D)`` and on colour images (:mod:`pvae.plots.run`): the numbers drawn are
read back from the figures' artists and compared with the data as given and the pair's decoder means."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_wine

from pvae.data import from_arrays
from pvae.engine.config import PairConfig, build_pair
from pvae.measures import evaluate as ev
from pvae.measures.diagnostics import latent_usage
from pvae.plots.run import (
    TRAVERSAL_POINTS,
    FeatureView,
    feature_interpolation_figure,
    feature_reconstruction_figure,
    feature_samples_figure,
    plot_feature_reconstructions,
    plot_feature_traversals,
    plot_images,
    plot_latent,
    plot_reconstructions,
    plot_traversals,
    run_figures,
    traversal_figure,
)
from tests.conftest import derived_seed


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def wine():
    """178 rows of 13 real-valued features of very different magnitudes (proline ~10³, hue ~1), 3 classes."""
    table = load_wine()
    return from_arrays(
        table.data, table.target, features=tuple(table.feature_names), classes=tuple(table.target_names), name="wine"
    )


@pytest.fixture(scope="module")
def counts():
    """digits' 64 pixels as integer counts 0..16."""
    digits = load_digits()
    return from_arrays(digits.data.astype(np.int64), digits.target, name="digit counts")


@pytest.fixture(scope="module")
def binary():
    """An unlabelled random binary table: 200 rows, 12 features."""
    rng = np.random.default_rng(3)
    return from_arrays((rng.random((200, 12)) < np.linspace(0.1, 0.9, 12)).astype(np.int64), name="bits")


def pair_for(dataset, likelihood: str, stream: int, model: str = "vae"):
    torch.manual_seed(derived_seed(stream))
    config = PairConfig(model=model, z_dim=2, hidden=(16,), likelihood=likelihood)
    return build_pair(config, dataset.x_shape, dataset.num_classes, dataset=dataset)


def training_statistics(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's mean and sd (n − 1) over the raw training rows, computed here, apart from pvae's."""
    raw = dataset.train.raw().numpy()
    return raw.mean(0), raw.std(0, ddof=1)


def lines(ax) -> dict[str, np.ndarray]:
    return {line.get_label(): np.asarray(line.get_ydata(), dtype=np.float64) for line in ax.lines}


def heat_map(ax) -> np.ndarray:
    (image,) = ax.get_images()
    return np.asarray(image.get_array(), dtype=np.float64)


def test_reconstruction_panels_are_the_raw_test_rows_and_their_decoder_means_in_the_data_units(wine):
    model, guide = pair_for(wine, "gaussian-per-pixel", 1)
    fig = feature_reconstruction_figure(model, guide, wine)
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 6
    loc, sd = training_statistics(wine)
    x = wine.test.images(slice(6))
    standardized = model.decode(ev.posterior_mean(guide, x)).mean.detach().numpy()  # (6, 13), in sd units
    for i, ax in enumerate(panels):
        drawn = lines(ax)
        assert np.array_equal(drawn["data"], wine.test.raw(slice(6))[i].numpy())  # the numbers as given
        assert drawn["reconstruction"] == pytest.approx(standardized[i] * sd + loc, rel=1e-5)
        assert ax.get_title() == f"test row {i}: {wine.classes[int(wine.test.y[i])]}"
    assert [t.get_text() for t in panels[-1].get_xticklabels()] == list(wine.features)
    # every wine value is positive and they span three decades: a log axis
    assert panels[0].get_yscale() == "log"


def test_count_reconstructions_are_on_a_log1p_axis(counts):
    model, guide = pair_for(counts, "negative-binomial", 2)
    fig = feature_reconstruction_figure(model, guide, counts, rows=4)
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 4
    x = counts.test.images(slice(4))
    means = model.decode(ev.posterior_mean(guide, x)).mean.detach().numpy()  # counts are not standardized
    for i, ax in enumerate(panels):
        drawn = lines(ax)
        assert np.array_equal(drawn["data"], counts.test.raw(slice(4))[i].numpy())
        assert set(drawn["data"]) <= set(range(17))
        assert drawn["reconstruction"] == pytest.approx(means[i], rel=1e-5)
    ax = panels[0]
    assert ax.get_yscale() == "function"
    transform = ax.yaxis.get_transform()
    assert transform.transform(np.array([0.0, math.e - 1, 16.0])) == pytest.approx([0.0, 1.0, math.log(17)])
    assert [tick for tick in ax.get_yticks() if tick <= 16] == [0, 1, 2, 5, 10]


def test_samples_are_one_row_per_draw_and_one_column_per_feature_in_the_data_units(wine):
    model, guide = pair_for(wine, "gaussian-per-pixel", 3)
    torch.manual_seed(derived_seed(4))
    ax = feature_samples_figure(model, wine, n=7).axes[0]
    torch.manual_seed(derived_seed(4))
    z = model.prior((7,)).sample()  # the same draws
    loc, sd = training_statistics(wine)
    expected = model.decode(z).mean.detach().numpy() * sd + loc
    values = heat_map(ax)
    assert values.shape == (7, 13)
    assert values == pytest.approx(expected, rel=1e-5)
    assert values[:, -1].mean() > 100  # proline, in its own units (mg/l), not standard deviations
    assert [t.get_text() for t in ax.get_xticklabels()] == list(wine.features)
    # each feature coloured on its own scale: the training mean mid-map, mean ± 2 sd at the ends
    norm = ax.get_images()[0].norm
    row = np.stack([loc, loc + 2 * sd, loc - 2 * sd])
    assert np.asarray(norm(row)) == pytest.approx(np.array([[0.5] * 13, [1.0] * 13, [0.0] * 13]), abs=1e-4)


def test_count_samples_are_coloured_on_a_log1p_scale(counts):
    model, _ = pair_for(counts, "poisson", 5)
    torch.manual_seed(derived_seed(6))
    fig = feature_samples_figure(model, counts, n=5)
    torch.manual_seed(derived_seed(6))
    expected = model.decode(model.prior((5,)).sample()).mean.detach().numpy()
    ax = fig.axes[0]
    values = heat_map(ax)
    assert values.shape == (5, 64)
    assert values == pytest.approx(expected, rel=1e-5)
    assert ax.get_xlabel() == "feature"  # 64 unnamed features: numbered
    norm = ax.get_images()[0].norm
    top = max(1.0, values.max())
    assert (norm.vmin, norm.vmax) == (0, pytest.approx(top))
    assert float(norm(math.e - 1)) == pytest.approx(1 / math.log1p(top))
    assert float(norm(top / 2)) == pytest.approx(math.log1p(top / 2) / math.log1p(top))


def test_class_samples_label_each_row_with_its_class(wine):
    model, _ = pair_for(wine, "gaussian-per-pixel", 7, model="cvae")
    y = torch.tensor([0, 0, 1, 2])
    ax = feature_samples_figure(model, wine, y=y).axes[0]
    assert heat_map(ax).shape == (4, 13)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["class_0", "class_0", "class_1", "class_2"]


def test_interpolation_runs_between_the_two_raw_rows_through_decoder_means_in_the_data_units(wine):
    model, guide = pair_for(wine, "gaussian-per-pixel", 8)
    ax = feature_interpolation_figure(model, guide, wine, 0, 2, steps=5).axes[0]
    values = heat_map(ax)
    assert values.shape == (7, 13)
    raw = wine.test.raw(torch.tensor([0, 2])).numpy()
    assert np.array_equal(values[0], raw[0]) and np.array_equal(values[-1], raw[1])
    z = ev.posterior_mean(guide, wine.test.images(torch.tensor([0, 2])))  # (2, 2)
    t = torch.linspace(0, 1, 5).unsqueeze(-1)
    loc, sd = training_statistics(wine)
    expected = model.decode((1 - t) * z[0] + t * z[1]).mean.detach().numpy() * sd + loc
    assert values[1:-1] == pytest.approx(expected, rel=1e-5)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    classes = [wine.classes[int(wine.test.y[i])] for i in (0, 2)]
    path = ["t = 0.00", "t = 0.25", "t = 0.50", "t = 0.75", "t = 1.00"]
    assert labels == [f"test row 0: {classes[0]}", *path, f"test row 2: {classes[1]}"]


def test_traversals_of_vectors_are_feature_profiles_of_the_active_dimensions_in_the_data_units(wine):
    model, guide = pair_for(wine, "gaussian-per-pixel", 9)
    x = wine.test.images()
    usage = latent_usage(model, guide, x, prior_draws=10)
    dims, scores, _ = ev.traversal_order(usage)
    fig = traversal_figure(model, guide, x, steps=5, usage=usage, dataset=wine)
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == len(dims)
    z = ev.posterior_mean(guide, x[:1])[0]  # the seed: test row 0
    loc, sd = training_statistics(wine)
    for ax, d, score in zip(panels, dims, scores, strict=True):
        assert ax.get_ylabel() == f"z{d}: KL {score:.2f} nats"
        codes = z.repeat(5, 1)
        codes[:, d] = torch.linspace(-3, 3, 5)  # the prior N(0, I): ±3 sd around 0
        assert heat_map(ax) == pytest.approx(model.decode(codes).mean.detach().numpy() * sd + loc, rel=1e-5)
        assert [t.get_text() for t in ax.get_yticklabels()] == ["-3.0", "0", "+3.0"]
    assert [t.get_text() for t in panels[-1].get_xticklabels()] == list(wine.features)


def test_count_traversals_share_one_log1p_colour_scale(counts):
    model, guide = pair_for(counts, "negative-binomial", 10)
    x = counts.test.images(slice(200))
    fig = traversal_figure(
        model, guide, x, steps=4, usage=latent_usage(model, guide, x, prior_draws=10), dataset=counts
    )
    images = [image for ax in fig.axes for image in ax.get_images()]
    assert images and all(image.get_array().shape == (4, 64) for image in images)
    norms = {id(image.norm) for image in images}
    assert len(norms) == 1  # one colour scale for every dimension
    norm = images[0].norm
    top = max(float(image.get_array().max()) for image in images)
    assert norm.vmax == pytest.approx(max(1.0, top))
    assert float(norm(3.0)) == pytest.approx(math.log(4) / math.log1p(norm.vmax))


def test_vector_plots_refuse_mismatched_inputs():
    with pytest.raises(ValueError, match="give one each"):
        plot_feature_reconstructions(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="2 rows of feature means for 1 dimensions"):
        plot_feature_traversals(torch.zeros(2, 5, 4), [0], [1.0])


@pytest.mark.parametrize(
    "name, likelihood", [("wine", "gaussian-per-pixel"), ("counts", "poisson"), ("binary", "bernoulli")]
)
def test_run_figures_draw_every_figure_of_vector_data(request, name, likelihood):
    dataset = request.getfixturevalue(name)
    model, guide = pair_for(dataset, likelihood, 11)
    metrics = [{"epoch": 1, "train_loss": 10.0, "val_objective": -9.0, "val_elbo": -9.5}]
    x = dataset.test.images(slice(TRAVERSAL_POINTS))
    figures = run_figures(model, guide, dataset, metrics, usage=latent_usage(model, guide, x, prior_draws=10))
    assert list(figures) == ["curves", "reconstructions", "samples", "interpolation", "latent", "traversals"]
    assert heat_map(figures["samples"].axes[0]).shape == (30, dataset.x_shape[0])
    # the same test rows as the reconstructions figure draws on its own
    drawn = lines([ax for ax in figures["reconstructions"].axes if ax.axison][0])["data"]
    assert np.array_equal(drawn, dataset.test.raw(slice(1))[0].numpy())


def test_latent_points_are_named_by_class_or_drawn_in_one_colour_without_labels(wine, binary):
    model, guide = pair_for(wine, "gaussian-per-pixel", 14)
    ax = run_figures(model, guide, wine, [])["latent"].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["class_0", "class_1", "class_2"]
    z = ev.posterior_mean(guide, wine.test.images())
    for collection, k in zip(ax.collections, (0, 1, 2), strict=True):  # each class's own points
        assert np.asarray(collection.get_offsets()) == pytest.approx(z[wine.test.y == k].numpy())
    assert ax.get_title() == f"latent mean, {len(wine.test)} test rows"
    model, guide = pair_for(binary, "bernoulli", 15)
    fig = run_figures(model, guide, binary, [])["latent"]
    (ax,) = fig.axes  # no colour bar
    assert ax.get_legend() is None
    (collection,) = ax.collections
    assert len(collection.get_offsets()) == len(binary.test)
    assert len(np.unique(collection.get_facecolors(), axis=0)) == 1


def test_latent_legend_names_dropped_labels_and_many_classes_get_a_colour_bar():
    points = torch.randn(6, 2)
    ax = plot_latent(points, torch.tensor([1, -1, 0, 1, 0, -1]), classes=("a", "b")).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["no label", "a", "b"]
    fig = plot_latent(torch.randn(30, 2), torch.arange(30))
    assert fig.axes[0].get_legend() is None and len(fig.axes) == 2  # the colour bar's axes


def test_rgb_images_keep_their_colours():
    torch.manual_seed(derived_seed(16))
    images = torch.rand(4, 3, 5, 6)
    grid = plot_images(images, ncol=2).axes[0].get_images()[0].get_array()
    assert grid.shape == (2 * 6 - 1, 2 * 7 - 1, 3)  # 5×6 images with 1-pixel gaps, three channels
    # image 3 (row 1, column 1), pixel (2, 4): its own red, green and blue
    assert np.asarray(grid[6 + 2, 7 + 4]) == pytest.approx(images[3, :, 2, 4].numpy())
    grey = plot_images(images[:, :1], ncol=2).axes[0].get_images()[0].get_array()
    assert grey.shape == (11, 13) and float(grey[6 + 2, 7 + 4]) == pytest.approx(float(images[3, 0, 2, 4]))
    pairs = plot_reconstructions(images[:3], images[1:]).axes[0].get_images()[0].get_array()
    assert pairs.shape == (2 * 6 - 1, 3 * 7 - 1, 3)  # fewer images than columns: one row of three each
    assert np.asarray(pairs[6 + 1, 7 * 2 + 3]) == pytest.approx(images[3, :, 1, 3].numpy())
    traversal = plot_traversals(images.reshape(2, 2, 3, 5, 6), [0, 1], [1.0, 0.5]).axes[0].get_images()[0]
    assert traversal.get_array().shape == (11, 13, 3)
    assert np.asarray(traversal.get_array()[0, 7]) == pytest.approx(images[1, :, 0, 0].numpy())


def test_feature_view_of_a_dataset_reads_its_names_kind_and_standardization(wine, counts):
    view = FeatureView.of(wine)
    loc, sd = training_statistics(wine)
    assert view.names == tuple(wine.features) and view.kind == "real"
    assert view.centre.numpy() == pytest.approx(loc, rel=1e-6) and view.spread.numpy() == pytest.approx(sd, rel=1e-5)
    assert FeatureView.of(counts) == FeatureView(None, "counts", None, None)


# --------------------------------------------------------------------------------------------
# Grey images: the user's as they are, the built-in datasets' as ink on paper


def _grey_maps(model, guide, dataset) -> dict[str, str]:
    """The colour map of the grey grid of each figure of images :func:`run_figures` draws (closed after)."""
    test = dataset.test
    usage = latent_usage(model, guide, test.images(slice(TRAVERSAL_POINTS)), test.y[:TRAVERSAL_POINTS], prior_draws=10)
    figures = run_figures(model, guide, dataset, [], n=20, usage=usage)
    maps = {name: fig.axes[0].get_images()[0].get_cmap().name for name, fig in figures.items() if name != "latent"}
    plt.close("all")
    return maps


def test_the_users_grey_images_are_drawn_as_they_are_the_built_in_ones_as_ink():
    from pvae import data
    from pvae.plots.run import grey_map

    rng = np.random.default_rng(5)
    photos = rng.integers(0, 256, size=(60, 1, 8, 8), dtype=np.uint8)  # a user's grey images: 0 is black
    own = from_arrays(photos, name="photos")
    digits = data.load(data.DataConfig("digits", binarize="none"))
    assert own.is_user_data and not digits.is_user_data
    assert (grey_map(own), grey_map(digits), grey_map(None)) == ("gray", "gray_r", "gray_r")
    every = {"reconstructions", "samples", "interpolation", "traversals"}
    for dataset, cmap in ((own, "gray"), (digits, "gray_r")):
        maps = _grey_maps(*pair_for(dataset, "continuous-bernoulli", 17), dataset)
        assert set(maps) == every and set(maps.values()) == {cmap}, maps
    # the pixels drawn are the images' own values: the first test image's corner, black as 0 under "gray"
    x = own.test.images(slice(2))
    drawn = plot_reconstructions(x, x, cmap=grey_map(own)).axes[0].get_images()[0]
    corner = float(photos[int(own.test.origin[0]), 0, 0, 0]) / 255
    assert drawn.get_cmap().name == "gray" and float(drawn.get_array()[0, 0]) == pytest.approx(corner)
    # a model that decodes the label: one row of samples per class, drawn as they are too
    labelled = from_arrays(photos, np.arange(60) % 3, name="photos")
    maps = _grey_maps(*pair_for(labelled, "continuous-bernoulli", 19, "cvae"), labelled)
    assert maps.keys() == {"reconstructions", "samples", "traversals"} and set(maps.values()) == {"gray"}


# --------------------------------------------------------------------------------------------
# Traversals of many dimensions: the most active ones, in a figure of a bounded size


def _usage(z_dim: int) -> dict:
    """Every dimension active, dimension j with KL j / 10 (the largest last)."""
    kl = torch.arange(z_dim, dtype=torch.float64) / 10
    return {"activity": kl + 1, "active": list(range(z_dim)), "kl_per_dim": kl}


@pytest.mark.parametrize("images", [False, True], ids=["vectors", "images"])
def test_a_traversal_of_20_active_dimensions_shows_the_10_largest_in_a_bounded_figure(wine, images):
    from pvae.plots.run import TRAVERSAL_DIMS

    if images:
        dataset = from_arrays(np.random.default_rng(6).integers(0, 256, (60, 1, 8, 8), dtype=np.uint8))
        likelihood = "continuous-bernoulli"
    else:
        dataset, likelihood = wine, "gaussian-per-pixel"
    torch.manual_seed(derived_seed(20))
    config = PairConfig(model="vae", z_dim=20, hidden=(16,), likelihood=likelihood)
    model, guide = build_pair(config, dataset.x_shape, dataset.num_classes, dataset=dataset)
    fig = traversal_figure(model, guide, dataset.test.images(), usage=_usage(20), dataset=dataset)
    width, height = fig.get_size_inches()
    assert TRAVERSAL_DIMS == 10 and width <= 17 and height <= 16
    shown = list(range(19, 9, -1))  # the 10 largest KL, largest first
    if images:
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        title = fig.axes[0].get_title()
    else:
        labels = [ax.get_ylabel() for ax in fig.axes if ax.get_images()]
        title = fig.get_suptitle()
    assert [label.split(":")[0] for label in labels] == [f"z{d}" for d in shown]
    assert "the 10 of 20 active dimensions with the largest KL" in title


def test_traversal_plots_given_many_dimensions_draw_the_first_in_a_bounded_figure():
    dims = list(range(50))
    fig = plot_feature_traversals(torch.rand(50, 9, 30), dims, [1.0] * 50, title="t")
    assert len([ax for ax in fig.axes if ax.get_images()]) == 10
    assert fig.get_size_inches()[1] <= 16 and "(the first 10 of 50 dimensions shown)" in fig.get_suptitle()
    fig = plot_traversals(torch.rand(30, 40, 1, 6, 6), dims[:30], [1.0] * 30, title="t")
    assert max(fig.get_size_inches()) <= 16 and fig.axes[0].get_title() == "t (the first 10 of 30 dimensions shown)"
    assert len(fig.axes[0].get_yticklabels()) == 10
