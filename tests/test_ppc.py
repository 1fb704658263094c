"""Posterior predictive checks score a model that generated the data as fitting, and one that misses the
data's overdispersion as missing it: the share of features inside the replicates' interval, per statistic."""

import numpy as np
import pytest
import torch

from pvae.data import from_arrays
from pvae.engine.config import PairConfig, build_pair
from pvae.measures.quality.ppc import PPCConfig, posterior_predictive_check, statistics
from tests.conftest import derived_seed

MU, THETA, D = 5.0, 0.5, 20


def _overdispersed(seed: int) -> np.ndarray:
    """600 rows of 20 negative-binomial counts, mean 5, variance 5 + 25/0.5 = 55."""
    rng = np.random.default_rng(seed)
    return rng.negative_binomial(THETA, THETA / (THETA + MU), size=(600, D))


def _constant_model(dataset, likelihood: str):
    """A VAE whose decoder ignores z and gives the mean 5 to every feature: its predictive distribution is
    the likelihood itself, whatever the guide proposes."""
    model, guide = build_pair(PairConfig(z_dim=2, hidden=(4,), likelihood=likelihood), dataset.x_shape, dataset=dataset)
    last = model.decoder[-1] if isinstance(model.decoder, torch.nn.Sequential) else model.decoder.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(np.log(MU))
        if likelihood == "negative-binomial":
            model.likelihood.log_theta.fill_(np.log(THETA))
    return model, guide


@pytest.mark.statistical
def test_the_generating_model_fits_and_a_poisson_misses_the_variance_and_the_zeros():
    dataset = from_arrays(_overdispersed(derived_seed(0)), test_size=300)
    config = PPCConfig(replicates=100, rows=300, pairs=0, seed=derived_seed(1))
    truth = posterior_predictive_check(*_constant_model(dataset, "negative-binomial"), dataset, config)["statistics"]
    poisson = posterior_predictive_check(*_constant_model(dataset, "poisson"), dataset, config)["statistics"]
    # replicates of the true model hold the data's statistics about 90% of the time: of 20 features, fewer than
    # 13 inside has probability about 1e-4
    for name in ("mean", "variance", "zeros"):
        assert truth[name]["inside"] >= 0.6, (name, truth[name]["inside"])
    # a Poisson of the same mean has variance 5, not 55, and about 0.7% zeros, not 30%
    assert poisson["variance"]["inside"] <= 0.1 and poisson["zeros"]["inside"] <= 0.1
    assert np.all(np.asarray(poisson["variance"]["p_values"]) < 0.05)  # the data vary more than any replicate
    # its mean is right, but the data's means vary across features more than its replicates' (sd √(55/300)
    # against √(5/300)): their p-values fall on both sides, about half above
    assert 0.2 < np.mean(poisson["mean"]["p_values"]) < 0.8


def test_statistics_are_those_of_the_rows():
    x = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    stats = statistics(x, "counts", [(0, 1)])
    assert np.allclose(stats["mean"], [4 / 3, 1.0, 2 / 3]) and np.allclose(stats["variance"], x.var(0, ddof=1))
    assert np.allclose(stats["zeros"], [1 / 3, 1 / 3, 1 / 3])
    assert np.allclose(stats["library_mean"], [3.0]) and np.allclose(stats["library_sd"], [np.std([3, 4, 2], ddof=1)])
    assert np.allclose(stats["correlation"], [np.corrcoef(x[:, 0], x[:, 1])[0, 1]])


def test_replicates_beyond_memory_are_refused_before_any_is_drawn(monkeypatch):
    from pvae.measures import memory
    from pvae.measures.quality import ppc

    need = ppc.check_ppc_memory(100, 2000, 13, available=10**12)
    assert need == 100 * 2000 * 13 * ppc.BYTES_PER_NUMBER
    with pytest.raises(
        ValueError,
        match=r"--replicates 1000000000 of 18 test rows × 13 features need about .* GB; "
        r"this machine has 16.0 GB available: lower --replicates",
    ):
        ppc.check_ppc_memory(10**9, 18, 13, available=16 * 10**9)
    dataset = from_arrays(np.random.default_rng(0).poisson(3.0, size=(60, 13)))
    model, guide = build_pair(PairConfig(z_dim=2, hidden=(4,), likelihood="poisson"), (13,), dataset=dataset)
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 16 * 10**9)
    monkeypatch.setattr(ppc, "replicate", lambda *a: pytest.fail("drew replicates it had no memory for"))
    with pytest.raises(ValueError, match="--replicates 1000000000"):
        posterior_predictive_check(model, guide, dataset, PPCConfig(replicates=10**9))
