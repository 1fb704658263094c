"""The semi-supervised generative model M2 (Kingma, Rezende, Mohamed & Welling, 2014)."""

import pyro
import torch

from pvae.base.sites import Y
from pvae.models.cvae import CVAE


class M2(CVAE):
    """p(y) uniform, p(z) = N(0, I), x | y, z ~ likelihood(decoder([z, onehot(y)])).

    The CVAE's generative model, with the label *latent* where it is unknown: ``forward(x)``
    samples ``"y"`` (the guide's q(y|x) proposes it; ``TraceEnum_ELBO`` sums it out exactly),
    ``forward(x, y)`` observes it. Trained with ``pvae.guides.m2.M2Guide`` and ``--elbo enum``; the
    log-likelihood :func:`pvae.measures.evaluate.evaluate` reports is log p(x), the label summed out by
    importance sampling from q(y|x).

    Its constructor is the CVAE's.
    """

    #: Labels are observed where known in training (labelled batches with ``y``, unlabelled ones
    #: without); evaluation scores x alone.
    labels = "semi-supervised"
    #: What ``pvae train --model ...`` trains with unless told otherwise.
    default_guide = "m2"
    default_elbo = "enum"

    def label(self, y: torch.Tensor | None) -> torch.Tensor:
        """Observe ``"y"`` where given, else sample it from p(y) (the guide proposes it)."""
        return pyro.sample(Y, self.label_prior(), obs=y)
