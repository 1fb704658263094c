"""The pieces every diagnostic shares: the model's latent sites, its log joint log p(x, z) at given
values of them, the guide's draws of them, and the guide's family where it is a Gaussian of ``"z"`` alone.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.poutine.util import site_is_subsample

from pvae.base.sites import PARTICLES, Z
from pvae.measures.evaluate import log_weights, pair_args, sample_chunks


class NotApplicable(ValueError):
    """A diagnostic does not apply to this pair; the message says why."""


def sample_sites(trace) -> dict[str, dict]:
    """The sample sites of ``trace`` (subsample sites left out): name → site."""
    return {n: s for n, s in trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}


def latent_sites(model, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, dict]:
    """The model's unobserved sample sites for the datapoints ``x``, drawn from the prior: name → site."""
    trace = poutine.trace(model).get_trace(*pair_args(model, x, y))
    return {n: s for n, s in sample_sites(trace).items() if not s["is_observed"]}


def require_continuous(model, x, y) -> dict[str, dict]:
    """The model's latent sites (:func:`latent_sites`), if every one is continuous and real-valued.

    :raises NotApplicable: naming the first latent that is discrete or constrained.
    """
    sites = latent_sites(model, x, y)
    for name, site in sites.items():
        support = site["fn"].support
        if support.is_discrete:
            raise NotApplicable(
                f"the model's latent {name!r} is discrete; NUTS moves continuous latents only "
                "(condition on it, or sum it out in the model)"
            )
        base = support.base_constraint if isinstance(support, constraints.independent) else support
        if base is not constraints.real:
            raise NotApplicable(f"the model's latent {name!r} is not real-valued (support {support})")
    return sites


def log_joint(
    model, x: torch.Tensor, y: torch.Tensor | None, values: dict[str, torch.Tensor], particles: int | None = None
) -> torch.Tensor:
    """log p(x, z) per datapoint (observed label included), at given values of the latents.

    :param values: site → ``(batch, *event)``, or ``(particles, batch, *event)`` with ``particles``.
    :returns: ``(batch,)``, or ``(particles, batch)``.
    """
    conditioned = poutine.trace(poutine.condition(model, data=values))
    args = pair_args(model, x, y)
    if particles is None:
        trace = conditioned.get_trace(*args)
    else:
        with pyro.plate(PARTICLES, particles, dim=-2):
            trace = conditioned.get_trace(*args)
    return sum(s["fn"].log_prob(s["value"]) for s in sample_sites(trace).values())


@contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """Hold ``module``'s parameters fixed (no gradients) inside the block."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


@torch.no_grad()
def guide_draws(guide, model, x, y, num_samples: int, sites) -> dict[str, torch.Tensor]:
    """Draws of the model's latent ``sites`` from the guide, ``(num_samples, batch, *event)`` each."""
    with pyro.plate(PARTICLES, num_samples, dim=-2):
        trace = poutine.trace(guide).get_trace(*pair_args(model, x, y))
    return {n: trace.nodes[n]["value"] for n in sites}


def rows_of(y: torch.Tensor | None, start: int, size: int) -> torch.Tensor | None:
    """Rows ``start`` to ``start + size`` of the labels ``y`` (``None`` for a pair without labels)."""
    return None if y is None else y[start : start + size]


def chunked_log_weights(model, guide, x, y, num_samples: int, max_elements: int = 1 << 24) -> torch.Tensor:
    """``(num_samples, batch)`` log-weights, drawn in chunks that bound the decoder's output."""
    return torch.cat([log_weights(model, guide, x, y, k)["log_w"] for k in sample_chunks(x, num_samples, max_elements)])


def local_family(guide, model, x: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
    """The guide's q(z|x), if the gap decomposition can optimize it per datapoint.

    :raises NotApplicable: unless the guide's only latent is ``"z"`` with a diagonal or
        full-rank Gaussian q(z|x).
    """
    with torch.no_grad():
        trace = poutine.trace(guide).get_trace(*pair_args(model, x, y))
    sites = sample_sites(trace)
    if set(sites) != {Z}:
        raise NotApplicable(
            f"the guide samples {sorted(sites)}: the local optimum is defined here for a guide whose only "
            "latent is 'z' (a hierarchical or discrete guide has no per-datapoint parameters apart from "
            "shared networks)"
        )
    q = sites[Z]["fn"]
    diagonal = isinstance(q, dist.Independent) and isinstance(q.base_dist, dist.Normal)
    if not (diagonal or isinstance(q, dist.MultivariateNormal)):
        raise NotApplicable(
            f"q(z|x) is a {type(q).__name__}: the local optimum is defined here for diagonal and full-rank "
            "Gaussians (a flow's per-datapoint family would need its own networks for each datapoint)"
        )
    return q
