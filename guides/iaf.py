"""The inverse autoregressive flow guide: a diagonal Gaussian pushed through conditional IAF steps."""

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ConditionalAffineAutoregressive, Permute
from pyro.nn import ConditionalAutoRegressiveNN, PyroModule
from torch import nn

from pvae.base.sites import DATA, Z
from pvae.engine.nets import encoder


class IAFGuide(PyroModule):
    """Amortized inverse autoregressive flow (Kingma et al., 2016, "Improving Variational Inference
    with Inverse Autoregressive Flow").

    The encoder maps x to a mean mu(x), a log-scale log sigma(x) and a context vector h(x). A draw
    starts from the diagonal Gaussian and passes through ``flows`` affine autoregressive steps,
    each conditioned on h(x), with the order of the coordinates reversed between steps::

        z_0 = mu(x) + sigma(x) ⊙ eps,   eps ~ N(0, I)
        z_t = s_t ⊙ z_{t-1} + (1 − s_t) ⊙ m_t,   (m_t, s_t) = MADE_t(z_{t-1}, h(x)),  t = 1 … T
        log q(z_T | x) = log N(z_0; mu(x), sigma(x)²) − Σ_t Σ_i log s_{t,i}

    where coordinate i of (m_t, s_t) depends on the coordinates of z_{t-1} before i only (a
    masked autoencoder, Germain et al., 2015, with the context added to its input) and
    s_t = sigmoid(logit + 2) lies in (0, 1): the numerically stable update of Kingma et al.'s
    Algorithm 1; the +2 on the gate's logit, which the paper suggests, starts every step near
    the identity (s_t ≈ 0.88). With ``stable=False`` the step is z_t = m_t + exp(l_t) ⊙ z_{t-1}
    (their Eq. 10), with log-scales clipped to [−5, 3] by Pyro under a straight-through gradient:
    where clipped, the gradient is not that of the function, which can derail a line-search
    optimizer such as L-BFGS.

    The Jacobian of each step is triangular, so its log-determinant is the sum of the
    log-scales, computed during sampling: scoring a draw of the guide reuses it and costs no
    network evaluation (Pyro caches the inverse of the last value sampled). Scoring any other
    value inverts each step coordinate by coordinate (``z_dim`` passes per step).

    ``flows=0`` is the diagonal Gaussian itself: the guide then returns
    ``Normal(mu, sigma).to_event(1)``, the distribution of :class:`pvae.guides.gaussian.GaussianGuide`
    (with its analytic KL under ``TraceMeanField_ELBO``), and the encoder emits no context.
    With flows, q(z|x) is a ``TransformedDistribution``: Pyro 1.9.2 has no analytic KL for it,
    so ``TraceMeanField_ELBO`` samples log q(z|x) − log p(z) as ``Trace_ELBO`` does; it has no
    closed-form ``mean`` either (:func:`pvae.measures.evaluate.posterior_mean` averages draws).

    :param x_shape: shape of one datapoint.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the encoder; ``()`` makes an MLP encoder affine.
    :param net: encoder family, a name from :data:`pvae.engine.nets.NETS`.
    :param flows: number of IAF steps T, at least 0.
    :param context_dim: width of the context h(x); ``None`` takes ``z_dim``.
    :param flow_hidden: hidden widths of each step's masked autoencoder, each at least ``z_dim``;
        ``None`` takes ``(10 * z_dim,)`` (Pyro's default).
    :param stable: use the sigmoid-gated update (Kingma et al.'s Algorithm 1) rather than Eq. 10.
    :raises ValueError: for ``flows < 0``, or a ``flow_hidden`` width below ``z_dim``.
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        z_dim: int = 20,
        hidden: Sequence[int] = (400,),
        net: str = "mlp",
        flows: int = 2,
        context_dim: int | None = None,
        flow_hidden: Sequence[int] | None = None,
        stable: bool = True,
    ):
        super().__init__()
        if flows < 0:
            raise ValueError(f"flows must be a non-negative number of IAF steps, got {flows}")
        self.x_shape = tuple(x_shape)
        self.z_dim = z_dim
        self.context_dim = (z_dim if context_dim is None else context_dim) if flows else 0
        flow_hidden = [10 * z_dim] if flow_hidden is None else list(flow_hidden)
        if flows and (not flow_hidden or min(flow_hidden) < z_dim):
            raise ValueError(f"flow_hidden needs at least one width, each at least z_dim={z_dim}, got {flow_hidden}")
        self.encoder = encoder(net, self.x_shape, hidden, 2 * z_dim + self.context_dim)
        # Each masked autoencoder keeps the natural order of its input (a fixed permutation instead
        # of Pyro's random default); the reversal between steps alternates the order.
        order = torch.arange(z_dim)
        self.flows = nn.ModuleList(
            ConditionalAffineAutoregressive(
                ConditionalAutoRegressiveNN(z_dim, self.context_dim, flow_hidden, permutation=order), stable=stable
            )
            for _ in range(flows)
        )
        self.register_buffer("reverse", order.flip(0), persistent=False)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Base mean and standard deviation ``(batch, z_dim)`` and context ``(batch, context_dim)``."""
        loc, log_scale, context = self.encoder(x).split([self.z_dim, self.z_dim, self.context_dim], dim=-1)
        return loc, log_scale.exp(), context

    def distribution(self, x: torch.Tensor) -> dist.Distribution:
        """q(z | x), batch shape ``(batch,)``, event shape ``(z_dim,)``.

        The steps are conditioned on h(x) of shape ``(batch, context_dim)``; it broadcasts over
        leading sample dimensions (the particle plate), so ``expand`` and ``rsample`` work as usual.
        """
        loc, scale, context = self.encode(x)
        base = dist.Normal(loc, scale).to_event(1)
        if not self.flows:
            return base
        transforms = []
        for t, flow in enumerate(self.flows):
            if t:
                transforms.append(Permute(self.reverse))
            transforms.append(flow.condition(context))
        return dist.TransformedDistribution(base, transforms)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample ``"z"`` from q(z | x) in the data plate; ``y`` is ignored."""
        q = self.distribution(x)
        with pyro.plate(DATA, x.shape[0]):
            return pyro.sample(Z, q)
