"""Disentanglement metrics: how well a representation's dimensions line up with known generative factors.

Each metric lives in a file of its own: a public ``compute_<name>(ground_truth, represent, rng, *, factors=None,
...)`` that samples grid points from a :class:`~pvae.disentangle.ground_truth.GroundTruth`, encodes them with
``represent`` and returns a flat dict of float scores plus ``settings`` (the options it used and the factors it
scored), and a pure private core on arrays. Definitions and defaults follow disentanglement_lib (Locatello et
al. 2019); each docstring states the math and cites the paper.
"""

from collections.abc import Callable

from pvae.disentangle.beta_vae import compute_beta_vae
from pvae.disentangle.dci import compute_dci
from pvae.disentangle.factor_vae import compute_factor_vae
from pvae.disentangle.ground_truth import Grid, GroundTruth
from pvae.disentangle.mig import compute_mig
from pvae.disentangle.modularity import compute_modularity
from pvae.disentangle.mutual_information import factor_entropies, histogram_discretize, mutual_information_matrix
from pvae.disentangle.sap import compute_sap

#: metric name → its ``compute_*`` function
METRICS: dict[str, Callable[..., dict]] = {
    "beta_vae": compute_beta_vae,
    "factor_vae": compute_factor_vae,
    "mig": compute_mig,
    "dci": compute_dci,
    "sap": compute_sap,
    "modularity": compute_modularity,
}


def get_metric(name: str) -> Callable[..., dict]:
    """The ``compute_*`` function of the metric ``name``.

    :param name: a key of :data:`METRICS`.
    :raises ValueError: for an unknown name, listing the valid ones.
    """
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}: choose from {', '.join(METRICS)}") from None


__all__ = [
    "METRICS",
    "GroundTruth",
    "Grid",
    "compute_beta_vae",
    "compute_dci",
    "compute_factor_vae",
    "compute_mig",
    "compute_modularity",
    "compute_sap",
    "factor_entropies",
    "get_metric",
    "histogram_discretize",
    "mutual_information_matrix",
]
