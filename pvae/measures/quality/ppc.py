"""Posterior predictive checks of a pair fitted to data that are not images (tables, counts).

For each of R replicates, every test row i gets a fresh z ~ q(z | x_i) and a replicated row
x̃_i ~ p(x | z): a replicated test set drawn from the fitted model (Gelman, Meng & Stern, 1996; the
shape of ArviZ's ``posterior_predictive`` group and of scvi-tools' ``scvi.criticism``). A statistic
T — a feature's mean, variance, fraction of zeros (counts), the rows' totals (library sizes), the
correlation of two features — is computed on the data and on each replicate, in the units of the data
as given. For each feature (or pair):

* ``p``: the posterior predictive p-value P(T(x̃) ≥ T(x)), with ties counted half;
* ``inside``: whether T(x) lies in the central ``coverage`` interval of the T(x̃).

The summary of a statistic is the share of features inside. Replicates drawn from the true model keep
it near ``coverage``; a posterior predictive check is conservative (the replicates are drawn given the
same data), so a fitting model keeps it at ``coverage`` or above, and a share far below says the model
misses that statistic (p-values near 0 or 1 say in which direction).
"""

import math

import numpy as np
import torch
from pyro import poutine

from pvae.base import options
from pvae.base.device import module_device, to_device
from pvae.base.sites import X
from pvae.engine.pair import traits
from pvae.measures import memory
from pvae.measures.evaluate import pair_args


@options.config
class PPCConfig:
    """How many replicates, of how many rows.

    :param replicates: R, replicated test sets drawn from the model.
    :param rows: test rows replicated (at most the test split's size).
    :param coverage: the central interval of the replicates a statistic of the data should fall in.
    :param pairs: feature pairs whose correlation is checked (the most correlated in the data first).
    :param seed: seed of the replicates.
    """

    replicates: int = 100
    rows: int = 2000
    coverage: float = 0.9
    pairs: int = 50
    seed: int = 0

    def __post_init__(self):
        options.positive(self, "replicates", "rows")
        options.positive(self, "pairs", zero=True)
        options.require(self, "coverage", 0 < self.coverage < 1, "a fraction between 0 and 1")
        options.require(self, "replicates", self.replicates >= 20, "at least 20: an interval needs replicates")
        options.seed(self, "seed")


@torch.no_grad()
def replicate(model, guide, x: torch.Tensor, y: torch.Tensor | None, replicates: int) -> torch.Tensor:
    """``replicates`` replicated copies of the rows ``x``: for each, z ~ q(z|x) then x̃ ~ p(x|z), as the
    model sees data (standardized where the run standardizes). ``(replicates, N, *x_shape)``, on the host."""
    pair = traits(model, guide)
    device = module_device(model)
    args = pair_args(pair, to_device(x, device), None if y is None else to_device(y, device))
    draws = []
    for _ in range(replicates):
        guide_trace = poutine.trace(guide).get_trace(*args)
        model_trace = poutine.trace(poutine.replay(poutine.uncondition(model), trace=guide_trace)).get_trace(*args)
        draws.append(model_trace.nodes[X]["value"].cpu())
    return torch.stack(draws)


