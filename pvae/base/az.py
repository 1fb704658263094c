"""The one module that imports ArviZ: Pareto-smoothed importance sampling, convergence
diagnostics, ``InferenceData`` and its NetCDF file.

It is written against ArviZ 0.2x (``az.psislw``, ``az.rhat``, ``az.ess``, ``az.from_dict``); 1.x
moves those into ``arviz-stats``, and a move to it touches this file only. Arrays go in and come
out as NumPy, with the sample dimension where each function says.
"""

import os
import warnings
from collections.abc import Mapping

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # 0.23 announces the 1.x refactor on import
    import arviz

from pvae.base.files import atomic_path

#: The groups of the ``InferenceData`` that :func:`inference_data` builds.
NUTS_GROUP = "posterior"
GUIDE_GROUP = "guide"


# A proposal equal to the target gives log ratios equal up to float32 rounding: on the exact pPCA
# posterior their range is 1e-6 to 6e-6 times their size (10 to 50 float32 ulps). A Pareto tail
# fitted to that noise is meaningless (it gave k̂ = +∞, or above 0.7 on some processors); 1e-4
# (about 800 ulps) leaves a wide margin, and weights that close to one another have no tail to speak of.
CONSTANT_RTOL = 1e-4


def pareto_k(log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pareto-smoothed importance sampling of each row of ``log_weights`` (Vehtari et al., 2024).

    :param log_weights: ``(n, K)``: K log importance ratios for each of n targets.
    :returns: ``(k_hat (n,), smoothed (n, K))``: the estimated shape of the generalized Pareto
        distribution fitted to the largest ratios (Yao et al., 2018: below 0.5 the estimate is
        good, 0.5–0.7 usable, above 0.7 unreliable), and the smoothed, normalized log-weights.
        A row whose K ratios are all equal (the proposal is the target exactly) has no tail to
        fit: its k̂ is −∞ and its weights uniform. Equal means equal up to the rounding of the
        float32 log-densities they come from: a range of at most :data:`CONSTANT_RTOL` times the
        largest ``|log ratio|`` (at least 1).
    """
    log_weights = np.asarray(log_weights, dtype=np.float64)
    if log_weights.ndim != 2 or log_weights.shape[1] < 2:
        raise ValueError(f"log_weights must be (targets, samples) with at least 2 samples, got {log_weights.shape}")
    constant = np.ptp(log_weights, axis=1) <= CONSTANT_RTOL * np.maximum(1.0, np.abs(log_weights).max(axis=1))
    k_hat = np.full(len(log_weights), -np.inf)
    smoothed = np.full(log_weights.shape, -np.log(log_weights.shape[1]))
    if not constant.all():  # a fit to the ties of rounding noise divides by zero: only the others
        smoothed[~constant], k_hat[~constant] = arviz.psislw(log_weights[~constant], reff=1.0)
    return k_hat, smoothed


def convergence(draws: np.ndarray) -> dict[str, np.ndarray]:
    """Split-R̂ and bulk and tail effective sample sizes of each scalar (Vehtari et al., 2021).

    :param draws: ``(chains, draws, ...)``.
    :returns: ``{"r_hat", "ess_bulk", "ess_tail"}``, each of shape ``draws.shape[2:]``.
    """
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim < 2 or draws.shape[0] < 2:
        raise ValueError(f"R-hat needs (chains, draws, ...) with at least 2 chains, got {draws.shape}")
    dataset = arviz.convert_to_dataset({"v": draws})
    with np.errstate(divide="ignore", invalid="ignore"):  # chains stuck at one value: R-hat is inf or nan
        return {
            "r_hat": arviz.rhat(dataset, method="rank")["v"].values,
            "ess_bulk": arviz.ess(dataset, method="bulk")["v"].values,
            "ess_tail": arviz.ess(dataset, method="tail")["v"].values,
        }


def inference_data(
    nuts: Mapping[str, np.ndarray],
    guide: Mapping[str, np.ndarray],
    sample_stats: Mapping[str, np.ndarray] | None = None,
    observed: Mapping[str, np.ndarray] | None = None,
    dims: Mapping[str, list[str]] | None = None,
) -> "arviz.InferenceData":
    """The NUTS draws and the guide's draws in one ``InferenceData``.

    :param nuts: site → ``(chains, draws, *shape)``: the reference posterior, group ``posterior``.
    :param guide: site → ``(1, draws, *shape)``: draws from q(z|x), group ``guide``.
    :param sample_stats: NUTS statistics (``diverging`` ...), ``(chains, draws)`` each.
    :param observed: the datapoints, group ``observed_data``.
    :param dims: site → names of its dimensions after (chain, draw), shared by both groups.
    """
    idata = arviz.from_dict(
        posterior=dict(nuts), sample_stats=sample_stats, observed_data=observed, dims=dims and dict(dims)
    )
    guide_data = arviz.from_dict(posterior=dict(guide), dims=dims and dict(dims)).posterior
    idata.add_groups({GUIDE_GROUP: guide_data})
    return idata


def save_netcdf(idata: "arviz.InferenceData", path: str | os.PathLike) -> None:
    """Write ``idata`` as one NetCDF file, atomically (a crash leaves the previous file whole)."""

    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp))


def load_netcdf(path: str | os.PathLike) -> "arviz.InferenceData":
    """Read what :func:`save_netcdf` wrote."""
    return arviz.from_netcdf(path)


def plot_dist(values: np.ndarray, ax, **kwargs):
    """ArviZ's density plot of one scalar's draws on ``ax`` (keywords go to ``arviz.plot_dist``)."""
    with warnings.catch_warnings():  # 0.23 calls a Matplotlib API that newer Matplotlib deprecates
        warnings.filterwarnings("ignore", "Passing a dict or None as alias_mapping")
        return arviz.plot_dist(np.asarray(values, dtype=np.float64), ax=ax, **kwargs)
