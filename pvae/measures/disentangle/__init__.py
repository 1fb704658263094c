"""Disentanglement metrics: how well a representation's dimensions line up with known generative factors.

Each metric lives in a file of its own: a public ``compute_<name>(ground_truth, represent, rng, *, factors=None,
...)`` that samples grid points from a :class:`~pvae.measures.disentangle.ground_truth.GroundTruth`, encodes them with
``represent`` and returns a flat dict of float scores plus ``settings`` (the options it used and the factors it
scored), and a pure private core on arrays. Definitions and defaults follow disentanglement_lib (Locatello et
al. 2019); each docstring states the math and cites the paper.
"""

from collections.abc import Callable

from pvae.measures.disentangle import beta_vae as _beta_vae
from pvae.measures.disentangle import dci as _dci
from pvae.measures.disentangle import factor_vae as _factor_vae
from pvae.measures.disentangle import mig as _mig
from pvae.measures.disentangle import modularity as _modularity
from pvae.measures.disentangle import sap as _sap
from pvae.measures.disentangle.beta_vae import compute_beta_vae
from pvae.measures.disentangle.dci import compute_dci
from pvae.measures.disentangle.factor_vae import compute_factor_vae
from pvae.measures.disentangle.ground_truth import Grid, GroundTruth
from pvae.measures.disentangle.mig import compute_mig
from pvae.measures.disentangle.modularity import compute_modularity
from pvae.measures.disentangle.mutual_information import (
    factor_entropies,
    histogram_discretize,
    mutual_information_matrix,
)
from pvae.measures.disentangle.sap import compute_sap

#: metric name → its ``compute_*`` function
METRICS: dict[str, Callable[..., dict]] = {
    "beta_vae": compute_beta_vae,
    "factor_vae": compute_factor_vae,
    "mig": compute_mig,
    "dci": compute_dci,
    "sap": compute_sap,
    "modularity": compute_modularity,
}
#: metric name → the least of each of its sizes that leaves it something to measure: option → (least, why)
MINIMUMS: dict[str, dict[str, tuple[int, str]]] = {
    "beta_vae": _beta_vae.MINIMUM,
    "factor_vae": _factor_vae.MINIMUM,
    "mig": _mig.MINIMUM,
    "dci": _dci.MINIMUM,
    "sap": _sap.MINIMUM,
    "modularity": _modularity.MINIMUM,
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
    "MINIMUMS",
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