def statistics(x: np.ndarray, kind: str, pairs: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The checked statistics of rows ``x`` ``(..., N, D)``: per feature ``mean`` and ``variance``, and for
    counts ``zeros`` (the fraction of zeros) and ``library`` (the mean and sd of the rows' totals, as
    ``library_mean``/``library_sd``); ``correlation`` of each feature pair."""
    out = {"mean": x.mean(-2), "variance": x.var(-2, ddof=1)}
    if kind in ("counts", "binary"):
        out["zeros"] = (x == 0).mean(-2)
        totals = x.sum(-1)
        out["library_mean"] = totals.mean(-1)[..., None]
        out["library_sd"] = totals.std(-1, ddof=1)[..., None]
    if pairs:
        a = np.stack([x[..., i] for i, _ in pairs], -1)
        b = np.stack([x[..., j] for _, j in pairs], -1)
        a, b = a - a.mean(-2, keepdims=True), b - b.mean(-2, keepdims=True)
        denominator = np.sqrt((a**2).sum(-2) * (b**2).sum(-2))
        out["correlation"] = np.where(denominator > 0, (a * b).sum(-2) / np.where(denominator > 0, denominator, 1), 0)
    return out


def _compare(observed: np.ndarray, replicated: np.ndarray, coverage: float) -> dict:
    """p-values and the share inside the central interval, for each column of ``observed`` ``(K,)``
    against ``replicated`` ``(R, K)``."""
    above = (replicated > observed).mean(0) + 0.5 * (replicated == observed).mean(0)
    tail = (1 - coverage) / 2
    low, high = np.quantile(replicated, tail, axis=0), np.quantile(replicated, 1 - tail, axis=0)
    inside = (observed >= low) & (observed <= high)
    return {
        "inside": float(inside.mean()),
        "p_values": above.tolist(),
        "observed": observed.tolist(),
        "replicated_mean": replicated.mean(0).tolist(),
        "replicated_low": low.tolist(),
        "replicated_high": high.tolist(),
    }


def top_pairs(x: np.ndarray, n: int) -> list[tuple[int, int]]:
    """The ``n`` feature pairs of rows ``x`` ``(N, D)`` with the largest absolute correlation."""
    d = x.shape[1]
    if n == 0 or d < 2:
        return []
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.corrcoef(x, rowvar=False))
    i, j = np.triu_indices(d, k=1)
    order = np.argsort(-np.abs(corr[i, j]))[:n]
    return [(int(i[k]), int(j[k])) for k in order]


#: Bytes per replicated number at the peak: the float32 draws twice while they are stacked, then three float64
#: arrays of them (in the data's units, and the temporaries of a statistic).
BYTES_PER_NUMBER = 2 * 4 + 3 * 8


def check_ppc_memory(replicates: int, rows: int, features: int, available: int | None = None) -> int:
    """Refuse replicates that need more memory than there is, before any is drawn.

    :param replicates: R, replicated test sets.
    :param rows: test rows replicated.
    :param features: numbers in a row.
    :param available: bytes available (default: :func:`pvae.measures.memory.available_memory` of the host).
    :returns: the estimate, in bytes.
    :raises ValueError: naming the estimate, what is available and the fix.
    """
    need = replicates * rows * features * BYTES_PER_NUMBER
    available = memory.available_memory("cpu") if available is None else available
    if available is not None and need > available:
        raise ValueError(
            f"--replicates {replicates} of {rows} test rows × {features} features need about "
            f"{memory.format_bytes(need)}; this machine has {memory.format_bytes(available)} available: lower "
            f"--replicates (100 is plenty for a 90% interval) or --samples (the rows replicated)"
        )
    return need


def posterior_predictive_check(model, guide, dataset, config: PPCConfig | None = None) -> dict:
    """Replicate the test split and compare its statistics with the data's (see the module's docstring).

    :returns: ``{"statistics": {name: {"inside", "p_values", ...}}, "coverage", "replicates", "rows",
        "pairs", "kind"}`` — every number in the units of the data as given.
    """
    config = PPCConfig() if config is None else config
    n = min(config.rows, len(dataset.test))
    check_ppc_memory(config.replicates, n, math.prod(dataset.x_shape))
    x, y = dataset.test.images(slice(n)), dataset.test.y[:n]
    observed = dataset.test.raw(slice(n)).reshape(n, -1).numpy()
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        draws = replicate(model, guide, x, y if dataset.has_labels else None, config.replicates)
    replicated = dataset.unstandardize(draws.double()).reshape(config.replicates, n, -1).numpy()
    kind = dataset.model_kind
    pairs = top_pairs(observed, config.pairs)
    data_stats, replicate_stats = statistics(observed, kind, pairs), statistics(replicated, kind, pairs)
    results = {name: _compare(data_stats[name], replicate_stats[name], config.coverage) for name in sorted(data_stats)}
    return {
        "statistics": results,
        "coverage": config.coverage,
        "replicates": config.replicates,
        "rows": n,
        "pairs": [list(p) for p in pairs],
        "kind": kind,
        "features": list(dataset.features) if dataset.features else None,
    }


def describe_ppc(results: dict) -> str:
    """One line per statistic: the share of features inside the interval, and the p-values' extremes."""
    lines = [
        f"posterior predictive checks: {results['replicates']} replicates of {results['rows']} test rows; share of "
        f"features whose statistic lies in the central {results['coverage']:.0%} of the replicates "
        f"(at least about {results['coverage']:.0%} where the model fits; far below, it misses that statistic):"
    ]
    for name, stat in results["statistics"].items():
        p = np.asarray(stat["p_values"])
        extreme = int(((p < 0.025) | (p > 0.975)).sum())
        lines.append(f"  {name}: {stat['inside']:.2f} inside ({extreme} of {len(p)} with p < 0.025 or > 0.975)")
    return "\n".join(lines)
