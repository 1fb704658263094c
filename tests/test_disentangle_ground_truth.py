"""The ground-truth grid and the mutual-information helpers the metrics share."""

import math

import numpy as np
import pytest
import torch

from pvae.measures.disentangle import (
    Grid,
    GroundTruth,
    factor_entropies,
    histogram_discretize,
    mutual_information_matrix,
)
from pvae.measures.disentangle.dci import _compute_dci
from pvae.measures.disentangle.factor_vae import _compute_factor_vae
from pvae.measures.disentangle.modularity import _modularity
from tests.conftest import derived_seed


@pytest.mark.statistical
def test_a_grid_draws_every_factor_uniformly_and_observes_its_indices():
    grid = Grid((3, 4), factor_names=("shape", "x"))
    assert isinstance(grid, GroundTruth)
    factors = grid.sample_factors(12_000, np.random.default_rng(derived_seed(1)))
    assert factors.dtype == np.int64 and factors.min() == 0 and list(factors.max(0)) == [2, 3]
    # each of the 12 grid points has probability 1/12: 1,000 expected, sd 29
    counts = np.bincount(factors[:, 0] * 4 + factors[:, 1], minlength=12)
    assert np.all(np.abs(counts - 1000) < 130), counts
    images = grid.observations(factors[:5])
    assert images.dtype == torch.float32
    np.testing.assert_allclose(images.flatten(1).numpy(), factors[:5] / [2, 3], rtol=1e-6)
    assert [list(v) for v in grid.factor_values] == [[0, 1, 2], [0, 1, 2, 3]]


def test_a_grid_observes_through_the_function_it_is_given():
    grid = Grid((2, 2), observe=lambda f: torch.ones(len(f), 1, 2, 2) * torch.from_numpy(f[:, :1, None, None]))
    images = grid.observations(np.array([[0, 1], [1, 0]]))
    assert images[:, 0, 0, 0].tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"factor_sizes": ()}, "one or more positive integers"),
        ({"factor_sizes": (3, 0)}, "one or more positive integers"),
        ({"factor_sizes": (3, 4), "factor_names": ("shape",)}, "need as many names"),
        ({"factor_sizes": (3,), "factor_values": (np.arange(4),)}, r"value grids of those lengths \(got \[4\]\)"),
    ],
)
def test_a_grid_refuses_names_and_values_that_do_not_fit(arguments, message):
    with pytest.raises(ValueError, match=message):
        Grid(**arguments)


def test_histogram_discretization_puts_equal_width_bins_over_the_observed_range():
    codes = np.array([[0.0, 5.0], [0.5, 5.0], [1.0, 5.0], [2.0, 5.0]])
    # edges 0, 0.5, 1, 1.5, 2: the maximum falls in the last bin; a constant v gets numpy's range v ± 0.5,
    # edges 4.5, 4.75, 5, 5.25, 5.5, and falls in one bin
    assert histogram_discretize(codes, bins=4).tolist() == [[1, 3], [2, 3], [3, 3], [4, 3]]


def test_mutual_information_of_a_code_that_is_the_factor_is_its_entropy():
    factors = np.repeat(np.arange(4), 3)[:, None]  # a uniform factor with 4 values
    codes = np.concatenate([factors * 2.0, np.zeros_like(factors), (np.arange(12) % 3)[:, None]], axis=1)
    information = mutual_information_matrix(codes, factors, bins=20)
    assert information.shape == (1, 3)
    # the code knows log 4 nats; a constant knows nothing; a code balanced within every value knows nothing
    np.testing.assert_allclose(information[0], [math.log(4), 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(factor_entropies(factors), [math.log(4)])


def test_mutual_information_of_a_coarse_code_is_the_entropy_of_its_bins():
    factors = np.arange(8)[:, None]
    codes = (np.arange(8) // 2)[:, None].astype(float)  # pairs of values share a code
    assert mutual_information_matrix(codes, factors)[0, 0] == pytest.approx(math.log(4))


def test_mutual_information_matrix_refuses_arrays_that_do_not_pair_up():
    with pytest.raises(ValueError, match=r"codes \(n, d\) and factor_indices \(n, F\) .* got \(5, 2\) and \(4, 1\)"):
        mutual_information_matrix(np.zeros((5, 2)), np.zeros((4, 1), dtype=int))


def test_dci_of_importance_matrices_with_known_answers():
    # each dimension serves one factor: perfectly disentangled and complete
    # (up to the 1e-11 added to every importance before the entropies, as disentanglement_lib)
    assert _compute_dci(np.eye(3)) == pytest.approx({"disentanglement": 1.0, "completeness": 1.0}, abs=1e-9)
    # one dimension serves all three factors equally: not disentangled at all, but complete
    one = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    scores = _compute_dci(one)
    assert scores["disentanglement"] == pytest.approx(0.0, abs=1e-9)
    assert scores["completeness"] == pytest.approx(1.0, abs=1e-9)
    # two dimensions share one factor equally (the other factor has its own): per factor 1 − H_2(½, ½) = 0 and 1
    shared = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    scores = _compute_dci(shared)
    assert scores["disentanglement"] == pytest.approx(1.0, abs=1e-9)
    assert scores["completeness"] == pytest.approx(0.5 * (1 - math.log(2) / math.log(3)) + 0.5, abs=1e-9)


def test_modularity_of_information_matrices_with_known_answers():
    assert _modularity(np.array([[2.0, 0.0], [0.0, 1.0]])) == 1.0
    # a dimension that knows as much about both factors: δ = 1, modularity 0; one that knows nothing counts 0
    assert _modularity(np.array([[1.0, 1.0], [0.0, 0.0]])) == 0.0
    # δ = (0.5²) / (1² · 1) = 0.25
    assert _modularity(np.array([[1.0, 0.5]])) == pytest.approx(0.75)


def test_factor_vae_votes_go_to_the_majority_factor_of_each_dimension():
    global_variances = np.array([1.0, 4.0, 1e-4])  # the third dimension is collapsed (sd 0.01 < 0.05): pruned
    # batch variances: vote i picks the dimension of smallest ratio (dim 0, 0, 1, 1, 1)
    train = np.array([[0.1, 4, 0], [0.2, 4, 0], [1, 0.4, 0], [1, 0.4, 0], [1, 0.4, 0]])
    labels = np.array([0, 1, 1, 1, 1])
    scores = _compute_factor_vae(global_variances, train, labels, train[:3], np.array([0, 0, 1]), num_factors=2)
    # dim 0 → factor 0 (1 vote of 2, tie broken to the first), dim 1 → factor 1 (3 of 3)
    assert scores == {"train_accuracy": 4 / 5, "eval_accuracy": 1.0, "num_active_dims": 2.0}
